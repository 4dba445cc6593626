"""What `--verify-weights` costs: hashing the weight bytes, against reading them.

What is measured, and why: with `--verify-weights` the cache is keyed by the sha256 of every weight file
(`lineage.io.digest`), so every lookup reads the model in full. The goal is a hash at disk speed. The bench
prints (1) each hashlib digest's speed on bytes in memory (which one is fastest on this machine: sha256 was
chosen, also the digest the hub records for every LFS file), (2) reading a file from a warm page cache, and
`files_sha256` on the same file (one thread per file), in GB/s, (3) with `--checkpoint DIR`, the cache key of
that model in both modes (`model_identity`: headers, sizes and times, against the sha256 of every byte).

Usage:
    python bench/bench_digest.py [--mb 512] [--repeat 3] [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path


def _best(fn, repeat: int) -> float:  # noqa: ANN001 - a callable
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _read(path: Path) -> None:
    buf = bytearray(8 << 20)
    with open(path, "rb", buffering=0) as fh:
        while fh.readinto(buf):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512, help="size of the data hashed (MB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measure (the best is printed)")
    parser.add_argument("--checkpoint", type=Path, help="a model to key in both modes")
    args = parser.parse_args()
    from lineage.io.digest import files_sha256

    size = args.mb << 20
    data = os.urandom(size)
    print(f"{os.cpu_count()} CPUs; {args.mb} MB; best of {args.repeat}")
    for name in ("sha256", "blake2b", "blake2s", "sha1", "md5", "sha512"):
        view = memoryview(data)

        def digest(name: str = name) -> None:
            h = hashlib.new(name)
            for i in range(0, size, 8 << 20):
                h.update(view[i : i + (8 << 20)])

        print(f"  {name:<8} in memory   {size / _best(digest, args.repeat) / 1e9:5.2f} GB/s")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.bin"
        path.write_bytes(data)
        _read(path)  # into the page cache
        read_s = _best(lambda: _read(path), args.repeat)
        hash_s = _best(lambda: files_sha256([path]), args.repeat)
        print(f"  read (warm page cache)      {size / read_s / 1e9:5.2f} GB/s")
        print(f"  files_sha256 (read + hash)  {size / hash_s / 1e9:5.2f} GB/s  ({hash_s / read_s:.1f}x the read)")
    if args.checkpoint is not None:
        from lineage.fingerprint.pipeline import FingerprintOptions, model_identity

        options = FingerprintOptions(device="cpu")
        for verify in (False, True):
            seconds = _best(lambda v=verify: model_identity(args.checkpoint, options, verify_weights=v), args.repeat)
            print(f"  cache key of {args.checkpoint.name}, verify_weights={verify}: {seconds:.3f} s")


if __name__ == "__main__":
    main()
