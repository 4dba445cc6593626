"""Fingerprinting end to end on tiny checkpoints: layouts, determinism, golden numbers, devices."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lineage.compare.similarity import sketch_distance_matrix
from lineage.fingerprint import CIRCUITS, load_fingerprint, save_fingerprint
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model

GOLDEN = Path(__file__).parent.parent / "golden" / "tiny_llama.json"
CPU = FingerprintOptions(device="cpu")


def _digest(fp) -> dict:
    return {
        "tensorguard": {k: fp.tensorguard[k] for k in sorted(fp.tensorguard)},
        "sketch_sums": {k: float(np.abs(v).sum()) for k, v in sorted(fp.sketches.items())},
        "sketch_firsts": {k: float(v.reshape(-1)[:7].sum()) for k, v in sorted(fp.sketches.items())},
        "anchors": fp.anchors.tolist(),
    }


def test_every_real_layout_fingerprints(hf_models):
    for arch, folder in hf_models.items():
        fp = fingerprint_model(folder, CPU)
        assert set(fp.sketches) == set(CIRCUITS), arch
        assert fp.sketches["qk"].shape == (2, 64, 64)
        assert fp.summary.num_layers == 2
        assert all(np.isfinite(v).all() for v in fp.sketches.values())
    layouts = {arch: fingerprint_model(f, CPU).settings["layout"] for arch, f in hf_models.items()}
    assert layouts == {"llama": "llama", "qwen2": "llama", "gemma3": "gemma3", "phi3": "phi3",
                       "mistral": "llama", "gpt_neox": "gpt_neox", "gemma2": "gemma2", "qwen3": "qwen3",
                       "gemma": "gemma"}  # fmt: skip


def test_qwen_biases_enter_the_sketch(hf_models, tmp_path):
    from safetensors.torch import load_file, save_file

    src = hf_models["qwen2"]
    tensors = load_file(str(src / "model.safetensors"))
    tensors["model.layers.0.self_attn.k_proj.bias"] = tensors["model.layers.0.self_attn.k_proj.bias"] + 1.0
    (tmp_path / "q").mkdir()
    save_file(tensors, str(tmp_path / "q" / "model.safetensors"))
    (tmp_path / "q" / "config.json").write_text((src / "config.json").read_text())
    a, b = fingerprint_model(src, CPU), fingerprint_model(tmp_path / "q", CPU)
    assert not np.allclose(a.sketches["qk"][0], b.sketches["qk"][0])


def test_same_file_twice_is_byte_identical(tiny_llama, tmp_path):
    a = save_fingerprint(fingerprint_model(tiny_llama, CPU), tmp_path / "a.fingerprint.safetensors")
    b = save_fingerprint(fingerprint_model(tiny_llama, CPU), tmp_path / "b.fingerprint.safetensors")
    assert a.read_bytes() == b.read_bytes()


def test_round_trip_of_the_file_format(tiny_llama, tmp_path):
    fp = fingerprint_model(tiny_llama, CPU)
    back = load_fingerprint(save_fingerprint(fp, tmp_path / "x.fingerprint.safetensors"))
    assert back.tensorguard == fp.tensorguard and back.summary == fp.summary
    for k in fp.sketches:
        np.testing.assert_array_equal(back.sketches[k], fp.sketches[k])
    assert back.settings["seed"] == 0 and back.lineage_version == fp.lineage_version


def test_shard_layout_does_not_change_the_fingerprint(tiny_llama, tiny_llama_sharded):
    a, b = fingerprint_model(tiny_llama, CPU), fingerprint_model(tiny_llama_sharded, CPU)
    for k in a.sketches:
        np.testing.assert_array_equal(a.sketches[k], b.sketches[k])
    assert a.tensorguard == b.tensorguard
    assert a.summary.header_sha256 != b.summary.header_sha256  # the files differ; the model does not


def test_bf16_copy_stays_at_the_same_place(tiny_llama, tiny_llama_sharded_bf16):
    a, b = fingerprint_model(tiny_llama, CPU), fingerprint_model(tiny_llama_sharded_bf16, CPU)
    assert sketch_distance_matrix([a], [b])[0, 0] < 0.01
    assert b.summary.dtypes == ("BF16",)


def test_golden_fingerprint_of_the_tiny_llama(tiny_llama):
    digest = _digest(fingerprint_model(tiny_llama, CPU))
    if os.environ.get("LINEAGE_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(digest, indent=1, sort_keys=True))
        pytest.skip("golden file written; run again to compare")
    golden = json.loads(GOLDEN.read_text())
    assert digest["anchors"] == golden["anchors"]
    for section in ("tensorguard", "sketch_sums", "sketch_firsts"):
        assert digest[section].keys() == golden[section].keys()
        for key, value in golden[section].items():
            assert digest[section][key] == pytest.approx(value, rel=1e-5, abs=1e-7), (section, key)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_and_cuda_agree(tiny_llama, hf_models):
    for folder in (tiny_llama, *hf_models.values()):
        cpu = fingerprint_model(folder, CPU)
        gpu = fingerprint_model(folder, FingerprintOptions(device="cuda"))
        assert gpu.device == "cuda"
        for k in cpu.sketches:
            scale = np.abs(cpu.sketches[k]).max()
            np.testing.assert_allclose(gpu.sketches[k], cpu.sketches[k], rtol=1e-4, atol=1e-4 * scale)
        for k in cpu.tensorguard:
            assert gpu.tensorguard[k] == pytest.approx(cpu.tensorguard[k], rel=1e-4, abs=1e-9)


def test_wrong_shapes_are_named_with_their_file(tmp_path):
    from lineage.errors import CheckpointError
    from tests.probe.conftest import LLAMA_CONFIG, tiny_llama_tensors, write_checkpoint

    tensors = tiny_llama_tensors(0)
    tensors["model.layers.1.self_attn.k_proj.weight"] = torch.zeros(12, 32)  # GQA wants 16 rows
    folder = write_checkpoint(tmp_path / "bad-shape", tensors, LLAMA_CONFIG)
    with pytest.raises(CheckpointError) as info:
        fingerprint_model(folder, CPU)
    message = str(info.value)
    assert "model.safetensors" in message and "k_proj" in message and "shape [12, 32]" in message
    assert "\n" not in message


def test_nan_weights_are_refused_with_the_tensor_name(tmp_path):
    from lineage.errors import NonFiniteWeightsError
    from tests.probe.conftest import LLAMA_CONFIG, tiny_llama_tensors, write_checkpoint

    tensors = tiny_llama_tensors(0)
    tensors["model.layers.0.mlp.up_proj.weight"][3, 5] = float("nan")
    folder = write_checkpoint(tmp_path / "nan", tensors, LLAMA_CONFIG, shards=2)
    with pytest.raises(NonFiniteWeightsError, match=r"safetensors: tensor 'model.layers.0.mlp.up_proj.weight'"):
        fingerprint_model(folder, CPU)


def test_multimodal_prefix_and_vision_tower_do_not_change_the_text_fingerprint(hf_models, tmp_path):
    # Gemma 3 4B+ checkpoints keep the language model under `language_model.model.` beside a vision tower
    # whose layers also have q_proj names: the text model must be found, the tower ignored.
    from safetensors.torch import load_file, save_file

    src = hf_models["gemma3"]
    tensors = {f"language_model.{k}": v for k, v in load_file(str(src / "model.safetensors")).items()}
    tensors["vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight"] = torch.randn(16, 16)
    tensors["vision_tower.vision_model.encoder.layers.1.self_attn.q_proj.weight"] = torch.randn(16, 16)
    folder = tmp_path / "gemma-mm"
    folder.mkdir()
    save_file(tensors, str(folder / "model.safetensors"))
    config = json.loads((src / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": config}))
    a, b = fingerprint_model(src, CPU), fingerprint_model(folder, CPU)
    assert b.settings["layout"] == "gemma3" and b.summary.num_layers == a.summary.num_layers
    for k in a.sketches:
        np.testing.assert_allclose(b.sketches[k], a.sketches[k], rtol=1e-5, atol=1e-6)
