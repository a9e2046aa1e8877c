"""The benchmarked methods. Each runs in its own fresh process: ``python bench/methods.py ...``.

Every method is a ``setup(cfg) -> run`` pair: ``setup`` does the imports (not timed; their cost
shows in ``import_s`` and in the peak RSS), ``run()`` opens the input, creates the output and does
the work (timed). The child prints one ``BENCH_RESULT {json}`` line: op wall time, CPU time of the
process and its reaped children over the op, the main process's own peak RSS and extras
(bioimage_async RunStats and the event-loop heartbeat).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

T_PROCESS_START = time.perf_counter()

CHUNKS = (64, 64, 64)
ZARR_COMPRESSOR = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}

Cfg = dict[str, Any]
Run = Callable[[], dict[str, Any] | None]
METHODS: dict[tuple[str, str], Callable[[Cfg], Run]] = {}

#: Human-readable labels (the table's "method" column).
LABELS: dict[tuple[str, str], str] = {}


def method(task: str, name: str, label: str) -> Callable[[Callable[[Cfg], Run]], Callable[[Cfg], Run]]:
    def register(fn: Callable[[Cfg], Run]) -> Callable[[Cfg], Run]:
        METHODS[(task, name)] = fn
        LABELS[(task, name)] = label
        return fn

    return register


def out_shape(cfg: Cfg) -> tuple[int, ...]:
    shape = tuple(cfg["shape"])
    if cfg["task"] in ("ds0", "ds_aa"):
        return tuple(math.ceil(n / 2) for n in shape)
    return shape


# ------------------------------------------------------------------------------------------------
# helpers: tensorstore specs, zarr-python outputs, the asyncio heartbeat
# ------------------------------------------------------------------------------------------------
def ts_spec(path: str, shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"driver": "zarr", "kvstore": {"driver": "file", "path": path + "/"}}
    if shape is not None:
        spec["metadata"] = {
            "shape": list(shape), "chunks": list(CHUNKS), "dtype": "|u1",
            "compressor": ZARR_COMPRESSOR, "fill_value": 0, "order": "C",
        }
    return spec


def ts_context() -> Any:
    import tensorstore as ts

    return ts.Context({"file_io_sync": False})  # "nosync", like zarr-python, dask, bioimage-py


def zarr_output(path: str, shape: tuple[int, ...]) -> Any:
    import numcodecs
    import zarr

    return zarr.create_array(
        path, shape=shape, chunks=CHUNKS, dtype="uint8", zarr_format=2, fill_value=0,
        compressors=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1),
    )


class Heartbeat:
    """A coroutine that sleeps 5 ms in a loop and records how late it wakes up (loop stalls)."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.stalls: list[float] = []

    async def run(self) -> None:
        import asyncio

        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.period)
            self.stalls.append(time.perf_counter() - started - self.period)

    def summary(self) -> dict[str, float]:
        if not self.stalls:
            return {"heartbeats": 0}
        ordered = sorted(self.stalls)
        return {
            "heartbeats": len(ordered),
            "stall_max_ms": round(1000 * ordered[-1], 2),
            "stall_p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 2),
            "stall_p50_ms": round(1000 * ordered[len(ordered) // 2], 2),
            "stalls_over_50ms": sum(1 for s in ordered if s > 0.05),
        }


# ------------------------------------------------------------------------------------------------
# bioimage_async (every task), with the heartbeat and RunStats
# ------------------------------------------------------------------------------------------------
def preimport_package() -> list[str]:
    """Import every module of bioimage_async (but its CLI) and its format backends' libraries
    now, untimed: the package loads format modules, runner backends, pipeline modules and
    backend libraries lazily on first use, and import time is not
    part of the measured work (both source trees of a before/after run get the same treatment).
    Returns the modules that failed to import (optional dependencies)."""
    import importlib
    import pkgutil

    import bioimage_async

    failed = []
    for info in pkgutil.walk_packages(bioimage_async.__path__, "bioimage_async."):
        if info.name.startswith("bioimage_async.cli"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - an optional dependency missing
            failed.append(info.name)
    # and the libraries the format backends import on first open (h5py, tifffile, ...): the
    # peers import theirs at import time (bioimage-py loads h5py and tifffile with itself)
    from bioimage_async.sources.formats import formats

    for backend in formats():
        if backend.requires:
            try:
                importlib.import_module(backend.requires)
            except ImportError:
                failed.append(backend.requires)
    return failed


def _ba_setup(cfg: Cfg) -> Run:
    import asyncio

    import bioimage_async as ba

    not_imported = preimport_package()

    opts = dict(cfg.get("ba_opts") or {})
    configure = opts.pop("configure", None)
    if configure:
        ba.configure(**configure)
    runner = {k: opts.pop(k) for k in ("in_flight", "memory_budget") if k in opts}
    num_workers = int(opts.pop("num_workers", 2))
    block_shape = opts.pop("block_shape", None)
    if opts:
        raise SystemExit(f"unknown ba_opts keys: {sorted(opts)}")
    task = cfg["task"]

    async def main() -> dict[str, Any]:
        beat = Heartbeat()
        beat_task = asyncio.create_task(beat.run())
        await asyncio.sleep(0)
        stats = ba.RunStats()
        kwargs: dict[str, Any] = {"num_workers": num_workers, "stats": stats}
        if runner:
            kwargs["job_config"] = ba.RunnerConfig(**runner)
        if block_shape is not None:
            kwargs["block_shape"] = tuple(block_shape)
        src_path = cfg["tif"] if task == "tif" else cfg["zarr"]
        modules_before = set(sys.modules)
        try:
            src = await ba.open_source(src_path)
            out = await ba.create_source(
                cfg["out"], shape=out_shape(cfg), dtype="uint8", chunks=CHUNKS, format="zarr"
            )
            if task in ("copy", "tif"):
                await ba.copy(src, out, **kwargs)
            elif task == "ds0":
                await ba.downsample(src, 2, out, **kwargs)
            elif task == "ds_aa":
                await ba.downsample(src, 2, out, order=1, anti_aliasing=True, **kwargs)
            else:
                raise SystemExit(f"unknown task {task}")
        finally:
            beat_task.cancel()
        return {
            "heartbeat": beat.summary(), "run_stats": stats.as_dict(), "ba_opts": cfg.get("ba_opts"),
            "package": ba.__file__, "not_preimported": not_imported,
            "imported_during_op": sorted(set(sys.modules) - modules_before),
        }

    return lambda: asyncio.run(main())


for _task, _label in (
    ("copy", "bioimage_async `ba.copy` (defaults, num_workers=2)"),
    ("tif", "bioimage_async `open_source(tif)` + `ba.copy` (num_workers=2)"),
    ("ds0", "bioimage_async `ba.downsample(order=0)`, num_workers=2"),
    ("ds_aa", "bioimage_async `ba.downsample(order=1, anti_aliasing=True)`, num_workers=2"),
):
    method(_task, "ba", _label)(_ba_setup)


# ------------------------------------------------------------------------------------------------
# tensorstore directly
# ------------------------------------------------------------------------------------------------
@method("copy", "ts_write", "tensorstore `dst.write(src)`, nosync")
def _ts_write(cfg: Cfg) -> Run:
    import tensorstore as ts

    def run() -> None:
        ctx = ts_context()
        src = ts.open(ts_spec(cfg["zarr"]), context=ctx, read=True).result()
        dst = ts.open(ts_spec(cfg["out"], out_shape(cfg)), context=ctx, create=True).result()
        dst.write(src).result()

    return run


def _ts_stream(cfg: Cfg, block: int = 128, in_flight: int = 16) -> Run:
    import asyncio
    import itertools

    import tensorstore as ts

    async def main() -> None:
        ctx = ts_context()
        src = await ts.open(ts_spec(cfg["zarr"]), context=ctx, read=True)
        dst = await ts.open(ts_spec(cfg["out"], out_shape(cfg)), context=ctx, create=True)
        shape = tuple(src.shape)
        starts = itertools.product(*(range(0, n, block) for n in shape))

        async def worker() -> None:
            for start in starts:  # shared iterator: each block goes to one worker
                roi = tuple(slice(s, min(s + block, n)) for s, n in zip(start, shape))
                data = await src[roi].read()
                await dst[roi].write(data)

        await asyncio.gather(*(worker() for _ in range(in_flight)))

    return lambda: asyncio.run(main())


method("copy", "ts_stream", "tensorstore asyncio loop, 128^3 blocks, 16 in flight, nosync")(
    _ts_stream
)


@method("tif", "tifffile_ts", "tifffile whole read + tensorstore write, nosync")
def _tif_ts(cfg: Cfg) -> Run:
    import tensorstore as ts
    import tifffile

    def run() -> None:
        data = tifffile.imread(cfg["tif"])
        dst = ts.open(ts_spec(cfg["out"], out_shape(cfg)), context=ts_context(), create=True).result()
        dst.write(data).result()

    return run


def _ts_downsample(method_name: str) -> Callable[[Cfg], Run]:
    def setup(cfg: Cfg) -> Run:
        import tensorstore as ts

        def run() -> None:
            ctx = ts_context()
            src = ts.open(ts_spec(cfg["zarr"]), context=ctx, read=True).result()
            view = ts.downsample(src, [2, 2, 2], method_name)
            dst = ts.open(ts_spec(cfg["out"], out_shape(cfg)), context=ctx, create=True).result()
            dst.write(view).result()

        return run

    return setup


method("ds0", "ts_stride", "tensorstore `downsample` driver, stride")(_ts_downsample("stride"))
method("ds_aa", "ts_mean", "tensorstore `downsample` mean (2x2x2 box, NOT the same filter)")(
    _ts_downsample("mean")
)


# ------------------------------------------------------------------------------------------------
# dask, zarr-python
# ------------------------------------------------------------------------------------------------
@method("copy", "dask", "dask `from_zarr` -> `to_zarr`, 128^3 chunks")
def _dask_copy(cfg: Cfg) -> Run:
    import dask.array as da

    def run() -> None:
        x = da.from_zarr(cfg["zarr"], chunks=(128, 128, 128))
        da.to_zarr(x, zarr_output(cfg["out"], out_shape(cfg)))

    return run


@method("ds_aa", "dask_coarsen", "dask `coarsen` mean, rounded (box filter, NOT the same filter)")
def _dask_coarsen(cfg: Cfg) -> Run:
    import dask.array as da
    import numpy as np

    def run() -> None:
        x = da.from_zarr(cfg["zarr"], chunks=(128, 128, 128))
        y = da.coarsen(np.mean, x, {0: 2, 1: 2, 2: 2}, trim_excess=True)
        da.to_zarr(da.rint(y).astype(np.uint8), zarr_output(cfg["out"], out_shape(cfg)))

    return run


@method("copy", "zarr", "zarr-python 3 `out[:] = src[:]`")
def _zarr_copy(cfg: Cfg) -> Run:
    import zarr

    def run() -> None:
        src = zarr.open_array(cfg["zarr"], mode="r")
        out = zarr_output(cfg["out"], out_shape(cfg))
        out[:] = src[:]

    return run


# ------------------------------------------------------------------------------------------------
# bioimage-py 0.2.2 (local runner: threads), zarr-python arrays as in its docs
# ------------------------------------------------------------------------------------------------
def _bp(cfg: Cfg) -> Run:
    import bioimage_py as bp
    import zarr

    task = cfg["task"]
    shape = tuple(cfg["shape"])

    def run() -> dict[str, Any]:
        out = zarr_output(cfg["out"], out_shape(cfg))
        if task == "copy":
            bp.copy(zarr.open_array(cfg["zarr"], mode="r"), out, num_workers=2)
            return {"block_shape": "default (input chunks, 64^3)"}
        if task == "tif":
            # a TIFF has no chunks, so bioimage-py needs block_shape: full-plane slabs of 64 z,
            # the same blocks bioimage_async picks by default for this input
            block = (64, shape[1], shape[2])
            bp.copy(bp.open_source(cfg["tif"]), out, block_shape=block, num_workers=2)
            return {"block_shape": list(block)}
        src = zarr.open_array(cfg["zarr"], mode="r")
        kwargs: dict[str, Any] = {"block_shape": (64, 64, 64), "num_workers": 2}
        if task == "ds_aa":
            kwargs.update(order=1, anti_aliasing=True)
        bp.downsample(src, 2, out, **kwargs)
        return {"block_shape": [64, 64, 64]}

    return run


method("copy", "bp", "bioimage-py 0.2.2 `bp.copy`, local, 2 workers")(_bp)
method("tif", "bp", "bioimage-py 0.2.2 `open_source(tif)` + `bp.copy`, 2 workers")(_bp)
method("ds0", "bp", "bioimage-py 0.2.2 `downsample(order=0)`, 2 workers")(_bp)
method("ds_aa", "bp", "bioimage-py 0.2.2 `downsample(order=1, anti_aliasing=True)`, 2 workers")(_bp)


# ------------------------------------------------------------------------------------------------
# the child entry point
# ------------------------------------------------------------------------------------------------
def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    cfg: Cfg = json.loads(sys.argv[1])
    sys.modules.setdefault("methods", sys.modules[__name__])  # extras register here
    for module in cfg.get("extra_modules") or ():  # prototypes registering more methods
        import importlib.util

        spec = importlib.util.spec_from_file_location(os.path.basename(module)[:-3], module)
        assert spec and spec.loader
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    key = (cfg["task"], cfg["method"])
    if key not in METHODS:
        raise SystemExit(f"unknown method {key}; known: {sorted(METHODS)}")
    run = METHODS[key](cfg)
    import resource

    import_s = time.perf_counter() - T_PROCESS_START
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    extra = run() or {}
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    maxrss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    maxrss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "wall_s": wall,
        "cpu_s": cpu,
        "cores": cpu / wall if wall > 0 else 0.0,
        "import_s": import_s,
        "maxrss_main_mib": maxrss_self,
        "maxrss_largest_child_mib": maxrss_children,
        "extra": extra,
    }
    sys.stdout.write("BENCH_RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
