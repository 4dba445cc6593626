"""Seed twins: two bases of one family, same architecture, same data, different initial seeds.

They must be told apart, and each one's derivatives attributed to it rather than to its twin. The catalog
builder makes the twins and a fine-tune of each (on the same fine-tuning text, so both move alike) from a
recipe written here; the bases train ten times longer than the fine-tunes, as real ones do.

The twins are independent models of one tokenizer and one kind of data: the hardest unrelated pair there
is. A twin's fine-tune is `derived` from its own twin and must not be `derived` from the other one, and the
twins, classified against each other, are `related` (one family), never `derived`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lineage.compare.similarity import sketch_distance_matrix
from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.obtain import obtain_fingerprint
from lineage.jobs.scan import ScanOptions, classify_paths
from lineage.refs.manifest import read_manifest

pytestmark = pytest.mark.slow

SHAPE = (
    '{arch = "llama", hidden = 32, layers = 2, heads = 4, kv_heads = 2, intermediate = 64, vocab = 400, tied = true}'
)
TWIN_RECIPE = f"""
[catalog]
seed = 0
seq_len = 32
batch_size = 4
max_chars = 20000

[family.twin]
tokenizer = "byte_level"
vocab = 400
sources = ["pkg:json"]
seed = 1

[[base]]
name = "twin-a"
family = "twin"
shape = {SHAPE}
steps = 300
lr = 3e-3
seed = 1

[[base]]
name = "twin-b"
family = "twin"
shape = {SHAPE}
steps = 300
lr = 3e-3
seed = 2

[[derivative]]
name = "twin-a-ft"
op = "finetune"
parent = "twin-a"
params = {{ sources = ["pkg:logging"], steps = 30 }}
seed = 3

[[derivative]]
name = "twin-b-ft"
op = "finetune"
parent = "twin-b"
params = {{ sources = ["pkg:logging"], steps = 30 }}
seed = 3
"""
BASES = ("twin-a", "twin-b")
FINE_TUNES = ("twin-a-ft", "twin-b-ft")


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The twin catalog's manifest and a fingerprint cache for it."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from lineage.catalog.build import BuildOptions, build_catalog

    root = tmp_path_factory.mktemp("seed_twins")
    recipe = root / "twins.toml"
    recipe.write_text(TWIN_RECIPE, encoding="utf-8")
    manifest = build_catalog(BuildOptions(out_dir=root / "models", recipe=recipe))
    return manifest, root / "cache"


@pytest.fixture(scope="module")
def fingerprints(twins) -> dict:
    manifest, cache = twins
    rows = read_manifest(manifest).rows
    return {r.name: obtain_fingerprint(r.path, cache=FingerprintCache(cache), name=r.name)[0] for r in rows}


def test_twin_recipe_builds_two_same_shape_bases_of_one_family(twins):
    manifest, _ = twins
    rows = {r.name: r for r in read_manifest(manifest).rows}
    assert sorted(rows) == sorted(BASES + FINE_TUNES)
    assert {r.family for r in rows.values()} == {"twin"}
    assert [r.name for r in read_manifest(manifest).references] == list(BASES)
    assert (rows["twin-a-ft"].base, rows["twin-b-ft"].base) == BASES
    a, b = ((rows[n].path / "model.safetensors").read_bytes() for n in BASES)
    assert len(a) == len(b) and a != b  # identical shapes, different weights


ALPHA = 0.01  # the derivation test's default level


def test_classify_paths_gives_each_fine_tune_its_own_twin(twins):
    manifest, cache = twins
    folder = manifest.parent
    result = classify_paths([folder / n for n in FINE_TUNES], manifest, ScanOptions(method="lineage", cache_dir=cache))
    assert result.failures == []
    verdicts = {v.model: v for v in result.results}
    for ft, base in zip(FINE_TUNES, BASES):
        v = verdicts[ft]
        twin = next(b for b in BASES if b != base)
        assert (v.verdict, v.derived_from, v.family) == ("derived", base, "twin"), v.rule
        assert v.p_value < ALPHA and v.nearest[0]["reference"] == base
        assert v.distances[base] < v.distances[twin]
        # Against the other twin the per-pair test finds nothing: same family, not its descendant.
        other = next(n for n in v.nearest if n["reference"] == twin)
        assert other["p_value"] >= ALPHA, other


def test_family_classifier_tells_the_twins_and_their_fine_tunes_apart(fingerprints):
    clf = FamilyClassifier(method="lineage").fit([fingerprints[b] for b in BASES], ["twin", "twin"], list(BASES))
    run = clf.classify([fingerprints[n] for n in (*FINE_TUNES, *BASES)])
    assert [(v.verdict, v.family, v.derived_from) for v in run.results] == [
        ("derived", "twin", b) for b in (*BASES, *BASES)
    ]
    assert [v.derived_from for v in run.reference_results] == list(BASES)


@pytest.mark.parametrize("reference", BASES)
def test_against_the_other_twin_alone_nothing_is_derived(fingerprints, reference):
    # One twin as the only reference: the other twin and its fine-tune share its tokenizer, its data and
    # its family, but not its weights: never derived. With references of one family `related` cannot be
    # calibrated (no unrelated pair shows how far an unrelated model sits), and the verdict says so.
    other = next(b for b in BASES if b != reference)
    clf = FamilyClassifier(method="lineage").fit([fingerprints[reference]], ["twin"])
    for v in clf.predict([fingerprints[other], fingerprints[f"{other}-ft"]]):
        assert (v.verdict, v.derived_from, v.family) == ("unknown", None, "unknown"), v.rule
        assert v.p_value >= ALPHA and v.evidence["weight"]["p_value"] >= ALPHA
        assert v.words() == "unknown family (related not calibrated: one reference family)"
        assert "not calibrated" in v.rule
    # The control: the reference's own fine-tune against it is derived.
    [own] = clf.predict([fingerprints[f"{reference}-ft"]])
    assert (own.verdict, own.derived_from) == ("derived", reference) and own.p_value < ALPHA


def test_fine_tunes_are_three_times_closer_to_their_own_twin(fingerprints):
    d = sketch_distance_matrix([fingerprints[n] for n in FINE_TUNES], [fingerprints[b] for b in BASES])
    assert d[0, 0] * 3 <= d[0, 1], d
    assert d[1, 1] * 3 <= d[1, 0], d
    twins = sketch_distance_matrix([fingerprints["twin-a"]], [fingerprints["twin-b"]])[0, 0]
    assert twins > 3 * max(d[0, 0], d[1, 1]), (twins, d)  # the twins themselves are far apart
