"""Prototypes of suggested package changes, run through bioimage_async's real pipeline.

Loaded by methods.py when run_benchmarks.py gets ``--extra-methods bench/scratch/proto.py:...``.
Nothing here edits the package: kernels are subclassed and tasks built with the package's own
BlockTask / run_task, so the numbers show what the suggested change would give.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import methods  # noqa: E402  (the benchmark's registry and Heartbeat)

_TRUNCATE = 4.0


def gaussian_weights(sigma: float) -> np.ndarray:
    radius = int(_TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).astype(np.float32)


def _axis_filter(src: np.ndarray, dst: np.ndarray, tmp: np.ndarray, axis: int, step: int,
                 r: int, w: np.ndarray) -> None:
    """dst = sum_k w[k] * src[step*i + r + k - r] along ``axis`` (src is padded by r)."""
    n = dst.shape[axis]

    def sl(offset: int) -> np.ndarray:
        index = [slice(None)] * src.ndim
        index[axis] = slice(offset, offset + step * (n - 1) + 1, step)
        return src[tuple(index)]

    np.multiply(sl(r), w[r], out=dst, dtype=np.float32)
    for k in range(1, r + 1):
        np.add(sl(r - k), sl(r + k), out=tmp, dtype=np.float32)
        tmp *= w[r + k]
        dst += tmp


def smooth_sample_planes(padded: np.ndarray, out_shape: tuple[int, int, int],
                         steps: tuple[int, int, int], weights: list[np.ndarray]) -> np.ndarray:
    """Separable Gaussian evaluated only at the sampled positions, one output z-plane at a time.

    ``padded`` holds, per axis, radius_a samples before position 0 and after the last position
    (mirror-padded where the block touches the volume border). Small reused float32 buffers stay
    in cache; numpy releases the GIL inside each call, so two threads use two cores.
    """
    (nz, ny, nx), (sz, sy, sx) = out_shape, steps
    rz, ry, rx = (len(w) // 2 for w in weights)
    wz, wy, wx = weights
    py, px = padded.shape[1], padded.shape[2]
    plane, ptmp = np.empty((py, px), np.float32), np.empty((py, px), np.float32)
    rows, rtmp = np.empty((ny, px), np.float32), np.empty((ny, px), np.float32)
    otmp = np.empty((ny, nx), np.float32)
    out = np.empty(out_shape, np.float32)
    for i in range(nz):
        c = sz * i + rz
        np.multiply(padded[c], wz[rz], out=plane, dtype=np.float32)
        for k in range(1, rz + 1):
            np.add(padded[c - k], padded[c + k], out=ptmp, dtype=np.float32)
            ptmp *= wz[rz + k]
            plane += ptmp
        _axis_filter(plane, rows, rtmp, 0, sy, ry, wy)
        _axis_filter(rows, out[i], otmp, 1, sx, rx, wx)
    return out


def _pad_to(data: np.ndarray, have: list[tuple[int, int]], need: list[tuple[int, int]],
            shape: tuple[int, ...]) -> np.ndarray:
    """Crop/mirror-pad ``data`` (covering ``have`` ranges) to exactly the ``need`` ranges."""
    crop, pad = [], []
    for (h0, h1), (n0, n1), n in zip(have, need, shape):
        before, after = max(0, -n0), max(0, n1 - n)
        assert (n0 >= h0 or h0 == 0) and (n1 <= h1 or h1 == n), (have, need)
        crop.append(slice(max(n0, 0) - h0, min(n1, n) - h0))
        pad.append((before, after))
    data = data[tuple(crop)]
    if any(p != (0, 0) for p in pad):
        data = np.pad(data, pad, mode="reflect")  # numpy 'reflect' == scipy 'mirror'
    return data


def _make_fast_kernel():
    from bioimage_async.ops.resample import ResampleKernel, _to_dtype

    @dataclass(frozen=True)
    class FastResampleKernel(ResampleKernel):
        """ResampleKernel with a fast path for integer factors (in == f * out on every axis)."""

        @property
        def compute_cost(self) -> str:  # type: ignore[override]
            return "light" if self.order <= 1 else "heavy"

        def compute(self, block, data):  # type: ignore[no-untyped-def]
            steps = [i // o for i, o in zip(self.in_shape, self.out_shape)]
            exact = all(i == s * o for i, s, o in zip(self.in_shape, steps, self.out_shape))
            if not (exact and self.order <= 1 and self.anti_aliasing and data.ndim == 3):
                return super().compute(block, data)
            weights = [gaussian_weights(s) if s > 0 else np.ones(1, np.float32) for s in self.sigmas]
            radii = [len(w) // 2 for w in weights]
            roi = self.input_roi(block)
            have = [(s.start, s.stop) for s in roi]
            need = [(st * b.start - r, st * (b.stop - 1) + r + 1)
                    for st, b, r in zip(steps, block.roi, radii)]
            padded = _pad_to(data, have, need, self.in_shape)
            result = smooth_sample_planes(padded, block.shape, tuple(steps), weights)
            np.rint(result, out=result)
            return _to_dtype(result, np.dtype(self.dtype))

    return FastResampleKernel


def _ba_proto(build):  # type: ignore[no-untyped-def]
    """A methods.py setup whose run builds a task with ``build(ba, src, out, cfg)``."""

    def setup(cfg: dict) -> Any:
        import bioimage_async as ba

        opts = dict(cfg.get("ba_opts") or {})
        if opts.get("configure"):
            ba.configure(**opts["configure"])

        async def main() -> dict:
            beat = methods.Heartbeat()
            beat_task = asyncio.create_task(beat.run())
            stats = ba.RunStats()
            try:
                src = await ba.open_source(cfg["tif"] if cfg["task"] == "tif" else cfg["zarr"])
                out = await ba.create_source(cfg["out"], shape=methods.out_shape(cfg), dtype="uint8",
                                             chunks=methods.CHUNKS, format="zarr")
                await build(ba, src, out, cfg, stats, opts)
            finally:
                beat_task.cancel()
            return {"heartbeat": beat.summary(), "run_stats": stats.as_dict()}

        return lambda: asyncio.run(main())

    return setup


async def _aa_threads(ba, src, out, cfg, stats, opts) -> None:  # type: ignore[no-untyped-def]
    from bioimage_async.blocking.grid import BlockGrid
    from bioimage_async.ops._exec import exec_options, run_task
    from bioimage_async.ops.copy import resolve_block_shape
    from bioimage_async.pipeline.task import BlockTask

    kernel_cls = _make_fast_kernel()
    target = out.shape
    in_chunks = tuple(max(1, c // 2) for c in src.chunks)
    grid = BlockGrid(target, resolve_block_shape(opts.get("block_shape"), out, in_chunks))
    kernel = kernel_cls(src.shape, target, 1, True, src.dtype.str)
    task = BlockTask("downsample", src, out, grid, kernel, None)
    job = ba.RunnerConfig(**{k: opts[k] for k in ("in_flight", "memory_budget") if k in opts}) \
        if any(k in opts for k in ("in_flight", "memory_budget")) else None
    await run_task(task, exec_options(num_workers=2, stats=stats, job_config=job))


async def _ds0_tsview(ba, src, out, cfg, stats, opts) -> None:  # type: ignore[no-untyped-def]
    import tensorstore as ts
    from bioimage_async.sources.tensorstore_source import TensorStoreSource

    view = TensorStoreSource(ts.downsample(src.store, [2, 2, 2], "stride"), writable=False)
    await ba.copy(view, out, num_workers=2, stats=stats)


methods.method("ds_aa", "proto_aa_threads",
               "prototype: fast AA kernel (sampled positions only, plane-wise) in the thread pool")(
    _ba_proto(_aa_threads))
methods.method("ds0", "proto_ds0_tsview",
               "prototype: `ba.copy` from a tensorstore `downsample(stride)` view")(_ba_proto(_ds0_tsview))


async def _tif_view(ba, src, out, cfg, stats, opts) -> None:  # type: ignore[no-untyped-def]
    """TiffSource.read_blocking returning the memmap view (no intermediate copy)."""
    if src._memmap is not None:
        memmap = src._memmap
        src.read_blocking = lambda roi: memmap[roi]  # type: ignore[method-assign]
    kwargs = {}
    if opts.get("block_shape"):
        kwargs["block_shape"] = tuple(opts["block_shape"])
    if opts.get("in_flight"):
        kwargs["job_config"] = ba.RunnerConfig(in_flight=opts["in_flight"])
    await ba.copy(src, out, num_workers=2, stats=stats, **kwargs)


methods.method("tif", "proto_tif_view",
               "prototype: TIFF memmap view handed to tensorstore (no copy)")(_ba_proto(_tif_view))


def _make_taps_light_kernel():
    from bioimage_async.ops.resample import ResampleKernel

    @dataclass(frozen=True)
    class TapsLightKernel(ResampleKernel):
        """The package's current kernel unchanged, but run in the thread pool (no processes)."""

        @property
        def compute_cost(self) -> str:  # type: ignore[override]
            return "light" if self.order <= 1 else "heavy"

    return TapsLightKernel


async def _aa_taps_threads(ba, src, out, cfg, stats, opts) -> None:  # type: ignore[no-untyped-def]
    from bioimage_async.blocking.grid import BlockGrid
    from bioimage_async.ops._exec import exec_options, run_task
    from bioimage_async.ops.copy import resolve_block_shape
    from bioimage_async.pipeline.task import BlockTask

    target = out.shape
    in_chunks = tuple(max(1, c // 2) for c in src.chunks)
    grid = BlockGrid(target, resolve_block_shape(opts.get("block_shape"), out, in_chunks))
    kernel = _make_taps_light_kernel()(src.shape, target, 1, True, src.dtype.str)
    await run_task(BlockTask("downsample", src, out, grid, kernel, None),
                   exec_options(num_workers=2, stats=stats))


methods.method("ds_aa", "proto_aa_taps_threads",
               "prototype: the current taps kernel, unchanged, in the thread pool")(
    _ba_proto(_aa_taps_threads))
