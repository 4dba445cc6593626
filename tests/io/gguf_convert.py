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


def converted(arch: str, tensors: dict[str, torch.Tensor], config: dict, *, split_kv_b: bool = True):
    """`{GGUF-bound Hugging Face name: array}` after the converter's changes (names not yet mapped)."""
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    stacks: dict[str, dict[int, np.ndarray]] = {}
    out: dict[str, np.ndarray] = {}
    for name, t in tensors.items():
        w = t.numpy().astype(np.float32)
        if m := _EXPERT.match(name):
            stacks.setdefault(f"{m['stem']}.{m['proj']}.weight", {})[int(m["e"])] = w
        elif arch == "llama" and name.endswith(("q_proj.weight", "q_proj.bias")):
            out[name] = permute(w, heads)
        elif arch == "llama" and name.endswith(("k_proj.weight", "k_proj.bias")):
            out[name] = permute(w, kv_heads)
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


def write_gguf(
    folder: Path, path: Path, arch: str, *, split_kv_b: bool = True,
    qtype: GGMLQuantizationType = GGMLQuantizationType.F32,
) -> Path:  # fmt: skip
    """Convert the Hugging Face folder `folder` (a model of GGUF architecture `arch`) to the GGUF file `path`,
    matrices and stacks of them stored as `qtype`."""
    config = json.loads((folder / "config.json").read_text())
    blocks, heads = config["num_hidden_layers"], config["num_attention_heads"]
    names = gguf.get_tensor_name_map({v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch], blocks)
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(folder.name)
    writer.add_block_count(blocks)
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    # DeepSeek-V2's converter writes latent attention as one key-value head (`num_key_value_heads = 1`).
    writer.add_head_count_kv(1 if arch == "deepseek2" else config.get("num_key_value_heads") or heads)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps") or 1e-6)
    for hf_name, data in converted(arch, hf_tensors(folder), config, split_kv_b=split_kv_b).items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        assert name is not None, hf_name
        if qtype != GGMLQuantizationType.F32 and data.ndim > 1:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
