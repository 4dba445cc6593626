"""Reading declared lineage from every place it is written, and the rule that compares it with the weights.

Fast: no model is fingerprinted here; the weights' verdict is given, so every branch of the rule is pinned
whatever the classifier says (the CLI tests in `test_verify_cli.py` check the whole chain on real weights).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lineage.decide.verdict import DERIVED, RELATED, UNKNOWN
from lineage.errors import CheckpointError
from lineage.io.declared import normalize_hub_id, read_declarations
from lineage.refs.manifest import read_manifest
from lineage.verify.declarations import ReferenceIndex, declared_lineage
from lineage.verify.outcome import (
    CONSISTENT,
    CONTRADICTED,
    UNDECLARED,
    UNVERIFIABLE,
    WeightsView,
    judge,
)

MANIFEST = """name,path,family,base,role,hub_id
llama-8b,llama-8b,llama,llama-8b,base,Meta/Llama-8B
mistral-7b,mistral-7b,mistral,mistral-7b,base,mistralai/Mistral-7B
llama-sft,llama-sft,llama,llama-8b,derivative,someone/llama-sft
stray,stray,unknown,,outsider,someone/stray
"""


@pytest.fixture()
def index(tmp_path: Path) -> ReferenceIndex:
    (tmp_path / "manifest.csv").write_text(MANIFEST)
    return ReferenceIndex(read_manifest(tmp_path / "manifest.csv"))


def _model(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for fname, text in files.items():
        (folder / fname).write_text(text)
    return folder


def test_normalize_hub_id() -> None:
    assert normalize_hub_id("https://huggingface.co/Meta/Llama-8B@main") == "meta/llama-8b"
    assert normalize_hub_id("hf://Meta/Llama-8B") == "meta/llama-8b"
    assert normalize_hub_id("https://huggingface.co/Meta/Llama-8B/tree/v2") == "meta/llama-8b"
    assert normalize_hub_id(" Meta/Llama-8B/ ") == "meta/llama-8b"


def test_every_source_is_read_strongest_first(tmp_path: Path) -> None:
    folder = _model(
        tmp_path,
        "m",
        {
            "README.md": "---\nlicense: mit\nbase_model:\n- Meta/Llama-8B\n- mistralai/Mistral-7B\n"
            "base_model_relation: merge\n---\n# card\n",
            "adapter_config.json": json.dumps({"base_model_name_or_path": "Meta/Llama-8B", "peft_type": "LORA"}),
            "mergekit_config.yml": "merge_method: ties\nbase_model: Meta/Llama-8B\nmodels:\n"
            "  - model: someone/llama-sft\n    parameters: {weight: 0.5}\n",
            "config.json": json.dumps({"_name_or_path": "Meta/Llama-8B"}),
        },
    )
    found = read_declarations(folder)
    assert [d.source for d in found] == [
        "model card",
        "adapter_config.json",
        "mergekit_config.yml",
        "config.json _name_or_path",
    ]
    assert found[0].bases == ("Meta/Llama-8B", "mistralai/Mistral-7B") and found[0].relation == "merge"
    assert found[2].bases == ("Meta/Llama-8B", "someone/llama-sft")


def test_card_with_a_string_and_no_front_matter(tmp_path: Path) -> None:
    one = _model(tmp_path, "one", {"README.md": "---\nbase_model: Meta/Llama-8B\n---\n"})
    assert read_declarations(one)[0].bases == ("Meta/Llama-8B",)
    none = _model(tmp_path, "none", {"README.md": "# a card that declares nothing\n\nbase_model: not front matter\n"})
    assert read_declarations(none) == []


def test_malformed_declarations_are_one_line_errors(tmp_path: Path) -> None:
    bad = _model(tmp_path, "bad", {"README.md": "---\nbase_model: [unclosed\n---\n"})
    with pytest.raises(CheckpointError, match=r"README.md: model card front matter is not valid YAML"):
        read_declarations(bad)
    # safe_load only: a YAML tag that would construct a Python object is refused, not run.
    evil = _model(tmp_path, "evil", {"README.md": "---\nbase_model: !!python/object/apply:os.system ['true']\n---\n"})
    with pytest.raises(CheckpointError, match="not valid YAML"):
        read_declarations(evil)
    broken = _model(tmp_path, "broken", {"adapter_config.json": "{not json"})
    with pytest.raises(CheckpointError, match="adapter_config.json: not valid JSON"):
        read_declarations(broken)


def test_local_name_or_path_is_no_declaration(tmp_path: Path) -> None:
    folder = _model(tmp_path, "m", {"config.json": json.dumps({"_name_or_path": "/home/me/checkpoints/run-3"})})
    assert read_declarations(folder) == []


def test_gguf_base_model_keys(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    import numpy as np

    path = tmp_path / "q.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("Some Display Name")
    writer.add_uint32("general.base_model.count", 2)
    writer.add_string("general.base_model.0.repo_url", "https://huggingface.co/Meta/Llama-8B")
    writer.add_string("general.base_model.1.organization", "mistralai")
    writer.add_string("general.base_model.1.name", "Mistral-7B")
    writer.add_tensor("x", np.zeros((4,), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    found = read_declarations(path)
    assert found[0].source == "gguf general.base_model"
    assert found[0].bases == ("https://huggingface.co/Meta/Llama-8B", "mistralai/Mistral-7B")
    assert found[0].relation == "quantized"
    assert found[1].source == "gguf general.name" and found[1].bases == ("Some Display Name",)


def test_resolution_to_lineages(index: ReferenceIndex) -> None:
    assert [r.name for r in index.resolve("https://huggingface.co/meta/llama-8b@main")] == ["llama-8b"]
    assert [r.name for r in index.resolve("mistral-7b")] == ["mistral-7b"]  # by manifest name
    assert [r.name for r in index.resolve("Llama 8B")] == ["llama-8b"]  # display name, punctuation ignored
    assert index.resolve("nobody/nothing") == []
    sft = index.resolve("someone/llama-sft")[0]
    assert index.lineage_of(sft) == "llama-8b"  # an intermediate fine-tune stands for its base
    assert index.lineage_of(index.resolve("someone/stray")[0]) is None


def test_weak_sources_count_only_when_they_name_a_known_model(tmp_path: Path, index: ReferenceIndex) -> None:
    known = _model(tmp_path, "known", {"config.json": json.dumps({"_name_or_path": "Meta/Llama-8B"})})
    assert declared_lineage(known, index).bases == ("Meta/Llama-8B",)
    own = _model(tmp_path, "own", {"config.json": json.dumps({"_name_or_path": "me/my-own-model"})})
    decl = declared_lineage(own, index)
    assert decl.source is None and [d.source for d in decl.ignored] == ["config.json _name_or_path"]
    card = _model(tmp_path, "card", {"README.md": "---\nbase_model: me/my-own-model\n---\n"})
    assert declared_lineage(card, index).bases == ("me/my-own-model",)  # the uploader's claim always counts


def _weights(verdict: str, base: str | None = None, family: str = "llama") -> WeightsView:
    return WeightsView(verdict, base, family if verdict != UNKNOWN else "unknown", 0.001, "llama-8b", 0.1)


@pytest.mark.parametrize(
    ("card", "weights", "expected"),
    [
        ("Meta/Llama-8B", _weights(DERIVED, "llama-8b"), CONSISTENT),
        ("someone/llama-sft", _weights(DERIVED, "llama-8b"), CONSISTENT),
        ("mistralai/Mistral-7B", _weights(DERIVED, "llama-8b"), CONTRADICTED),
        ("Meta/Llama-8B", _weights(RELATED), CONTRADICTED),
        ("Meta/Llama-8B", _weights(UNKNOWN), CONTRADICTED),
        (None, _weights(DERIVED, "llama-8b"), UNDECLARED),
        (None, _weights(RELATED), CONSISTENT),
        (None, _weights(UNKNOWN), CONSISTENT),
        ("nobody/nothing", _weights(UNKNOWN), UNVERIFIABLE),
        ("nobody/nothing", _weights(DERIVED, "llama-8b"), UNVERIFIABLE),
        ("someone/stray", _weights(UNKNOWN), UNVERIFIABLE),
    ],
)
def test_rule(tmp_path: Path, index: ReferenceIndex, card: str | None, weights: WeightsView, expected: str) -> None:
    files = {"README.md": f"---\nbase_model: {card}\n---\n"} if card else {}
    folder = _model(tmp_path, "suspect", files)
    outcome = judge("suspect", folder, declared_lineage(folder, index), weights, index)
    assert outcome.status == expected, outcome.reason
    assert outcome.to_dict()["status"] == expected and outcome.reason


def test_a_reference_checked_against_itself_is_consistent(tmp_path: Path, index: ReferenceIndex) -> None:
    folder = tmp_path / "llama-8b"  # the manifest's path for the reference llama-8b
    folder.mkdir()
    outcome = judge("llama-8b", folder, declared_lineage(folder, index), _weights(DERIVED, "llama-8b"), index)
    assert outcome.status == CONSISTENT and "reference" in outcome.reason


def test_the_real_gguf_declares_only_a_display_name(tmp_path: Path) -> None:
    from tests.real import smollm2_gguf

    gguf = smollm2_gguf()
    found = read_declarations(gguf)
    assert [d.source for d in found] == ["gguf general.name"]  # llama.cpp's converter wrote no base_model keys
    (tmp_path / "m.csv").write_text(
        f"name,path,family,base,role,hub_id\nsmollm2,{tmp_path},smollm,smollm2,base,HuggingFaceTB/SmolLM2-135M-Instruct\n"
    )
    decl = declared_lineage(gguf, ReferenceIndex(read_manifest(tmp_path / "m.csv")))
    # Its general.name is a training run's name, not the hub id: a tool's field that names no known model is
    # no claim (verify then reports the GGUF as undeclared when its weights derive from SmolLM2).
    assert decl.source is None and decl.ignored == tuple(found)
