"""Tiny checkpoints for the `lineage.io` tests, written with `safetensors.torch.save_file`.

A Llama-shaped model with hidden size 8, 2 layers, 4 query heads and 2 key/value heads (GQA), vocab 16:
small enough that every layout is built in milliseconds, shaped enough that names and shapes are real.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, FFN = 8, 2, 4, 2, 16, 12
HEAD_DIM = HIDDEN // HEADS
CONFIG = {"model_type": "llama", "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "vocab_size": VOCAB}


def llama_tensors(*, tied: bool = False, prefix: str = "model.", seed: int = 0) -> dict[str, torch.Tensor]:
    """Return the tensors of a tiny Llama (no `lm_head.weight` when `tied`)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {f"{prefix}embed_tokens.weight": (VOCAB, HIDDEN), f"{prefix}norm.weight": (HIDDEN,)}
    for i in range(LAYERS):
        layer = f"{prefix}layers.{i}."
        shapes |= {
            layer + "self_attn.q_proj.weight": (HEADS * HEAD_DIM, HIDDEN),
            layer + "self_attn.k_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
            layer + "self_attn.v_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
            layer + "self_attn.o_proj.weight": (HIDDEN, HEADS * HEAD_DIM),
            layer + "mlp.gate_proj.weight": (FFN, HIDDEN),
            layer + "mlp.up_proj.weight": (FFN, HIDDEN),
            layer + "mlp.down_proj.weight": (HIDDEN, FFN),
            layer + "input_layernorm.weight": (HIDDEN,),
            layer + "post_attention_layernorm.weight": (HIDDEN,),
        }
    if not tied:
        shapes["lm_head.weight"] = (VOCAB, HIDDEN)
    return {name: torch.randn(shape, generator=gen) for name, shape in shapes.items()}


def write_model(
    folder: Path,
    tensors: dict[str, torch.Tensor],
    *,
    shards: int = 1,
    index: bool = False,
    config: dict | None = CONFIG,
) -> Path:
    """Write `tensors` into `folder`: one `model.safetensors`, or `shards` files with or without an index."""
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if shards == 1:
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
        return folder
    names = sorted(tensors)
    weight_map = {}
    for k in range(shards):
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[k::shards]}
        save_file(part, folder / file, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, file)
    if index:
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def write_raw(path: Path, header: dict | bytes, data: bytes = b"", *, length: int | None = None) -> Path:
    """Write a safetensors file by hand: the 8-byte length (or `length`), the header, then `data`."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


@pytest.fixture(scope="session")
def tiny() -> dict[str, torch.Tensor]:
    """The tensors of the tiny Llama, for comparing against what the reader returns."""
    return llama_tensors()


@pytest.fixture(scope="session")
def single(tmp_path_factory: pytest.TempPathFactory, tiny: dict[str, torch.Tensor]) -> Path:
    """A tiny Llama in one `model.safetensors`, with `config.json`."""
    return write_model(tmp_path_factory.mktemp("models") / "tiny-llama", tiny)


@pytest.fixture(scope="session")
def sharded(tmp_path_factory: pytest.TempPathFactory, tiny: dict[str, torch.Tensor]) -> Path:
    """The same model in 3 shards listed by `model.safetensors.index.json`."""
    return write_model(tmp_path_factory.mktemp("models") / "tiny-sharded", tiny, shards=3, index=True)


@pytest.fixture()
def raw_file(tmp_path: Path) -> Callable[..., Path]:
    """Write a hand-made safetensors file as `<tmp>/model/model.safetensors`; returns its path."""

    def write(header: dict | bytes, data: bytes = b"", *, length: int | None = None) -> Path:
        return write_raw(tmp_path / "model" / "model.safetensors", header, data, length=length)

    return write


@pytest.fixture(scope="session")
def make_model() -> Callable[..., Path]:
    """`write_model`, for tests that build their own layout."""
    return write_model


@pytest.fixture(scope="session")
def make_tensors() -> Callable[..., dict[str, torch.Tensor]]:
    """`llama_tensors`, for tests that need another variant of the tiny model."""
    return llama_tensors
