"""The derivation test measured on the small calibration battery (seed 0): what `lineage evaluate calibration`
prints, with assertions a miscalibrated test would fail.

The battery's null pairs are models of one width and one tokenizer that share no weight: random and trained,
of depths 2 to 40, five layouts (a mixture of experts and a LayerNorm one among them), a distilled student;
its derivatives are made by fine-tuning, LoRA, merging, int4, depth pruning and up-scaling, a vocabulary
permutation and every disguise at once + int4.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy.stats import binom

from lineage.catalog.battery import BLIND_SPOTS, DERIVATIONS, UNMADE, build_battery
from lineage.jobs.calibration import calibrate, qq_plot
from lineage.jobs.scan import ScanOptions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("battery")
    manifest = build_battery(root / "small", size="small", seed=0)
    return calibrate(manifest, ScanOptions(device="cpu", cache_dir=root / "cache"), blind=BLIND_SPOTS)


def test_the_false_positive_rate_is_within_its_binomial_bound(result):
    null = result["null"]
    assert null["pairs"] >= 300
    for rate in null["rates"]:
        # At most the count a test of level alpha would exceed with probability 1% (the pairs share models,
        # so this is a guide to the eye of a valid test, not an exact law).
        assert rate["hits"] <= binom.ppf(0.99, rate["n"], rate["alpha"]), rate


def test_no_independent_model_is_called_derived_and_every_derivative_is(result):
    v = result["verdicts"]
    assert v["independents"] >= 20 and v["independents_derived"] == []
    assert v["derivatives_right"] == v["derivatives"] and v["derivatives_missed"] == []


def test_every_derivation_kind_is_found_far_below_the_level(result):
    assert set(result["power"]) == set(DERIVATIONS)
    for kind, found in result["power"].items():
        if found["blind_spot"]:  # measured, not required: every disguise at once with the FFN signs flipped
            continue
        assert found["derived_at"]["0.001"] == len(found["models"]), kind
        assert max(m["log10_p"] for m in found["models"]) < -10, kind


def test_the_mixture_of_experts_and_the_layernorm_layouts_are_measured_too(result):
    by_family = result["null"]["by_family"]
    for family in ("mixtral", "gpt_neox"):  # the battery's mixture of experts and its LayerNorm layout
        assert by_family[family]["pairs"] >= 100, family
        for rate in by_family[family]["rates"]:
            assert rate["hits"] <= binom.ppf(0.99, rate["n"], rate["alpha"]), (family, rate)
    moe = result["power_by_family"]["mixtral"]
    assert len(moe["models"]) == len(DERIVATIONS) - len(UNMADE["mixtral"])
    assert moe["derived_at"]["0.001"] == len(moe["models"])


def test_depth_mismatched_random_models_are_never_derived(result):
    for kind, k in result["null"]["by_kind"].items():
        if kind.startswith("random init, other depth"):
            assert k["pairs"] >= 50 and next(r for r in k["rates"] if r["alpha"] == 0.01)["hits"] == 0


def test_qq_plot_is_written(result, tmp_path: Path):
    path = qq_plot(result["p_values"], tmp_path / "qq.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

