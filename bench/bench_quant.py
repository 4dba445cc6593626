"""Fingerprinting a GPTQ 4-bit copy of the 1B shape next to fingerprinting its bf16 original.

A quantised file is dequantised block by block while it streams (`lineage.io.quant`), so the bytes read stay the
packed ones: 4 bits a weight instead of 16. The goal: the GPTQ copy fingerprints in less wall time than the bf16
checkpoint it was made from, with peak RSS <= 600 MB.

The bf16 checkpoint is `make_checkpoint.py`'s Llama-3.2-1B shape (written once); its GPTQ copy is written once
next to it, under `bench/out/` (git-ignored): every decoder projection quantised to 4 bits in groups of 128
inputs (symmetric, `desc_act` off, the `gptq` v1 format: AutoGPTQ's and GPTQModel's defaults), the tied
embedding left in bf16 as GPTQ exports leave it, one shard per shard of the original. Each row is `lineage
fingerprint CKPT --no-cache --quiet --device cpu` in its own child process (as a user runs it), after both
folders were read once to warm the page cache; peak RSS is the child's own (`harness.measure`). With `--repeat N`
the rows run interleaved N times and medians are reported.

With `--dequant` it measures the reader alone, in process, on one thread: the CPU seconds of reading every decoder
matrix of each folder as float32 blocks (bf16: read and convert; GPTQ: read and dequantise), interleaved
`--repeat` times, medians: the cost the quantised format adds or saves, without the probes' products.

With `--steps` it times each step of dequantising one matrix of the GPTQ copy (layer 0's `up_proj`, 2048 inputs)
alone, on one thread, best of `--repeat` (at least 5): per weight, reading the parts and making the words
row-major; per 8 MB chunk, widening the bytes to indices, the gather of `(q - z)` pairs, the product by the
scales, and the bf16 to float32 conversion of as many values, what a bf16 checkpoint pays instead. The
transpose and the gather are serial kernels in torch (one thread whatever the pool).

With `--cold` the page cache is dropped (`/proc/sys/vm/drop_caches`, root only) before every row, so each row
reads its bytes from the disk, as a scan of freshly stored or never-cached checkpoints does (a 70B does not fit
any page cache): the warm rows measure what dequantising costs in CPU, the cold ones what reading 4 bits a
weight instead of 16 saves.

With `--evict` only each checkpoint's own files are evicted from the page cache before its row (`posix_fadvise`,
no root): the row reads its checkpoint from the disk while Python, torch and lineage stay cached, as in a bulk scan
(one process reading checkpoint after checkpoint, each once) and as for any checkpoint larger than the page cache.
The fingerprint reads each layer ahead while it probes the one before (`lineage.io.blocks.read_ahead`).

Usage:
    python bench/bench_quant.py [--repeat 1] [--cold | --evict | --dequant | --steps]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from harness import SHAPE_FOLDERS, checkpoint_files, ensure_checkpoint, machine_line, measure, read_command

GROUP = 128
GOAL_RSS_MB = 600.0
QUANT_CONFIG = {"quant_method": "gptq", "bits": 4, "group_size": GROUP, "desc_act": False, "sym": True,
                "checkpoint_format": "gptq"}  # fmt: skip
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def gptq_pack(w: torch.Tensor) -> dict[str, torch.Tensor]:
    """Symmetric 4-bit GPTQ of `w` [out, in] (round to nearest, no Hessian: the layout is what matters here)."""
    out, cols = w.shape
    groups = w.float().T.reshape(cols // GROUP, GROUP, out)
    scales = (groups.abs().amax(1) / 7.5).clamp(min=1e-8).half()  # [groups, out]
    q = torch.round(groups / scales.float().unsqueeze(1) + 8).clamp(0, 15).to(torch.int64).reshape(cols, out)
    words = np.zeros((cols // 8, out), dtype=np.uint32)
    qn = q.numpy().astype(np.uint32).reshape(cols // 8, 8, out)
    for j in range(8):  # input 8r + j in bits 4j .. 4j+3 of word r
        words |= qn[:, j] << np.uint32(4 * j)
    zeros = np.zeros((cols // GROUP, out // 8), dtype=np.uint32)
    for j in range(8):  # v1 stores the zero point minus one: 7
        zeros |= np.uint32(7) << np.uint32(4 * j)
    return {"qweight": torch.from_numpy(words.view(np.int32)), "qzeros": torch.from_numpy(zeros.view(np.int32)),
            "scales": scales, "g_idx": (torch.arange(cols) // GROUP).int()}  # fmt: skip


def ensure_gptq(source: Path, folder: Path) -> Path:
    """The GPTQ copy of `source`, written shard by shard when absent (one source shard in memory at once)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    done = folder / "config.json"
    if done.is_file():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weight_map: dict[str, str] = {}
    for shard in checkpoint_files(source):
        out: dict[str, torch.Tensor] = {}
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open has no iterator
                module = name.removesuffix(".weight")
                if name.endswith(".weight") and module.rsplit(".", 1)[-1] in LINEAR:
                    out |= {f"{module}.{k}": v for k, v in gptq_pack(f.get_tensor(name)).items()}
                else:
                    out[name] = f.get_tensor(name)
        save_file(out, str(tmp / shard.name), metadata={"format": "pt"})
        weight_map |= {n: shard.name for n in out}
        print(f"wrote {shard.name}", file=sys.stderr)
    (tmp / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config = json.loads((source / "config.json").read_text()) | {"quantization_config": QUANT_CONFIG}
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    tmp.rename(folder)
    return folder


def drop_page_cache() -> None:
    """Write dirty pages back, then drop the page cache (Linux, root): the next read comes from the disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        sys.exit(f"bench_quant: --cold needs root on Linux to drop the page cache: {exc}")


def evict(folder: Path) -> None:
    """Evict the checkpoint's own files from the page cache (`posix_fadvise(DONTNEED)`, no root needed): its next
    read comes from the disk, while Python, torch and lineage stay cached, as in a bulk scan, where one process reads
    checkpoint after checkpoint, each once, and a 70B fits no page cache."""
    os.sync()  # only clean pages can be dropped
    for path in checkpoint_files(folder):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def dequant_rows(folders: dict[str, Path], repeat: int) -> None:
    """`--dequant`: CPU seconds of reading every decoder matrix as float32 blocks, per folder (module docstring)."""
    import time

    from lineage.io import open_checkpoint

    torch.set_num_threads(1)
    times: dict[str, list[float]] = {k: [] for k in folders}
    for _ in range(max(1, repeat)):
        for key, folder in folders.items():
            start, values = time.process_time(), 0
            with open_checkpoint(folder) as ckpt:
                for name in ckpt.names():
                    if ".layers." in name and name.endswith("proj.weight"):
                        for _, block in ckpt.row_blocks(name, 2 << 20, dtype=None, check_finite=False):
                            values += block.float().numel()
            times[key].append(time.process_time() - start)
    print(machine_line())
    print(f"reading every decoder matrix as float32 blocks, in process, one thread; {repeat} interleaved runs, medians")
    for key, label in (("bf16", "1B shape, bf16"), ("gptq", "1B shape, GPTQ 4-bit (group 128)")):
        every = ", ".join(f"{t:.2f}" for t in times[key])
        print(f"{label:<40} {statistics.median(times[key]):>8.2f} CPU s   ({every})")
    print(f"gptq / bf16 CPU time: {statistics.median(times['gptq']) / statistics.median(times['bf16']):.2f}x "
          f"({values / 1e9:.2f}G values)")  # fmt: skip


def step_rows(folder: Path, repeat: int) -> None:
    """`--steps`: each step of dequantising one decoder matrix of the GPTQ copy, timed alone (module docstring)."""
    import time

    from lineage.io import open_checkpoint

    def timed(call) -> tuple[float, float]:  # noqa: ANN001 - best wall and CPU seconds of `repeat` calls
        call()
        best = (float("inf"), float("inf"))
        for _ in range(max(1, repeat)):
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            best = min(best[0], time.perf_counter() - wall), min(best[1], time.process_time() - cpu)
        return best

    torch.set_num_threads(1)  # as `--dequant`: this process has no thread policy, and one thread is what it costs
    name = "model.layers.0.mlp.up_proj.weight"
    with open_checkpoint(folder) as ckpt:
        layout = ckpt._quant  # the reader's quantised layout: the objects the engine's reads go through
        fmt, weight = layout.weights[name]
        out, cols = weight.shape
        parts: dict = {}
        state = layout._load(fmt, weight, ckpt._read_stored)
        words, _, scales, _, size, scratch = state
        rows = (8 << 20) // (4 * cols)  # one chunk of the reader (`registry.CHUNK_BYTES`)
        index = torch.empty(rows, cols // 2, dtype=torch.int32)
        chunk = torch.empty(rows, cols)
        row_major = torch.empty(words.shape, dtype=torch.int32)
        bf16 = torch.randn(rows, cols).bfloat16()
        per_weight = {
            "read the parts (words mapped)": lambda: parts.update(
                {r: ckpt._read_stored(n, mapped=r in fmt.mapped) for r, n in weight.parts.items()}),
            "words made row-major (one thread)": lambda: row_major.copy_(parts["qweight"].T),
            "load (the above, zero points, scales)": lambda: fmt.release(
                layout._load(fmt, weight, ckpt._read_stored), layout.stored),
        }  # fmt: skip
        per_chunk = {
            "widen the bytes to int32 indices": lambda: index.copy_(words[:rows].view(torch.uint8)),
            "gather the (q - z) pairs (one thread)": lambda: torch.index_select(
                scratch["page"], 0, index.view(-1), out=chunk.view(-1).view(torch.int64)),
            "product by the scales": lambda: chunk.view(rows, -1, size).mul_(scales[:rows].unsqueeze(-1)),
            "rows() of the chunk (the three above)": lambda: fmt.rows(weight, state, 0, rows, chunk),
            "bf16 -> float32 of as many values": lambda: chunk.copy_(bf16),
        }  # fmt: skip
        print(machine_line())
        print(f"{name} [{out}, {cols}], GPTQ 4-bit; torch threads: {torch.get_num_threads()}; best of {repeat}")
        print(f"{'step':<42} {'wall ms':>8} {'CPU ms':>8} {'wall ms / M values':>19}")
        for label, steps, values in (("per weight", per_weight, out * cols), ("per chunk", per_chunk, rows * cols)):
            print(f"-- {label} ({values / 1e6:.2f}M values)")
            for step, call in steps.items():
                wall, cpu = timed(call)
                print(f"{step:<42} {wall * 1e3:>8.2f} {cpu * 1e3:>8.2f} {wall * 1e3 / (values / 1e6):>19.3f}")
        fmt.release(state, layout.stored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs of each row (medians reported)")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before every row (root)")
    parser.add_argument("--evict", action="store_true",
                        help="evict each checkpoint's files (only) from the page cache before its row")
    parser.add_argument("--lineage", default=None, help="the lineage executable (default: the one on PATH)")
    parser.add_argument("--dequant", action="store_true", help="the reader alone, in process, one thread (CPU s)")
    parser.add_argument("--steps", action="store_true", help="each step of dequantising one matrix, timed alone")
    args = parser.parse_args()
    exe = args.lineage or shutil.which("lineage") or str(Path(sys.executable).parent / "lineage")
    source = ensure_checkpoint("1b")
    quant = ensure_gptq(source, SHAPE_FOLDERS["1b"].with_name("llama-3.2-1b-shape-gptq4"))
    folders = {"bf16": source, "gptq": quant}
    if args.dequant:
        dequant_rows(folders, args.repeat)
        return
    if args.steps:
        step_rows(quant, max(args.repeat, 5))
        return
    sizes = {k: sum(p.stat().st_size for p in checkpoint_files(f)) / 1e9 for k, f in folders.items()}
    if args.cold and args.evict:
        sys.exit("bench_quant: --cold and --evict are two ways of reading from the disk: choose one")
    if not (args.cold or args.evict):
        for folder in (source, quant):
            measure(read_command(checkpoint_files(folder)))  # warm the page cache for both rows alike
    runs: dict[str, list] = {"bf16": [], "gptq": []}
    out = Path(tempfile.mkdtemp(prefix="lineage-bench-quant-"))
    try:
        for i in range(max(1, args.repeat)):
            for key, folder in (("bf16", source), ("gptq", quant)):
                cmd = [exe, "fingerprint", str(folder), "--out", str(out / f"{key}-{i}"), "--device", "cpu",
                       "--no-cache", "--quiet"]  # fmt: skip
                if args.cold:
                    drop_page_cache()
                elif args.evict:
                    evict(folder)
                run = measure(cmd)
                if run.returncode:
                    sys.exit(f"bench_quant: fingerprinting {folder} failed:\n{run.stderr[-2000:]}")
                runs[key].append(run)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(machine_line())
    cache = ("page cache dropped before every row (cold)" if args.cold else
             "each checkpoint's files evicted from the page cache before its row" if args.evict else "warm page cache")
    print(f"runs: {args.repeat} interleaved, medians; lineage fingerprint --device cpu --no-cache, end to end; "
          f"{cache}")  # fmt: skip
    print(f"{'row':<40} {'GB':>6} {'wall s':>8} {'peak RSS MB':>12}   (every run: wall s)")
    med = {}
    for key, label in (("bf16", "1B shape, bf16"), ("gptq", "1B shape, GPTQ 4-bit (group 128)")):
        wall = statistics.median(r.wall_s for r in runs[key])
        rss = statistics.median(r.peak_rss_mb for r in runs[key])
        med[key] = (wall, rss)
        every = ", ".join(f"{r.wall_s:.2f}" for r in runs[key])
        print(f"{label:<40} {sizes[key]:>6.2f} {wall:>8.2f} {rss:>12.0f}   ({every})")
    ratio = med["gptq"][0] / med["bf16"][0]
    ok = ratio < 1 and med["gptq"][1] <= GOAL_RSS_MB
    print(f"gptq / bf16 wall time: {ratio:.2f}x; goal: < 1x and peak RSS <= {GOAL_RSS_MB:.0f} MB: "
          f"{'met' if ok else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
