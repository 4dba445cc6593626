"""Issue 17, finding 5: a reference checked against itself is consistent however it is given (at its
manifest path, through its own pack), whatever it declares; equal weights are told by the raw responses."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lineage.cli.app import app
from lineage.decide.verdict import DERIVED
from lineage.refs.manifest import read_manifest
from lineage.verify import CONSISTENT, UNDECLARED, ReferenceIndex, judge
from lineage.verify.declarations import Declaration
from lineage.verify.outcome import WeightsView
from tests.checkpoints import tiny_llama_tensors, write_checkpoint
from tests.fakes import fake_fingerprint, family_centres


def _index(tmp_path: Path) -> ReferenceIndex:
    (tmp_path / "m.csv").write_text("name,path,family,role,hub_id\nbase,fp.fingerprint.safetensors,f,base,org/base\n")
    return ReferenceIndex(read_manifest(tmp_path / "m.csv"))


def test_same_weights_tells_a_copy_from_a_fine_tune() -> None:
    from lineage.verify.outcome import same_weights

    fp = fake_fingerprint("a", family_centres()["llama"], 1)
    assert same_weights(fp, replace(fp, name="copy"))
    tuned = replace(fp, responses={k: v * np.float32(1.001) + 1e-3 for k, v in fp.responses.items()})
    assert not same_weights(fp, tuned)
    features_only = fake_fingerprint("b", family_centres()["llama"], 1, sketches=False)
    assert not same_weights(features_only, features_only)  # no responses: no claim of identity
    # The raw responses cover the layers only: a model with the reference's layers and another embedding
    # (a tokenizer transplant) is not the reference, and its sketches, which read the embedding, say so.
    assert fp.sketches
    new_embedding = replace(fp, sketches={k: v + np.float32(0.01) * np.abs(v).max() for k, v in fp.sketches.items()})
    assert not same_weights(new_embedding, fp)


def test_the_reference_itself_is_consistent_whatever_it_declares(tmp_path: Path) -> None:
    index = _index(tmp_path)
    row = index.manifest.references[0]
    weights = WeightsView(DERIVED, "base", "f", 1e-40, "base", 0.0)
    elsewhere = tmp_path / "elsewhere.gguf"
    assert judge("m", elsewhere, Declaration(None), weights, index).status == UNDECLARED  # not known to be it
    outcome = judge("m", elsewhere, Declaration(None), weights, index, itself=row)
    assert outcome.status == CONSISTENT and "the model is the reference 'base'" in outcome.reason


@pytest.mark.slow
def test_a_base_is_consistent_given_in_a_manifest_and_through_its_pack(tmp_path: Path) -> None:
    base = write_checkpoint(tmp_path / "models" / "base", tiny_llama_tensors(0))
    other = write_checkpoint(tmp_path / "models" / "other", tiny_llama_tensors(7))
    manifest = tmp_path / "refs.csv"
    manifest.write_text(f"name,path,family,role\nbase,{base},llama,base\nother,{other},x,base\n")
    env = {"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None}
    runner = CliRunner(env=env)
    built = runner.invoke(app, ["refs", "build", str(manifest), "--out", str(tmp_path / "refs.pack")])
    assert built.exit_code == 0, built.output
    copy = write_checkpoint(tmp_path / "copy" / "base", tiny_llama_tensors(0))  # the same weights elsewhere
    for reference in (manifest, tmp_path / "refs.pack"):
        for model in (base, copy):
            result = runner.invoke(app, ["verify", str(model), "-r", str(reference), "-f", "json"])
            assert result.exit_code == 0, (reference, model, result.output)
            assert '"status": "consistent"' in result.stdout and "the model is the reference" in result.stdout
