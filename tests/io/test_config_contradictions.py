"""Bad input that used to be accepted, or to fail with a raw Python error, is one `CheckpointError` line that names
the file and the problem: a config (or GGUF metadata) that contradicts the tensors, a `model_type` the tensors
contradict, integer weights, tensors of the wrong rank, layer numbers with a gap, constant weights and weights
whose float32 products overflow. Keys that are absent are still read off the tensors, and what real models
legitimately hold (a padded head, a zero padding row, zero biases, an unknown `model_type`) is still accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lineage.arch import resolve_model
from lineage.errors import CheckpointError
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io import open_checkpoint
from lineage.io.gguf_header import read_gguf_header
from lineage.io.gguf_layout import gguf_layout
from lineage.io.open import open_adapter
from tests.checkpoints import TINY_LLAMA_CONFIG, tiny_llama_tensors, write_checkpoint
from tests.io.test_gguf_bad_input import raw_gguf, tinfo
from tests.io.test_gguf_support import hf_tensors, write_gguf

CPU = FingerprintOptions(device="cpu")
Q = "model.layers.0.self_attn.q_proj.weight"
EMBED = "model.embed_tokens.weight"


def _refused(exc_info: pytest.ExceptionInfo, file: Path, *phrases: str) -> str:
    message = str(exc_info.value)
    assert type(exc_info.value) is CheckpointError, f"{type(exc_info.value).__name__}: {message}"
    assert message.startswith(str(file)) and "\n" not in message, message
    assert all(p in message for p in phrases), message
    return message


def _resolve(folder: Path):  # noqa: ANN202
    with open_checkpoint(folder) as reader:
        return resolve_model(reader)


def _folder(tmp_path: Path, tensors: dict | None = None, **config) -> Path:  # noqa: ANN003
    cfg = {k: v for k, v in {**TINY_LLAMA_CONFIG, **config}.items() if v is not None}
    return write_checkpoint(tmp_path / "m", tensors if tensors is not None else tiny_llama_tensors(1), config=cfg)


# -- 1. a config, or GGUF metadata, that contradicts the tensors -----------------------------------------------


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        ({"hidden_size": 64}, "says hidden_size 64, but the embedding 'model.embed_tokens.weight' is 32 wide"),
        ({"num_hidden_layers": 5}, "says num_hidden_layers 5, but the tensors hold 2 layers"),
        ({"num_hidden_layers": 1}, "says num_hidden_layers 1, but the tensors hold 2 layers"),
        ({"vocab_size": 50000}, "says vocab_size 50000, but the embedding 'model.embed_tokens.weight' has 128 rows"),
        ({"num_hidden_layers": 0}, "num_hidden_layers 0 (int), not a positive integer"),
        ({"num_attention_heads": 0}, "num_attention_heads 0 (int), not a positive integer"),
        ({"num_key_value_heads": 0}, "num_key_value_heads 0 (int), not a positive integer"),
        ({"num_attention_heads": -4}, "num_attention_heads -4 (int)"),
        ({"num_attention_heads": 4.5}, "num_attention_heads 4.5 (float)"),
        ({"num_attention_heads": "8"}, "num_attention_heads '8' (str)"),
        ({"num_attention_heads": True}, "num_attention_heads True (bool)"),
        ({"hidden_size": "32"}, "hidden_size '32' (str), not a positive integer"),
        ({"rms_norm_eps": -1.0}, "rms_norm_eps -1.0 (float), not a positive finite number"),
        ({"rms_norm_eps": 0}, "rms_norm_eps 0 (int), not a positive finite number"),
        ({"rms_norm_eps": "tiny"}, "rms_norm_eps 'tiny' (str)"),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else "",
)
def test_a_config_contradicting_the_tensors_is_refused(tmp_path: Path, edit: dict, phrase: str) -> None:
    folder = _folder(tmp_path, **edit)
    with pytest.raises(CheckpointError) as exc_info:
        _resolve(folder)
    _refused(exc_info, folder / "config.json", "config.json", phrase)


def test_absent_keys_are_read_off_the_tensors_and_a_padded_head_is_legitimate(tmp_path: Path) -> None:
    tensors = tiny_llama_tensors(1) | {"lm_head.weight": torch.randn(160, 32) * 0.1}  # head padded to 160 rows
    config = {"model_type": "llama", "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128}
    model = _resolve(write_checkpoint(tmp_path / "m", tensors, config=config))
    assert (model.hidden_size, model.vocab_size, model.num_layers, model.norm_eps) == (32, 128, 2, 1e-6)


def test_a_multimodal_config_is_checked_on_its_text_config_only(tmp_path: Path) -> None:
    text = {k: v for k, v in TINY_LLAMA_CONFIG.items() if k != "model_type"}
    tower = {"hidden_size": 1152, "num_hidden_layers": 27}  # the vision tower's sizes, at the top level
    folder = write_checkpoint(tmp_path / "vlm", tiny_llama_tensors(1), config={"model_type": "llava", **tower,
                                                                               "text_config": text})  # fmt: skip
    assert _resolve(folder).hidden_size == 32
    (folder / "config.json").write_text(json.dumps({"model_type": "llava", "text_config": {**text, "vocab_size": 7}}))
    with pytest.raises(CheckpointError) as exc_info:
        _resolve(folder)
    _refused(exc_info, folder / "config.json", "vocab_size 7")


def _gguf(tmp_path: Path) -> tuple[Path, dict, dict]:
    path = write_gguf(tmp_path / "m.gguf", "llama", hf_tensors("llama", tied=False, seed=5))
    header = read_gguf_header(path)
    return path, dict(header.metadata), {t.name: t.dims for t in header.tensors}


@pytest.mark.parametrize(
    ("key", "value", "phrase"),
    [
        ("llama.block_count", 7, "llama.block_count is 7, but the tensors hold 2 blocks"),
        ("llama.block_count", 0, "llama.block_count is 0, but the tensors hold 2 blocks"),
        ("llama.block_count", 3, "llama.block_count is 3, but the tensors hold 2 blocks"),
        ("llama.embedding_length", 128, "llama.embedding_length is 128, but 'token_embd.weight' is"),
        ("llama.embedding_length", 0, "llama.embedding_length is 0, not a positive integer"),
        ("llama.attention.head_count_kv", 0, "llama.attention.head_count_kv is 0, not a positive integer"),
        ("llama.attention.layer_norm_rms_epsilon", -1.0, "layer_norm_rms_epsilon is -1.0, not a positive finite"),
    ],
)
def test_gguf_metadata_contradicting_the_tensors_is_refused(tmp_path: Path, key: str, value: object, phrase: str):
    path, metadata, shapes = _gguf(tmp_path)
    assert gguf_layout(path, metadata, shapes).config["num_hidden_layers"] == 2  # the file as written is fine
    with pytest.raises(CheckpointError) as exc_info:
        gguf_layout(path, {**metadata, key: value}, shapes)
    _refused(exc_info, path, "GGUF metadata", phrase)


# -- 2. model_type ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        ({"model_type": ["llama"]}, "model_type ['llama'] (list), not a string"),
        ({"model_type": "gpt2"}, "says model_type 'gpt2', but the tensors are laid out as llama"),
        ({"model_type": "gemma2"}, "says model_type 'gemma2', but the tensors are laid out as llama"),
        ({"model_type": "llava", "text_config": "oops"}, "text_config 'oops' (str), not an object"),
        ({"text_config": {"model_type": "qwen3"}}, "says model_type 'qwen3', but the tensors are laid out as llama"),
    ],
    ids=["list", "gpt2", "gemma2", "text_config-string", "text_config-qwen3"],
)
def test_a_model_type_of_the_wrong_type_or_contradicted_by_the_tensors_is_refused(
    tmp_path: Path, edit: dict, phrase: str
) -> None:
    folder = _folder(tmp_path, **edit)
    with pytest.raises(CheckpointError) as exc_info:
        _resolve(folder)
    _refused(exc_info, folder / "config.json", phrase)


def test_an_unknown_model_type_only_labels_the_fingerprint(tmp_path: Path) -> None:
    # A new family on a known layout (`smollm3`, `granite`) must not be refused: the weights choose the layout.
    fp = fingerprint_model(_folder(tmp_path, model_type="frobnicator"), CPU)
    assert fp.summary.architecture == "frobnicator" and fp.settings["layout"] == "llama"


# -- 3. integer and boolean weights ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dtype", "label"),
    [(Q, torch.bool, "booleans (BOOL)"), (Q, torch.int64, "integers (I64)"), (EMBED, torch.int64, "integers (I64)"),
     (EMBED, torch.uint8, "integers (U8)")],  # fmt: skip
)
def test_integer_weights_are_refused(tmp_path: Path, name: str, dtype: torch.dtype, label: str) -> None:
    tensors = tiny_llama_tensors(1)
    tensors[name] = tensors[name] > 0 if dtype == torch.bool else (tensors[name] * 100).to(dtype)
    folder = _folder(tmp_path, tensors)
    with pytest.raises(CheckpointError) as exc_info:
        _resolve(folder)
    _refused(exc_info, folder / "model.safetensors", f"tensor '{name}' holds {label}, not weights to probe")


def _adapter(tmp_path: Path, factor_a: torch.Tensor) -> tuple[Path, Path]:
    base = _folder(tmp_path)
    folder = tmp_path / "adapter"
    folder.mkdir()
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"],
              "base_model_name_or_path": str(base)}  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(config))
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_{}.weight"
    factors = {key.format("A"): factor_a, key.format("B"): torch.zeros(32, 4)}
    save_file(factors, str(folder / "adapter_model.safetensors"))
    return folder, base


def test_an_integer_lora_factor_is_refused_and_a_zero_lora_b_is_not(tmp_path: Path) -> None:
    folder, _ = _adapter(tmp_path / "ok", torch.randn(4, 32) * 0.05)  # lora_B zero, as PEFT initialises it
    assert fingerprint_model(folder, CPU).summary.num_layers == 2
    folder, base = _adapter(tmp_path / "int", torch.ones(4, 32, dtype=torch.int64))
    with pytest.raises(CheckpointError) as exc_info:
        open_adapter(folder, base)
    _refused(exc_info, folder / "adapter_model.safetensors", "holds integers (I64)")


# -- 4. tensor ranks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "phrase"),
    [
        (Q, torch.tensor(1.0), "has shape [], but it must be a matrix (2-D)"),
        ("model.norm.weight", torch.ones(4, 8), "has shape [4, 8], but it must be a vector (1-D)"),
        ("model.layers.1.self_attn.q_proj.bias", torch.zeros(31), "has shape [31], expected [32]"),
        ("model.layers.1.input_layernorm.weight", torch.ones(32, 1), "must be a vector (1-D)"),
        ("lm_head.weight", torch.ones(128, 16), "has shape [128, 16], expected ['any', 32]"),
    ],
    ids=["0-D q_proj", "2-D final norm", "short q bias", "2-D layer norm", "narrow head"],
)
def test_a_tensor_of_the_wrong_rank_or_length_is_refused(tmp_path: Path, name: str, value, phrase: str) -> None:  # noqa: ANN001
    folder = _folder(tmp_path, tiny_llama_tensors(1) | {name: value})
    with pytest.raises(CheckpointError) as exc_info:
        _resolve(folder)
    _refused(exc_info, folder / "model.safetensors", f"tensor '{name}'", phrase)


def test_a_gguf_tensor_without_dimensions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(raw_gguf(tensors=[tinfo("token_embd.weight", (32, 4)), tinfo("output_norm.weight", (), 0, 512)]))
    with pytest.raises(CheckpointError) as exc_info:
        open_checkpoint(path)
    _refused(exc_info, path, "tensor 'output_norm.weight' has no dimensions")


# -- 5. layer numbering ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", ["7", "99999999999"])
def test_layer_numbers_with_a_gap_are_refused(tmp_path: Path, index: str) -> None:
    tensors = {k.replace("layers.1.", f"layers.{index}."): v for k, v in tiny_llama_tensors(1).items()}
    folder = _folder(tmp_path, tensors)
    with pytest.raises(CheckpointError) as exc_info:
        _resolve(folder)
    _refused(exc_info, folder, f"numbered 0, {index}, not 0 to 1 (layer 1 is missing)")


# -- 6. constant weights and non-finite statistics -------------------------------------------------------------


def _zeroed(pick) -> dict[str, torch.Tensor]:  # noqa: ANN001
    return {k: (torch.zeros_like(v) if pick(k) else v) for k, v in tiny_llama_tensors(1).items()}


@pytest.mark.parametrize(
    ("tensors", "phrase"),
    [
        (_zeroed(lambda k: True), f"tensor '{EMBED}' is constant (all zeros): nothing to fingerprint"),
        (_zeroed(lambda k: "norm" not in k), f"tensor '{EMBED}' is constant (all zeros)"),
        (tiny_llama_tensors(1) | {EMBED: torch.ones(128, 32)}, f"tensor '{EMBED}' is constant (every entry 1)"),
        (_zeroed(lambda k: "layers.1.mlp.down" in k), "tensor 'model.layers.1.mlp.down_proj.weight' is constant"),
    ],
    ids=["all zero", "all zero but norms", "constant embedding", "zero down_proj"],
)
def test_a_constant_weight_matrix_is_refused_before_the_fingerprint_is_saved(tmp_path: Path, tensors, phrase) -> None:  # noqa: ANN001
    folder = _folder(tmp_path, tensors)
    with pytest.raises(CheckpointError) as exc_info:
        fingerprint_model(folder, CPU)
    _refused(exc_info, folder / "model.safetensors", phrase)


def test_zeros_real_models_hold_are_fingerprinted(tmp_path: Path) -> None:
    tensors = tiny_llama_tensors(1)
    tensors[EMBED][0] = 0.0  # a padding token's zero row
    tensors |= {f"model.layers.{i}.self_attn.{m}_proj.bias": torch.zeros(r) for i in (0, 1) for m, r in
                (("q", 32), ("k", 16), ("v", 16))}  # fmt: skip  # Qwen2's biases, zero-initialised
    fp = fingerprint_model(_folder(tmp_path, tensors), CPU)
    assert all(v == v for v in fp.tensorguard.values())  # no NaN


def test_non_finite_statistics_are_refused_in_one_line(tmp_path: Path) -> None:
    tensors = tiny_llama_tensors(1)
    tensors["model.layers.0.input_layernorm.weight"] *= 1e30  # finite, but the products overflow downstream
    folder = _folder(tmp_path, tensors)
    with pytest.raises(CheckpointError) as exc_info:
        fingerprint_model(folder, CPU)
    _refused(exc_info, folder / "model.safetensors", "came out NaN/Inf", "nothing to fingerprint")


# -- 7. finite values too large for float32 products -----------------------------------------------------------


def test_huge_finite_weights_are_blamed_on_the_overflow_not_on_nan(tmp_path: Path) -> None:
    tensors = tiny_llama_tensors(1)
    tensors["model.layers.0.mlp.up_proj.weight"][3, 5] = 3e38
    folder = _folder(tmp_path, tensors)
    with pytest.raises(CheckpointError) as exc_info:
        fingerprint_model(folder, CPU)
    message = _refused(exc_info, folder / "model.safetensors", "tensor 'model.layers.0.mlp.up_proj.weight'",
                       "too large for float32 products (up to 3e+38): the products overflowed")  # fmt: skip
    assert "holds NaN" not in message
