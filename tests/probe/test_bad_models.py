"""Checkpoints whose headers are fine but whose model is not: each refused with a one-line error naming it."""

from __future__ import annotations

import json

import pytest
import torch

from lineage.errors import CheckpointError
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io import discover_models
from tests.checkpoints import TINY_LLAMA_CONFIG, tiny_llama_tensors, write_checkpoint

CPU = FingerprintOptions(device="cpu")


def _refused(folder, *phrases: str) -> None:
    with pytest.raises(CheckpointError) as info:
        fingerprint_model(folder, CPU)
    message = str(info.value)
    assert "\n" not in message and str(folder) in message
    for phrase in phrases:
        assert phrase in message


def test_a_layer_with_a_missing_tensor_is_reported_not_skipped(tmp_path):
    tensors = tiny_llama_tensors(0)
    del tensors["model.layers.1.mlp.down_proj.weight"]
    _refused(write_checkpoint(tmp_path / "m", tensors), "layer 1 lacks mlp.down_proj.weight", "truncated")


def test_block_scales_without_a_quantization_config_are_refused(tmp_path):
    tensors = tiny_llama_tensors(0)
    tensors["model.layers.0.mlp.up_proj.weight_scale_inv"] = torch.ones(1)
    _refused(write_checkpoint(tmp_path / "m", tensors), "weight_scale_inv", "no quantization_config")


def test_grouped_query_attention_without_head_counts_asks_for_the_config(tmp_path):
    config = {k: v for k, v in TINY_LLAMA_CONFIG.items() if k not in ("num_attention_heads", "head_dim")}
    _refused(write_checkpoint(tmp_path / "m", tiny_llama_tensors(0), config), "restore config.json")


def test_a_folder_of_fingerprint_files_is_not_a_model(tmp_path):
    from lineage.fingerprint import fingerprint_path, save_fingerprint

    model = write_checkpoint(tmp_path / "models" / "m", tiny_llama_tensors(0))
    save_fingerprint(fingerprint_model(model, CPU), fingerprint_path(tmp_path / "fps", "m"))
    with pytest.raises(CheckpointError, match="no model"):
        discover_models(tmp_path / "fps")
    assert json.loads((model / "config.json").read_text())["model_type"] == "llama"
