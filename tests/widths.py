"""Width-pruned models, the Minitron way, for the tests and benches of the weight test across widths.

NVIDIA's Minitron recipe (Muralidharan et al. 2024, "Compact Language Models via Pruning and Knowledge
Distillation", arXiv 2407.14679) ranks residual channels, FFN units and heads by activation importance,
keeps the best of each, sorted by importance, then distils the pruned model from its parent. Here the
importance is read from the weights (a stand-in: no calibration text is needed), the kept coordinates are
reordered by importance as the recipe's sort does, and the distillation is a few Adam steps matching the
parent's logits on random tokens. The pruning itself is the battery's (`lineage.catalog.width`), here with its
weight-read importance.
"""

from __future__ import annotations

import torch

from lineage.catalog.width import width_pruned

__all__ = ["WIDE", "distilled", "width_pruned"]

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


def distilled(
    student: dict[str, torch.Tensor],
    student_config: dict,
    teacher: dict[str, torch.Tensor],
    teacher_config: dict,
    steps: int = 20,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """`student` after `steps` steps of `lineage.catalog.train.distill_lm` (AdamW at 1e-3, no warm-up, 4 windows of
    32 tokens) towards `teacher`'s next-token distribution on a seeded random token stream, as Minitron's
    distillation after pruning. Needs transformers."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lineage.catalog.train import TrainConfig, distill_lm

    def model(tensors: dict[str, torch.Tensor], config: dict) -> torch.nn.Module:
        m = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if k != "model_type"}))
        m.load_state_dict(tensors, strict=False)  # a tied head is the embedding
        return m

    ids = torch.randint(0, student_config["vocab_size"], (8192,), generator=torch.Generator().manual_seed(seed))
    s = model(student, student_config)
    distill_lm(s, model(teacher, teacher_config), ids,
               TrainConfig(steps=steps, lr=1e-3, batch_size=4, seq_len=32, seed=seed, warmup=0))  # fmt: skip
    state = s.state_dict()
    return {k: state[k].detach().clone().contiguous() for k in student}
