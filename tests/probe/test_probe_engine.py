"""The per-tensor probe engine: closed-form gradient statistics equal autograd's, probes are seeded by role."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from lineage.probe.engine import ProbeEngine, _gradient_moments
from lineage.probe.perturbations import PERTURBATIONS, make_probes


def test_gradient_moments_match_autograd_gradient():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(12, 7, generator=g, dtype=torch.float64)
    probes = torch.randn(5, 7, generator=g, dtype=torch.float64)
    expected = []
    for x in probes:
        w = weight.clone().requires_grad_(True)
        (x @ w.T).norm().backward()
        grad = w.grad.flatten().numpy()
        expected.append(
            [grad.mean(), grad.std(ddof=1), np.linalg.norm(grad), stats.skew(grad), stats.kurtosis(grad)]
        )
    resp = probes @ weight.T
    got = _gradient_moments(resp / resp.norm(dim=1, keepdim=True), probes).numpy()
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-9, atol=1e-12)


def test_gradient_norm_is_probe_norm_whatever_the_weights():
    # The published recipe's weak spot (arXiv 2506.01631): the gradient norm is ||x|| whatever W is.
    engine = ProbeEngine(torch.device("cpu"), seed=0)
    a = engine.tensor_response(torch.randn(16, 32), "layers.0.q")
    b = engine.tensor_response(torch.randn(16, 32) * 7, "layers.0.q")
    assert a.gradient_stats[2] == pytest.approx(b.gradient_stats[2], rel=1e-6)
    assert a.gradient_stats[2] == pytest.approx(32**0.5, rel=1e-6)  # unit-RMS probes of dimension 32


def test_probes_seeded_by_role_and_shape_not_order():
    a_fixed, a_adv = make_probes("q", (16, 32), seed=0)
    b_fixed, b_adv = make_probes("q", (16, 32), seed=0)
    assert torch.equal(a_fixed, b_fixed) and torch.equal(a_adv, b_adv)
    for other_role, other_shape in (("k", (16, 32)), ("q", (16, 33))):
        c_fixed, _ = make_probes(other_role, other_shape, seed=0)
        assert c_fixed.shape[1] != a_fixed.shape[1] or not torch.equal(a_fixed, c_fixed)
    assert a_fixed.shape[0] + a_adv.shape[0] == sum(p.count for p in PERTURBATIONS) == 15


def test_batched_responses_equal_one_probe_at_a_time():
    engine = ProbeEngine(torch.device("cpu"), seed=0)
    weight = torch.randn(24, 16)
    fixed, _ = make_probes("layers.0.k", tuple(weight.shape), 0)
    batched = fixed @ weight.T
    single = torch.stack([weight @ x for x in fixed])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)
    resp = engine.tensor_response(weight, "layers.0.k")
    assert resp.responses.shape == (len(fixed), 8)


def test_responses_are_linear_in_the_weights():
    engine = ProbeEngine(torch.device("cpu"), seed=0)
    w1, w2 = torch.randn(24, 16), torch.randn(24, 16)
    r1 = engine.tensor_response(w1, "layers.0.o").responses
    r2 = engine.tensor_response(w2, "layers.0.o").responses
    mix = engine.tensor_response(0.3 * w1 + 0.7 * w2, "layers.0.o").responses
    np.testing.assert_allclose(mix, 0.3 * r1 + 0.7 * r2, rtol=1e-4, atol=1e-5)


def test_a_reused_probe_matrix_never_carries_an_earlier_weights_columns():
    # The probe columns live in a buffer reused by every weight of the same width; a weight with fewer
    # columns than the one before it must see zeros (and its own probes) there, as a fresh engine does.
    g = torch.Generator().manual_seed(3)
    w = torch.randn(40, 32, generator=g)
    wide, narrow = torch.randn(30, 32, generator=g), torch.randn(27, 32, generator=g)  # 42 and 39 columns: both 48
    used = ProbeEngine(torch.device("cpu"), seed=0)
    used.respond(lambda: iter([(0, w)]), (40, 32), "layers.0.q", inputs=wide)
    again = used.respond(lambda: iter([(0, w)]), (40, 32), "layers.0.q", inputs=narrow)
    fresh_engine = ProbeEngine(torch.device("cpu"), seed=0)
    fresh = fresh_engine.respond(lambda: iter([(0, w)]), (40, 32), "layers.0.q", inputs=narrow)
    assert torch.equal(again.out, fresh.out) and torch.allclose(again.out, narrow @ w.T, atol=1e-5)
    assert np.array_equal(again.response.responses, fresh.response.responses)
    assert np.array_equal(again.response.gradient_stats, fresh.response.gradient_stats)
