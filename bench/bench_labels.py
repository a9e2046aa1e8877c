"""2x label (mode) downsampling with the same I/O (issue #12): ``ba.downsample`` vs tinybrain.

    PYTHONPATH=. .venv/bin/python bench/bench_labels.py --repeat 5

Inputs: bench_mode's (256, 512, 256) uint32 labels (128 MiB; "realistic": Voronoi blobs whose
borders cut through 2x2x2 windows plus 1-voxel lines; "random": 0..50), written once as zarr v2
(blosc-lz4 with byte shuffle, 64^3 chunks) under ``--data``. Every method reads that zarr and
writes a new zarr v2 (blosc-lz4 + shuffle, 64^3 chunks) of the 2x2x2 mode, timed from opening
the input to the last write (imports untimed):

- ``ba.downsample``: ``ba.downsample(src, 2, out, method="mode", num_workers=2)`` (the
  compiled mode kernel on reused block buffers where it applies; before 2026-12-01's
  labels-reuse run, tensorstore's own downsample driver served chunk to chunk);
- ``tensorstore direct``: ``dst.write(ts.downsample(src, [2, 2, 2], "mode"))``, the driver
  ``ba.downsample`` falls back to;
- ``tinybrain whole``: tensorstore reads the whole input, ``tinybrain.downsample_segmentation``
  (given the array's transpose, its x, y, z order), tensorstore writes the result;
- ``tinybrain slabs``: the same 64 input planes at a time, two slabs in flight in two threads
  (bounded memory);
- ``ba kernel (numpy)``: ``ba.downsample(array, 2, method="mode")`` on the array in memory (the
  numpy kernel; the input is loaded untimed, no I/O: a reference, not the same job);
- ``ba.downsample via kernel blocks (diagnostic)``: ``ba.downsample`` on the zarr with its
  tensorstore fast path switched off (``ops.downsample._tensorstore_view`` patched to None), so
  blocks are always read, reduced by our kernel in threads and written (now ``ba.downsample``'s
  own path wherever the compiled kernel applies).

Peak RSS: the child's VmHWM (imports included; the numpy row includes its 128 MiB input). Each
method's first output is checked against the smallest-mode reference (``reduce_windows``);
where a peer differs, it must be a tie (another value with the same top count).
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

COMPRESSOR = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
CHUNKS = [64, 64, 64]
INPUTS = ("realistic-u32", "random-u32")
KERNEL_BLOCKS = "ba.downsample via kernel blocks (diagnostic)"
METHODS = ("ba.downsample", "tensorstore direct", "tinybrain whole", "tinybrain slabs",
           "ba kernel (numpy)", KERNEL_BLOCKS)


def zarr_spec(path: str, shape: list[int] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"driver": "zarr", "kvstore": {"driver": "file", "path": path + "/"}}
    if shape is not None:
        spec["metadata"] = {"shape": shape, "chunks": CHUNKS, "dtype": "<u4",
                            "compressor": COMPRESSOR, "fill_value": 0, "order": "C"}
    return spec


# ---- children ----------------------------------------------------------------------------------
def setup_ba(cfg: dict[str, Any]):
    import asyncio

    from methods import preimport_package

    import bioimage_async as ba

    preimport_package()  # lazily imported modules: untimed
    if cfg["method"] == KERNEL_BLOCKS:
        import importlib

        module = importlib.import_module("bioimage_async.ops.downsample")
        module._tensorstore_view = lambda *args: None  # type: ignore[attr-defined]

    async def main() -> dict[str, Any]:
        src = await ba.open_source(cfg["input"])
        out = await ba.create_source(cfg["out"], shape=tuple(cfg["out_shape"]), dtype="uint32",
                                     chunks=tuple(CHUNKS), format="zarr")
        stats = ba.RunStats()
        await ba.downsample(src, 2, out, method="mode", num_workers=2, progress=False,
                            stats=stats)
        return {"stats": stats.as_dict()}

    return lambda: asyncio.run(main())


def ts_context():
    import tensorstore as ts

    return ts.Context({"file_io_sync": False})


def setup_ts(cfg: dict[str, Any]):
    import tensorstore as ts

    def run() -> None:
        ctx = ts_context()
        src = ts.open(zarr_spec(cfg["input"]), read=True, context=ctx).result()
        dst = ts.open(zarr_spec(cfg["out"], cfg["out_shape"]), create=True, context=ctx).result()
        dst.write(ts.downsample(src, [2, 2, 2], "mode")).result()

    return run


def setup_tinybrain_whole(cfg: dict[str, Any]):
    import tensorstore as ts
    import tinybrain

    def run() -> None:
        ctx = ts_context()
        src = ts.open(zarr_spec(cfg["input"]), read=True, context=ctx).result()
        dst = ts.open(zarr_spec(cfg["out"], cfg["out_shape"]), create=True, context=ctx).result()
        labels = src.read().result()
        result = tinybrain.downsample_segmentation(labels.T, (2, 2, 2))[0].T
        dst.write(result).result()

    return run


def setup_tinybrain_slabs(cfg: dict[str, Any]):
    from concurrent.futures import ThreadPoolExecutor

    import tensorstore as ts
    import tinybrain

    slab = 64

    def run() -> None:
        ctx = ts_context()
        src = ts.open(zarr_spec(cfg["input"]), read=True, context=ctx).result()
        dst = ts.open(zarr_spec(cfg["out"], cfg["out_shape"]), create=True, context=ctx).result()

        def one(z0: int) -> None:
            labels = src[z0:z0 + slab].read().result()
            result = tinybrain.downsample_segmentation(labels.T, (2, 2, 2))[0].T
            dst[z0 // 2:z0 // 2 + result.shape[0]].write(result).result()

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(one, range(0, src.shape[0], slab)))

    return run


def setup_numpy(cfg: dict[str, Any]):
    import numpy as np
    from methods import preimport_package

    import bioimage_async as ba

    preimport_package()

    labels = np.load(cfg["npy"])
    kept: list[Any] = []

    def run() -> dict[str, Any]:
        kept.append(ba.sync.downsample(labels, 2, method="mode", num_workers=2, progress=False))
        return {"output_shape": list(kept[0].shape)}

    run.after = lambda: np.save(cfg["out"] + ".npy", kept[0])  # type: ignore[attr-defined]
    return run


# ---- parent ------------------------------------------------------------------------------------
def main() -> None:
    import numpy as np
    import tensorstore as ts
    from alternating import fmt, machine_note, paired_ratio, run_plan, summarize, versions
    from bench_data import warm_page_cache
    from bench_mode import build_inputs, check

    from bioimage_async.kernels.reductions import reduce_windows

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data", default="/tmp/bioimage-async-bench/labels")
    parser.add_argument("--inputs", default=",".join(INPUTS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default=str(HERE / "results" / f"{dt.date.today()}-labels.md"))
    args = parser.parse_args()

    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    npys = build_inputs(Path("/tmp/bioimage-async-bench/mode"))
    cases = []
    references: dict[str, Any] = {}
    for name in args.inputs.split(","):
        path = data / f"{name}.zarr"
        labels = np.load(npys[name])
        if not (path / ".zarray").exists():
            store = ts.open(zarr_spec(str(path), list(labels.shape)), create=True,
                            delete_existing=True).result()
            store.write(labels).result()
        out_shape = [(n + 1) // 2 for n in labels.shape]
        stored = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        cases.append((name, {"input": str(path), "npy": str(npys[name]),
                             "out": str(data / "out.zarr"), "out_shape": out_shape,
                             "ratio": labels.nbytes / stored}))
    print("page cache warmed in", round(warm_page_cache([c[1]["input"] for c in cases]), 2), "s")
    methods = [(m, {}) for m in args.methods.split(",")]
    checks: dict[tuple[str, str], dict[str, Any]] = {}

    def before(case: str, method: str, cfg: dict[str, Any]) -> None:
        shutil.rmtree(cfg["out"], ignore_errors=True)
        Path(cfg["out"] + ".npy").unlink(missing_ok=True)

    def after(case: str, method: str, cfg: dict[str, Any], result: dict[str, Any], rep: int) -> None:
        if (case, method) not in checks:
            labels = np.load(cfg["npy"])
            if case not in references:
                references[case] = reduce_windows(labels, (2, 2, 2), "mode")
            ref = references[case]
            if method == "ba kernel (numpy)":
                out = np.load(cfg["out"] + ".npy")
            else:
                out = ts.open(zarr_spec(cfg["out"]), read=True).result().read().result()
            verdict = check(labels, out, ref)  # "ours" = this method, "theirs" = the reference
            checks[(case, method)] = {
                "shape_ok": list(out.shape) == cfg["out_shape"],
                "equal_to_smallest_mode": int((out == ref).sum()),
                "windows": int(ref.size),
                "not_a_mode": verdict["ours_not_a_mode"],
                "differs_by_tie": verdict["differ_tie"],
            }
        shutil.rmtree(cfg["out"], ignore_errors=True)
        Path(cfg["out"] + ".npy").unlink(missing_ok=True)

    runs = run_plan(str(Path(__file__).name), cases, methods, repeat=args.repeat,
                    logs=data / "logs", before=before, after=after)
    rows = summarize(runs)
    ver = versions(("tensorstore", "tinybrain", "numpy"))
    lines = [
        f"# 2x2x2 label mode downsampling, zarr -> zarr ({dt.date.today()})",
        "",
        machine_note(runs, args.repeat),
        "Input: (256, 512, 256) uint32 labels (128 MiB) as zarr v2 blosc-lz4+shuffle 64^3 "
        "(realistic: Voronoi blobs + 1-voxel lines, compression ratio "
        + ", ".join(f"{c}: {cfg['ratio']:.0f}" for c, cfg in cases)
        + "); output zarr v2, same codec, 64^3 chunks. Times: open input .. last write "
        "(imports untimed); the numpy row times the call on an array already in memory. Peak "
        "RSS: the child's VmHWM, imports included (a bare `import tensorstore, numpy` process "
        "is ~80 MiB). Versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()) + ".",
        "",
        "| input | method | median s | runs s | vs tinybrain whole (paired) | CPU s | cores "
        "| peak RSS MiB | output check | other load |",
        "|---|---|---:|---|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        base = next((r for r in rows if r["case"] == row["case"]
                     and r["method"] == "tinybrain whole"), None)
        pr = paired_ratio(row, base) if base else None
        c = checks.get((row["case"], row["method"]), {})
        check_text = (
            f"{c['not_a_mode']} not a mode; {c['windows'] - c['equal_to_smallest_mode']} of "
            f"{c['windows']} ties broken otherwise" if c else "-")
        lines.append(
            f"| {row['case']} | {row['method']} | {fmt(row['median_s'], '.3f')} | "
            f"{' '.join(f'{s:.3f}' for s in row['all_s'])} | "
            + (f"{pr[0]:.2f}x ({pr[1]:.2f}-{pr[2]:.2f})" if pr else "-")
            + f" | {fmt(row['cpu_s'], '.2f')} | {fmt(row['cores'], '.2f')} | "
            f"{fmt(row['vmhwm_max_mib'], '.0f')} | {check_text} | {fmt(row['other_load'], '.2f')} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(
        {"rows": rows, "runs": runs, "checks": {f"{k[0]}/{k[1]}": v for k, v in checks.items()},
         "versions": ver}, indent=1))
    print("written", out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("{"):
        from alternating import child_main

        child_main({"ba.downsample": setup_ba, KERNEL_BLOCKS: setup_ba,
                    "tensorstore direct": setup_ts,
                    "tinybrain whole": setup_tinybrain_whole,
                    "tinybrain slabs": setup_tinybrain_slabs,
                    "ba kernel (numpy)": setup_numpy}, T0)
    else:
        main()
