"""Architectures are data in `lineage/arch`: no other package names one or spells its tensors, and a new one is one
table entry."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import torch

from lineage.arch import resolve
from lineage.arch.gguf import GGUF_ARCHITECTURES
from lineage.arch.spec import ARCHITECTURES, ArchSpec
from lineage.compare.identity import weight_test
from lineage.features.tensorguard import TENSORGUARD_FEATURES
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from tests.arch.zoo import noisy_copy
from tests.checkpoints import TINY_LLAMA_CONFIG, tiny_llama_tensors, write_checkpoint

ROOT = Path(__file__).resolve().parents[2] / "lineage"
#: The catalog builds tiny models of named architectures with transformers' own classes: it must name them.
BUILDERS = ("catalog",)


def _names() -> set[str]:
    out = {n for s in ARCHITECTURES for n in (s.name, *s.config_types, *s.model_types)}
    return out | set(GGUF_ARCHITECTURES) | {a.model_type for a in GGUF_ARCHITECTURES.values()}


def test_architecture_names_appear_only_in_lineage_arch() -> None:
    names, hits = _names(), []
    for path in sorted(ROOT.rglob("*.py")):
        package = path.relative_to(ROOT).parts[0]
        if package in ("arch", *BUILDERS):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                hits.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.value!r}")
    assert not hits, hits
    assert len(names) > 40  # the test looks for the table's names, not for nothing


def _strings(obj: object):  # noqa: ANN202 - an iterator of str
    if isinstance(obj, str):
        yield obj
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _strings(getattr(obj, f.name))
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _strings(item)


def _spellings() -> set[str]:
    """The words of the layouts' tensor names that name a spelling, not a role (`q_proj`, `block_sparse_moe`):
    compound words of the templates, less lineage's own role names (`q_norm` is a role as well as a word)."""
    words = {w for spec in ARCHITECTURES for t in _strings(spec) if "." in t for w in re.split(r"\W+", t) if "_" in w}
    roles = {f.name for f in dataclasses.fields(ArchSpec)} | set(TENSORGUARD_FEATURES)
    return words - roles


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, kinds) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}  # fmt: skip


def test_tensor_name_spellings_appear_only_in_lineage_arch() -> None:
    words, hits = _spellings(), []
    for path in sorted(ROOT.rglob("*.py")):
        if path.relative_to(ROOT).parts[0] in ("arch", *BUILDERS):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)  # examples in docstrings are documentation, not a table
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                found = words & set(re.split(r"\W+", node.value))
                hits += [f"{path.relative_to(ROOT.parent)}:{node.lineno} {sorted(found)}"] if found else []
    assert not hits, hits
    assert {"q_proj", "block_sparse_moe", "kv_a_proj_with_mqa", "c_attn"} <= words  # it looks for real spellings


def _renamed(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A tiny Llama under names no layout knows: `model.blocks.N.attn.{wq,wk,wv,wo}`, `ffn.{w1,w2,w3}`."""
    words = {"self_attn.q_proj": "attn.wq", "self_attn.k_proj": "attn.wk", "self_attn.v_proj": "attn.wv",
             "self_attn.o_proj": "attn.wo", "mlp.gate_proj": "ffn.w1", "mlp.up_proj": "ffn.w3",
             "mlp.down_proj": "ffn.w2", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}  # fmt: skip
    out = {}
    for name, t in tensors.items():
        for old, new in words.items():
            name = name.replace(old, new)
        out[name] = t
    return out


NEW = ArchSpec(
    name="newarch", embed=("embed_tokens.weight",), head=("lm_head.weight",), final_norm=("norm.weight",),
    attn_norm="attn_norm.weight", ffn_norm="ffn_norm.weight", q="attn.wq.weight", k="attn.wk.weight",
    v="attn.wv.weight", o="attn.wo.weight", gate="ffn.w1.weight", up="ffn.w3.weight", down="ffn.w2.weight",
    config_types=("newarch",),
)  # fmt: skip


def test_a_new_architecture_is_one_table_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = {**TINY_LLAMA_CONFIG, "model_type": "newarch"}
    base = write_checkpoint(tmp_path / "base", _renamed(tiny_llama_tensors(0)), config=config)
    other = write_checkpoint(tmp_path / "other", _renamed(tiny_llama_tensors(1)), config=config)
    copy = noisy_copy(base, tmp_path / "copy")
    options = FingerprintOptions(device="cpu", anchors=16)
    with pytest.raises(Exception, match="match no known layout"):
        fingerprint_model(base, options)
    monkeypatch.setattr(resolve, "ARCHITECTURES", (*ARCHITECTURES, NEW))  # the one entry
    fps = [fingerprint_model(p, options) for p in (base, copy, other)]
    assert fps[0].settings["layout"] == "newarch"
    assert weight_test(fps[1], fps[0]).log10_p < -10
    assert weight_test(fps[2], fps[0]).log10_p > -3


def test_every_layout_names_its_symmetries_from_its_math() -> None:
    by_name = {s.name: s for s in ARCHITECTURES}
    assert by_name["llama"].symmetries == ("value", "residual", "ffn")
    assert by_name["gpt2"].symmetries == ("value",)  # LayerNorm, no gate
    assert by_name["arcee"].symmetries == ("value", "residual")  # RMSNorm, squared ReLU without a gate
    assert by_name["gpt_oss"].symmetries == ("value", "residual")  # act(gate) * (up + 1): no unit sign flip
    assert by_name["mixtral"].symmetries == ("value", "residual", "ffn")
    assert by_name["olmo"].symmetries == ("value", "ffn")  # parameter-free LayerNorm
    assert dataclasses.replace(by_name["llama"], norm="layer").symmetries == ("value", "ffn")


def test_the_readme_table_is_the_architecture_table() -> None:
    from tests.arch.readme_table import table

    readme = (ROOT.parent / "README.md").read_text(encoding="utf-8")
    assert table() in readme, "README's architecture table is stale: python -m tests.arch.readme_table"
