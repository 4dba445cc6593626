"""Issue 15 item 5 (the scan side): `--alpha`, Benjamini-Hochberg across a scan's suspects (`--fdr Q`), the
expected false accusations in the summary, and p-values that never print as 0."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lineage.cli.app import app
from lineage.data import DEMO_MANIFEST
from lineage.decide.fdr import benjamini_hochberg, benjamini_hochberg_log10, expected_false_accusations
from lineage.jobs.levels import apply_fdr, level_summary
from lineage.report.numbers import format_p, p_value_text

ZEPHYR = str(DEMO_MANIFEST.parent / "zephyr-7b-beta_features.json")


def _bh_by_definition(p: list[float], q: float) -> list[bool]:
    """BH as its paper states it: reject H_(1..k), k the largest i with p_(i) <= i q / m."""
    order = np.argsort(p, kind="stable")
    m = len(p)
    k = max([i + 1 for i in range(m) if p[order[i]] <= (i + 1) * q / m], default=0)
    out = [False] * m
    for i in order[:k]:
        out[int(i)] = True
    return out


def test_benjamini_hochberg_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(1, 40))
        p = np.where(rng.random(m) < 0.3, rng.random(m) * 1e-3, rng.random(m)).tolist()
        q = float(rng.choice([0.01, 0.05, 0.2]))
        assert benjamini_hochberg(p, q) == _bh_by_definition(p, q)


def test_benjamini_hochberg_counts_only_tested_suspects_and_works_below_the_float_floor() -> None:
    # m = 4 tested: thresholds 0.0125, 0.025, 0.0375, 0.05 -> the step-up keeps the first three.
    assert benjamini_hochberg([0.001, None, 0.02, 0.03, 0.5], 0.05) == [True, False, True, True, False]
    # Below 1e-308 the floats are all 0 and tie; the logarithms still order them.
    assert benjamini_hochberg_log10([-400.0, -350.0, math.log10(0.04)], 0.05) == [True, True, True]
    assert benjamini_hochberg_log10([-400.0, math.log10(0.5)], 0.01) == [True, False]
    with pytest.raises(ValueError):
        benjamini_hochberg([0.1], 1.5)
    with pytest.raises(ValueError):
        benjamini_hochberg([1.2], 0.05)


def test_expected_false_accusations() -> None:
    assert expected_false_accusations(derived=12, suspects=1000, alpha=0.01, q=None) == 10.0  # alpha x N
    assert expected_false_accusations(derived=12, suspects=1000, alpha=0.01, q=0.05) == pytest.approx(0.6)


@dataclass(frozen=True)
class _Verdict:  # the fields of a verdict that the BH step reads and writes
    model: str
    verdict: str
    p_value: float | None
    rule: str = "derived: ..."
    threshold: dict = field(default_factory=dict)
    empirical: bool = False  # derived by the unit matching test (no p-value behind it)


def test_a_derived_verdict_that_fails_bh_is_judged_again_and_says_why() -> None:
    verdicts = [_Verdict("a", "derived", 1e-10), _Verdict("b", "derived", 0.004), _Verdict("c", "derived", 0.009)]
    verdicts += [_Verdict(f"u{i}", "unknown", 0.5, "unknown: far") for i in range(7)]
    asked = []

    def rejudge(indices: list[int], alpha: float) -> list[_Verdict]:
        asked.append((indices, alpha))
        return [_Verdict(verdicts[i].model, "related", verdicts[i].p_value, "related: not derived") for i in indices]

    out = apply_fdr(verdicts, 0.01, rejudge)  # m = 10: only p <= 0.001 x rank passes
    assert [v.verdict for v in out[:3]] == ["derived", "related", "related"]
    (indices, alpha), = asked
    assert indices == [1, 2] and alpha < 0.004 < 0.0041  # a level at which neither is derived
    assert "passes Benjamini-Hochberg at q=0.01 across 10 tested suspects" in out[0].rule
    assert out[1].rule.startswith("not derived: p=4.0e-03 passes alpha but not Benjamini-Hochberg")
    assert out[1].threshold["fdr"] == 0.01 and out[3] == verdicts[3]
    level = level_summary(out, alpha=0.01, q=0.01)
    assert level["derived"] == 1 and level["expected_false_accusations"] == pytest.approx(0.01)
    assert "q x derived = 0.01 x 1" in level["text"]


def test_a_verdict_derived_on_the_empirical_null_is_left_to_its_own_rule_by_bh() -> None:
    # Its exact p-value is large (every exact group blind): BH must neither judge it again nor count it in the
    # bound that rests on alpha.
    verdicts = [
        _Verdict("a", "derived", 1e-10),
        _Verdict("d", "derived", 0.6, "derived (empirical null): ...", empirical=True),
    ]
    verdicts += [_Verdict(f"u{i}", "unknown", 0.5, "unknown: far") for i in range(8)]
    out = apply_fdr(verdicts, 0.01, lambda indices, alpha: pytest.fail(f"judged again: {indices}"))
    assert out[1] == verdicts[1] and out[0].verdict == "derived"
    level = level_summary(out, alpha=0.01, q=0.01)
    assert level["derived"] == 1 and "1 more derived on the unit matching test's empirical null" in level["text"]


def test_p_values_never_print_as_zero() -> None:
    assert p_value_text(0.0) == "< 1e-300" and p_value_text(1e-300, log10_p=-412.0) == "< 1e-300"
    assert p_value_text(2.9e-177) == "2.9e-177" and format_p(None) == "-" and p_value_text(None) is None


def test_alpha_reaches_the_verdicts_and_is_checked(tmp_path: Path) -> None:
    runner = CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "c"), "LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None})
    result = runner.invoke(app, ["classify", ZEPHYR, "-r", str(DEMO_MANIFEST), "--alpha", "0.001", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["threshold"]["alpha"] == 0.001
    bad = runner.invoke(app, ["classify", ZEPHYR, "-r", str(DEMO_MANIFEST), "--alpha", "0.7"])
    assert bad.exit_code == 2 and "alpha must be in (0, 0.5)" in bad.stderr
    scan = runner.invoke(app, ["scan", "--fdr", "0.05", "-f", "json", "-q"])
    level = json.loads(scan.stdout)["summary"]["level"]
    assert scan.exit_code == 0 and level["fdr"] == 0.05 and level["tested"] == 0  # the demo has no test to run
    assert runner.invoke(app, ["scan", "--fdr", "1.5"]).exit_code == 2


@pytest.mark.slow  # five real tiny fingerprints
def test_scan_with_fdr_keeps_clear_derivatives_and_says_so(tmp_path: Path) -> None:
    from tests.checkpoints import tiny_llama_tensors, write_checkpoint

    rows = ["name,path,family,base,role"]
    for seed, family in enumerate(("llama", "qwen")):
        base = tiny_llama_tensors(seed)
        write_checkpoint(tmp_path / f"{family}-base", base)
        write_checkpoint(tmp_path / f"{family}-ft", tiny_llama_tensors(100 + seed, base))
        rows += [f"{family}-base,{family}-base,{family},,base", f"{family}-ft,{family}-ft,{family},{family}-base,"]
    write_checkpoint(tmp_path / "stranger", tiny_llama_tensors(7))
    rows.append("stranger,stranger,unknown,,outsider")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    runner = CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "c"), "LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None})
    args = ["scan", str(tmp_path / "m.csv"), "--alpha", "0.01", "--fdr", "0.05", "--device", "cpu"]
    result = runner.invoke(app, [*args, "-f", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    found = {r["model"]: r for r in doc["results"]}
    for ft in ("llama-ft", "qwen-ft"):
        assert found[ft]["verdict"] == "derived" and "passes Benjamini-Hochberg at q=0.05" in found[ft]["rule"]
    assert found["stranger"]["verdict"] != "derived"
    level = doc["summary"]["level"]
    assert (level["fdr"], level["tested"], level["derived"]) == (0.05, 3, 2)
    assert level["expected_false_accusations"] == pytest.approx(min(0.05 * 2, 0.01 * 3))
    table = runner.invoke(app, args).stdout
    assert "level: alpha 0.01 per suspect, Benjamini-Hochberg q=0.05 across suspects: 2 derived" in table
