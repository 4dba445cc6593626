"""The base class of a probe family, and seeding by tensor role and shape.

Seeds come from the tensor's kind (`q`, `down`, `embed`...) and shape, never from file order, so the
same model in another shard layout or dtype is probed with the same vectors, and every layer alike.
"""

from __future__ import annotations

import hashlib

import torch


def probe_seed(role: str, shape: tuple[int, ...], seed: int) -> int:
    """A 63-bit seed from a tensor's role, its shape and the global probe seed."""
    digest = hashlib.blake2b(f"{seed}|{role}|{'x'.join(map(str, shape))}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class Perturbation:
    """A family of probe vectors of dimension `n`.

    Subclasses set `name` and `count` and implement `make`. Adversarial families also implement `refine`,
    which turns probes and the gradient of the probe loss at them into new probes.
    """

    name: str = ""
    count: int = 0
    adversarial: bool = False

    def make(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`count` probes of dimension `n`, float32 on the CPU, each of unit RMS."""
        raise NotImplementedError

    def refine(self, probes: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """Adversarial step (FGSM-style); only for `adversarial` families."""
        raise NotImplementedError


def unit_rms(x: torch.Tensor) -> torch.Tensor:
    """Scale each row to unit root-mean-square, so families are comparable."""
    return x / x.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-12)
