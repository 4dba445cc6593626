"""The weight test across widths on real weights: SmolLM2-135M-Instruct pruned the Minitron way.

Residual width 576 -> 432 (-25%) and FFN 1536 -> 1024 (-33%), kept by weight norms (`tests.widths`: a
stand-in for the recipe's activation importance), sorted by importance, then briefly fine-tuned on real text
(a stand-in for its distillation): `derived` from SmolLM2, and its attention and FFN residual groups say so
on their own, with its residual coordinates paired to SmolLM2's (`lineage.compare.widths`). The same pruned
model distilled from SmolLM2's logits (`tests.widths.distilled`: `DISTIL_STEPS` steps of the catalog's
`distill_lm`, AdamW at 1e-3 towards the parent's next-token distribution), as the recipe does after pruning:
`derived` too.
Models of the narrower width, heads and tokenizer that never saw SmolLM2's weights are not: one randomly
initialised and briefly trained on the same text, one randomly initialised and distilled from SmolLM2 just as
long as the pruned one (a student: SmolLM2's function as far as the steps get it, none of its weights).
"""

from __future__ import annotations

import json
import shutil

import pytest

from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from tests.real import smollm2_folder

pytestmark = pytest.mark.slow
REFERENCE = "SmolLM2-135M-Instruct"
NARROW = {"width": 432, "units": 1024}
DISTIL_STEPS = 20
NAMES = ("pruned-finetuned", "pruned-distilled", "independent-narrow", "student-narrow")


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = smollm2_folder()
    pytest.importorskip("transformers")
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from lineage.catalog.text import mixture_text
    from lineage.catalog.train import TrainConfig, train_lm
    from tests.checkpoints import write_checkpoint
    from tests.widths import distilled, width_pruned

    root = tmp_path_factory.mktemp("real-widths")
    tokenizer = AutoTokenizer.from_pretrained(base)
    ids = torch.tensor(tokenizer(mixture_text(("pkg:email",), seed=0, max_chars=60_000))["input_ids"])
    config = json.loads((base / "config.json").read_text())
    parent = load_file(str(base / "model.safetensors"))
    config.setdefault("head_dim", config["hidden_size"] // config["num_attention_heads"])  # kept by the pruning
    tensors, narrow = width_pruned(parent, config, **NARROW)
    write_checkpoint(root / "pruned-raw", tensors, narrow)
    write_checkpoint(root / "pruned-distilled-raw", distilled(tensors, narrow, parent, config, steps=DISTIL_STEPS),
                     narrow)  # fmt: skip
    pruned = AutoModelForCausalLM.from_pretrained(root / "pruned-raw", dtype=torch.float32)
    torch.manual_seed(0)
    train_lm(pruned, ids, TrainConfig(steps=4, lr=1e-4, batch_size=2, seq_len=64, seed=0, warmup=0))
    torch.manual_seed(101)
    fresh = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(root / "pruned-raw"), dtype=torch.float32)
    train_lm(fresh, ids, TrainConfig(steps=3, lr=1e-3, batch_size=2, seq_len=64, seed=1, warmup=0))
    torch.manual_seed(102)
    student = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(root / "pruned-raw"), dtype=torch.float32)
    state = {k: v for k, v in student.state_dict().items() if k in tensors}
    write_checkpoint(root / "student-raw", distilled(state, narrow, parent, config, steps=DISTIL_STEPS, seed=1), narrow)
    raw = {"pruned-distilled": "pruned-distilled-raw", "student-narrow": "student-raw"}
    distilled_models = {n: AutoModelForCausalLM.from_pretrained(root / f, dtype=torch.float32) for n, f in raw.items()}
    options = FingerprintOptions(device="cpu")
    fps = {"base": fingerprint_model(base, options)}
    for name, model in (("pruned-finetuned", pruned), ("independent-narrow", fresh), *distilled_models.items()):
        model.save_pretrained(root / name, safe_serialization=True)
        tokenizer.save_pretrained(root / name)
        fps[name] = fingerprint_model(root / name, options)
    shutil.rmtree(root)
    clf = FamilyClassifier().fit([fps["base"]], ["smollm2"], [REFERENCE])
    return dict(zip(NAMES, clf.predict([fps[n] for n in NAMES])))


def test_the_width_pruned_smollm2_is_derived_through_its_residual_coordinates(verdicts):
    v = verdicts["pruned-finetuned"]
    assert (v.verdict, v.derived_from) == ("derived", REFERENCE), v.rule
    groups = {g["group"]: g for g in v.evidence["weight"]["groups"]}
    assert "seeded residual" not in groups
    # About 128 x 128 / 576 = 28 of the 128 stored coordinates of each side have their partner stored on the
    # other: the layers' writes, summed over 30 layers, carry them; the embedding rows alone less surely.
    assert all(groups[name]["log10_p"] < -4 for name in ("attention", "ffn")), groups


def test_the_width_pruned_smollm2_distilled_from_it_is_derived(verdicts):
    v = verdicts["pruned-distilled"]
    assert (v.verdict, v.derived_from) == ("derived", REFERENCE), v.rule
    assert v.log10_p < -20, v.rule


@pytest.mark.parametrize("name", ["independent-narrow", "student-narrow"])
def test_a_model_of_the_narrower_width_that_never_saw_its_weights_is_not_derived(verdicts, name):
    v = verdicts[name]
    assert v.verdict != "derived" and v.derived_from is None and v.p_value > 0.01, v.rule
