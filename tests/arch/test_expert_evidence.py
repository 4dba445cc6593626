"""The weight test's evidence says which experts matched which (`lineage.compare.experts`).

A fine-tune of a mixture of experts whose experts were shuffled (a permutation per layer, the router's rows
with them) reports that permutation, each pair with a share of 1 and a high agreement; a sparse upcycle reports
every expert matched to the dense FFN it was copied from (the half re-initialised experts with about half the
agreement); an independent mixture pairs nothing strongly. The verdict's rule names the pairs, its JSON holds
them all; the pair's p-value is the pooled test's, whatever the evidence shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lineage.compare.identity import weight_test
from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint.pipeline import fingerprint_model
from lineage.report.rows import verdict_row
from lineage.report.tables import results_table
from tests.arch.test_upcycling import CONFIG, EXPERTS, OPTIONS, upcycle
from tests.checkpoints import tiny_llama_tensors, write_checkpoint

MOE_CONFIG = {**CONFIG, "model_type": "mixtral", "num_local_experts": EXPERTS}
#: The suspect's expert e of layer i is the base's expert PERMUTATIONS[i][e].
PERMUTATIONS = ((2, 0, 3, 1), (3, 2, 1, 0), (1, 3, 0, 2))
_EXPERT = "model.layers.{i}.block_sparse_moe.experts.{e}.{k}.weight"
_ROUTER = "model.layers.{i}.block_sparse_moe.gate.weight"


def moe_tensors(seed: int) -> dict[str, torch.Tensor]:
    """A Mixtral-layout mixture whose experts are drawn independently of each other."""
    g = torch.Generator().manual_seed(seed + 100)
    out = {n: t for n, t in tiny_llama_tensors(seed, config=CONFIG).items() if ".mlp." not in n}
    d, f = CONFIG["hidden_size"], CONFIG["intermediate_size"]
    for i in range(CONFIG["num_hidden_layers"]):
        out[_ROUTER.format(i=i)] = 0.1 * torch.randn(EXPERTS, d, generator=g)
        for e in range(EXPERTS):
            for k, shape in (("w1", (f, d)), ("w3", (f, d)), ("w2", (d, f))):
                out[_EXPERT.format(i=i, e=e, k=k)] = 0.1 * torch.randn(shape, generator=g)
    return out


def shuffled_fine_tune(base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`base` with each layer's experts (and router rows) reordered by `PERMUTATIONS`, plus a little noise."""
    g = torch.Generator().manual_seed(5)
    out = dict(base)
    for i, perm in enumerate(PERMUTATIONS):
        out[_ROUTER.format(i=i)] = base[_ROUTER.format(i=i)][list(perm)]
        for e, source in enumerate(perm):
            for k in ("w1", "w2", "w3"):
                out[_EXPERT.format(i=i, e=e, k=k)] = base[_EXPERT.format(i=i, e=source, k=k)]
    return {n: t + 0.01 * torch.randn(t.shape, generator=g) for n, t in out.items()}


def build(root: Path) -> dict:
    """The fingerprints of the five models (a mixture, its shuffled fine-tune, an independent mixture, a dense
    model and a sparse upcycle of it), written under `root`."""
    base = moe_tensors(0)
    models = {
        "base": (base, MOE_CONFIG),
        "shuffled": (shuffled_fine_tune(base), MOE_CONFIG),
        "independent": (moe_tensors(3), MOE_CONFIG),
        "dense": (tiny_llama_tensors(0, config=CONFIG), CONFIG),
        "upcycled": (upcycle(tiny_llama_tensors(0, config=CONFIG), 1), MOE_CONFIG),
    }
    return {name: fingerprint_model(write_checkpoint(root / name, t, c), OPTIONS) for name, (t, c) in models.items()}


@pytest.fixture(scope="module")
def fingerprints(tmp_path_factory) -> dict:
    return build(tmp_path_factory.mktemp("expert-evidence"))


def test_a_shuffled_fine_tune_reports_the_permutation(fingerprints):
    test = weight_test(fingerprints["shuffled"], fingerprints["base"])
    assert test.log10_p < -10
    assert [(lay.layer, lay.reference_layer) for lay in test.experts] == [(0, 0), (1, 1), (2, 2)]
    for lay, perm in zip(test.experts, PERMUTATIONS):
        assert [(p.expert, p.reference_expert) for p in lay.pairs] == list(enumerate(perm))
        for p in lay.pairs:
            assert p.share == 1.0 and p.agreement > 0.9 and p.log10_p < -10, p
    assert test.to_dict()["experts"][1]["experts"][0] == test.experts[1].pairs[0].to_dict()


def test_an_independent_mixture_pairs_nothing_strongly(fingerprints):
    test = weight_test(fingerprints["independent"], fingerprints["base"])
    assert test.experts and all(abs(p.agreement) < 0.2 and p.log10_p > -3 for lay in test.experts for p in lay.pairs)


def test_a_sparse_upcycle_reports_every_expert_matched_to_the_dense_ffn(fingerprints):
    test = weight_test(fingerprints["upcycled"], fingerprints["dense"])
    assert len(test.experts) == CONFIG["num_hidden_layers"]
    for lay in test.experts:
        assert [p.expert for p in lay.pairs] == list(range(EXPERTS))
        assert all(p.reference_expert == "ffn" and p.share == 1.0 and p.log10_p < -5 for p in lay.pairs), lay
        copied, half = [p.agreement for p in lay.pairs[:2]], [p.agreement for p in lay.pairs[2:]]
        assert min(copied) > 0.9 and 0.3 < min(half) and max(half) < 0.7, lay  # half re-initialised: about half


def test_dense_models_carry_no_expert_evidence(fingerprints):
    dense = fingerprints["dense"]
    assert not any(k.endswith("unit_expert") for k in dense.identity)
    assert "experts" not in weight_test(dense, dense).to_dict()
    assert all(f"layers.{i}.unit_expert" in fingerprints["base"].identity for i in range(3))


def test_the_verdict_names_the_pairs(fingerprints):
    clf = FamilyClassifier().fit([fingerprints["base"]], ["tiny-moe"], ["base"])
    verdict = clf.predict([fingerprints["shuffled"]])[0]
    assert verdict.verdict == "derived"
    assert "0->2 (" in verdict.rule and "3->1 (" in verdict.rule and "differently by layer; layer 0" in verdict.rule
    assert verdict.to_dict()["evidence"]["weight"]["experts"][2]["experts"][3]["reference_expert"] == 2
    upcycled = FamilyClassifier().fit([fingerprints["dense"]], ["tiny"], ["dense"]).predict([fingerprints["upcycled"]])
    assert "alike in all 3 layers" in upcycled[0].rule and "3->ffn (" in upcycled[0].rule
    lines = results_table([verdict_row(verdict, None), verdict_row(upcycled[0], None)]).splitlines()
    assert lines[-2].startswith("shuffled: experts paired with base's") and "0->2 (" in lines[-2]
    assert lines[-1].startswith("upcycled: experts paired with dense's") and "2->ffn (" in lines[-1]
    dense = FamilyClassifier().fit([fingerprints["dense"]], ["tiny"], ["dense"]).predict([fingerprints["dense"]])
    assert results_table([verdict_row(dense[0], None)]).count("\n") == 2  # header, rule, one row: no line under


if __name__ == "__main__":  # python -m tests.arch.test_expert_evidence: every pair of the three cases
    import tempfile

    fps = build(Path(tempfile.mkdtemp(prefix="expert-evidence-")))
    for suspect, reference in (("shuffled", "base"), ("upcycled", "dense"), ("independent", "base")):
        print(f"{suspect} against {reference}: (expert -> reference expert, share, agreement, log10 p)")
        for lay in weight_test(fps[suspect], fps[reference]).experts:
            pairs = ", ".join(f"{p.expert}->{p.reference_expert} {p.share:.2f} {p.agreement:.2f} {p.log10_p:.1f}"
                              for p in lay.pairs)  # fmt: skip
            print(f"  layer {lay.layer} (reference layer {lay.reference_layer}): {pairs}")
