"""The battery's disguised derivatives are what their names say: every disguise at once, with the FFN units'
signs flipped (`disguised-signed`), then rounded to int4 (`disguised-signed-int4`), or without the flips and
rounded (`disguised-int4`). Read from what the model computes, so each test fails if a flip or the rounding is
silently left out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lineage.catalog import battery
from lineage.catalog.battery import BLIND_SPOTS, DERIVATIONS, UNMADE, BatterySpec
from lineage.catalog.operations import _projection_weights

SPEC = BatterySpec(width=32, heads=4, kv_heads=2, ffn=64, vocab=512, layouts=("llama",), random_depths=(),
                   trained_depths=(), twins=1, steps=3, students=(), bases=(), max_chars=20_000)  # fmt: skip
KINDS = ("disguised-int4", "disguised-signed", "disguised-signed-int4")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, torch.Tensor]:
    """The base (a random llama of 2 layers), its three disguised derivatives, and token ids of battery text."""
    builder = battery._Builder(SPEC, tmp_path_factory.mktemp("disguises"), seed=1, progress=None)
    base = "llama-d2-trained-0"
    builder.save(builder.fresh("llama", 2, base), battery._Row(base, "base", "llama", base, "trained", 2))
    models = {kind: builder.derive(kind, base, f"{base}+{kind}") for kind in KINDS}
    models["base"], _ = battery.load_model(Path(builder.out) / base)
    return models, builder.ids[: 4 * 64].view(4, 64)


def _units(model: torch.nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's FFN unit activations (the input of down_proj), one row per token."""
    seen: list[torch.Tensor] = []
    hooks = [layer.mlp.down_proj.register_forward_hook(lambda _m, args, _out: seen.append(args[0].flatten(0, 1)))
             for layer in model.model.layers]  # fmt: skip
    with torch.no_grad():
        model(input_ids=ids)
    for h in hooks:
        h.remove()
    return seen


def _signs(base: torch.Tensor, derived: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each derived unit's best |correlation| with a base unit, and that correlation's sign."""
    a, b = base - base.mean(0), derived - derived.mean(0)
    corr = (b.T @ a) / (b.norm(dim=0)[:, None] * a.norm(dim=0)[None, :])
    best = corr.abs().argmax(dim=1)
    picked = corr[torch.arange(len(best)), best]
    assert len(set(best.tolist())) == len(best)  # a permutation of the units: every one found once
    return picked.abs(), picked.sign()


def test_the_signed_disguises_are_battery_kinds_blind_to_the_exact_test_and_not_made_of_a_mixture() -> None:
    for kind in ("disguised-signed", "disguised-signed-int4"):
        assert kind in DERIVATIONS and kind in BLIND_SPOTS and kind in UNMADE["mixtral"], kind
    assert "disguised-int4" not in BLIND_SPOTS


@pytest.mark.parametrize("kind", KINDS)
def test_each_disguise_flips_the_units_signs_only_when_signed(made: tuple[dict, torch.Tensor], kind: str) -> None:
    models, ids = made
    for base, derived in zip(_units(models["base"], ids), _units(models[kind], ids), strict=True):
        strength, sign = _signs(base, derived)
        # Each unit computes its base unit's activation times a constant (exactly before int4; near it after).
        assert strength.min() > (0.9 if kind.endswith("int4") else 1 - 1e-5), kind
        flipped = int((sign < 0).sum())
        if "signed" in kind:  # a fair coin per unit: 64 units flip about half
            assert 16 <= flipped <= 48, (kind, flipped)
        else:
            assert flipped == 0, kind


@pytest.mark.parametrize("kind", KINDS)
def test_the_int4_kinds_are_rounded_to_int4(made: tuple[dict, torch.Tensor], kind: str) -> None:
    models, _ = made
    # Group-wise int4 (`operations.quantize`, groups of 32 along a row): at most 15 levels per group.
    levels = max(len(torch.unique(group)) for w in _projection_weights(models[kind]) for group in w.view(-1, 32))
    assert (levels <= 15) == kind.endswith("int4"), (kind, levels)


def test_the_signed_int4_disguise_rounds_the_signed_one(made: tuple[dict, torch.Tensor]) -> None:
    models, _ = made
    from lineage.catalog.operations import quantize_groupwise

    rounded = [quantize_groupwise(w, bits=4, group_size=32) for w in _projection_weights(models["disguised-signed"])]
    assert all(torch.equal(r, w) for r, w in zip(rounded, _projection_weights(models["disguised-signed-int4"]),
                                                 strict=True))  # fmt: skip
