"""Write a random bf16 checkpoint with Llama-3.2-1B's (or Llama-2-7B's) exact tensor names and shapes.

What it measures: nothing; it makes the input of `bench_fingerprint.py`. A real Llama-3.2-1B would do as
well, but it is gated and 2.5 GB to download; for speed and memory only the names, shapes, dtype and byte
layout matter, and those are copied exactly (1,235,814,400 parameters, tied embeddings so no `lm_head`,
2.47 GB of bf16). The weights are seeded Gaussians (std 0.02) and the RMSNorm gains are close to 1, so
the numbers a fingerprint computes are finite and reproducible, but say nothing about any real family.

Design: tensors are generated one at a time from a seed derived from their name (the bytes do not
depend on how the model is split), and only one shard (~0.85 GB) is held in memory at once, so writing
the checkpoint needs about 1 GB, not the whole model. The model is split into 3 shards with a
`model.safetensors.index.json`, the layout of every larger Hub checkpoint, so the readers' sharded
path is exercised. Existing files are kept when their headers hold exactly the expected tensors and
their sizes match, so a second run costs a fraction of a second.

`--shape 7b` writes Llama-2-7B's layout instead (vocab 32000, hidden 4096, 32 layers of 32 heads without
GQA, intermediate 11008, an untied `lm_head`; 6,738,415,616 parameters, 13.5 GB in 3 shards), so that the
benchmark measures how the cost grows with the model rather than assuming it. `--shape olmoe` writes
OLMoE-1B-7B's mixture of experts (64 experts a layer, stored one by one; 6,919,161,856 parameters, 13.8 GB
in 6 shards): thousands of small matrices instead of a hundred large ones.

Usage:
    python bench/make_checkpoint.py [--shape 1b|7b|olmoe] [--out DIR] [--force]
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
import zlib
from pathlib import Path

OUT_ROOT = Path(__file__).resolve().parent / "out"
DEFAULT_OUT = OUT_ROOT / "llama-3.2-1b-shape"
INDEX_FILE = "model.safetensors.index.json"
N_SHARDS = 3
SEED = 20250601
WEIGHT_STD = 0.02
NORM_STD = 0.05  # RMSNorm gains: 1 + N(0, 0.05), like a trained model's gains scattered around 1

# Llama-3.2-1B (meta-llama/Llama-3.2-1B, config.json as published). Tied embeddings: no lm_head tensor.
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0",
    "use_cache": True,
    "vocab_size": 128256,
}

# Llama-2-7B (meta-llama/Llama-2-7b-hf, config.json as published): no GQA, an untied lm_head.
CONFIG_7B = {
    "architectures": ["LlamaForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 11008,
    "max_position_embeddings": 4096,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "vocab_size": 32000,
}

# OLMoE-1B-7B (allenai/OLMoE-1B-7B-0924, config.json as published): a mixture of experts, 64 experts of
# intermediate 1024 in each of 16 layers (8 routed per token), q/k RMSNorms over the whole projection, an
# untied lm_head; experts stored one by one (`mlp.experts.<j>.*`), as the published checkpoint stores them.
CONFIG_OLMOE = {
    "architectures": ["OlmoeForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": None,
    "clip_qkv": None,
    "eos_token_id": 50279,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 1024,
    "max_position_embeddings": 4096,
    "model_type": "olmoe",
    "norm_topk_prob": False,
    "num_attention_heads": 16,
    "num_experts": 64,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 16,
    "num_key_value_heads": 16,
    "output_router_logits": False,
    "pad_token_id": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "router_aux_loss_coef": 0.01,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 50304,
}

#: `--shape`: (config, default folder, shards).
SHAPES = {
    "1b": (CONFIG, DEFAULT_OUT, N_SHARDS),
    "7b": (CONFIG_7B, OUT_ROOT / "llama-2-7b-shape", 3),
    "olmoe": (CONFIG_OLMOE, OUT_ROOT / "olmoe-1b-7b-shape", 6),
}

BF16_BYTES = 2


def tensor_specs(config: dict = CONFIG) -> list[tuple[str, tuple[int, ...]]]:
    """List the checkpoint's tensors in `state_dict` order, the order `save_pretrained` shards them in.

    Args:
        config: a Llama `config.json` as a dict.

    Returns:
        `(name, shape)` pairs: embeddings, then each layer's tensors, then the final norm.
    """
    hidden = config["hidden_size"]
    inter = config["intermediate_size"]
    head_dim = config.get("head_dim") or hidden // config["num_attention_heads"]
    q_out = config["num_attention_heads"] * head_dim
    kv_out = config["num_key_value_heads"] * head_dim
    experts = config.get("num_experts", 0)
    specs: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (config["vocab_size"], hidden))]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}"
        specs += [
            (f"{p}.self_attn.q_proj.weight", (q_out, hidden)),
            (f"{p}.self_attn.k_proj.weight", (kv_out, hidden)),
            (f"{p}.self_attn.v_proj.weight", (kv_out, hidden)),
            (f"{p}.self_attn.o_proj.weight", (hidden, q_out)),
        ]
        if experts:  # OLMoE: q/k norms over the whole projection, a router, then the experts one by one
            specs += [(f"{p}.self_attn.q_norm.weight", (q_out,)), (f"{p}.self_attn.k_norm.weight", (kv_out,))]
            specs.append((f"{p}.mlp.gate.weight", (experts, hidden)))
            for j in range(experts):
                specs += [
                    (f"{p}.mlp.experts.{j}.gate_proj.weight", (inter, hidden)),
                    (f"{p}.mlp.experts.{j}.up_proj.weight", (inter, hidden)),
                    (f"{p}.mlp.experts.{j}.down_proj.weight", (hidden, inter)),
                ]
        else:
            specs += [
                (f"{p}.mlp.gate_proj.weight", (inter, hidden)),
                (f"{p}.mlp.up_proj.weight", (inter, hidden)),
                (f"{p}.mlp.down_proj.weight", (hidden, inter)),
            ]
        specs += [
            (f"{p}.input_layernorm.weight", (hidden,)),
            (f"{p}.post_attention_layernorm.weight", (hidden,)),
        ]
    specs.append(("model.norm.weight", (hidden,)))
    if not config.get("tie_word_embeddings", False):
        specs.append(("lm_head.weight", (config["vocab_size"], hidden)))
    return specs


def _nbytes(shape: tuple[int, ...]) -> int:
    n = BF16_BYTES
    for d in shape:
        n *= d
    return n


def plan_shards(specs: list[tuple[str, tuple[int, ...]]], n_shards: int = N_SHARDS) -> list[list[tuple[str, tuple]]]:
    """Split tensors, in order, into `n_shards` groups of about equal bytes (as `save_pretrained` does).

    Args:
        specs: `(name, shape)` pairs in storage order.
        n_shards: number of shard files.

    Returns:
        One list of `(name, shape)` per shard; none is empty.
    """
    total = sum(_nbytes(s) for _, s in specs)
    target = total / n_shards
    shards: list[list[tuple[str, tuple]]] = [[]]
    filled = 0
    for name, shape in specs:
        # Start the next shard once this one has reached its share of the bytes.
        if filled >= target * len(shards) and len(shards) < n_shards:
            shards.append([])
        shards[-1].append((name, shape))
        filled += _nbytes(shape)
    return shards


def shard_name(i: int, n: int) -> str:
    return f"model-{i + 1:05d}-of-{n:05d}.safetensors"


def _make_tensor(name: str, shape: tuple[int, ...]):  # returns a torch.Tensor; torch is imported lazily
    import torch

    # Seed from the name, not from a running generator, so each tensor's bytes are fixed whatever the sharding.
    gen = torch.Generator().manual_seed(SEED ^ zlib.crc32(name.encode()))
    t = torch.empty(shape, dtype=torch.bfloat16)
    if len(shape) == 1:
        return t.normal_(1.0, NORM_STD, generator=gen)
    return t.normal_(0.0, WEIGHT_STD, generator=gen)


def _read_header(path: Path) -> dict | None:
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                return None
            header = json.loads(f.read(n))
        header["__header_bytes__"] = 8 + n
        return header
    except (OSError, ValueError, struct.error):
        return None


def _shard_is_complete(path: Path, tensors: list[tuple[str, tuple]]) -> bool:
    header = _read_header(path)
    if header is None:
        return False
    header_bytes = header.pop("__header_bytes__")
    header.pop("__metadata__", None)
    if set(header) != {name for name, _ in tensors}:
        return False
    for name, shape in tensors:
        entry = header[name]
        if entry.get("dtype") != "BF16" or tuple(entry.get("shape", ())) != tuple(shape):
            return False
    data_bytes = sum(_nbytes(s) for _, s in tensors)
    return path.stat().st_size == header_bytes + data_bytes


def checkpoint_is_complete(out: Path, shape: str = "1b") -> bool:
    """Tell whether `out` already holds the benchmark checkpoint, by headers and file sizes (no data read).

    Args:
        out: the checkpoint folder.
        shape: a key of `SHAPES`.

    Returns:
        True when the index, config and every shard are present with the expected tensors and sizes.
    """
    config, _, n_shards = SHAPES[shape]
    shards = plan_shards(tensor_specs(config), n_shards)
    if not (out / INDEX_FILE).is_file() or not (out / "config.json").is_file():
        return False
    return all(_shard_is_complete(out / shard_name(i, len(shards)), t) for i, t in enumerate(shards))


def write_checkpoint(
    out: Path | None = None, force: bool = False, verbose: bool = True, shape: str = "1b"
) -> Path:
    """Write the checkpoint, one shard in memory at a time; keep it when already complete.

    Args:
        out: folder to write (created if needed); default: the shape's folder under `bench/out/`.
        force: rewrite even when complete files are present.
        verbose: print one line per shard on stderr.
        shape: a key of `SHAPES`.

    Returns:
        The checkpoint folder.

    Example:
        >>> write_checkpoint(Path("bench/out/llama-3.2-1b-shape"))
        PosixPath('bench/out/llama-3.2-1b-shape')
    """
    config, default_out, n_shards = SHAPES[shape]
    out = Path(out or default_out)
    if not force and checkpoint_is_complete(out, shape):
        if verbose:
            print(f"checkpoint present: {out}", file=sys.stderr)
        return out
    out.mkdir(parents=True, exist_ok=True)
    shards = plan_shards(tensor_specs(config), n_shards)
    weight_map: dict[str, str] = {}
    total = 0
    for i, tensors in enumerate(shards):
        fname = shard_name(i, len(shards))
        path = out / fname
        weight_map.update({name: fname for name, _ in tensors})
        total += sum(_nbytes(s) for _, s in tensors)
        if not force and _shard_is_complete(path, tensors):
            continue
        from safetensors.torch import save_file  # lazily: checking a complete checkpoint needs no torch

        t0 = time.perf_counter()
        state = {name: _make_tensor(name, shape) for name, shape in tensors}
        tmp = path.with_suffix(".tmp")
        save_file(state, str(tmp), metadata={"format": "pt"})
        tmp.replace(path)  # a killed run leaves a .tmp, never a short shard under the real name
        del state
        if verbose:
            size = path.stat().st_size / 1e9
            print(
                f"wrote {fname}: {len(tensors)} tensors, {size:.2f} GB, {time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
            )
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1b", help="the layout (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="checkpoint folder (default: bench/out/<layout>)")
    parser.add_argument("--force", action="store_true", help="rewrite even when complete files exist")
    args = parser.parse_args(argv)
    print(write_checkpoint(args.out, force=args.force, shape=args.shape))
    return 0


if __name__ == "__main__":
    sys.exit(main())
