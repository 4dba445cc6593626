"""Fixtures of the end-to-end tests: tiny checkpoints written with safetensors alone, the mini catalog built
once per session, and a `CliRunner` whose fingerprint cache and progress bars stay out of the way.

The expensive fixtures (the mini catalog, its first two scans) are session-scoped, so the folder runs in
well under a minute on two CPU cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

TINY_CONFIG = {
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "vocab_size": 128,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}


def tiny_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny Llama state dict (hidden 32, 2 layers, GQA 4/2, tied embeddings) from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    c = TINY_CONFIG
    d, f, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.1

    out = {"model.embed_tokens.weight": rnd(c["vocab_size"], d), "model.norm.weight": 1 + rnd(d)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {
            p + "input_layernorm.weight": 1 + rnd(d),
            p + "post_attention_layernorm.weight": 1 + rnd(d),
            p + "self_attn.q_proj.weight": rnd(q, d),
            p + "self_attn.k_proj.weight": rnd(kv, d),
            p + "self_attn.v_proj.weight": rnd(kv, d),
            p + "self_attn.o_proj.weight": rnd(d, q),
            p + "mlp.gate_proj.weight": rnd(f, d),
            p + "mlp.up_proj.weight": rnd(f, d),
            p + "mlp.down_proj.weight": rnd(d, f),
        }
    return out


def write_tiny_model(folder: Path, tensors: dict[str, torch.Tensor] | None = None, seed: int = 0) -> Path:
    """Write a tiny Llama as a Hugging Face folder (`model.safetensors` + `config.json`); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    save_file(tensors if tensors is not None else tiny_tensors(seed), str(folder / "model.safetensors"))
    return folder


def cli_runner(cache: Path) -> CliRunner:
    """A runner with its own fingerprint cache and no progress bars (stdout and stderr kept apart)."""
    return CliRunner(env={"LINEAGE_CACHE": str(cache), "LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None})


@pytest.fixture()
def runner(tmp_path: Path) -> CliRunner:
    """A runner whose default fingerprint cache is a fresh temporary folder."""
    return cli_runner(tmp_path / "default-cache")


@pytest.fixture(scope="session")
def e2e_mini_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository recipe's ``mini`` catalog (shape twins, two fine-tunes, a task-arithmetic merge, a
    MergeLock disguise, an outsider), built once per session; returns its manifest."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from lineage.catalog.build import BuildOptions, build_catalog

    return build_catalog(BuildOptions(size="mini", out_dir=tmp_path_factory.mktemp("e2e_mini")))


@pytest.fixture(scope="session")
def e2e_mini_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fingerprint cache every mini-catalog test shares (filled by `e2e_mini_scans`)."""
    return tmp_path_factory.mktemp("e2e_mini_cache")


@pytest.fixture(scope="session")
def e2e_mini_scans(e2e_mini_manifest: Path, e2e_mini_cache: Path) -> tuple:
    """`lineage scan --format json` run twice on the mini catalog with an empty cache: both results."""
    from lineage.cli.app import app

    runner = cli_runner(e2e_mini_cache)
    args = ["scan", str(e2e_mini_manifest), "--cache", str(e2e_mini_cache), "--format", "json", "--quiet"]
    return runner.invoke(app, args), runner.invoke(app, args)
