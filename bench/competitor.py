"""A competing CPU job for the benches: a fixed 2-thread matrix product loop, until it is told to stop.

It stands for whatever else a shared machine runs (another user's training job): torch with 2 threads and
the runtime's own settings, none of lineage's. It prints `ready` once its first product is done, so a row is
never measured before it competes, and on SIGTERM prints its own speed (GFLOP/s over its life), so a bench
can show that it really took its share of the machine.

Usage:
    python bench/competitor.py [--threads 2] [--size 1024]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--size", type=int, default=1024, help="the square matrices' size (default: 1024)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    a, b = torch.randn(args.size, args.size), torch.randn(args.size, args.size)
    out = torch.empty(args.size, args.size)
    done, stop = 0, []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    torch.mm(a, b, out=out)
    print("ready", flush=True)
    t0 = time.perf_counter()
    while not stop:
        torch.mm(a, b, out=out)
        done += 1
    seconds = time.perf_counter() - t0
    print(f"{2 * args.size**3 * done / seconds / 1e9:.1f} GFLOP/s over {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
