#!/usr/bin/env python
"""Side-by-side benchmark of bioimage_async against tensorstore, dask, zarr-python, bioimage-py.

    .venv/bin/python bench/run_benchmarks.py --size small            # quick check (~1-2 min)
    .venv/bin/python bench/run_benchmarks.py --size full --repeat 3  # the baseline size

Method (as in /work/shared/notes/peer-baselines.md): the inputs are built once (a smooth-ish
random uint8 volume as zarr v2 blosc-lz4 64^3 chunks, and as one multi-page TIFF) and read once
to warm the page cache. Every (task, method) runs in a FRESH process (imports and peak RSS are
per method), ``--repeat`` times, interleaved across methods; the median is reported.

Measured per run:
- wall: the op only (open input, create output, process), timed inside the child;
- peak RSS: the whole process tree (the child and all its descendants, e.g. compute workers),
  sampled with psutil every ~20 ms and summed, over the child's whole life (imports included);
- cores: CPU time of the child and its reaped children over the op / wall;
- MB/s: input bytes (1e6) / wall.

Every output is verified once (first repeat) in a separate process (bench/verify.py) before it
is deleted. Results: a Markdown table printed and written to bench/results/<date>-<size>.md,
plus all raw runs as JSON next to it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_data import SIZES, build_inputs, warm_page_cache  # noqa: E402

#: (task, method) in table order; the first method of each task is bioimage_async.
PLAN: list[tuple[str, str]] = [
    ("copy", "ba"), ("copy", "ts_write"), ("copy", "ts_stream"), ("copy", "dask"),
    ("copy", "zarr"), ("copy", "bp"),
    ("tif", "ba"), ("tif", "tifffile_ts"), ("tif", "bp"),
    ("ds0", "ba"), ("ds0", "ts_stride"), ("ds0", "bp"),
    ("ds_aa", "ba"), ("ds_aa", "ts_mean"), ("ds_aa", "dask_coarsen"), ("ds_aa", "bp"),
]
TASK_LABELS = {
    "copy": "copy zarr -> zarr",
    "tif": "TIFF -> zarr",
    "ds0": "2x downsample, order 0",
    "ds_aa": "2x downsample, order 1 + anti-aliasing",
}
POLL_S = 0.02
MIB = 1024 * 1024


# ------------------------------------------------------------------------------------------------
# running one method in a fresh process, sampling the RSS of its process tree
# ------------------------------------------------------------------------------------------------
def tree_rss(proc: psutil.Process, cpu: dict[int, float]) -> tuple[int, int]:
    """Summed (RSS, anonymous RSS) of ``proc`` and its descendants; CPU seconds into ``cpu``.

    Anonymous RSS leaves out file-backed pages (memory-mapped files such as a TIFF read through
    a memmap, shared libraries): those are page cache the kernel can drop, not heap.
    """
    total = anon = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0, 0
    for p in procs:
        try:
            with p.oneshot():
                mem = p.memory_info()
                total += mem.rss
                anon += mem.rss - mem.shared
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return total, anon


def kill_tree(proc: psutil.Process) -> None:
    try:
        procs = proc.children(recursive=True) + [proc]
    except psutil.Error:
        procs = [proc]
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def system_busy_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.system + t.nice + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)


_CALIB_DATA = None


def calibrate() -> float:
    """Milliseconds for a fixed single-threaded CPU workload (best of 3): the machine's speed
    drifts on a shared VM even when no other process is visible, so each run records it."""
    import numpy as np

    global _CALIB_DATA
    if _CALIB_DATA is None:
        _CALIB_DATA = np.random.default_rng(0).random(1 << 20, dtype=np.float32)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        np.sort(_CALIB_DATA)
        sum(i * i for i in range(100_000))
        best = min(best, time.perf_counter() - t)
    return best * 1000


def wait_for_quiet(limit: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until other processes use less than ``limit`` cores."""
    started = time.perf_counter()
    ncpu = psutil.cpu_count() or 1
    told = False
    while True:
        busy = psutil.cpu_percent(interval=0.5) / 100 * ncpu
        waited = time.perf_counter() - started
        if busy < limit or waited > max_wait:
            if told:
                print(f"   (waited {waited:.0f} s for other processes to calm down: {busy:.2f} cores)", flush=True)
            return busy
        if waited > 10 and not told:
            print(f"   (other processes use {busy:.2f} cores: waiting up to {max_wait:.0f} s)", flush=True)
            told = True


def run_child(
    script: str, cfg: dict, marker: str, log: Path, timeout: float, env: dict[str, str] | None = None
) -> dict:
    """Run ``python script cfg``; returns the child's marker JSON plus the tree's peak RSS.

    ``env`` entries override the child's environment (``--ba-tree`` rows set PYTHONPATH)."""
    started = time.perf_counter()
    busy0 = system_busy_s()
    with open(log, "w") as err:
        child = subprocess.Popen(
            [sys.executable, str(HERE / script), json.dumps(cfg)],
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=str(HERE),
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        ps = psutil.Process(child.pid)
        peak = peak_anon = 0
        samples = 0
        tree_cpu: dict[int, float] = {}
        try:
            while child.poll() is None:
                rss, anon = tree_rss(ps, tree_cpu)
                peak, peak_anon = max(peak, rss), max(peak_anon, anon)
                samples += 1
                if time.perf_counter() - started > timeout:
                    kill_tree(ps)
                    break
                time.sleep(POLL_S)
            stdout, _ = child.communicate()
        except BaseException:  # Ctrl-C / SIGTERM: never leave a child running
            kill_tree(ps)
            raise
    elapsed = time.perf_counter() - started
    foreign = system_busy_s() - busy0 - sum(tree_cpu.values())
    result: dict[str, Any] = {
        "returncode": child.returncode,
        "process_s": elapsed,
        # CPU used by processes outside the benchmarked tree during its life (other users)
        "foreign_cores": max(0.0, foreign / elapsed) if elapsed > 0 else 0.0,
    }
    for line in stdout.splitlines():
        if line.startswith(marker + " "):
            result.update(json.loads(line[len(marker) + 1 :]))
    result["peak_rss_tree_mib"] = peak / MIB
    result["peak_anon_rss_tree_mib"] = peak_anon / MIB
    result["rss_samples"] = samples
    if child.returncode != 0 or "wall_s" not in result and marker == "BENCH_RESULT":
        tail = log.read_text()[-3000:]
        result["error"] = f"exit code {child.returncode}; stderr tail:\n{tail}"
    return result


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


# ------------------------------------------------------------------------------------------------
# reporting
# ------------------------------------------------------------------------------------------------
def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict], nbytes: int, labels: dict) -> list[dict]:
    rows = []
    keys = list(dict.fromkeys((r["task"], r["method"]) for r in runs))
    for task, name in keys:
        mine = [r for r in runs if (r["task"], r["method"]) == (task, name)]
        ok = [r for r in mine if "wall_s" in r and not r.get("error")]
        wall = median([r["wall_s"] for r in ok])
        row = {
            "task": task,
            "method": name,
            "label": labels.get((task, name), name),
            "runs": len(ok),
            "failed_runs": len(mine) - len(ok),
            "median_s": wall,
            "all_s": [round(r["wall_s"], 3) for r in ok],
            "round_s": [
                next((x["wall_s"] for x in ok if x["repeat"] == rep), None)
                for rep in sorted({x["repeat"] for x in mine})
            ],
            "mb_s": nbytes / 1e6 / wall if wall else None,
            "peak_rss_mib": median([r["peak_rss_tree_mib"] for r in ok]),
            "peak_anon_rss_mib": median([r.get("peak_anon_rss_tree_mib") for r in ok]),
            "maxrss_main_mib": median([r.get("maxrss_main_mib") for r in ok]),
            "cores": median([r["cores"] for r in ok]),
            "cpu_s": median([r["cpu_s"] for r in ok]),
            "import_s": median([r.get("import_s") for r in ok]),
            "foreign_cores": median([r.get("foreign_cores") for r in ok]),
            "calib_ms": median([r.get("calib_ms") for r in ok]),
            "package_versions": sorted({r.get("package_sha") for r in ok if r.get("package_sha")}),
            "verify": next((r["verify"] for r in mine if "verify" in r), None),
            "errors": [r["error"][:500] for r in mine if r.get("error")],
        }
        beats = [r["extra"]["heartbeat"] for r in ok if r.get("extra", {}).get("heartbeat")]
        if beats:
            row["stall_max_ms"] = max(b.get("stall_max_ms", 0.0) for b in beats)
            row["stall_p99_ms"] = median([b.get("stall_p99_ms") for b in beats])
            row["stalls_over_50ms"] = sum(b.get("stalls_over_50ms", 0) for b in beats)
        stats = [r["extra"]["run_stats"] for r in ok if r.get("extra", {}).get("run_stats")]
        if stats:
            row["run_stats_last"] = stats[-1]
        rows.append(row)
    for row in rows:
        ba = next((r for r in rows if r["task"] == row["task"] and r["method"].startswith("ba")), None)
        if ba and ba["median_s"] and row["median_s"]:
            row["ratio_vs_ba"] = row["median_s"] / ba["median_s"]
    return rows


def fmt(value: Any, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"# bioimage_async benchmarks, {meta['date']}, size `{meta['size']}` "
        f"({' x '.join(map(str, meta['shape']))} uint8, {meta['nbytes'] / MIB:.0f} MiB)",
        "",
        f"Machine: {meta['cpus']} cores, {meta['ram_gib']:.0f} GiB, {meta['platform']}. Input: zarr v2 "
        f"blosc-lz4 64^3 (compression ratio {meta['compression_ratio']}) and one uncompressed "
        f"multi-page TIFF, warm page cache. Median of {meta['repeat']} runs, each in a fresh process, "
        "interleaved. bioimage_async sources: sha256 "
        f"{meta['package_at_start'].get('sha256')} (newest file {meta['package_at_start'].get('newest_file')})"
        + ("" if meta["package_at_start"] == meta["package_at_end"] else
           " **-> changed during the run** to " + str(meta["package_at_end"].get("sha256")))
        + ". Peak RSS = the whole process tree (child + its children), imports included; "
        "cores = CPU time / wall over the op; CPU s = CPU seconds of the tree over the op (less "
        "sensitive to other users' load than wall time); MB/s = input bytes / op wall; ratio = method time / "
        "bioimage_async time (>1: bioimage_async is faster). tensorstore runs use "
        "`file_io_sync: false` (nosync); bioimage_async defaults to it. \"other load\" = cores used "
        "by processes outside the benchmark during the run (median; the machine is shared: high "
        "values make that row pessimistic; runs above --max-other-load are retried). \"anon RSS\" = "
        "peak RSS without file-backed pages (memory-mapped input files, shared libraries)."
        + (f" Machine speed drift: a fixed single-threaded CPU probe before each run took "
           f"{meta['calib_ms']['min']:.0f}-{meta['calib_ms']['max']:.0f} ms (median "
           f"{meta['calib_ms']['median']:.0f} ms); compare rows by their ratios."
           if meta.get("calib_ms") else ""),
        "",
        "| task | method | median s | MB/s | peak RSS MiB | cores | ratio vs bioimage_async | check | CPU s | anon RSS MiB | other load |",
        "|---|---|---:|---:|---:|---:|---:|:---:|---:|---:|---:|",
    ]
    for r in rows:
        check = "-" if r["verify"] is None else ("ok" if r["verify"]["ok"] else "**WRONG**")
        if r["errors"] and not r["runs"]:
            check = "**FAILED**"
        name = f"**{r['label']}**" if r["method"].startswith("ba") else r["label"]
        if len(r.get("package_versions") or ()) > 1:
            name += " (runs mix package versions: " + ", ".join(r["package_versions"]) + ")"
        lines.append(
            f"| {TASK_LABELS.get(r['task'], r['task'])} | {name} | {fmt(r['median_s'], '.2f')} | "
            f"{fmt(r['mb_s'], '.0f')} | {fmt(r['peak_rss_mib'], '.0f')} | {fmt(r['cores'], '.2f')} | "
            f"{fmt(r.get('ratio_vs_ba'), '.2f')}x | {check} | {fmt(r.get('cpu_s'), '.1f')} | "
            f"{fmt(r.get('peak_anon_rss_mib'), '.0f')} | "
            f"{fmt(r.get('foreign_cores'), '.2f')} |"
        )
    lines += before_after(rows, meta)
    stalls = [r for r in rows if "stall_max_ms" in r]
    if stalls:
        lines += [
            "",
            "Event-loop responsiveness (bioimage_async; a heartbeat coroutine sleeping 5 ms in the "
            "op's loop; worst over all runs):",
            "",
            "| task | worst loop stall ms | p99 stall ms (median run) | stalls > 50 ms (all runs) |",
            "|---|---:|---:|---:|",
        ]
        for r in stalls:
            lines.append(
                f"| {TASK_LABELS.get(r['task'], r['task'])} ({r['method']}) | {r['stall_max_ms']:.1f} | "
                f"{fmt(r.get('stall_p99_ms'), '.1f')} | {r['stalls_over_50ms']} |"
            )
    lines += ["", "bioimage_async time / peer time (<1: bioimage_async faster):", ""]
    for r in rows:
        if not r["method"].startswith("ba") and r.get("ratio_vs_ba"):
            lines.append(
                f"- {TASK_LABELS[r['task']]}: bioimage_async / {r['label']} = "
                f"{1 / r['ratio_vs_ba']:.2f}x"
            )
    lines += ["", "Targets:", ""] + [f"- {t}" for t in targets(rows)]
    problems = [r for r in rows if r["verify"] is not None and not r["verify"]["ok"]]
    failed = [r for r in rows if r["errors"]]
    if problems or failed:
        lines += ["", "Problems:", ""]
        lines += [f"- {r['task']}/{r['method']}: wrong output: {r['verify']['problems']}" for r in problems]
        lines += [f"- {r['task']}/{r['method']}: {len(r['errors'])} failed run(s): {r['errors'][0][:300]!r}" for r in failed]
    notes = [
        f"- {r['task']}/{r['method']}: verified: {r['verify'].get('compared')}"
        + (f", max |diff| {r['verify']['max_abs_diff']:.3f}" if "max_abs_diff" in r["verify"] else "")
        for r in rows if r["verify"] is not None
    ]
    lines += ["", "Verification (first run of each method, separate process):", ""] + notes
    return "\n".join(lines) + "\n"


def before_after(rows: list[dict], meta: dict) -> list[str]:
    """``--ba-tree`` rows next to the plain ``ba`` rows of the same task: the ratio of medians and
    the median of the per-round ratios (the two ran back to back in each round)."""
    trees = meta.get("ba_trees") or {}
    if not trees:
        return []
    current = meta["package_at_start"]
    out = [
        "",
        "bioimage_async source trees compared (`ba` = the package this interpreter imports: "
        f"{current.get('path')}, {meta.get('current_git_head', '?')}, sha256 {current.get('sha256')}; "
        + "; ".join(f"`ba@{n}` = {t['path']}, {t['git_head']}, sha256 {t['sha256']}" for n, t in trees.items())
        + "). Ratio = tree time / `ba` time (> 1: the current code is faster); paired = median over "
        "rounds of the ratio of the two runs of that round (they ran back to back).",
        "",
        "| task | tree | tree s | `ba` s | ratio of medians | paired ratio (min-max) | CPU s tree / `ba` | peak RSS MiB tree / `ba` |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "@" not in r["method"]:
            continue
        ba = next((b for b in rows if b["task"] == r["task"] and b["method"] == "ba"), None)
        if not ba or not ba["median_s"] or not r["median_s"]:
            continue
        paired = [t / b for t, b in zip(r.get("round_s") or [], ba.get("round_s") or []) if t and b]
        pr = (f"{statistics.median(paired):.3f} ({min(paired):.2f}-{max(paired):.2f})" if paired else "-")
        out.append(
            f"| {TASK_LABELS.get(r['task'], r['task'])} | {r['method'].partition('@')[2]} | "
            f"{r['median_s']:.3f} | {ba['median_s']:.3f} | {r['median_s'] / ba['median_s']:.3f} | {pr} | "
            f"{fmt(r.get('cpu_s'), '.2f')} / {fmt(ba.get('cpu_s'), '.2f')} | "
            f"{fmt(r.get('peak_rss_mib'), '.0f')} / {fmt(ba.get('peak_rss_mib'), '.0f')} |"
        )
    return out


def targets(rows: list[dict]) -> list[str]:
    def get(task: str, name: str) -> dict | None:
        return next((r for r in rows if (r["task"], r["method"]) == (task, name)), None)

    out = []

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    ba, ts_stream = get("copy", "ba"), get("copy", "ts_stream")
    if ba and ts_stream and ba["median_s"] and ts_stream["median_s"]:
        ratio = ba["median_s"] / ts_stream["median_s"]
        out.append(
            f"{verdict(ratio <= 1.1)}: copy <= 1.1x tensorstore's best streaming copy: "
            f"{ratio:.2f}x ({ba['median_s']:.2f} s vs {ts_stream['median_s']:.2f} s)"
        )
        out.append(
            f"{verdict(ba['peak_rss_mib'] < 300)}: copy peak RSS < 300 MiB: "
            f"{ba['peak_rss_mib']:.0f} MiB (process tree)"
        )
    for task, what in (("ds_aa", "AA downsample"), ("tif", "TIFF -> zarr")):
        mine, peer = get(task, "ba"), get(task, "bp")
        if mine and peer and mine["median_s"] and peer["median_s"]:
            speedup = peer["median_s"] / mine["median_s"]
            out.append(
                f"{verdict(speedup >= 3)}: {what} >= 3x faster than bioimage-py: {speedup:.2f}x "
                f"({mine['median_s']:.2f} s vs {peer['median_s']:.2f} s)"
            )
    stall = [r["stall_max_ms"] for r in rows if "stall_max_ms" in r and r["task"] in ("copy", "ds_aa")]
    if stall:
        out.append(f"{verdict(max(stall) < 50)}: worst loop stall < 50 ms: {max(stall):.1f} ms")
    return out


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so run_child's cleanup runs
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--folder", default="/tmp/bioimage-async-bench", help="inputs and outputs")
    parser.add_argument("--rebuild", action="store_true", help="regenerate the inputs")
    parser.add_argument("--only", action="append", default=[], metavar="TASK:METHOD",
                        help="glob(s) on task:method, e.g. 'copy:*' or '*:ba'")
    parser.add_argument("--ba-variant", action="append", default=[], metavar="NAME=JSON",
                        help="extra bioimage_async rows with options, e.g. "
                        "'if16={\"in_flight\": 16, \"block_shape\": [128,128,128], "
                        "\"configure\": {\"cache_bytes\": 0}}' (applies to every task run)")
    parser.add_argument("--ba-tree", action="append", default=[], metavar="NAME=PATH",
                        help="extra bioimage_async rows (every task) whose child process imports "
                        "the package from another source tree (PYTHONPATH=PATH), e.g. "
                        "'old=/work/wt-old' for a before/after comparison in one run; the plain "
                        "'ba' rows use the package this interpreter imports")
    parser.add_argument("--no-alternate", action="store_true",
                        help="run each task's methods in the same order every round (default: "
                        "odd rounds reverse it, so no method always runs right after another)")
    parser.add_argument("--extra-methods", action="append", default=[], metavar="FILE.py:TASK:METHOD,...",
                        help="a module that registers more methods with methods.method(), and the "
                        "(task:method) rows to add from it, e.g. scratch/proto.py:ds_aa:proto")
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--max-other-load", type=float, default=0.35,
                        help="retry a run when other processes used more cores than this")
    parser.add_argument("--retries", type=int, default=2, help="at most this many retries per run")
    parser.add_argument("--quiet", type=float, default=0.3,
                        help="before each run wait until other processes use < this many cores")
    parser.add_argument("--quiet-wait", type=float, default=20.0,
                        help="... but at most this many seconds (0: do not wait)")
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--tag", default="", help="suffix for the result file names")
    args = parser.parse_args()

    sys.path.insert(0, str(HERE))
    from methods import LABELS

    plan = list(PLAN)
    labels = dict(LABELS)
    for variant in args.ba_variant:
        name, _, opts = variant.partition("=")
        json.loads(opts)
        for task in TASK_LABELS:
            index = max(i for i, (t, _) in enumerate(plan) if t == task and plan[i][1].startswith("ba"))
            plan.insert(index + 1, (task, f"ba:{name}"))
            labels[(task, f"ba:{name}")] = f"bioimage_async variant `{name}` {opts}"
    trees: dict[str, str] = {}
    for item in args.ba_tree:
        name, _, path = item.partition("=")
        root = Path(path).resolve()
        if not (root / "bioimage_async" / "__init__.py").exists():
            raise SystemExit(f"--ba-tree {item}: no bioimage_async package under {root}")
        trees[name] = str(root)
        for task in TASK_LABELS:
            index = max(i for i, (t, _) in enumerate(plan) if t == task and plan[i][1].startswith("ba"))
            plan.insert(index + 1, (task, f"ba@{name}"))
            labels[(task, f"ba@{name}")] = (
                labels[(task, "ba")] + f" — tree `{name}` ({root}, {git_head(root)})"
            )
    extra_modules = []
    for item in args.extra_methods:
        module, *rows = item.split(",")
        path, *first = module.split(":", 1)
        extra_modules.append(str(Path(path).resolve()))
        for row in ([first[0]] if first else []) + rows:
            task, name = row.split(":")
            index = max(i for i, (t, _) in enumerate(plan) if t == task and plan[i][1].startswith("ba"))
            plan.insert(index + 1, (task, name))
            labels[(task, name)] = f"prototype `{name}` ({Path(path).name})"
    if args.only:
        plan = [p for p in plan if any(fnmatch.fnmatch(f"{p[0]}:{p[1]}", pat) for pat in args.only)]
    variants = {v.partition("=")[0]: json.loads(v.partition("=")[2]) for v in args.ba_variant}

    folder = Path(args.folder) / args.size
    print(f"building inputs in {folder} ...", flush=True)
    manifest = build_inputs(folder, args.size, rebuild=args.rebuild)
    print(f"  {manifest['shape']} uint8, zarr compression ratio {manifest['compression_ratio']}", flush=True)
    print(f"  page cache warmed in {warm_page_cache([manifest['zarr'], manifest['tif']]):.2f} s", flush=True)
    outputs = folder / "outputs"
    logs = folder / "logs"
    remove(outputs)
    outputs.mkdir()
    logs.mkdir(exist_ok=True)

    fingerprint_start = package_fingerprint()
    print(f"  bioimage_async sources: {fingerprint_start}", flush=True)
    runs: list[dict] = []
    verified: set[tuple[str, str]] = set()
    started = time.perf_counter()
    for rep in range(args.repeat):
        for task, name in plan if args.no_alternate or rep % 2 == 0 else reversed_within_tasks(plan):
            base_method, _, variant = name.partition(":")
            base_method, _, tree = base_method.partition("@")
            child_env = {"PYTHONPATH": trees[tree]} if tree else None
            out = outputs / f"{task}-{name.replace(':', '_')}.zarr"
            remove(out)
            cfg = {
                "task": task, "method": base_method, "shape": manifest["shape"],
                "zarr": manifest["zarr"], "tif": manifest["tif"], "out": str(out),
            }
            if variant:
                cfg["ba_opts"] = variants[variant]
            if extra_modules:
                cfg["extra_modules"] = extra_modules
            log = logs / f"{task}-{name.replace(':', '_')}-r{rep}.log"
            attempts = []
            for attempt in range(1 + max(0, args.retries)):
                load_before = wait_for_quiet(args.quiet, args.quiet_wait) if args.quiet_wait > 0 else None
                calib = calibrate()
                version = package_fingerprint(trees.get(tree)).get("sha256")
                result = run_child("methods.py", cfg, "BENCH_RESULT", log, args.timeout, child_env)
                result.update(task=task, method=name, repeat=rep, load_before_cores=load_before,
                              calib_ms=calib, package_sha=version)
                attempts.append(result)
                if (result.get("error") or result["foreign_cores"] <= args.max_other_load
                        or attempt == args.retries):
                    break
                print(f"   (other processes used {result['foreign_cores']:.2f} cores: retrying)", flush=True)
                remove(out)
            result = min(attempts, key=lambda r: (bool(r.get("error")), r["foreign_cores"]))
            result["attempts"] = len(attempts)  # the output on disk (verified) is the last one's
            if not args.no_verify and (task, name) not in verified and not result.get("error"):
                check = run_child("verify.py", {**cfg, "method": name},
                                  "VERIFY_RESULT", logs / f"verify-{task}-{name.replace(':', '_')}.log",
                                  args.timeout)
                if "ok" not in check:
                    check = {"ok": False, "problems": [check.get("error", "verify crashed")[:500]]}
                result["verify"] = {k: v for k, v in check.items() if k not in ("peak_rss_tree_mib", "rss_samples", "process_s", "returncode")}
                verified.add((task, name))
            remove(out)
            runs.append(result)
            status = "FAILED" if result.get("error") else f"{result['wall_s']:7.2f} s"
            extra = ""
            if result.get("extra", {}).get("heartbeat"):
                extra = f"  stall {result['extra']['heartbeat'].get('stall_max_ms', 0):.1f} ms"
            if "verify" in result:
                extra += "  verify " + ("ok" if result["verify"]["ok"] else f"WRONG {result['verify']['problems']}")
            print(
                f"[{rep + 1}/{args.repeat}] {task:6s} {name:16s} {status}  "
                f"rss {result['peak_rss_tree_mib']:6.0f} MiB  cores {result.get('cores', 0):4.2f}"
                f"  other-load {result['foreign_cores']:4.2f}{extra}",
                flush=True,
            )
            if result.get("error"):
                print("   " + result["error"][-800:].replace("\n", "\n   "), flush=True)
            time.sleep(0.3)
    remove(outputs)

    meta = {
        "date": dt.date.today().isoformat(),
        "size": args.size,
        "shape": manifest["shape"],
        "nbytes": manifest["nbytes"],
        "compression_ratio": manifest["compression_ratio"],
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "ram_gib": psutil.virtual_memory().total / 2**30,
        "platform": f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        "total_s": time.perf_counter() - started,
        "versions": versions(),
        "package_at_start": fingerprint_start,
        "package_at_end": package_fingerprint(),
        "current_git_head": git_head(Path(fingerprint_start.get("path", ".")).parent),
        "ba_trees": {
            name: {"git_head": git_head(Path(path)), **package_fingerprint(path)}
            for name, path in trees.items()
        },
    }
    if meta["package_at_start"] != meta["package_at_end"]:
        print("WARNING: bioimage_async's sources changed during the run; rows mix versions", flush=True)
    calib = sorted(r["calib_ms"] for r in runs if r.get("calib_ms"))
    if calib:
        meta["calib_ms"] = {"min": calib[0], "median": statistics.median(calib), "max": calib[-1]}
    rows = summarize(runs, manifest["nbytes"], labels)
    text = markdown(rows, meta)
    print()
    print(text)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    stem = f"{meta['date']}-{args.size}{'-' + args.tag if args.tag else ''}"
    (results / f"{stem}.md").write_text(text)
    (results / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows, "runs": runs}, indent=1))
    print(f"written: {results / (stem + '.md')} and .json")


def reversed_within_tasks(plan: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The plan with each task's methods in reverse order (tasks keep their order)."""
    tasks = list(dict.fromkeys(t for t, _ in plan))
    return [p for task in tasks for p in reversed([q for q in plan if q[0] == task])]


def git_head(root: Path) -> str:
    """The short commit of the source tree at ``root`` (plus '+dirty' with local changes)."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "bioimage_async"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def package_fingerprint(tree: str | None = None) -> dict[str, Any]:
    """A hash of bioimage_async's sources (others edit the package while benchmarks run):
    the one this interpreter imports, or the one under the source tree ``tree``."""
    import hashlib
    import importlib.util

    if tree is not None:
        root: Path | None = Path(tree) / "bioimage_async"
    else:
        spec = importlib.util.find_spec("bioimage_async")
        root = Path(spec.origin).parent if spec and spec.origin else None
    if root is None:
        return {}
    digest = hashlib.sha256()
    newest = 0.0
    for file in sorted(root.rglob("*.py")):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
        newest = max(newest, file.stat().st_mtime)
    return {
        "path": str(root),
        "sha256": digest.hexdigest()[:16],
        "newest_file": dt.datetime.fromtimestamp(newest).isoformat(timespec="seconds"),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("bioimage-async", "tensorstore", "dask", "zarr", "numpy", "scipy", "tifffile", "bioimage_py", "numcodecs"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    main()
