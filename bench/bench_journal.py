"""The cost of a local run's journal (issue #13, goal < 3%): ``ba.copy`` with and without it.

    PYTHONPATH=. .venv/bin/python bench/bench_journal.py --repeat 7 --old-tree /work/wt-old

A local ``ba.copy`` zarr -> zarr keeps, by default, a run folder under ``tmp_root`` (manifest,
payload, a lease) and appends 13 bytes per finished block to its journal;
``job_config=ba.RunnerConfig(journal=False)`` skips all of it. Cases (inputs zarr v2 blosc-lz4
64^3 from bench_data's generator, built once under ``--data``; outputs zarr v2 blosc-lz4 64^3):

- ``256MiB default blocks``: 256 x 1024 x 1024 uint8, default block shape, 2 workers;
- ``128MiB 16x64x64 blocks``: 128 x 1024 x 1024 uint8 stored (input and output) in 16 x 64 x 64
  chunks, block_shape (16, 64, 64): 2,048 blocks of 64 KiB, each one chunk file moved as it is
  (both packages refuse blocks smaller than the output's chunks), 2 workers: the per-block
  overhead shows most;
- ``8MiB default blocks``: 32 x 256 x 1024 uint8: the fixed cost of a run (folder, lease).

Methods: ``journal`` (the default), ``no journal`` (``RunnerConfig(journal=False)``; the output
lease is still taken), ``no journal, no lock`` (also ``output_lock=False``) and, with
``--old-tree``, ``old code`` (the package before the journal and locks existed, same call). The
``journal`` runs also time the journal's own calls (start, every mark, close) from inside.
Each run is a fresh process timing only the ``ba.copy`` call (imports, opening the input and
creating the output untimed). The first output of each (case, method) is compared with the input.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CASES = {
    "256MiB default blocks": {"shape": [256, 1024, 1024], "block_shape": None},
    "128MiB 16x64x64 blocks": {"shape": [128, 1024, 1024], "block_shape": [16, 64, 64],
                               "chunks": [16, 64, 64]},
    "8MiB default blocks": {"shape": [32, 256, 1024], "block_shape": None},
}


# ---- child -------------------------------------------------------------------------------------
def setup(cfg: dict[str, Any]):
    import asyncio

    from methods import preimport_package

    import bioimage_async as ba

    preimport_package()  # lazily imported modules: untimed
    spent = instrument_journal() if cfg["method"] == "journal" else None

    async def main() -> dict[str, Any]:
        src = await ba.open_source(cfg["input"])
        out = await ba.create_source(
            cfg["out"], shape=src.shape, dtype="uint8", chunks=tuple(cfg["chunks"]), format="zarr"
        )
        kwargs: dict[str, Any] = {"num_workers": 2, "progress": False}
        if cfg["block_shape"]:
            kwargs["block_shape"] = tuple(cfg["block_shape"])
        if cfg["method"] in ("no journal", "no journal, no lock"):
            kwargs["job_config"] = ba.RunnerConfig(journal=False)
        if cfg["method"] == "no journal, no lock":
            kwargs["output_lock"] = False
        stats = ba.RunStats()
        started = time.perf_counter()
        await ba.copy(src, out, stats=stats, **kwargs)
        return {"seconds": time.perf_counter() - started, "stats": stats.as_dict(),
                "package": ba.__file__, "journal": spent}

    state: dict[str, Any] = {}

    def run() -> dict[str, Any]:
        state.update(asyncio.run(main()))
        return state

    return run


def instrument_journal() -> dict[str, float]:
    """Time the journal's own calls inside the run (``runners.local.Journal``): ``start`` (run
    folder, manifest, payload, lease, log file), every ``mark`` (the per-block append) and
    ``close`` (lease release, folder removal). A few perf_counter calls per block: negligible."""
    from bioimage_async.runners import local

    spent = {"start_s": 0.0, "marks": 0, "mark_s": 0.0, "close_s": 0.0}
    start, mark, close = local.Journal.start.__func__, local.Journal.mark, local.Journal.close

    async def timed_start(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return await start(cls, *args, **kwargs)
        finally:
            spent["start_s"] += time.perf_counter() - t

    def timed_mark(self, block_id):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        mark(self, block_id)
        spent["mark_s"] += time.perf_counter() - t
        spent["marks"] += 1

    async def timed_close(self, **kwargs):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return await close(self, **kwargs)
        finally:
            spent["close_s"] += time.perf_counter() - t

    local.Journal.start = classmethod(timed_start)  # type: ignore[method-assign,assignment]
    local.Journal.mark = timed_mark  # type: ignore[method-assign]
    local.Journal.close = timed_close  # type: ignore[method-assign]
    return spent


# ---- parent ------------------------------------------------------------------------------------
def build(folder: Path, shape: list[int], chunks: list[int] | None = None) -> Path:
    import tensorstore as ts
    from bench_data import CHUNKS, _zarr_spec, generate_slabs

    chunks = list(chunks or CHUNKS)
    suffix = "" if chunks == list(CHUNKS) else "-c" + "x".join(map(str, chunks))
    path = folder / f"input-{'x'.join(map(str, shape))}{suffix}.zarr"
    if (path / ".zarray").exists():
        return path
    spec = _zarr_spec(path, tuple(shape))
    spec["metadata"]["chunks"] = chunks
    store = ts.open(spec, create=True, delete_existing=True,
                    context=ts.Context({"file_io_sync": False})).result()
    for z0, z1, data in generate_slabs(tuple(shape)):
        store[z0:z1].write(data).result()
    return path


def main() -> None:
    from alternating import fmt, machine_note, paired_ratio, run_plan, summarize, versions
    from bench_data import warm_page_cache

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--data", default="/tmp/bioimage-async-bench/journal")
    parser.add_argument("--old-tree", help="add 'old code' rows importing the package from here")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out", default=str(HERE / "results" / f"{dt.date.today()}-journal.md"))
    args = parser.parse_args()

    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    cases = []
    for name in args.cases.split(","):
        spec = CASES[name]
        chunks = spec.get("chunks", [64, 64, 64])
        path = build(data, spec["shape"], chunks)
        cases.append((name, {"input": str(path), "out": str(data / "out.zarr"), "chunks": chunks,
                             "block_shape": spec["block_shape"], "shape": spec["shape"]}))
    print("page cache warmed in", round(warm_page_cache([c[1]["input"] for c in cases]), 2), "s")
    methods = [("journal", {}), ("no journal", {}), ("no journal, no lock", {})]
    if args.old_tree:
        methods.append(("old code", {}))
    checked: set[tuple[str, str]] = set()

    def before(case: str, method: str, cfg: dict[str, Any]) -> None:
        shutil.rmtree(cfg["out"], ignore_errors=True)

    def after(case: str, method: str, cfg: dict[str, Any], result: dict[str, Any], rep: int) -> None:
        if (case, method) not in checked:
            import numpy as np
            import tensorstore as ts

            a = ts.open({"driver": "zarr", "kvstore": f"file://{cfg['input']}/"}).result()
            b = ts.open({"driver": "zarr", "kvstore": f"file://{cfg['out']}/"}).result()
            for z in range(0, a.shape[0], 64):
                end = min(z + 64, a.shape[0])
                if not np.array_equal(a[z:end].read().result(), b[z:end].read().result()):
                    raise SystemExit(f"{case}/{method}: output differs from the input at z={z}")
            checked.add((case, method))
            result["checked"] = True
        shutil.rmtree(cfg["out"], ignore_errors=True)

    def env(method: str) -> dict[str, str] | None:
        return {"PYTHONPATH": args.old_tree} if method == "old code" else None

    runs = run_plan(str(Path(__file__).name), cases, methods, repeat=args.repeat,
                    logs=data / "logs", before=before, after=after, env=env)
    rows = summarize(runs)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(
        {"rows": rows, "runs": runs, "versions": versions(("tensorstore", "numpy"))}, indent=1))
    for row in rows:
        row["blocks"] = (row["extra"] or {}).get("stats", {}).get("blocks_done") or (
            row["extra"] or {}).get("stats", {}).get("blocks")
    lines = [
        f"# Journal cost of a local `ba.copy` ({dt.date.today()})",
        "",
        machine_note(runs, args.repeat),
        "Times are the `ba.copy` call alone (input opened and output created untimed); "
        "inputs zarr v2 blosc-lz4 (bench_data's smooth noise; 64^3 chunks, 16x64x64 for the "
        "small-block case), outputs the same codec and chunks (so chunk files are moved as "
        "they are), 2 workers, "
        "page cache warm, run folder under the default tmp_root (/tmp, same disk). `journal` "
        "= the default; `no journal` = `job_config=ba.RunnerConfig(journal=False)` (the output "
        "lease is still taken); `no journal, no lock` = also `output_lock=False`"
        + ("; `old code` = the package before the journal and locks (commit bbe463e)"
           if args.old_tree else "")
        + ". Overhead = journal / no-journal - 1; paired = median over rounds of the ratio of "
        "the two runs of a round (they ran back to back).",
        "",
        "| case | blocks | method | median s | runs s | vs no journal (medians) | paired (min-max) "
        "| CPU s | peak RSS MiB (VmHWM) | other load |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        base = next(r for r in rows if r["case"] == row["case"] and r["method"] == "no journal")
        if not row["median_s"] or not base["median_s"]:
            error = (row["errors"] or ["?"])[0].strip().splitlines()[-1]
            lines.append(f"| {row['case']} | - | {row['method']} | failed: {error[:160]} "
                         "| | | | | | |")
            continue
        pr = paired_ratio(row, base)
        lines.append(
            f"| {row['case']} | {fmt(row.get('blocks'), 'd')} | {row['method']} | "
            f"{fmt(row['median_s'], '.3f')} | {' '.join(f'{s:.3f}' for s in row['all_s'])} | "
            f"{row['median_s'] / base['median_s'] - 1:+.1%} | "
            + (f"{pr[0] - 1:+.1%} ({pr[1] - 1:+.1%} .. {pr[2] - 1:+.1%})" if pr else "-")
            + f" | {fmt(row['cpu_s'], '.2f')} | {fmt(row['vmhwm_mib'], '.0f')} | "
            f"{fmt(row['other_load'], '.2f')} |"
        )
    lines += [
        "",
        "The journal's own calls, timed inside the `journal` runs (median over runs): `start` "
        "(run folder with manifest and payload, lease, log file), all per-block `mark` appends, "
        "`close` (lease release, folder removal); share = their sum over the `ba.copy` time.",
        "",
        "| case | blocks | start ms | marks | all marks ms | us per mark | close ms | share of the copy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, _ in cases:
        own = [r for r in runs if r["case"] == case and r["method"] == "journal" and "wall_s" in r
               and (r.get("extra") or {}).get("journal")]
        if not own:
            continue
        import statistics

        def med(key: str, own: list[dict[str, Any]] = own) -> float:
            return statistics.median(r["extra"]["journal"][key] for r in own)

        share = statistics.median(
            (r["extra"]["journal"]["start_s"] + r["extra"]["journal"]["mark_s"]
             + r["extra"]["journal"]["close_s"]) / r["wall_s"] for r in own)
        marks = med("marks")
        lines.append(
            f"| {case} | {marks:.0f} | {1000 * med('start_s'):.2f} | {marks:.0f} | "
            f"{1000 * med('mark_s'):.2f} | {1e6 * med('mark_s') / max(1, marks):.1f} | "
            f"{1000 * med('close_s'):.2f} | {share:.2%} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out.write_text(text)
    print("written", out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("{"):
        from alternating import child_main

        child_main({"journal": setup, "no journal": setup, "no journal, no lock": setup,
                    "old code": setup}, T0)
    else:
        main()
