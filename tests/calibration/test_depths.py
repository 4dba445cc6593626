"""The reproduction that showed the old weight test broken: randomly initialised decoders of one width and other
depths, against unrelated random references of 30 layers. Fifteen suspects (Llama and Qwen2 layouts, hidden
128, 24 to 36 layers) share no weight with anything; the old test called 12 of them `derived` (p down to
9e-8). Not one may be derived now.
"""

from __future__ import annotations

import pytest

from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model

pytestmark = pytest.mark.slow
DEPTHS = (24, 26, 28, 30, 32, 34, 36)  # with one more of 30 layers: fifteen


@pytest.fixture(scope="module")
def fingerprints(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list]:
    pytest.importorskip("transformers")
    from lineage.catalog.architectures import Shape, make_model

    root = tmp_path_factory.mktemp("depths")
    options = FingerprintOptions(device="cpu")

    def one(arch: str, depth: int, seed: int):  # noqa: ANN202
        shape = Shape(arch, hidden=128, layers=depth, heads=4, kv_heads=2, intermediate=256, vocab=512)
        folder = root / f"{arch}-{depth}-{seed}"
        make_model(shape, bos=0, eos=1, pad=2, seed=seed).save_pretrained(folder, safe_serialization=True)
        return fingerprint_model(folder, options)

    refs = [one("llama", 30, 1000 + i) for i in range(3)]
    suspects = [one(arch, d, 2000 + 10 * d + k) for k, arch in enumerate(("llama", "qwen2")) for d in DEPTHS]
    suspects.append(one("llama", 30, 3000))
    return refs, suspects


def test_random_models_of_other_depths_are_never_derived(fingerprints):
    refs, suspects = fingerprints
    assert len(suspects) == 15
    clf = FamilyClassifier().fit(refs, ["random"] * 3, [r.name for r in refs])
    verdicts = clf.predict(suspects)
    assert [v.verdict for v in verdicts if v.verdict == "derived"] == []
    assert min(v.p_value for v in verdicts) > 0.01
