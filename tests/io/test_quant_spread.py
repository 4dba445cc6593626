"""`lineage.io.quant.spread`: serial kernels cut over threads, every slice done, errors raised once all end."""

from __future__ import annotations

import threading

import pytest
import torch

from lineage.io.quant import spread


def test_bounds_cover_the_work_in_whole_multiples() -> None:
    assert spread.bounds(10, 3) == [(0, 4), (4, 8), (8, 10)]
    assert spread.bounds(12, 2, multiple=4) == [(0, 8), (8, 12)]
    assert spread.bounds(5, 8) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert spread.bounds(7, 1) == [(0, 7)]
    assert spread.bounds(0, 2) == []


def test_ways_follow_torchs_threads_and_the_least_slice() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert spread.ways(1 << 20) == 2
        assert spread.ways(100_000) == 1  # two slices would hold under 65536 items each
        torch.set_num_threads(1)
        assert spread.ways(1 << 30) == 1
    finally:
        torch.set_num_threads(threads)


def test_spread_runs_every_call_the_first_on_this_thread() -> None:
    where: list[tuple[int, int]] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        with lock:
            where.append((i, threading.get_ident()))

    spread.spread([lambda i=i: call(i) for i in range(3)])
    assert sorted(i for i, _ in where) == [0, 1, 2]
    assert dict(where)[0] == threading.get_ident()
    assert all(ident != threading.get_ident() for i, ident in where if i)


def test_a_helpers_error_is_raised_after_every_call_ended() -> None:
    done = threading.Event()

    def slow() -> None:
        done.wait(5)

    def fail() -> None:
        raise ValueError("helper failed")

    with pytest.raises(ValueError, match="helper failed"):
        spread.spread([lambda: done.set(), fail, slow])
    assert done.is_set()


def test_this_threads_error_is_raised_first_once_the_helpers_ended() -> None:
    ended = threading.Event()

    def helper() -> None:
        ended.wait(0.2)
        ended.set()
        raise RuntimeError("helper failed too")

    def first() -> None:
        raise ValueError("this thread failed")

    with pytest.raises(ValueError, match="this thread failed"):
        spread.spread([first, helper])
    assert ended.is_set()
