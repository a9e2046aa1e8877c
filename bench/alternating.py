"""Shared machinery of the item benchmarks (bench_journal, bench_labels, bench_pyramid).

The parent runs every (case, method) in a FRESH ``python <script> '<json>'`` process through
``run_benchmarks.run_child`` (the RSS of the child's process tree sampled every 20 ms, the CPU
used by other processes during the run recorded as "other load"); before each run it waits a
little for the shared machine to calm down and times a fixed single-threaded CPU probe
(``calib_ms``); a run during which others used more than ``max_other_load`` cores is retried
(the cleanest attempt is kept). Methods alternate: odd rounds run them in reverse order.

The child (``child_main``) imports what its method needs untimed (``setup``), then times only
``run()`` (then calls ``run.after()`` untimed, if the method set one) and prints one ``BENCH_RESULT {json}`` line with the wall time, the CPU time of the
process and its reaped children, and the process's own peak RSS (VmHWM, which, unlike the
sampled tree RSS, cannot miss a short peak).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

Setup = Callable[[dict[str, Any]], Callable[[], dict[str, Any] | None]]


# ---- the child ---------------------------------------------------------------------------------
def vmhwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def vmrss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_main(methods: dict[str, Setup], started: float) -> None:
    """``python script '<json cfg>'``: set up ``methods[cfg['method']]`` untimed, time its run."""
    cfg = json.loads(sys.argv[1])
    run = methods[cfg["method"]](cfg)
    import_s = time.perf_counter() - started
    rss_before = vmrss_mib()
    t = os.times()
    cpu0 = t.user + t.system + t.children_user + t.children_system
    t0 = time.perf_counter()
    extra = run() or {}
    wall = time.perf_counter() - t0
    t = os.times()
    cpu = t.user + t.system + t.children_user + t.children_system - cpu0
    hwm = vmhwm_mib()
    if hasattr(run, "after"):  # untimed follow-up (e.g. saving an in-memory result to check)
        run.after()
    result = {
        "wall_s": wall,
        "cpu_s": cpu,
        "cores": cpu / wall if wall > 0 else 0.0,
        "import_s": import_s,
        "rss_before_mib": rss_before,
        "vmhwm_mib": hwm,
        "extra": extra,
    }
    sys.stdout.write("BENCH_RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


# ---- the parent --------------------------------------------------------------------------------
def run_plan(
    script: str,
    cases: list[tuple[str, dict[str, Any]]],
    methods: list[tuple[str, dict[str, Any]]],
    *,
    repeat: int,
    logs: Path,
    before: Callable[[str, str, dict[str, Any]], None] | None = None,
    after: Callable[[str, str, dict[str, Any], dict[str, Any], int], None] | None = None,
    env: Callable[[str], dict[str, str] | None] = lambda method: None,
    quiet: float = 0.3,
    quiet_wait: float = 20.0,
    max_other_load: float = 0.35,
    retries: int = 2,
    timeout: float = 1800.0,
) -> list[dict[str, Any]]:
    """Every (case, method) ``repeat`` times, methods alternating; returns all kept runs.

    ``before(case, method, cfg)`` prepares a run (e.g. removes an old output), ``after(case,
    method, cfg, result, round)`` checks and removes its output (untimed, between runs)."""
    from run_benchmarks import calibrate, run_child, wait_for_quiet

    logs.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for rep in range(repeat):
        for case, case_cfg in cases:
            order = methods if rep % 2 == 0 else methods[::-1]
            for name, method_cfg in order:
                cfg = {**case_cfg, **method_cfg, "case": case, "method": name}
                attempts = []
                for attempt in range(1 + retries):
                    if before:
                        before(case, name, cfg)
                    load = wait_for_quiet(quiet, quiet_wait) if quiet_wait > 0 else None
                    calib = calibrate()
                    log = logs / f"{case}-{name}-r{rep}.log".replace(" ", "_").replace("/", "_")
                    result = run_child(script, cfg, "BENCH_RESULT", log, timeout, env(name))
                    result.update(case=case, method=name, repeat=rep, calib_ms=calib,
                                  load_before_cores=load)
                    attempts.append(result)
                    if result.get("error") or result["foreign_cores"] <= max_other_load:
                        break
                    if attempt < retries:
                        print(f"   (other processes used {result['foreign_cores']:.2f} cores: "
                              "retrying)", flush=True)
                result = attempts[-1] if attempts[-1].get("error") else min(
                    attempts, key=lambda r: (bool(r.get("error")), r["foreign_cores"]))
                result["attempts"] = len(attempts)
                if after and not result.get("error"):
                    # the output on disk is the last attempt's: check it (all attempts are alike)
                    after(case, name, cfg, result, rep)
                runs.append(result)
                status = "FAILED" if result.get("error") else f"{result['wall_s']:7.3f} s"
                print(f"[{rep + 1}/{repeat}] {case:22s} {name:34s} {status} "
                      f"tree-rss {result['peak_rss_tree_mib']:6.0f} MiB "
                      f"hwm {result.get('vmhwm_mib', 0):6.0f} MiB "
                      f"other {result['foreign_cores']:.2f} probe {calib:.0f} ms", flush=True)
                if result.get("error"):
                    print("   " + result["error"][-1500:].replace("\n", "\n   "), flush=True)
    return runs


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for case, name in dict.fromkeys((r["case"], r["method"]) for r in runs):
        mine = [r for r in runs if (r["case"], r["method"]) == (case, name)]
        ok = [r for r in mine if "wall_s" in r and not r.get("error")]

        def med(key: str, ok: list[dict[str, Any]] = ok) -> float | None:
            values = [r[key] for r in ok if r.get(key) is not None]
            return statistics.median(values) if values else None

        rows.append({
            "case": case,
            "method": name,
            "runs": len(ok),
            "failed": len(mine) - len(ok),
            "median_s": med("wall_s"),
            "all_s": [round(r["wall_s"], 4) for r in ok],
            "round_s": [next((r["wall_s"] for r in ok if r["repeat"] == k), None)
                        for k in sorted({r["repeat"] for r in mine})],
            "cpu_s": med("cpu_s"),
            "cores": med("cores"),
            "import_s": med("import_s"),
            "peak_rss_tree_mib": med("peak_rss_tree_mib"),
            "peak_rss_tree_max_mib": max((r["peak_rss_tree_mib"] for r in ok), default=None),
            "vmhwm_mib": med("vmhwm_mib"),
            "vmhwm_max_mib": max((r.get("vmhwm_mib", 0) for r in ok), default=None),
            "rss_before_mib": med("rss_before_mib"),
            "other_load": med("foreign_cores"),
            "calib_ms": med("calib_ms"),
            "extra": ok[-1].get("extra") if ok else None,
            "errors": [r["error"][-800:] for r in mine if r.get("error")],
        })
    return rows


def paired_ratio(row: dict[str, Any], base: dict[str, Any]) -> tuple[float, float, float] | None:
    """Median (min, max) over rounds of row's time / base's time in the same round."""
    pairs = [a / b for a, b in zip(row["round_s"], base["round_s"]) if a and b]
    if not pairs:
        return None
    return statistics.median(pairs), min(pairs), max(pairs)


def machine_note(runs: list[dict[str, Any]], repeat: int) -> str:
    calib = sorted(r["calib_ms"] for r in runs if r.get("calib_ms"))
    other = sorted(r["foreign_cores"] for r in runs if "foreign_cores" in r)
    note = (
        f"Machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()} (other "
        f"processes' load is measured per run, below). Median of {repeat} runs per row, each a "
        "fresh process "
        "(imports untimed), methods alternating round by round."
    )
    if calib:
        note += (f" CPU probe (fixed single-threaded work before each run): "
                 f"{calib[0]:.0f}-{calib[-1]:.0f} ms, median {statistics.median(calib):.0f} ms.")
    if other:
        note += (f" Other load (cores used by other processes during a run): median "
                 f"{statistics.median(other):.2f}, max {other[-1]:.2f}.")
    return note + " Compare rows by their ratios within this file."


def versions(names: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def fmt(value: Any, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)
