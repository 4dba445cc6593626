"""Training loops: pretraining, full fine-tuning, continued pretraining, instruction tuning and LoRA.

They are one loop -- next-token prediction with AdamW, linear warm-up then cosine decay, gradient
clipping -- run on different token streams. What makes a derivative a fine-tune rather than continued
pretraining is the recipe (text domain, steps, learning rate), as on the hub. LoRA wraps the model with
peft, trains only the adapters, and merges them back with ``merge_and_unload``, which is how merged LoRA
checkpoints are published.

Batches are random windows of the stream drawn from a seeded `torch.Generator`, so a run is a pure
function of (model, stream, hyper-parameters, seed) given fixed threads and deterministic kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Args:
        steps: optimiser steps.
        lr: peak learning rate.
        batch_size: windows per step.
        seq_len: tokens per window.
        seed: draws the windows (and LoRA's initialisation).
        warmup: warm-up steps (at most a tenth of ``steps`` is used).
        weight_decay: AdamW's decoupled decay.
    """

    steps: int
    lr: float
    batch_size: int
    seq_len: int
    seed: int
    warmup: int = 20
    weight_decay: float = 0.01

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size <= 0 or self.seq_len <= 1 or self.lr <= 0:
            raise ValueError(f"invalid training config {self}")


@dataclass(frozen=True)
class TrainResult:
    """Losses at the start and the end of a run (mean over the first and last few steps)."""

    first_loss: float
    last_loss: float


def _windows(ids: torch.Tensor, gen: torch.Generator, batch: int, seq: int) -> torch.Tensor:
    if ids.numel() <= seq + 1:
        raise ValueError(f"token stream too short ({ids.numel()} tokens) for windows of {seq}")
    starts = torch.randint(0, ids.numel() - seq, (batch,), generator=gen)
    return torch.stack([ids[s : s + seq] for s in starts.tolist()])


def _lr_at(step: int, cfg: TrainConfig) -> float:
    warm = max(1, min(cfg.warmup, cfg.steps // 10))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_lm(model: PreTrainedModel, ids: torch.Tensor, cfg: TrainConfig) -> TrainResult:
    """Train ``model`` in place on next-token prediction over windows of ``ids``.

    Args:
        model: any causal LM; only parameters with ``requires_grad`` are updated.
        ids: the token stream (1-D, long).
        cfg: hyper-parameters.

    Returns:
        The mean loss of the first and last five steps.

    Example:
        >>> result = train_lm(model, torch.tensor(ids), TrainConfig(steps=10, lr=1e-3, batch_size=4,
        ...                   seq_len=32, seed=0))
    """
    return _run(model, ids, cfg, lambda batch: model(input_ids=batch, labels=batch).loss)


def distill_lm(student: PreTrainedModel, teacher: PreTrainedModel, ids: torch.Tensor, cfg: TrainConfig, *,
               temperature: float = 2.0) -> TrainResult:
    """Train ``student`` in place to match ``teacher``'s next-token distributions (logit distillation).

    The loss is the KL divergence from the teacher's to the student's softened distributions, scaled by the
    squared temperature (Hinton et al. 2015). The student shares no weight with the teacher: it shares its
    function, as far as training gets it there.
    """
    teacher.eval()

    def loss(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = torch.log_softmax(teacher(input_ids=batch).logits / temperature, dim=-1)
        guess = torch.log_softmax(student(input_ids=batch).logits / temperature, dim=-1)
        kl = torch.nn.functional.kl_div(guess, target, log_target=True, reduction="batchmean")
        return kl * temperature**2 / batch.shape[1]

    return _run(student, ids, cfg, loss)


def _run(model: PreTrainedModel, ids: torch.Tensor, cfg: TrainConfig, loss_of) -> TrainResult:  # noqa: ANN001
    """AdamW with warm-up and cosine decay on windows of ``ids``; ``loss_of(batch)`` is the loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    # No decay on norms and biases (1-D), the usual recipe for transformer LMs.
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), foreach=True)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    model.train()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        loss = loss_of(_windows(ids, gen, cfg.batch_size, cfg.seq_len))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    if not losses:
        return TrainResult(float("nan"), float("nan"))
    return TrainResult(sum(losses[:5]) / len(losses[:5]), sum(losses[-5:]) / len(losses[-5:]))


@torch.no_grad()
def eval_loss(model: PreTrainedModel, ids: torch.Tensor, *, seq_len: int, max_windows: int = 16) -> float:
    """Mean next-token loss over the first ``max_windows`` consecutive windows of ``ids`` (no sampling)."""
    model.eval()
    n = min(max_windows, (ids.numel() - 1) // seq_len)
    if n <= 0:
        raise ValueError(f"token stream too short ({ids.numel()} tokens) for evaluation windows of {seq_len}")
    batch = ids[: n * seq_len].view(n, seq_len)
    return float(model(input_ids=batch, labels=batch).loss)


def lora_modules(model: PreTrainedModel) -> list[str]:
    """Names (last component) of the linear layers LoRA adapts: every projection, as is common practice."""
    names = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)}
    return sorted(names - {"lm_head", "embed_out"})


def train_lora(model: PreTrainedModel, ids: torch.Tensor, cfg: TrainConfig, *, rank: int,
               alpha: float) -> tuple[PreTrainedModel, TrainResult]:
    """Fine-tune LoRA adapters on every projection, then merge them into the weights.

    Args:
        model: the parent model (fp32).
        ids: the fine-tuning token stream.
        cfg: hyper-parameters (LoRA takes a larger learning rate than full fine-tuning).
        rank: adapter rank ``r``.
        alpha: adapter scale numerator (``lora_alpha``).

    Returns:
        The merged plain model (same class as ``model``) and the run's losses.
    """
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(cfg.seed)  # adapter A matrices are drawn from the global generator
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=lora_modules(model),
                        bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    result = train_lm(peft_model, ids, cfg)
    merged = peft_model.merge_and_unload()
    return merged, result
