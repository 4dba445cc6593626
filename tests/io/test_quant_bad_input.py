"""A broken quantised checkpoint is one `CheckpointError` line naming the file and the format, never a wrong read.

Scales of the wrong shape, group numbers out of range, bit widths and packings lineage does not read (named as
such), NaN scales, missing parts and a `quantization_config` that contradicts the tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lineage.errors import CheckpointError
from lineage.io import open_checkpoint
from tests.checkpoints import write_checkpoint
from tests.quantise import awq_pack, fp8_block_pack, gptq_pack, nf4_pack

NAME = "model.layers.0.mlp.up_proj"
GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 32, "checkpoint_format": "gptq"}


def _w() -> torch.Tensor:
    return torch.randn(48, 96, generator=torch.Generator().manual_seed(0)) * 0.05


def _refused(tmp_path: Path, parts: dict[str, torch.Tensor], qconfig: dict | None, file: str, *phrases: str) -> None:
    config = {"model_type": "llama"} | ({"quantization_config": qconfig} if qconfig is not None else {})
    folder = write_checkpoint(tmp_path / "m", {NAME + k: v for k, v in parts.items()}, config)
    with pytest.raises(CheckpointError) as info:
        with open_checkpoint(folder) as ckpt:
            ckpt.tensor(NAME + ".weight")
    message = str(info.value)
    assert str(folder / file) in message and "\n" not in message, message
    for phrase in phrases:
        assert phrase in message, message


def _gptq(**changes: torch.Tensor) -> dict[str, torch.Tensor]:
    parts = {"." + k: v for k, v in gptq_pack(_w(), 4, 32, act_order=True).items()}
    return parts | changes


def test_scales_of_the_wrong_shape(tmp_path: Path) -> None:
    scales = _gptq()[".scales"]
    bad = _gptq(**{".scales": torch.cat([scales, scales[:, :8]], dim=1)})
    _refused(tmp_path, bad, GPTQ, "model.safetensors", "GPTQ:", "'model.layers.0.mlp.up_proj.scales' has shape")


def test_group_numbers_out_of_range(tmp_path: Path) -> None:
    parts = _gptq()
    parts[".g_idx"][5] = 3  # three groups: 0, 1, 2
    _refused(tmp_path, parts, GPTQ, "model.safetensors", "GPTQ:", "g_idx' holds group numbers 0 to 3", "3 groups")


def test_nan_scales(tmp_path: Path) -> None:
    parts = {"." + k: v for k, v in fp8_block_pack(_w(), (16, 32)).items()}
    parts[".weight_scale_inv"][1, 1] = float("nan")
    qc = {"quant_method": "fp8", "weight_block_size": [16, 32]}
    _refused(tmp_path, parts, qc, "model.safetensors", "FP8:", "1 NaN/Inf scales")


@pytest.mark.parametrize(
    ("qconfig", "phrase"),
    [
        (GPTQ | {"bits": 3}, "GPTQ: 3-bit GPTQ packing (values across int32 words) is not supported"),
        (GPTQ | {"bits": 5}, "GPTQ: GPTQ with bits=5 is not supported"),
        (GPTQ | {"checkpoint_format": "marlin"}, "checkpoint_format 'marlin' is not supported"),
        ({"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemv"}, "AWQ packing version 'gemv'"),
        ({"quant_method": "hqq"}, "quantization method 'hqq' is not supported"),
        ({"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"g": {"weights": {
            "num_bits": 3, "type": "int", "strategy": "group", "group_size": 32}}}}, "3-bit int packing is not"),
        ({"quant_method": "gptq", "bits": "4"}, "quantization_config.bits must be an integer"),
    ],
    ids=["gptq-3bit", "gptq-5bit", "gptq-marlin", "awq-gemv", "hqq", "ct-3bit", "bits-a-string"],
)
def test_unsupported_widths_and_packings_are_named(tmp_path: Path, qconfig: dict, phrase: str) -> None:
    parts = _gptq()
    if qconfig.get("quant_method") == "compressed-tensors":
        parts = {".weight_packed": parts[".qweight"].T.contiguous(), ".weight_scale": parts[".scales"].T.contiguous(),
                 ".weight_shape": torch.tensor([48, 96])}  # fmt: skip
    _refused(tmp_path, parts, qconfig, "config.json", phrase)


@pytest.mark.parametrize(
    ("qconfig", "file", "phrase"),
    [
        (GPTQ | {"group_size": 64}, "model.safetensors", "quantization_config says bits 4 and group_size 64"),
        ({"quant_method": "awq", "bits": 4, "group_size": 32}, "model.safetensors", "the config contradicts"),
        ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "model.safetensors", "is stored as GPTQ or AWQ"),
        (None, "model.safetensors", "config.json has no quantization_config"),
        ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "model.safetensors", "stored as GPTQ or AWQ"),
    ],
    ids=["group-size", "awq-says-config", "fp8-says-config", "no-config", "bnb-says-config"],
)
def test_a_config_that_contradicts_the_tensors(tmp_path: Path, qconfig: dict | None, file: str, phrase: str) -> None:
    _refused(tmp_path, _gptq(), qconfig, file, phrase)


def test_fp8_block_size_that_contradicts_the_scales(tmp_path: Path) -> None:
    parts = {"." + k: v for k, v in fp8_block_pack(_w(), (16, 32)).items()}
    qc = {"quant_method": "fp8", "weight_block_size": [32, 32]}
    _refused(tmp_path, parts, qc, "model.safetensors", "FP8:", "weight_block_size [32, 32]", "needs [2, 3]")


def test_a_config_naming_a_format_no_tensor_has(tmp_path: Path) -> None:
    config = {"model_type": "llama", "quantization_config": GPTQ}
    folder = write_checkpoint(tmp_path / "m", {NAME + ".weight": _w()}, config)
    with pytest.raises(CheckpointError, match=r"config.json: quantization_config says GPTQ, but no tensor is stored"):
        open_checkpoint(folder)


def test_a_missing_part(tmp_path: Path) -> None:
    parts = _gptq()
    del parts[".qzeros"]
    _refused(tmp_path, parts, GPTQ, "model.safetensors", "GPTQ:", "has no 'model.layers.0.mlp.up_proj.qzeros' beside")


def test_awq_outputs_of_the_wrong_count(tmp_path: Path) -> None:
    parts = {"." + k: v for k, v in awq_pack(_w(), 32).items()}
    parts[".qzeros"] = parts[".qzeros"][:, :-1].contiguous()
    qc = {"quant_method": "awq", "bits": 4, "group_size": 32}
    _refused(tmp_path, parts, qc, "model.safetensors", "AWQ:", "qzeros' has shape [3, 5]", "needs [3, 6]")


def test_a_bitsandbytes_state_that_is_not_json(tmp_path: Path) -> None:
    parts = {".weight" + k: v for k, v in nf4_pack(_w(), 64).items()}
    parts[".weight.quant_state.bitsandbytes__nf4"] = torch.tensor(list(b"\xff{"), dtype=torch.uint8)
    _refused(tmp_path, parts, None, "model.safetensors", "bitsandbytes:", "does not hold a JSON quant state")


def test_a_bitsandbytes_state_whose_shape_does_not_fit(tmp_path: Path) -> None:
    parts = {".weight" + k: v for k, v in nf4_pack(_w(), 64).items()}
    key = ".weight.quant_state.bitsandbytes__nf4"
    state = json.loads(bytes(parts[key].tolist()).decode()) | {"shape": [48, 100]}
    parts[key] = torch.tensor(list(json.dumps(state).encode()), dtype=torch.uint8)
    _refused(tmp_path, parts, None, "model.safetensors", "bitsandbytes:", "quant state's shape [48, 100] needs 2400")


def test_the_cli_says_it_in_one_line(tmp_path: Path) -> None:
    from lineage.cli.app import app

    config = {"model_type": "llama", "quantization_config": GPTQ | {"bits": 3}}
    folder = write_checkpoint(tmp_path / "m", {NAME + k: v for k, v in _gptq().items()}, config)
    runner = CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1"})
    result = runner.invoke(app, ["fingerprint", str(folder), "--out", str(tmp_path / "fps"), "--device", "cpu"])
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.output and len(error) == 1, result.output  # the batch's row, then one line
    assert "GPTQ: 3-bit GPTQ packing" in error[0] and "m/config.json" in error[0], result.output


def test_mxfp4_experts_and_nan_scales(tmp_path: Path) -> None:
    from tests.quantise import mxfp4_pack

    parts = mxfp4_pack(_w())
    experts = {"model.layers.0.mlp.experts.down_proj_blocks": parts["weight_blocks"][None].contiguous(),
               "model.layers.0.mlp.experts.down_proj_scales": parts["weight_scales"][None].contiguous()}  # fmt: skip
    folder = write_checkpoint(tmp_path / "experts", experts, {"quantization_config": {"quant_method": "mxfp4"}})
    with pytest.raises(CheckpointError, match=r"MXFP4: .*stacked expert tensor.* mixture-of-experts"):
        open_checkpoint(folder)
    parts["weight_scales"][3, 1] = 255  # E8M0's NaN
    _refused(tmp_path, {"." + k: v for k, v in parts.items()}, {"quant_method": "mxfp4"}, "model.safetensors",
             "MXFP4:", "NaN scales (255)")  # fmt: skip


def test_compressed_tensors_activation_order_is_named(tmp_path: Path) -> None:
    parts = _gptq()
    ct = {".weight_packed": parts[".qweight"].T.contiguous(), ".weight_scale": parts[".scales"].T.contiguous(),
          ".weight_shape": torch.tensor([48, 96]), ".weight_g_idx": parts[".g_idx"]}  # fmt: skip
    qc = {"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"g": {"weights": {
        "num_bits": 4, "type": "int", "strategy": "group", "group_size": 32, "actorder": "group"}}}}
    _refused(tmp_path, ct, qc, "model.safetensors", "compressed-tensors:", "activation ordering (actorder)")
