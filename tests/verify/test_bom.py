"""The CycloneDX ML-BOM of `lineage verify`, from outcomes made here (no model fingerprinted), and the one-line
refusal when cyclonedx-python-lib is missing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lineage.errors import MissingDependencyError
from lineage.io.declared import DeclaredSource
from lineage.verify.declarations import Declaration
from lineage.verify.outcome import CONSISTENT, UNDECLARED, VerifyOutcome, VerifyResult, WeightsView


def _result() -> VerifyResult:
    card = DeclaredSource("model card", Path("/m/a/README.md"), ("Meta/Llama-8B",), "finetune")
    derived = WeightsView("derived", "llama-8b", "llama", 1.5e-9, "llama-8b", 0.012)
    unknown = WeightsView("unknown", None, "unknown", 0.4, "llama-8b", 0.97)
    return VerifyResult(
        [
            VerifyOutcome("a", Path("/m/a"), CONSISTENT, "declares it", Declaration(card), ("llama-8b",), derived),
            VerifyOutcome("b", Path("/m/b"), UNDECLARED, "declares nothing", Declaration(None), (), derived),
            VerifyOutcome("c", Path("/m/c"), CONSISTENT, "nothing found", Declaration(None), (), unknown),
        ],
        [],
        {"llama-8b": "Meta/Llama-8B"},
    )


def test_bom_has_one_model_component_each_with_its_pedigree() -> None:
    pytest.importorskip("cyclonedx")
    from lineage.verify.bom import to_cyclonedx, validate_cyclonedx

    text = to_cyclonedx(_result())
    assert validate_cyclonedx(text) is None
    doc = json.loads(text)
    comps = {c["name"]: c for c in doc["components"]}
    assert [c["type"] for c in comps.values()] == ["machine-learning-model"] * 3
    (ancestor,) = comps["a"]["pedigree"]["ancestors"]
    assert ancestor["name"] == "llama-8b" and ancestor["purl"] == "pkg:huggingface/meta/llama-8b"
    evidence = {p["name"]: p["value"] for p in ancestor["properties"]}
    assert evidence == {"lineage:verdict": "derived", "lineage:p_value": "1.5e-09", "lineage:distance": "0.012"}
    props = {p["name"]: p["value"] for p in comps["b"]["properties"]}
    assert props["lineage:outcome"] == "undeclared" and "lineage:declared" not in props
    assert "pedigree" not in comps["c"]  # derived from no reference: no ancestor claimed
    assert {t["name"] for t in doc["metadata"]["tools"]["components"]} == {"lineage"}


def test_missing_library_is_a_one_line_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    from lineage.verify.bom import to_cyclonedx

    monkeypatch.setitem(sys.modules, "cyclonedx", None)  # import cyclonedx... raises ImportError
    monkeypatch.setitem(sys.modules, "cyclonedx.model.bom", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'lineage\[bom\]'"):
        to_cyclonedx(_result())
