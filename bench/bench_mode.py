"""Label mode downsampling by 2x2x2: ``reduce_windows(..., "mode")`` next to tinybrain.

    .venv/bin/python bench/bench_mode.py            # 4 inputs x 2 methods x 3 runs, ~2 min
    .venv/bin/python bench/bench_mode.py --repeat 5 --out bench/results/mode.md

Inputs (built once under ``--data``): uint32 random labels 0..50 shaped (256, 512, 256)
(128 MiB), realistic labels of the same shape (Voronoi blobs of ~100 cells with boundaries that
cut through windows, crossed by 1-voxel lines: most windows uniform), and both as uint64 with
2**60 added (256 MiB, values above 2**53).

Each run is a fresh ``python bench/bench_mode.py --child ...`` process: it imports and loads the
input untimed, then times only the call (``time.perf_counter``) and reports its RSS just before
the call and its peak RSS (VmHWM) after. The methods alternate run by run; the table has
the median of the runs. The first run of each method saves its output, and the parent checks
both: ours must be a mode of every window (no value more frequent) and the smallest such value;
where tinybrain differs, the voxel is classified as a tie (tinybrain picked another value of the
same, maximal count) or as not a mode.

tinybrain takes x, y, z-ordered (Fortran) arrays: it gets ``labels.T`` (a view) and its result is
transposed back, so both see the same windows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (256, 512, 256)
FACTORS = (2, 2, 2)
METHODS = ("bioimage_async", "tinybrain")
INPUTS = ("random-u32", "realistic-u32", "random-u64", "realistic-u64")
SEED = 20261201


# ---- inputs ----------------------------------------------------------------------------------


def realistic_labels(shape: tuple[int, ...], cells: int, rng: np.random.Generator) -> np.ndarray:
    """Voronoi cells computed at half resolution, upsampled by 2 and shifted by one voxel (so
    cell borders cut through 2x2x2 windows), crossed by 1-voxel lines along the three axes."""
    from scipy import ndimage

    low = tuple((n + 1) // 2 for n in shape)
    background = np.ones(low, dtype=bool)
    background[tuple(rng.integers(0, n, cells) for n in low)] = False
    _, nearest = ndimage.distance_transform_edt(background, return_indices=True)
    ids = rng.permutation(np.prod(low))[np.ravel_multi_index(tuple(nearest), low)] + 1
    del nearest
    labels = ids.astype(np.uint32)
    for axis in range(3):
        labels = labels.repeat(2, axis=axis)
    labels = np.roll(labels, 1, axis=(0, 1, 2))[tuple(slice(0, n) for n in shape)]
    labels = np.ascontiguousarray(labels)
    for line in range(300):
        axis = line % 3
        index: list[int | slice] = [int(rng.integers(0, n)) for n in shape]
        index[axis] = slice(None)
        labels[tuple(index)] = np.uint32(10_000_000 + line)
    return labels


def build_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.npy" for name in INPUTS}
    if all(p.exists() for p in paths.values()):
        return paths
    rng = np.random.default_rng(SEED)
    random32 = rng.integers(0, 51, size=SHAPE, dtype=np.uint32)
    np.save(paths["random-u32"], random32)
    np.save(paths["random-u64"], random32.astype(np.uint64) + np.uint64(2**60))
    del random32
    realistic = realistic_labels(SHAPE, cells=100, rng=rng)
    np.save(paths["realistic-u32"], realistic)
    np.save(paths["realistic-u64"], realistic.astype(np.uint64) + np.uint64(2**60))
    return paths


# ---- one run in a fresh process --------------------------------------------------------------


def peak_rss() -> int:
    """VmHWM: this process's peak RSS. Unlike ``ru_maxrss`` (which a child inherits from the
    parent it was forked from), it starts afresh at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(method: str, input_path: str, output_path: str) -> None:
    import psutil

    if method == "bioimage_async":
        sys.path.insert(0, str(ROOT))
        from bioimage_async.kernels.reductions import reduce_windows

        def run(labels: np.ndarray) -> np.ndarray:
            return reduce_windows(labels, FACTORS, "mode")
    else:
        import tinybrain

        def run(labels: np.ndarray) -> np.ndarray:
            return tinybrain.downsample_segmentation(labels.T, FACTORS)[0].T

    labels = np.load(input_path)
    rss_before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    result = run(labels)
    seconds = time.perf_counter() - start
    peak = peak_rss()
    if output_path:
        np.save(output_path, np.ascontiguousarray(result))
    del result
    start = time.perf_counter()
    run(labels)  # the same call again in a warm process, as for the 2nd block of a worker
    again = time.perf_counter() - start
    report = {"seconds": seconds, "again": again, "rss_before": rss_before, "peak_rss": peak}
    print(json.dumps(report))


def wait_for_quiet(busy_cores: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until other processes use fewer than ``busy_cores`` cores over
    half a second; returns the cores they used just before the run (the machine is shared)."""
    import psutil

    deadline = time.monotonic() + max_wait
    while True:
        used = psutil.cpu_percent(interval=0.5) / 100 * (psutil.cpu_count() or 1)
        if used < busy_cores or time.monotonic() > deadline:
            return used
        time.sleep(0.5)


def run_child(
    method: str, input_path: Path, output_path: Path | None, quiet: tuple[float, float]
) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", method, str(input_path), str(output_path or "")]
    busy = wait_for_quiet(*quiet)
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load": busy}


# ---- checking the outputs --------------------------------------------------------------------


def window_columns(labels: np.ndarray) -> np.ndarray:
    """(8, windows) array of every 2x2x2 window's voxels (the shape is a multiple of 2)."""
    z, y, x = (n // 2 for n in labels.shape)
    split = labels.reshape(z, 2, y, 2, x, 2).transpose(1, 3, 5, 0, 2, 4)
    return np.ascontiguousarray(split).reshape(8, -1)


def check(labels: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> dict[str, int]:
    """Independent of both implementations: counts of each window's values by brute force."""
    columns = window_columns(labels)
    counts = np.zeros(columns.shape, np.uint8)
    for i in range(8):
        counts += columns == columns[i]
    top = counts.max(axis=0)
    ours, theirs = ours.reshape(-1), theirs.reshape(-1)
    ours_count = (columns == ours).sum(axis=0)
    theirs_count = (columns == theirs).sum(axis=0)
    smaller_mode = ((counts == top) & (columns < ours)).any(axis=0)
    differ = ours != theirs
    return {
        "windows": int(ours.size),
        "ours_not_a_mode": int((ours_count != top).sum()),
        "ours_not_smallest_mode": int(smaller_mode.sum()),
        "differ": int(differ.sum()),
        "differ_tie": int((differ & (theirs_count == top)).sum()),
        "differ_tinybrain_not_a_mode": int((differ & (theirs_count != top)).sum()),
        "tied_windows": int(((counts == top).sum(axis=0) > top).sum()),
    }


# ---- report ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("/tmp/bioimage-async-bench/mode"))
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--quiet", type=float, default=0.3, help="max busy cores before a run")
    parser.add_argument("--quiet-wait", type=float, default=60, help="max seconds to wait")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "INPUT", "OUTPUT"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    paths = build_inputs(args.data)
    rows = []
    for name in INPUTS:
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
        outputs = {m: args.data / f"{name}.{m}.out.npy" for m in METHODS}
        for repeat in range(args.repeat):
            order = METHODS if repeat % 2 == 0 else METHODS[::-1]
            for method in order:
                output = outputs[method] if repeat == 0 else None  # the first run saves
                quiet = (args.quiet, args.quiet_wait)
                runs[method].append(run_child(method, paths[name], output, quiet))
        labels = np.load(paths[name])
        ours, theirs = np.load(outputs["bioimage_async"]), np.load(outputs["tinybrain"])
        verdict = check(labels, ours, theirs)
        for method in METHODS:
            seconds = [r["seconds"] for r in runs[method]]
            again = [r["again"] for r in runs[method]]
            rows.append(
                {
                    "input": name,
                    "method": method,
                    "median_s": statistics.median(seconds),
                    "runs_s": seconds,
                    "again_s": statistics.median(again),
                    "peak_rss_mib": max(r["peak_rss"] for r in runs[method]) / 2**20,
                    "call_rss_mib": max(r["peak_rss"] - r["rss_before"] for r in runs[method])
                    / 2**20,
                    "input_mib": labels.nbytes / 2**20,
                    "load": max(r["load"] for r in runs[method]),
                    **({"check": verdict} if method == "bioimage_async" else {}),
                }
            )
        print(f"{name}: done", file=sys.stderr)
    report = render(rows, args.repeat)
    print(report)
    if args.out:
        args.out.write_text(report)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))


def render(rows: list[dict], repeat: int) -> str:
    lines = [
        f"2x2x2 mode of {SHAPE} labels, median of {repeat} fresh-process runs (call only).",
        "",
        "| input | method | median s | runs s | vs tinybrain | 2nd call s | peak RSS MiB "
        "| call RSS MiB | other load |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    by_input = {(r["input"], r["method"]): r for r in rows}
    for r in rows:
        base = by_input[(r["input"], "tinybrain")]["median_s"]
        runs = " ".join(f"{s:.3f}" for s in r["runs_s"])
        lines.append(
            f"| {r['input']} ({r['input_mib']:.0f} MiB) | {r['method']} | {r['median_s']:.3f} "
            f"| {runs} | {r['median_s'] / base:.2f}x | {r['again_s']:.3f} "
            f"| {r['peak_rss_mib']:.0f} | {r['call_rss_mib']:.0f} | {r['load']:.1f} |"
        )
    lines += [
        "",
        "median s: the first call in a fresh process (imports and input load untimed). 2nd call s: "
        "median of the same call repeated in that process (warm allocator: no page faults for "
        "temporaries). peak RSS: VmHWM of the child, input included. call RSS: peak RSS minus the "
        "RSS just before the call (output and temporaries). other load: cores used by other "
        "processes just before a run (max over the runs; the harness waits up to --quiet-wait s "
        "for fewer than --quiet).",
        "",
        "| input | windows | tied windows | ours not a mode | ours not the smallest mode "
        "| differ | differ: tie | differ: tinybrain not a mode |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "check" in r:
            c = r["check"]
            lines.append(
                f"| {r['input']} | {c['windows']} | {c['tied_windows']} | {c['ours_not_a_mode']} "
                f"| {c['ours_not_smallest_mode']} | {c['differ']} | {c['differ_tie']} "
                f"| {c['differ_tinybrain_not_a_mode']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
