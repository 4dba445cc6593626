"""Every function-preserving disguise keeps the logits (within 1e-4, fp32) while changing the weights."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lineage.catalog import disguise, rotate

TOL = 1e-4
DISGUISES = {
    "permute_ffn": disguise.permute_ffn,
    "mergelock": disguise.mergelock,
    "norm_rescale": disguise.norm_rescale,
    "rotate_residual": rotate.rotate_residual,
    "rescale_ffn": disguise.rescale_ffn,
    "rescale_ffn_signed": lambda m, g: disguise.rescale_ffn(m, g, signed=True),
    "all": disguise.disguise_all,  # every one at once (the rotation skipped where it cannot preserve Gemma 3)
}


def _max_weight_change(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max((sa[k] - sb[k]).abs().max().item() for k in sa if sa[k].shape == sb[k].shape)


# (architecture, tied embeddings) as the real models have them, plus untied/tied variants of Llama and Qwen.
VARIANTS = [("llama", True), ("llama", False), ("mistral", False), ("qwen2", True), ("qwen2", False),
            ("gemma3", True), ("phi3", False)]


@pytest.mark.parametrize(
    ("arch", "tied", "name"),
    # Gemma 3 is not residual-rotated: its post-norms forbid it (the refusal is tested below).
    [(a, t, n) for a, t in VARIANTS for n in sorted(DISGUISES) if (a, n) != ("gemma3", "rotate_residual")],
)
def test_disguise_preserves_logits(arch: str, tied: bool, name: str, real_ids: torch.Tensor,
                                   tiny_model: Callable[..., torch.nn.Module]) -> None:
    parent = tiny_model(arch, tied=tied)
    child = DISGUISES[name](copy.deepcopy(parent), torch.Generator().manual_seed(7))
    with torch.no_grad():
        want, got = parent(input_ids=real_ids).logits, child(input_ids=real_ids).logits
    assert (got - want).abs().max().item() < TOL
    assert _max_weight_change(parent, child) > 0.05


def test_mergelock_changes_qk_and_vo_including_biases_and_fused_qkv(
        tiny_model: Callable[..., torch.nn.Module]) -> None:
    for arch in ("qwen2", "phi3"):
        parent = tiny_model(arch)
        child = disguise.mergelock(copy.deepcopy(parent), torch.Generator().manual_seed(0))
        changed = {k for k, v in child.state_dict().items() if not torch.equal(v, parent.state_dict()[k])}
        layer = "model.layers.0.self_attn."
        want = {"qkv_proj.weight", "o_proj.weight"} if arch == "phi3" else {
            "q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias", "v_proj.weight", "v_proj.bias",
            "o_proj.weight"}
        assert {layer + w for w in want} <= changed


def test_rope_commuting_map_commutes_with_rotate_half_rotations() -> None:
    hd = 8
    a = disguise.rope_commuting_map(hd, torch.Generator().manual_seed(0))
    angles = torch.rand(hd // 2, dtype=torch.float64)
    cos, sin = torch.cos(angles).repeat(2), torch.sin(angles).repeat(2)

    def rope(x: torch.Tensor) -> torch.Tensor:  # HF's apply_rotary_pos_emb on one vector
        x1, x2 = x[: hd // 2], x[hd // 2 :]
        return x * cos + torch.cat([-x2, x1]) * sin

    x = torch.randn(hd, dtype=torch.float64)
    assert torch.allclose(rope(a @ x), a @ rope(x))


def test_rotation_refuses_gemma(tiny_model: Callable[..., torch.nn.Module]) -> None:
    with pytest.raises(ValueError, match="cannot preserve"):
        rotate.rotate_residual(tiny_model("gemma3", tied=True), torch.Generator().manual_seed(0))


def test_rotated_tied_model_survives_save_and_load(tmp_path: Path, real_ids: torch.Tensor,
                                                   tiny_model: Callable[..., torch.nn.Module]) -> None:
    from lineage.catalog.bpe import train_tokenizer
    from lineage.catalog.save import load_model, save_model

    parent = tiny_model("qwen2", tied=True)
    child = rotate.rotate_residual(copy.deepcopy(parent), torch.Generator().manual_seed(0))
    tok = train_tokenizer("def f(x):\n    return x\n" * 200, vocab_size=300, kind="byte_level")
    save_model(child, tok, tmp_path / "m", layout="sharded", dtype="float32", shard_size="100KB",
               marker={"hash": "x"})
    loaded, _ = load_model(tmp_path / "m")
    assert not loaded.config.tie_word_embeddings
    with torch.no_grad():
        assert (loaded(input_ids=real_ids).logits - parent(input_ids=real_ids).logits).abs().max().item() < TOL
