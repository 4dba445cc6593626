"""Per-tensor gradient responses to seeded probes, all probes of a tensor in one matrix product.

For a probe `x` and the recipe's loss `L = ||W x||`, the gradient with respect to `W` is the rank-one
`u x^T` with `u = W x / ||W x||`. Its summary statistics (mean, std, norm, skewness, kurtosis over all
`out*in` entries) therefore follow in closed form from the power sums of `u` and `x`: the gradient matrix is
never built, and one product `X W^T` serves all 15 probes. The raw responses `W x` of the 12 fixed probes,
projected on a seeded random basis, are kept too: they are linear in `W`, which merge attribution needs.

The same pass serves the caller twice more: its own inputs meet the block in the same product (the
circuits' normalised token embeddings, `inputs @ W^T`), and the weight test's unit profiles are read on the
way (`lineage.probe.profiles`), so every matrix is read once (the ten the statistics sample, twice: see
`ProbeEngine._statistics`).

**Speed.** The products are the floor (76 probe rows against most weights, padded to 80); everything else
is kept off the memory bus. Weights arrive in their stored dtype in small blocks read into one reused buffer, and
each block is converted to float32 into a second reused buffer on the device: on the CPU both stay in the
cache, so a float32 copy of the model never travels through memory and no block pays page faults. Each
block meets all its probes in one matrix product written in place into the response matrix, the probe
columns padded with zeros to whole kernel tiles (`_padded_width`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from lineage.probe.perturbations import PERTURBATIONS, make_probes, probe_seed
from lineage.probe.profiles import ProfileReader, Profiles

RESPONSE_RANK = 8  # columns of the random basis the raw responses are projected on


@dataclass(frozen=True)
class TensorResponse:
    """What one tensor's probes yield.

    Attributes:
        gradient_stats: float64 [5]: mean, std, norm, skewness, kurtosis of the weight gradient, averaged
            over the 15 probes.
        responses: float32 [12, RESPONSE_RANK]: `Psi^T W X^T` for the 12 fixed probes.
    """

    gradient_stats: np.ndarray
    responses: np.ndarray


@dataclass(frozen=True)
class Product:
    """What one streamed weight gives back to its caller.

    Attributes:
        out: `inputs @ W^T` on the device, or None without inputs.
        profile: the unit profiles asked for (`lineage.probe.profiles`), `[M, units]`, or None.
        response: the tensor's own probe responses.
    """

    out: torch.Tensor | None
    profile: torch.Tensor | None
    response: TensorResponse


def _gradient_moments(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Statistics of the rank-one matrices `u_p x_p^T`, one row per probe p, from power sums.

    Args:
        u: [P, out] unit responses; x: [P, in] probes (float64).

    Returns:
        [P, 5]: mean, std (unbiased, as torch.std), Frobenius norm, skewness, excess kurtosis.
    """
    count = u.shape[1] * x.shape[1]
    s = [(u.pow(k).sum(1) * x.pow(k).sum(1)) for k in (1, 2, 3, 4)]
    mean = s[0] / count
    e2, e3, e4 = s[1] / count, s[2] / count, s[3] / count
    var = (e2 - mean**2).clamp_min(1e-300)
    m3 = e3 - 3 * mean * e2 + 2 * mean**3
    m4 = e4 - 4 * mean * e3 + 6 * mean**2 * e2 - 3 * mean**4
    std = (var * count / max(count - 1, 1)).sqrt()
    return torch.stack([mean, std, s[1].sqrt(), m3 / var.pow(1.5), m4 / var**2 - 3.0], dim=1)


def role_kind(role: str) -> str:
    """The kind of a role key: `layers.3.q` -> `q`, `embed` -> `embed`."""
    return role.rsplit(".", 1)[-1]


class NonFiniteResponse(ValueError):
    """A weight produced NaN/Inf responses: it holds NaN or Inf values (Gaussian probes touch every entry), or
    finite values (or inputs) so large that the float32 products overflowed; the caller tells which."""


Blocks = Callable[[], Iterator[tuple[int, torch.Tensor]]]


def block_bytes(device: torch.device) -> int:
    """How many stored bytes of a weight to read at a time on `device`.

    On the CPU, 8 MB, mapped from the page cache (`CheckpointReader.row_blocks`) and converted to float32 in
    one pass: every block costs a few parallel regions (conversion, product, profiles), and each region wakes
    the pool's sleeping threads (they sleep rather than spin: `lineage.fingerprint.threads`), so fewer,
    larger blocks win until the float32 copy stops fitting the cache. On the 2-core machine of
    `bench/README.md` the 1B shape took 3.0 s in 2 MB blocks, 2.5 s in 4 MB, 2.3 s in 8 MB and in 16 MB
    (`bench/inprocess.py CKPT --block-mb N`, three runs each). On CUDA, 64 MB: fewer, larger host-to-device
    copies.
    """
    return (64 << 20) if device.type == "cuda" else (8 << 20)


def _padded_width(k: int, multiple: int = 16) -> int:
    """`k` probe columns rounded up to a multiple of `multiple`, the zero columns appended to the product.

    GEMM kernels work in whole register tiles of columns: on the 2-core machine of `bench/README.md`, an 8 MB
    block of a 8192-wide weight met 76 probe columns at 141 GFLOP/s and 80 at 233, 15 columns at 124 and 16
    at 138 (`bench/bench_gemm.py`), so the zero columns cost less than the ragged tile they fill. Their
    outputs are zero and never read.
    """
    return -(-k // multiple) * multiple


class ProbeEngine:
    """Runs probes on one device.

    Args:
        device: a torch device (see `lineage.probe.device.select_device`).
        seed: the global probe seed.
    """

    def __init__(self, device: torch.device, seed: int) -> None:
        self.device = device
        self.seed = seed
        self._bases: dict[tuple[int, str], torch.Tensor] = {}
        self._probe_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        # Buffers reused for every weight: a fresh buffer per weight would pay page faults on every first touch.
        self._scratch = torch.empty(0, dtype=torch.float32, device=device)  # one float32 block
        self._picked: torch.Tensor | None = None  # the sampled units' rows or columns of one weight
        self._columns_buffers: dict[tuple[int, int], torch.Tensor] = {}  # probe columns by (in, padded width)

    def put(self, tensor: torch.Tensor) -> torch.Tensor:
        """Move a CPU float32 tensor to the engine's device."""
        return tensor.to(self.device, non_blocking=False)

    def _probes(self, role: str, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        # Probes depend on the tensor kind (`q`, `down`, `embed`...) and shape, not the layer: the same
        # vectors probe every layer, so they are made once per kind and kept on the device.
        key = (role_kind(role), *shape)
        if key not in self._probe_cache:
            self._probe_cache[key] = tuple(self.put(t) for t in make_probes(role_kind(role), shape, self.seed))
        return self._probe_cache[key]

    def _columns(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The rows of `parts` (each `[k_i, in]`) as the columns of one contiguous `[in, k']` matrix, zero-padded
        to whole kernel tiles (`_padded_width`), in a buffer reused by every weight of that width and padded
        width: a mixture of experts streams thousands of small weights, and a fresh matrix for each cost
        more than its product. Valid until the next call."""
        k = sum(p.shape[0] for p in parts)
        key = (parts[0].shape[1], _padded_width(k))
        x_t = self._columns_buffers.get(key)
        if x_t is None:
            x_t = self._columns_buffers[key] = torch.zeros(key, dtype=torch.float32, device=self.device)
        elif k < key[1]:
            x_t[:, k:].zero_()  # an earlier call of the same padded width may have filled more columns
        col = 0
        for part in parts:
            x_t[:, col : col + part.shape[0]].copy_(part.T)
            col += part.shape[0]
        return x_t

    def _basis(self, rows: int, role: str) -> torch.Tensor:
        kind = role_kind(role)
        if (rows, kind) not in self._bases:
            # One basis per output size and tensor kind, shared by all layers (seeded, not random).
            gen = torch.Generator().manual_seed(probe_seed("basis:" + kind, (rows,), self.seed))
            self._bases[rows, kind] = self.put(torch.randn(rows, RESPONSE_RANK, generator=gen) / rows**0.5)
        return self._bases[rows, kind]

    def _float_blocks(self, blocks: Blocks) -> Iterator[tuple[slice, torch.Tensor]]:
        """`(rows, float32 block on the device)` for each stored block; a converted block lives in the reused
        scratch buffer and is valid until the next one is asked for."""
        for start, block in blocks():
            block = block.to(self.device)
            if block.dtype != torch.float32:
                n = block.numel()
                if self._scratch.numel() < n:
                    self._scratch = torch.empty(n, dtype=torch.float32, device=self.device)
                block = self._scratch[:n].view(block.shape).copy_(block)
            yield slice(start, start + block.shape[0]), block

    def respond(
        self,
        blocks: Blocks,
        shape: tuple[int, int],
        role: str,
        inputs: torch.Tensor | None = None,
        with_stats: bool = True,
        profiles: Profiles | None = None,
    ) -> Product:
        """Stream one 2-D weight through its probes (and the caller's inputs) in one product per row block.

        Args:
            blocks: returns an iterator of `(first_row, block)` CPU row blocks of the weight, in any float dtype
                (each is converted on the device); called a second time when `with_stats` (the adversarial
                probes depend on the whole weight).
            shape: the weight's (out, in) shape.
            role: its role key (seeds its probes).
            inputs: `[n, in]` on the device, or None: the caller's own inputs (circuit probes).
            with_stats: compute the gradient statistics (the TensorGuard recipe's tensors only).
            profiles: unit profiles to read on the way, or None.

        Returns:
            `inputs @ W.T`, the profiles and the tensor's responses (`gradient_stats` empty without stats).

        Raises:
            NonFiniteResponse: the responses came out NaN/Inf (NaN/Inf weights, or products that overflowed).
        """
        fixed, adv = self._probes(role, shape)
        # A reader of every unit rides in the main product; other profiles gather what they need on the way.
        joined = profiles.vectors if profiles is not None and profiles.side == "in" and profiles.units is None else None
        reader = ProfileReader(profiles, shape, self._picked) if profiles is not None and joined is None else None
        self._picked = reader.buffer if reader is not None else self._picked
        # The adversarial starts only matter for the statistics: other tensors skip their rows.
        parts = [t for t in (inputs, joined, fixed, adv if with_stats else None) if t is not None]
        x_t = self._columns(parts)
        y_t = torch.empty(shape[0], x_t.shape[1], dtype=torch.float32, device=self.device)  # (X W^T)^T, by block
        n, m = (0 if t is None else t.shape[0] for t in (inputs, joined))
        start = n + m + len(fixed)  # the first adversarial start's row in y (the padding follows them)
        gram = torch.zeros_like(adv) if with_stats else None
        for rows, w in self._float_blocks(blocks):
            torch.mm(w, x_t, out=y_t[rows])  # every probe of this block in one product
            if reader is not None:
                reader.block(rows, w)
            if gram is not None:
                gram.addmm_(y_t[rows, start : start + len(adv)].T, w)  # accumulates W^T W x for the adversarial starts
        if not bool(torch.isfinite(y_t.sum())) and not bool(torch.isfinite(y_t).all()):
            raise NonFiniteResponse(role)  # NaN and Inf reach the sum (an overflow of finite values does not)
        y = y_t.T
        fixed_resp = y[n + m : start]
        projected = (fixed_resp @ self._basis(shape[0], role)).float().cpu().numpy()
        stats = np.zeros(0)
        if with_stats:
            stats = self._statistics(blocks, fixed, adv, fixed_resp, y[start : start + len(adv)], gram)
        profile = y[n : n + m] if joined is not None else (reader.result() if reader is not None else None)
        return Product(y[:n] if inputs is not None else None, profile, TensorResponse(stats, projected))

    def _statistics(self, blocks: Blocks, fixed: torch.Tensor, adv: torch.Tensor, fixed_resp: torch.Tensor,
                    start_resp: torch.Tensor, gram: torch.Tensor) -> np.ndarray:  # fmt: skip
        """The gradient statistics over the fixed and the adversarial probes.

        The adversarial probes are refined on the whole weight (`W^T W x`, accumulated in the first pass), so
        their responses need a second pass over it: the weight is read again rather than kept (a whole
        float32 copy would cost more in memory and page faults than reading the ten sampled weights twice).
        """
        grad_x = gram / start_resp.norm(dim=1, keepdim=True).clamp_min(1e-30)  # input gradient of ||W x||
        adversarial = next(p for p in PERTURBATIONS if p.adversarial)
        adv_probes = adversarial.refine(adv, grad_x)
        adv_resp = torch.cat([adv_probes @ w.T for _, w in self._float_blocks(blocks)], dim=1)
        unit = lambda r: r / r.norm(dim=1, keepdim=True).clamp_min(1e-30)  # noqa: E731
        u = torch.cat([unit(fixed_resp), unit(adv_resp)]).double()
        return _gradient_moments(u, torch.cat([fixed, adv_probes]).double()).mean(0).cpu().numpy()

    def response_noise(self, role: str, shape: tuple[int, int], row_noise: torch.Tensor) -> float:
        """The expected energy (sum of squares) that independent zero-mean errors of per-row summed variance
        `row_noise` ([out]) put into the tensor's raw responses.

        A raw response is `sum_i Psi_ik sum_j E_ij x_pj`; over such errors its variance is `sum_i Psi_ik^2
        sum_j var_ij x_pj^2`. Every probe has unit RMS, so over the probes `sum_p x_pj^2` is their count on
        average: the energy is `count * sum_i (sum_k Psi_ik^2) row_noise_i`.
        """
        fixed, _ = self._probes(role, shape)
        weight = self._basis(shape[0], role).double().square().sum(1).cpu()
        return float(len(fixed) * (weight * row_noise.double()).sum())

    def tensor_response(self, weight: torch.Tensor, role: str) -> TensorResponse:
        """`respond` for a weight already in memory (one block), with statistics."""
        return self.respond(lambda: iter([(0, weight)]), tuple(weight.shape), role).response
