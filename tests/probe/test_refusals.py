"""Honest refusals on real layouts lineage cannot probe: a cross-attention layer is named as such (not taken for
a missing shard), routed experts in some layers are read as FFNs beside the dense ones, and a config.json that
contradicts the tensor shapes is refused with both numbers instead of the heads being silently regrouped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lineage.arch import resolve_model
from lineage.errors import CheckpointError, UnsupportedArchitectureError
from lineage.io import open_checkpoint
from tests.checkpoints import TINY_LLAMA_CONFIG, tiny_llama_tensors, write_checkpoint


def _resolve(folder: Path):  # noqa: ANN202
    with open_checkpoint(folder) as reader:
        return resolve_model(reader)


def _experts(tensors: dict[str, torch.Tensor], layer: int, style: str) -> dict[str, torch.Tensor]:
    """Replace layer `layer`'s dense FFN by 2 routed experts, named as Qwen-MoE (`mlp.experts.N`) or Mixtral."""
    p = f"model.layers.{layer}."
    out = {k: v for k, v in tensors.items() if not k.startswith(p + "mlp.")}
    gate, up, down = (tensors[p + f"mlp.{n}_proj.weight"] for n in ("gate", "up", "down"))
    if style == "qwen":
        out[p + "mlp.gate.weight"] = torch.zeros(2, gate.shape[1])
        for e in range(2):
            out |= {
                p + f"mlp.experts.{e}.{n}_proj.weight": w.clone()
                for n, w in (("gate", gate), ("up", up), ("down", down))
            }
    else:
        out[p + "block_sparse_moe.gate.weight"] = torch.zeros(2, gate.shape[1])
        for e in range(2):
            out |= {
                p + f"block_sparse_moe.experts.{e}.w{i}.weight": w.clone() for i, w in ((1, gate), (3, up), (2, down))
            }
    return out


def test_the_dense_checkpoint_resolves(tmp_path: Path) -> None:
    model = _resolve(write_checkpoint(tmp_path / "dense", tiny_llama_tensors(0)))
    assert (model.num_heads, model.num_kv_heads, model.head_dim) == (4, 2, 8)


@pytest.mark.parametrize("style", ["qwen", "mixtral"])
@pytest.mark.parametrize("layer", [0, 1])
def test_experts_in_some_layers_are_read_as_ffns(tmp_path: Path, style: str, layer: int) -> None:
    # DeepSeek's dense first layers: a layer has a dense FFN or routed experts, each expert read as an FFN.
    config = {**TINY_LLAMA_CONFIG, "model_type": "qwen2_moe" if style == "qwen" else "mixtral"}
    model = _resolve(write_checkpoint(tmp_path / "moe", _experts(tiny_llama_tensors(0), layer, style), config=config))
    assert [lt.experts for lt in model.layers] == [2 if i == layer else 0 for i in range(2)]
    moe = model.layers[layer]
    w1 = "mlp.experts.1.gate_proj.weight" if style == "qwen" else "block_sparse_moe.experts.1.w1.weight"
    assert moe["expert.1.gate"] == f"model.layers.{layer}.{w1}" and moe["gate"] is None and moe["router"]
    assert model.layers[1 - layer]["gate"] == f"model.layers.{1 - layer}.mlp.gate_proj.weight"


def test_experts_under_a_dense_model_type_contradict_the_config(tmp_path: Path) -> None:
    tensors = _experts(_experts(tiny_llama_tensors(0), 0, "mixtral"), 1, "mixtral")
    with pytest.raises(CheckpointError, match="model_type 'llama', but the tensors are laid out as mixtral"):
        _resolve(write_checkpoint(tmp_path / "mixtral", tensors))


def test_cross_attention_layers_are_named(tmp_path: Path) -> None:
    tensors = tiny_llama_tensors(0)
    p = "model.layers.1."
    for name in ("q", "k", "v", "o"):
        tensors[p + f"cross_attn.{name}_proj.weight"] = tensors.pop(p + f"self_attn.{name}_proj.weight")
    with pytest.raises(UnsupportedArchitectureError, match="layer 1: cross-attention layout is not supported"):
        _resolve(write_checkpoint(tmp_path / "xattn", tensors))


def test_a_vision_towers_layers_do_not_count(tmp_path: Path) -> None:
    # A tower without a token embedding is not the model probed, whatever its layers are called.
    tensors = tiny_llama_tensors(0) | {"vision.layers.0.cross_attn.q_proj.weight": torch.zeros(4, 4)}
    assert _resolve(write_checkpoint(tmp_path / "vlm", tensors)).num_layers == 2


def test_a_missing_tensor_is_still_a_truncation(tmp_path: Path) -> None:
    tensors = tiny_llama_tensors(0)
    del tensors["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(CheckpointError, match="layer 1 lacks mlp.up_proj.weight"):
        _resolve(write_checkpoint(tmp_path / "cut", tensors))


@pytest.mark.parametrize(
    ("edit", "says", "shapes"),
    [
        ({"head_dim": 16}, "num_attention_heads 4 x head_dim 16 = 64 query rows", "has 32"),
        ({"head_dim": 5}, "head_dim 5", "has 32 query rows"),
        ({"num_attention_heads": 8}, "num_attention_heads 8 x head_dim 8 = 64 query rows", "has 32"),
        ({"num_key_value_heads": 4}, "num_key_value_heads 4 x head_dim 8 = 32 key rows", "has 16"),
        ({"num_attention_heads": 3, "head_dim": None}, "num_attention_heads 3", "has 32 rows, not a multiple"),
    ],
)
def test_config_contradicting_shapes_is_refused_with_both_numbers(
    tmp_path: Path, edit: dict, says: str, shapes: str
) -> None:
    config = {k: v for k, v in {**TINY_LLAMA_CONFIG, **edit}.items() if v is not None}
    folder = write_checkpoint(tmp_path / "edited", tiny_llama_tensors(0), config=config)
    with pytest.raises(CheckpointError, match="config.json says") as err:
        _resolve(folder)
    assert says in str(err.value) and shapes in str(err.value), str(err.value)
    assert str(err.value).startswith(str(folder / "config.json"))


def test_head_size_read_from_the_query_width_when_config_omits_it(tmp_path: Path) -> None:
    # q_proj 32 rows over hidden 32 with 4 heads: head_dim 8 follows from the shapes and the head count alone.
    config = {k: v for k, v in TINY_LLAMA_CONFIG.items() if k != "head_dim"}
    model = _resolve(write_checkpoint(tmp_path / "nohd", tiny_llama_tensors(0), config=config))
    assert (model.num_heads, model.num_kv_heads, model.head_dim) == (4, 2, 8)
