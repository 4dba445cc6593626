"""Each merge method against its definition, on small tensors computed by hand or element by element."""

from __future__ import annotations

import math

import pytest
import torch

from lineage.catalog import merge


def test_linear_is_normalised_weighted_mean() -> None:
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0, -2.0])
    assert torch.allclose(merge.linear([a, b], [1.0, 3.0]), (1 * a + 3 * b) / 4)


def test_task_arithmetic_adds_weighted_task_vectors() -> None:
    base = torch.tensor([1.0, 1.0, 1.0])
    x1, x2 = torch.tensor([2.0, 1.0, 0.0]), torch.tensor([1.0, 3.0, 1.0])
    out = merge.task_arithmetic(base, [x1, x2], [0.5, 2.0])
    assert torch.allclose(out, base + 0.5 * (x1 - base) + 2.0 * (x2 - base))


def test_trim_keeps_largest_magnitudes() -> None:
    d = torch.tensor([0.1, -3.0, 0.5, 2.0])
    assert torch.equal(merge.trim_magnitude(d, 0.5), torch.tensor([0.0, -3.0, 0.0, 2.0]))


def test_ties_matches_trim_elect_disjoint_mean() -> None:
    base = torch.zeros(4)
    x1 = torch.tensor([1.0, -2.0, 0.1, 4.0])  # trimmed to [0, -2, 0, 4]
    x2 = torch.tensor([-3.0, 1.0, 0.2, 2.0])  # trimmed to [-3, 0, 0, 2]
    w = [1.0, 0.5]
    out = merge.ties(base, [x1, x2], w, density=0.5)
    # weighted trimmed deltas: [0,-2,0,4] and [-1.5,0,0,1]; elected signs from their sum: [-,-,+,+]
    # entry 0: only x2 agrees -> -1.5/0.5; entry 1: only x1 -> -2/1; entry 2: zeros count as no vote
    # (sign 0 != +1) -> 0; entry 3: both agree -> (4 + 1)/(1 + 0.5).
    expected = torch.tensor([-3.0, -2.0, 0.0, 5.0 / 1.5])
    assert torch.allclose(out, expected)


def test_ties_elementwise_against_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=gen)
    xs = [base + torch.randn(6, 5, generator=gen) for _ in range(3)]
    w, density = [0.5, 0.3, 0.2], 0.4
    out = merge.ties(base, xs, w, density=density)
    trimmed = [merge.trim_magnitude(x - base, density) for x in xs]
    for idx in [(i, j) for i in range(6) for j in range(5)]:
        vals = [wi * t[idx].item() for wi, t in zip(w, trimmed, strict=True)]
        sign = 1.0 if sum(vals) >= 0 else -1.0
        agree = [(v, wi) for v, wi in zip(vals, w, strict=True) if math.copysign(1, v) == sign and v != 0]
        want = sum(v for v, _ in agree) / sum(wi for _, wi in agree) if agree else 0.0
        assert out[idx].item() == pytest.approx(base[idx].item() + want, abs=1e-5)


def test_dare_drops_and_rescales() -> None:
    delta = torch.ones(20_000)
    out = merge.drop_and_rescale(delta, 0.25, torch.Generator().manual_seed(1))
    kept = out != 0
    assert torch.all(out[kept] == 4.0)  # survivors are divided by the density
    assert kept.float().mean().item() == pytest.approx(0.25, abs=0.02)
    assert out.mean().item() == pytest.approx(1.0, abs=0.1)  # unbiased in expectation


def test_dare_linear_and_ties_use_the_same_masks_as_their_definition() -> None:
    gen_data = torch.Generator().manual_seed(3)
    base = torch.randn(50, generator=gen_data)
    xs = [base + torch.randn(50, generator=gen_data) for _ in range(2)]
    w = [0.6, 0.4]
    g = torch.Generator().manual_seed(9)
    masked = [merge.drop_and_rescale(x - base, 0.5, g) for x in xs]
    lin = merge.dare_linear(base, xs, w, density=0.5, generator=torch.Generator().manual_seed(9))
    assert torch.allclose(lin, base + w[0] * masked[0] + w[1] * masked[1])
    tie = merge.dare_ties(base, xs, w, density=0.5, generator=torch.Generator().manual_seed(9))
    weighted = torch.stack([w[0] * masked[0], w[1] * masked[1]])
    sign = torch.where(weighted.sum(0) >= 0, 1.0, -1.0)
    agree = torch.sign(weighted) == sign
    assert torch.allclose(tie, base + (weighted * agree).sum(0))  # DARE-TIES sums, no normalisation


def test_slerp_on_orthogonal_vectors_follows_the_arc() -> None:
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    out = merge.slerp(0.5, a, b)
    # theta = pi/2: coefficients sin(pi/4)/1 on each unnormalised input
    s = math.sin(math.pi / 4)
    assert torch.allclose(out, s * a + s * b)
    assert torch.allclose(merge.slerp(0.0, a, b), a)
    assert torch.allclose(merge.slerp(1.0, a, b), b)


def test_slerp_falls_back_to_lerp_when_colinear() -> None:
    a = torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(merge.slerp(0.3, a, 2 * a), 0.7 * a + 0.3 * 2 * a)


def test_metric_weights_are_a_softmax_of_negative_losses() -> None:
    w = merge.metric_weights([2.0, 2.1, 2.5], temperature=0.1)
    raw = [math.exp(-x / 0.1) for x in (2.0, 2.1, 2.5)]
    assert w == pytest.approx([r / sum(raw) for r in raw])
    assert w[0] > w[1] > w[2]


def test_merge_state_dicts_applies_per_tensor_and_checks_shapes() -> None:
    sd_a = {"x": torch.ones(2, 2), "y": torch.zeros(3)}
    sd_b = {"x": 3 * torch.ones(2, 2), "y": torch.ones(3)}
    out = merge.merge_state_dicts("linear", [sd_a, sd_b], [0.5, 0.5])
    assert torch.allclose(out["x"], 2 * torch.ones(2, 2)) and torch.allclose(out["y"], 0.5 * torch.ones(3))
    with pytest.raises(ValueError, match="base"):
        merge.merge_state_dicts("ties", [sd_a, sd_b], [0.5, 0.5])
    with pytest.raises(ValueError, match="shapes"):
        merge.merge_state_dicts("linear", [sd_a, {"x": torch.ones(3, 2), "y": torch.ones(3)}], [0.5, 0.5])
    dare1 = merge.merge_state_dicts("dare_linear", [sd_a, sd_b], [0.5, 0.5], base=sd_a, density=0.5, seed=1)
    dare2 = merge.merge_state_dicts("dare_linear", [sd_a, sd_b], [0.5, 0.5], base=sd_a, density=0.5, seed=1)
    assert all(torch.equal(dare1[k], dare2[k]) for k in dare1)  # seeded per tensor: reproducible
