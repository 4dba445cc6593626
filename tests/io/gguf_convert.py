"""Convert a tiny Hugging Face folder to GGUF the way llama.cpp's converter does (no tests here).

For the GGUF tests of layouts beyond the dense ones of `test_gguf_support`: mixtures of experts and latent
attention, from models transformers itself builds (`tests.arch.zoo`). What the converter does, as read in
llama.cpp's `convert_hf_to_gguf.py` (`LlamaModel`, `Qwen2MoeModel`, `OlmoeModel`, `DeepseekV2Model`):

- routed experts `...experts.{e}.{proj}.weight` are stacked in index order (`torch.stack(datas, dim=0)`) into
  one `[E, out, in]` tensor named `...experts.{proj}.weight`, which gguf-py's table maps to `ffn_{proj}_exps`;
- `llama` files (Mixtral) have Q and K rows permuted within each head (`LlamaModel.permute`);
- `deepseek2` files split `kv_b_proj` per head into `k_b` (transposed, `[heads, rank, key]`) and `v_b`
  (`[heads, value, rank]`), unless `split_kv_b` is False (older converters stored `attn_kv_b` whole); the
  router's `e_score_correction_bias` is stored as `exp_probs_b.bias`;
- `gpt2` files hold every Conv1D weight transposed to `[out, in]` (`GPT2Model`);
- `falcon` files hold `query_key_value` regrouped from kv groups `[q..., k, v]` to `[q; k; v]`, with the
  key/value head count from `num_kv_heads` or `n_head_kv`, else 1 (`FalconModel`; falcon-7b's config names
  neither, and a transformers 5 config's `num_kv_heads` beside `multi_query` would not fit the converter's view,
  so the tests convert as falcon-7b's config would);
- stacked experts are split into `[E, out, in]` stacks: gpt-oss's `gate_up_proj` `[E, in, 2 units]` transposed,
  gate rows the even ones, up the odd ones (biases likewise), `down_proj` transposed, `sinks` given a `.weight`
  (`GptOssModel`); Llama 4's `gate_up_proj` transposed and cut in halves, gate first, `down_proj` transposed,
  Q/K not permuted (`Llama4Model`); Granite-MoE's `input_linear` `[E, 2 units, in]` cut in halves, gate first,
  Q/K permuted (`GraniteMoeModel`, a `LlamaModel`);
- with `fuse_gate_up` (the converter's `--fuse-gate-up-exps`), every layer's gate and up stacks are stored as one
  `ffn_gate_up_exps` `[E, 2 units, in]`, gate first (`ModelBase.modify_tensors`);
- every other tensor keeps its values, renamed by gguf-py's `TensorNameMap`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import gguf
import numpy as np
import torch
from gguf.constants import GGMLQuantizationType
from safetensors.torch import load_file

from tests.io.test_gguf_support import permute

_EXPERT = re.compile(r"^(?P<stem>.+\.experts)\.(?P<e>\d+)\.(?P<proj>\w+)\.weight$")


def hf_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a saved Hugging Face folder, as float32."""
    out: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        out |= {n: t.float() for n, t in load_file(path).items()}
    return out


_CONV1D = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")
_PERMUTED_QK = ("llama", "granitemoe")  # `LlamaModel` and its subclasses that keep `undo_permute`


def _hparam(config: dict, *keys: str):  # noqa: ANN202 - an int, or None
    return next((config[k] for k in keys if config.get(k) is not None), None)


def _halves(w: np.ndarray, interleaved: bool) -> tuple[np.ndarray, np.ndarray]:
    """The gate and up rows of a stacked `gate_up` `[E, rows, in]`: alternating, or first half then second."""
    if interleaved:
        return w[:, ::2], w[:, 1::2]
    half = w.shape[1] // 2
    return w[:, :half], w[:, half:]


def converted(arch: str, tensors: dict[str, torch.Tensor], config: dict, *, split_kv_b: bool = True):
    """`{GGUF-bound Hugging Face name, or a GGUF name: array}` after the converter's changes."""
    heads = _hparam(config, "num_attention_heads", "n_head")
    kv_heads = config.get("num_key_value_heads") or heads
    stacks: dict[str, dict[int, np.ndarray]] = {}
    out: dict[str, np.ndarray] = {}
    for name, t in tensors.items():
        w = t.numpy().astype(np.float32)
        block = name.split(".")[2] if ".layers." in name else None
        if m := _EXPERT.match(name):
            stacks.setdefault(f"{m['stem']}.{m['proj']}.weight", {})[int(m["e"])] = w
        elif arch in _PERMUTED_QK and name.endswith(("q_proj.weight", "q_proj.bias")):
            out[name] = permute(w, heads)
        elif arch in _PERMUTED_QK and name.endswith(("k_proj.weight", "k_proj.bias")):
            out[name] = permute(w, kv_heads)
        elif arch == "gpt2" and name.endswith(_CONV1D):
            out[name] = np.ascontiguousarray(w.T)
        elif arch == "falcon" and "query_key_value" in name:
            groups = _hparam(config, "num_kv_heads", "n_head_kv") or 1
            head = w.shape[-1] // heads
            qkv = w.reshape(groups, heads // groups + 2, head, w.shape[-1])
            parts = (qkv[:, :-2].reshape(-1, w.shape[-1]), qkv[:, -2].reshape(-1, w.shape[-1]),
                     qkv[:, -1].reshape(-1, w.shape[-1]))  # fmt: skip
            out[name] = np.concatenate(parts)
        elif arch == "gpt-oss" and name.endswith("experts.gate_up_proj"):
            gate, up = _halves(np.swapaxes(w, -1, -2), interleaved=True)
            out[name.replace("gate_up_proj", "gate_proj.weight")] = np.ascontiguousarray(gate)
            out[name.replace("gate_up_proj", "up_proj.weight")] = np.ascontiguousarray(up)
        elif arch == "gpt-oss" and name.endswith("experts.gate_up_proj_bias"):
            out[name.replace("gate_up_proj_bias", "gate_proj.bias")] = np.ascontiguousarray(w[..., ::2])
            out[name.replace("gate_up_proj_bias", "up_proj.bias")] = np.ascontiguousarray(w[..., 1::2])
        elif arch == "gpt-oss" and name.endswith("experts.down_proj_bias"):
            out[name.replace("down_proj_bias", "down_proj.bias")] = w
        elif arch == "gpt-oss" and name.endswith("sinks"):
            out[name + ".weight"] = w
        elif arch == "llama4" and name.endswith("experts.gate_up_proj"):
            gate, up = _halves(np.swapaxes(w, -1, -2), interleaved=False)
            out[name.replace("gate_up_proj", "gate_proj.weight")] = np.ascontiguousarray(gate)
            out[name.replace("gate_up_proj", "up_proj.weight")] = np.ascontiguousarray(up)
        elif arch in ("gpt-oss", "llama4") and name.endswith("experts.down_proj"):
            out[name + ".weight"] = np.ascontiguousarray(np.swapaxes(w, -1, -2))
        elif arch == "granitemoe" and name.endswith("block_sparse_moe.input_linear.weight"):
            gate, up = _halves(w, interleaved=False)
            out[f"blk.{block}.ffn_gate_exps.weight"] = np.ascontiguousarray(gate)
            out[f"blk.{block}.ffn_up_exps.weight"] = np.ascontiguousarray(up)
        elif arch == "deepseek2" and name.endswith("kv_b_proj.weight") and split_kv_b:
            nope, value = config["qk_nope_head_dim"], config["v_head_dim"]
            kv_b = w.reshape(heads, nope + value, w.shape[-1])
            out[name.replace("kv_b_proj", "k_b_proj")] = np.ascontiguousarray(kv_b[:, :nope].transpose(0, 2, 1))
            out[name.replace("kv_b_proj", "v_b_proj")] = np.ascontiguousarray(kv_b[:, nope:])
        elif name.endswith("e_score_correction_bias"):
            out[name.removesuffix("_bias") + ".bias"] = w
        else:
            out[name] = w
    for name, experts in stacks.items():
        out[name] = np.stack([experts[e] for e in range(len(experts))])
    return out


def _fused(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every block's `ffn_gate_exps` and `ffn_up_exps` weights as one `ffn_gate_up_exps`, gate rows first."""
    out = dict(tensors)
    for name in [n for n in tensors if n.endswith(".ffn_gate_exps.weight")]:
        up = name.replace("ffn_gate_exps", "ffn_up_exps")
        out[name.replace("ffn_gate_exps", "ffn_gate_up_exps")] = np.concatenate([out.pop(name), out.pop(up)], axis=1)
    return out


def write_gguf(
    folder: Path, path: Path, arch: str, *, split_kv_b: bool = True,
    qtype: GGMLQuantizationType = GGMLQuantizationType.F32, fuse_gate_up: bool = False, config: dict | None = None,
) -> Path:  # fmt: skip
    """Convert the Hugging Face folder `folder` (a model of GGUF architecture `arch`) to the GGUF file `path`,
    matrices and stacks of them stored as `qtype`; `config` in place of its config.json (the converter reads
    the file as it is: falcon-7b's has no `num_kv_heads`)."""
    config = config or json.loads((folder / "config.json").read_text())
    blocks, heads = _hparam(config, "num_hidden_layers", "n_layer"), _hparam(config, "num_attention_heads", "n_head")
    hidden = _hparam(config, "hidden_size", "n_embd")
    names = gguf.get_tensor_name_map({v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch], blocks)
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(folder.name)
    writer.add_block_count(blocks)
    writer.add_embedding_length(hidden)
    # GPT-2's and Falcon's converters write 4 x the width, whatever the model's FFN.
    writer.add_feed_forward_length(4 * hidden if arch in ("gpt2", "falcon") else config["intermediate_size"])
    writer.add_head_count(heads)
    if arch in ("gpt2", "falcon"):  # LayerNorm models: no RMS epsilon
        writer.add_layer_norm_eps(config.get("layer_norm_epsilon") or 1e-5)
        if arch == "falcon":
            writer.add_head_count_kv(_hparam(config, "num_kv_heads", "n_head_kv") or 1)
    else:
        # DeepSeek-V2's converter writes latent attention as one key-value head (`num_key_value_heads = 1`).
        writer.add_head_count_kv(1 if arch == "deepseek2" else config.get("num_key_value_heads") or heads)
        writer.add_layer_norm_rms_eps(config.get("rms_norm_eps") or 1e-6)
    tensors = {}
    for hf_name, data in converted(arch, hf_tensors(folder), config, split_kv_b=split_kv_b).items():
        name = hf_name if hf_name.startswith("blk.") else names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        assert name is not None, hf_name
        tensors[name] = data
    for name, data in (_fused(tensors) if fuse_gate_up else tensors).items():
        if qtype != GGMLQuantizationType.F32 and data.ndim > 1:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
