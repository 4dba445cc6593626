"""The numbers behind the "quantised copy" limits (`lineage.compare.quantised`), for one seed.

For a tiny Llama (hidden 64, 2 layers, bf16) of `--seed`, every format lineage reads, three rows of
`sqrt(observed / expected)` against the bf16 source: a copy (the source quantised), and the source fine-tuned by
the tests' stand-in (Gaussian change of std 0.01 and 0.02 on weights of scale 0.1) then quantised. Then GPTQ
itself (the paper's algorithm: each column rounded, its error spread over the columns not yet rounded through the
inverse Hessian, 1% damping, groups of 128) on a 512 x 512 weight for three synthetic Hessians: how far its
error compensation moves the weights beyond what rounding alone does (the same ratio, in weight space). The
limits were chosen on seed 0 and checked on seed 1.

Usage:
    python bench/calibrate_quant_copy.py [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lineage.compare.quantised import copy_limit, quantised_fit  # noqa: E402
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model  # noqa: E402
from tests.checkpoints import tiny_llama_tensors, write_checkpoint  # noqa: E402
from tests.io.test_quant_models import CONFIG  # noqa: E402
from tests.quantise import FORMATS, quantised_folder  # noqa: E402

CPU = FingerprintOptions(device="cpu")
FINE_TUNES = (0.01, 0.02)


def tiny_rows(seed: int, root: Path) -> None:
    source = {k: v.to(torch.bfloat16).float() for k, v in tiny_llama_tensors(seed, config=CONFIG).items()}
    ref = fingerprint_model(write_checkpoint(root / "source", source, CONFIG), CPU)
    gen = torch.Generator().manual_seed(seed + 100)
    tunes = {s: {k: v + s * torch.randn(v.shape, generator=gen) for k, v in source.items()} for s in FINE_TUNES}
    print(f"seed {seed}: sqrt(observed / expected) against the bf16 source")
    print(f"{'format':8} {'limit':>5} {'copy':>7} " + " ".join(f"{'ft ' + str(s):>8}" for s in FINE_TUNES))
    for fmt in FORMATS:
        ratios = []
        for label, tensors in (("copy", source), *((f"ft{s}", tunes[s]) for s in FINE_TUNES)):
            fp = fingerprint_model(quantised_folder(root / f"{fmt}-{label}", tensors, CONFIG, fmt), CPU)
            ratios.append(quantised_fit(fp, ref))
        print(f"{fmt:8} {copy_limit(ratios[0].formats):5.2f} " + " ".join(f"{r.ratio:7.3f} " for r in ratios))


def _round(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, maxq: int) -> torch.Tensor:
    return scale * (torch.clamp(torch.round(w / scale) + zero, 0, maxq) - zero)


def gptq(w: torch.Tensor, hessian: torch.Tensor, bits: int = 4, group: int = 128, block: int = 128,
         damp: float = 0.01) -> tuple[torch.Tensor, float]:  # fmt: skip
    """GPTQ (Frantar et al. 2023, Algorithm 1, with lazy batch updates and per-group min-max scales taken on the
    weights as updated so far): the dequantised weight and the rounding noise its scales stand for."""
    w = w.clone().double()
    maxq, cols = (1 << bits) - 1, w.shape[1]
    h = hessian.double() + damp * hessian.diag().mean() * torch.eye(cols, dtype=torch.float64)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q, noise = torch.zeros_like(w), 0.0
    for a in range(0, cols, block):
        b = min(a + block, cols)
        w1, err = w[:, a:b].clone(), torch.zeros(w.shape[0], b - a, dtype=torch.float64)
        for i in range(b - a):
            if (a + i) % group == 0:
                g = torch.cat([w1[:, i:], w[:, b:]], 1)[:, :group]
                lo, hi = g.min(1).values.clamp(max=0), g.max(1).values.clamp(min=0)
                scale = ((hi - lo) / maxq).clamp(min=1e-8)
                zero = torch.round(-lo / scale)
                noise += float((scale**2).sum()) * min(group, cols - a - i) / 12
            q[:, a + i] = _round(w1[:, i], scale, zero, maxq)
            err[:, i] = (w1[:, i] - q[:, a + i]) / hinv[a + i, a + i]
            w1[:, i:] -= err[:, i : i + 1] @ hinv[a + i : a + i + 1, a + i : b]
        w[:, b:] -= err @ hinv[a:b, b:]
    return q, noise


def gptq_rows(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    n, cols = 4096, 512
    w = torch.randn(cols, cols, generator=gen, dtype=torch.float64) * 0.05
    rotation = torch.linalg.qr(torch.randn(cols, cols, generator=gen, dtype=torch.float64))[0]
    spectrum = torch.arange(1, cols + 1, dtype=torch.float64)
    inputs = {
        "isotropic": torch.randn(n, cols, generator=gen, dtype=torch.float64),
        "spectrum 1/i": torch.randn(n, cols, generator=gen, dtype=torch.float64) * spectrum**-0.5,
        "spectrum 1/i^2, rotated": torch.randn(n, cols, generator=gen, dtype=torch.float64) @ rotation * spectrum**-1,
    }
    print("GPTQ 4-bit, groups of 128: sqrt(||W_q - W||^2 / rounding noise)")
    for name, x in inputs.items():
        q, noise = gptq(w, 2 * x.T @ x / n)
        print(f"  {name:26} {math.sqrt(float(((q - w) ** 2).sum()) / noise):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tiny_rows(args.seed, Path(tmp))
    gptq_rows(args.seed)


if __name__ == "__main__":
    main()
