"""What the weight frame costs a fingerprint: in-process seconds with and without it, alternating in one process.

The frame (`lineage.probe.frame`) reads one gate a second time (the first dense layer's, before the layers
stream) and adds `FRAME_SIZE` rows to the FFN units' profiles (inside the main product of an FFN gate wider
than the units kept). Both runs share the process, the page cache and the machine's load of the moment; the
order alternates and medians are printed, with the bytes of the extra read against the checkpoint's.

    python bench/bench_frame.py [--shape 1b|7b|olmoe] [--ckpt FOLDER] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from harness import checkpoint_files, ensure_checkpoint, machine_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1b", help="benchmark checkpoint shape (make_checkpoint.py)")
    parser.add_argument("--ckpt", type=Path, default=None, help="measure this checkpoint folder instead")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import lineage.fingerprint.pipeline as pipeline
    from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
    from lineage.io.open import open_checkpoint
    from lineage.probe.frame import frame_source

    ckpt = ensure_checkpoint(args.shape, args.ckpt)
    options = FingerprintOptions(device="cpu")
    with_frame = pipeline._frame
    fingerprint_model(ckpt, options)  # warm the page cache and the imports
    times: dict[str, list[float]] = {"with the frame": [], "without": []}
    for k in range(args.repeat):
        for label in (("with the frame", "without") if k % 2 == 0 else ("without", "with the frame")):
            pipeline._frame = with_frame if label == "with the frame" else (lambda run: (None, None))
            start = time.perf_counter()
            fingerprint_model(ckpt, options)
            times[label].append(time.perf_counter() - start)
    pipeline._frame = with_frame
    total = sum(f.stat().st_size for f in checkpoint_files(ckpt))
    with open_checkpoint(ckpt) as stored:
        from lineage.arch import resolve_model

        source = frame_source(list(resolve_model(stored).layers))
        extra = 0 if source is None else stored.info(source[1]).end - stored.info(source[1]).start
    print(machine_line())
    print(f"{ckpt}: {total / 1e9:.2f} GB; the frame reads {extra / 1e6:.1f} MB more ({extra / total:.2%})")
    for label, values in times.items():
        print(f"  {label:16s} median {statistics.median(values):7.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    ratio = statistics.median(times["with the frame"]) / statistics.median(times["without"])
    print(f"  with / without: {ratio:.3f}")


if __name__ == "__main__":
    main()
