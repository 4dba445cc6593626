"""Width-pruned models, the Minitron way, for the tests and benches of the weight test across widths.

NVIDIA's Minitron recipe (Muralidharan et al. 2024, "Compact Language Models via Pruning and Knowledge
Distillation", arXiv 2407.14679) ranks residual channels, FFN units and heads by activation importance,
keeps the best of each, sorted by importance, then distils the pruned model from its parent. Here the
importance is read from the weights (a stand-in: no calibration text is needed), the kept coordinates are
reordered by importance as the recipe's sort does, and the distillation is a few Adam steps matching the
parent's logits on random tokens.
"""

from __future__ import annotations

import torch

#: A tiny model of realistic depth: 24 layers, hidden 256, FFN 512, GQA 8/4 (Llama layout, tied embedding).
WIDE = {
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 24,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 32,
    "vocab_size": 256,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
READERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")


def width_pruned(
    tensors: dict[str, torch.Tensor],
    config: dict,
    width: int,
    units: int,
    layers: list[int] | None = None,
    kv_heads: int | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """`(tensors, config)` of a Llama-layout model pruned to `width` residual coordinates and `units` FFN units
    per layer (to `layers`, in that order, and to `kv_heads` key-value heads with their query heads, when
    given), each kept by importance and sorted by it.

    Importance of a residual coordinate: its embedding column's norm times its mean input-norm gain (what an
    anchor's normalised activation there scales with); of an FFN unit: `|up row| |down column|`; of a
    key-value head: `|v rows| |o columns of its query heads|`.
    """
    depth = config["num_hidden_layers"]
    layers = list(range(depth)) if layers is None else layers
    embed = tensors["model.embed_tokens.weight"]
    gains = torch.stack([tensors[f"model.layers.{i}.input_layernorm.weight"].abs() for i in range(depth)])
    keep = torch.argsort(embed.norm(dim=0) * gains.mean(0), descending=True)[:width]
    out = {"model.embed_tokens.weight": embed[:, keep], "model.norm.weight": tensors["model.norm.weight"][keep]}
    if "lm_head.weight" in tensors:
        out["lm_head.weight"] = tensors["lm_head.weight"][:, keep]
    for new, old in enumerate(layers):
        p, q = f"model.layers.{old}.", f"model.layers.{new}."
        up, down = tensors[p + "mlp.up_proj.weight"], tensors[p + "mlp.down_proj.weight"]
        unit = torch.argsort(up.norm(dim=1) * down.norm(dim=0), descending=True)[:units]
        for norm in ("input_layernorm", "post_attention_layernorm"):
            out[q + norm + ".weight"] = tensors[p + norm + ".weight"][keep]
        kv_rows, q_rows = _heads(tensors, p, config, kv_heads)
        for reader in READERS:
            w = tensors[p + reader + ".weight"]
            rows = unit if reader.startswith("mlp") else q_rows if reader.endswith("q_proj") else kv_rows
            out[q + reader + ".weight"] = w[rows][:, keep]
        out[q + "self_attn.o_proj.weight"] = tensors[p + "self_attn.o_proj.weight"][keep][:, q_rows]
        out[q + "mlp.down_proj.weight"] = down[keep][:, unit]
    config = dict(config, hidden_size=width, intermediate_size=units, num_hidden_layers=len(layers))
    if kv_heads is not None:
        group = config["num_attention_heads"] // config["num_key_value_heads"]
        config |= {"num_key_value_heads": kv_heads, "num_attention_heads": kv_heads * group}
    return {k: v.contiguous() for k, v in out.items()}, config


def _heads(tensors: dict[str, torch.Tensor], p: str, config: dict, kv_heads: int | None) -> tuple:
    """`(k and v rows, q rows and o columns)` kept in layer `p`: every head, or the `kv_heads` most important
    key-value heads (sorted by importance) with the query heads that read them."""
    hd, kv = config["head_dim"], config["num_key_value_heads"]
    group = config["num_attention_heads"] // kv
    v, o = tensors[p + "self_attn.v_proj.weight"], tensors[p + "self_attn.o_proj.weight"]
    importance = v.reshape(kv, -1).norm(dim=1) * o.T.reshape(kv, -1).norm(dim=1)
    kept = torch.argsort(importance, descending=True)[:kv_heads] if kv_heads is not None else torch.arange(kv)
    kv_rows = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in kept.tolist()])
    q_rows = torch.cat([torch.arange(h * group * hd, (h + 1) * group * hd) for h in kept.tolist()])
    return kv_rows, q_rows


def distilled(
    student: dict[str, torch.Tensor],
    student_config: dict,
    teacher: dict[str, torch.Tensor],
    teacher_config: dict,
    steps: int = 20,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """`student` after `steps` Adam steps (lr 1e-3) towards `teacher`'s next-token distribution on random
    tokens (KL divergence), as Minitron's distillation after pruning. Needs transformers."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def model(tensors: dict[str, torch.Tensor], config: dict) -> torch.nn.Module:
        m = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if k != "model_type"}))
        m.load_state_dict(tensors, strict=False)  # a tied head is the embedding
        return m

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    t, s = model(teacher, teacher_config).eval(), model(student, student_config).train()
    opt = torch.optim.Adam(s.parameters(), lr=1e-3)
    for _ in range(steps):
        ids = torch.randint(0, student_config["vocab_size"], (4, 32), generator=gen)
        with torch.no_grad():
            target = torch.log_softmax(t(ids).logits, -1)
        loss = torch.nn.functional.kl_div(torch.log_softmax(s(ids).logits, -1), target, log_target=True,
                                          reduction="batchmean")  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = s.state_dict()
    return {k: state[k].detach().clone().contiguous() for k in student}
