"""A PEFT LoRA adapter folder reads as its base plus the merged delta, as peft's `merge_and_unload` makes it.

The adapter is made with peft itself on a tiny transformers Llama, its `lora_B` filled with random values
(peft initialises it to zero, which would make every adapter equal to its base), saved unmerged, and
compared with the model peft merges: tensor by tensor, and as fingerprints.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lineage.compare.similarity import sketch_distance_matrix
from lineage.errors import CheckpointError
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io import discover_models, open_checkpoint
from lineage.io.adapter_base import adapter_bases, is_adapter_folder
from lineage.io.open import open_adapter

pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
from tests.checkpoints import tiny_hf_model  # noqa: E402

CPU = FingerprintOptions(device="cpu")


def _make(tmp: Path, **lora_kwargs) -> tuple[Path, Path, Path]:
    """(base folder, unmerged adapter folder, peft-merged folder)."""
    base = tiny_hf_model("llama", tied=False, seed=3)
    base.save_pretrained(tmp / "base")
    config = peft.LoraConfig(
        **{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"], **lora_kwargs}
    )
    model = peft.get_peft_model(tiny_hf_model("llama", tied=False, seed=3), config)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            # peft zeroes lora_B (lora_embedding_A for embeddings) and copies modules_to_save: fill them all.
            if "lora_" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            elif "modules_to_save" in name:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(tmp / "adapter")
    model.merge_and_unload().save_pretrained(tmp / "merged")
    return tmp / "base", tmp / "adapter", tmp / "merged"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return _make(tmp_path_factory.mktemp("lora"))


@pytest.fixture(scope="module")
def patterned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """rsLoRA scaling, a per-module rank and alpha, an embedding LoRA and a replaced head."""
    return _make(
        tmp_path_factory.mktemp("lora-patterns"),
        use_rslora=True,
        rank_pattern={"down_proj": 2},
        alpha_pattern={"v_proj": 3},
        target_modules=["q_proj", "v_proj", "down_proj", "embed_tokens"],
        modules_to_save=["lm_head"],
    )


@pytest.mark.parametrize("case", ["plain", "patterned"])
def test_merged_tensors_equal_peft_merge(case: str, request: pytest.FixtureRequest) -> None:
    base, adapter, merged = request.getfixturevalue(case)
    reader = open_adapter(adapter, base)
    with reader, open_checkpoint(merged) as want:
        assert reader.merged_tensors, "the adapter changes nothing: the test would prove nothing"
        changed = 0
        for name in want.names():
            expected = want.tensor(name)
            got = reader.tensor(name)
            assert torch.allclose(got, expected, atol=1e-6), name
            # A block is valid until the next one is read (one buffer serves them all): keep copies.
            blocks = torch.cat([b.clone() for _, b in reader.row_blocks(name, 256)]) if expected.ndim else got
            assert torch.allclose(blocks.reshape(expected.shape), expected, atol=1e-6), name
            if expected.ndim == 2:
                idx = [5, 0, 5, -1]
                assert torch.allclose(reader.rows(name, idx), want.rows(name, idx), atol=1e-6), name
            with open_checkpoint(base) as b:
                changed += not torch.equal(b.tensor(name), expected)
        assert changed == len(reader.merged_tensors)


def test_adapter_fingerprints_as_merged_model(plain: tuple[Path, Path, Path]) -> None:
    base, adapter, merged = plain
    with adapter_bases(base):
        fp_adapter = fingerprint_model(adapter, CPU)
    fp_merged = fingerprint_model(merged, CPU)
    fp_base = fingerprint_model(base, CPU)
    d = sketch_distance_matrix([fp_adapter], [fp_merged, fp_base])[0]
    assert d[0] < 1e-4, d
    assert d[1] > d[0]  # the delta is seen: the adapter is not read as its bare base
    assert fp_adapter.name == "adapter"
    assert fp_adapter.summary.header_sha256 != fp_base.summary.header_sha256


def test_adapter_is_discovered_and_refused_without_base(plain: tuple[Path, Path, Path]) -> None:
    _, adapter, _ = plain
    assert is_adapter_folder(adapter)
    assert discover_models(adapter) == [adapter]
    with pytest.raises(CheckpointError, match="--base PATH"):
        open_checkpoint(adapter)


def test_base_found_by_hub_id(plain: tuple[Path, Path, Path], tmp_path: Path) -> None:
    base, adapter, _ = plain
    named = tmp_path / "named"
    named.mkdir()
    for f in adapter.iterdir():
        (named / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((named / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "Org/Tiny-Llama"
    (named / "adapter_config.json").write_text(json.dumps(cfg))
    with adapter_bases(by_hub_id={"https://huggingface.co/org/tiny-llama@main": base}):
        with open_checkpoint(named) as reader:
            assert reader.base.folder == base
    with pytest.raises(CheckpointError, match="'Org/Tiny-Llama', which is not among"):
        open_checkpoint(named)


def test_wrong_base_is_refused(plain: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from tests.checkpoints import tiny_llama_tensors, write_checkpoint

    _, adapter, _ = plain
    other = write_checkpoint(tmp_path / "other", tiny_llama_tensors(0))  # hidden 32, not 64
    with pytest.raises(CheckpointError, match="wrong --base"):
        open_adapter(adapter, other)


def test_dora_is_refused(plain: tuple[Path, Path, Path], tmp_path: Path) -> None:
    base, adapter, _ = plain
    dora = tmp_path / "dora"
    dora.mkdir()
    for f in adapter.iterdir():
        (dora / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    with pytest.raises(CheckpointError, match="DoRA"):
        open_adapter(dora, base)


def test_cli_fingerprint_with_base(plain: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from lineage.cli.app import app

    base, adapter, _ = plain
    runner = CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1"})
    refused = runner.invoke(app, ["fingerprint", str(adapter), "--out", str(tmp_path / "fps"), "--device", "cpu"])
    assert refused.exit_code == 1 and "--base PATH" in refused.output
    ok = runner.invoke(
        app, ["fingerprint", str(adapter), "--base", str(base), "--out", str(tmp_path / "fps"), "--device", "cpu"]
    )
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "fps" / "adapter.fingerprint.safetensors").is_file()


def test_cli_classify_finds_the_base_by_hub_id(plain: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from lineage.cli.app import app

    base, adapter, _ = plain
    named = tmp_path / "tiny-lora"
    named.mkdir()
    for f in adapter.iterdir():
        (named / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((named / "adapter_config.json").read_text())
    (named / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "org/tiny-llama"}))
    other = tmp_path / "other"
    tiny_hf_model("llama", tied=False, seed=11).save_pretrained(other)
    manifest = tmp_path / "refs.csv"
    manifest.write_text(
        f"name,path,family,base,role,hub_id\ntiny,{base},llama,tiny,base,Org/Tiny-Llama\n"
        f"other,{other},other,other,base,org/other\n"
    )
    runner = CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1"})
    result = runner.invoke(app, ["classify", str(named), "-r", str(manifest), "--device", "cpu", "-f", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["model"] == "tiny-lora" and row["verdict"] == "derived" and row["derived_from"] == "tiny", row


@pytest.mark.parametrize("value", [float("nan"), 3e38], ids=["nan", "overflowing"])
def test_a_broken_adapter_names_the_adapter_file(plain: tuple[Path, Path, Path], tmp_path: Path, value: float) -> None:
    from safetensors.torch import load_file, save_file

    base, adapter, _ = plain
    broken = tmp_path / "broken-adapter"
    shutil.copytree(adapter, broken)
    weights = load_file(str(broken / "adapter_model.safetensors"))
    key = next(k for k in weights if "lora_B" in k)
    weights[key][0, 0] = value
    save_file(weights, str(broken / "adapter_model.safetensors"))
    with adapter_bases(base), pytest.raises(CheckpointError) as info:
        fingerprint_model(broken, CPU)
    message = str(info.value)
    assert message.startswith(f"{broken / 'adapter_model.safetensors'}: "), message
