"""The weight frame (`lineage.probe.frame`): which gate rows make it, read from any streaming of the gate."""

from __future__ import annotations

import torch

from lineage.probe.frame import frame_directions


def _blocks(w: torch.Tensor, size: int):  # noqa: ANN202 - an iterator of (first_row, block)
    return ((i, w[i : i + size]) for i in range(0, w.shape[0], size))


def test_the_frame_is_the_folded_rows_of_largest_norm_in_order_whatever_the_blocks():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(50, 8, generator=gen)
    gain = torch.rand(8, generator=gen) + 0.5
    folded = (w * gain).double()
    order = torch.sort(-folded.norm(dim=1), stable=True).indices[:5]
    expect = folded[order] / folded[order].norm(dim=1, keepdim=True)
    for size in (1, 7, 50):
        directions, gram = frame_directions(_blocks(w, size), 50, gain, count=5)
        assert torch.allclose(directions.double(), expect, atol=1e-6)
        mean = folded[order].norm(dim=1).mean()
        assert torch.allclose(gram.double(), folded[order] @ folded[order].T / mean**2, atol=1e-5)
    # Without the gain the rows (and so the frame) are others: the gain is what the normalised residual meets.
    assert not torch.allclose(frame_directions(_blocks(w, 7), 50, None, count=5)[0].double(), expect, atol=1e-3)


def test_ties_go_to_the_lower_row_and_a_fused_gate_up_reads_its_gate_half_only():
    w = torch.zeros(12, 4)
    w[1, 0] = w[3, 1] = w[4, 2] = 2.0  # three rows of one norm
    w[7, 3] = 9.0  # the largest row, but of the `up` half of a fused gate_up of 2 x 6 rows
    directions, _ = frame_directions(_blocks(w, 4), 6, None, count=2)
    assert torch.equal(directions, torch.eye(4)[[0, 1]])  # rows 1 and 3 (not 4); row 7 never read


def test_a_mixture_routed_in_every_layer_takes_its_frame_from_the_first_router(tmp_path):
    # No dense gate anywhere; the experts' order is free, the router's rows (one an expert) are a set.
    from lineage.fingerprint.pipeline import fingerprint_model
    from tests.arch.test_expert_evidence import _ROUTER, EXPERTS, MOE_CONFIG, OPTIONS, moe_tensors
    from tests.checkpoints import write_checkpoint

    tensors = moe_tensors(0)
    fp = fingerprint_model(write_checkpoint(tmp_path / "moe", tensors, MOE_CONFIG), OPTIONS)
    gain = tensors["model.layers.0.post_attention_layernorm.weight"].double()
    rows = tensors[_ROUTER.format(i=0)].double() * gain
    order = torch.sort(-rows.norm(dim=1), stable=True).indices
    norms = rows[order].norm(dim=1)
    expect = rows[order] @ rows[order].T / norms.mean() ** 2
    assert fp.identity["frame"].shape == (EXPERTS, EXPERTS)
    assert torch.allclose(torch.from_numpy(fp.identity["frame"].astype("float64")), expect, rtol=2e-3, atol=2e-3)
    assert fp.identity["layers.1.frame_gate"].shape[1] == EXPERTS
