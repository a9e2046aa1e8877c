"""downsample: ceil-mode, label-safe by default, block-wise equal to the whole-array result."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral
from typing import Any, ClassVar, Unpack, cast

import numpy as np
import tensorstore as ts

from ..blocking.defaults import COMPUTE_BLOCK_BYTES, TARGET_BLOCK_BYTES
from ..blocking.grid import Block, BlockGrid
from ..errors import InvalidArgumentError
from ..kernels.reductions import METHODS, compiled_mode_applies, reduce_windows
from ..kernels.resample import Resampling, downscale_shape
from ..pipeline.parts import compute_in_parts
from ..pipeline.task import BlockKernel, BlockTask
from ..runners.options import ExecKwargs
from ..sources.base import Source
from ..sources.indexing import Roi
from ..sources.registry import as_source
from ._exec import OpResult, allocate_output, exec_options, finish, refuse_empty, run_task
from .copy import resolve_block_shape


@dataclass(frozen=True)
class ResampleKernel(BlockKernel):
    """The pipeline's face of ``kernels.resample.Resampling``: blocks are in the output space."""

    resampling: Resampling
    input_is_scratch: ClassVar[bool] = True  # results are new arrays; nothing is kept

    @property
    def compute_cost(self) -> str:  # type: ignore[override]
        """Orders 0-1 are numpy gathers and multiply-adds, which release the GIL: threads run
        them in parallel without shipping each input region to a process (measured 1.5x faster
        than the process pool). Higher orders call scipy's spline code: a process pool."""
        return "light" if self.resampling.order <= 1 else "heavy"

    def input_roi(self, block: Block) -> Roi:
        return self.resampling.input_roi(block.roi)

    def compute(self, block: Block, data: np.ndarray) -> np.ndarray:
        if self.compute_cost != "light":  # in a worker process: one part per process
            return self.resampling.compute(block.roi, data)
        r = self.resampling
        itemsize = np.dtype(r.dtype).itemsize
        return compute_in_parts(block.roi, data, itemsize, r.input_roi, r.compute)

    def describe(self) -> dict[str, Any]:
        r = self.resampling
        return {"kernel": "ResampleKernel", "order": r.order, "anti_aliasing": r.anti_aliasing}


@dataclass(frozen=True)
class ReduceKernel(BlockKernel):
    """A window reduction (mode, mean, min, max) of integer factors; blocks in output space.

    A block's input region starts at a multiple of the factors, so its windows are whole (or
    clipped at the volume border exactly as in the whole array): blocks equal the whole.
    """

    factors: tuple[int, ...]
    method: str
    in_shape: tuple[int, ...]
    result: str = ""  # as Resampling.result: how a mean meets an output of another kind
    compute_cost: str = "light"  # vectorised numpy, GIL released in its loops: threads
    input_is_scratch: ClassVar[bool] = True  # results are new arrays; nothing is kept

    def input_roi(self, block: Block) -> Roi:
        return self._input_of(block.roi)

    def compute(self, block: Block, data: np.ndarray) -> np.ndarray:
        return compute_in_parts(
            block.roi,
            data,
            data.dtype.itemsize,
            self._input_of,
            lambda _, part: self._reduce(part),
        )

    def _reduce(self, part: np.ndarray) -> np.ndarray:
        if self.method == "stride":  # the part starts on a window's first voxel
            return part[tuple(slice(None, None, f) for f in self.factors)].copy()
        if self.method != "mean" or not self.result:
            return reduce_windows(part, self.factors, self.method)
        mean = reduce_windows(part, self.factors, "mean", out_dtype=np.dtype(np.float64))
        return np.rint(mean) if self.result == "round" else mean

    def _input_of(self, roi: Roi) -> Roi:
        return tuple(
            slice(s.start * f, min(s.stop * f, n))
            for s, f, n in zip(roi, self.factors, self.in_shape)
        )

    def describe(self) -> dict[str, Any]:
        described = {"kernel": "ReduceKernel", "method": self.method, "factors": list(self.factors)}
        return {**described, "result": self.result} if self.result else described


#: Blocks reading more than this (a shard-sized pyramid level) keep tensorstore's mode driver.
MODE_KERNEL_MAX_INPUT_BYTES = 64 * 1024 * 1024


def _compiled_mode_is_faster(
    src: Source, factors: tuple[int, ...], block_shape: tuple[int, ...]
) -> bool:
    """The compiled mode kernel on reused block buffers beats tensorstore's mode driver (0.75x /
    0.47x tinybrain on realistic / random labels, against 0.87x / 1.04x; bench_labels) where it
    applies, for blocks small enough to reuse buffers for. A shard-sized block of a pyramid
    level is not: the driver's chunk-to-chunk copy holds far less memory there."""
    if not compiled_mode_applies(src.dtype, src.ndim, factors):
        return False
    block_input = math.prod(b * f for b, f in zip(block_shape, factors)) * src.dtype.itemsize
    return block_input <= MODE_KERNEL_MAX_INPUT_BYTES


def _tensorstore_view(src: Source, factors: tuple[int, ...], method: str) -> Source | None:
    """tensorstore's own downsample driver over a tensorstore-backed input, served chunk to
    chunk (no block buffers, no thread hop). Its stride, and its mean, min, max and mode of
    integers and bool, equal ``kernels.reductions`` and ``src[::f, ...]`` exactly (pinned by
    the tests); floats do not come here (``_driver_differs_on``). None where the input has no
    tensorstore handle."""
    store = src.tensorstore()
    if store is None:
        return None
    try:
        return as_source(ts.downsample(store, list(factors), cast(Any, method)))
    except ValueError:  # a view that drops an axis (z.view[:, 3]) has no spec there: our kernel
        return None


#: ``method=`` values: the reductions, and "stride" (each window's first voxel)
WINDOW_METHODS = (*METHODS, "stride")


def result_kind(src: np.dtype, out: np.dtype) -> str:
    """How computed values (a mean, an interpolation) meet an output of another kind: unrounded
    into floats from integers (a uint8 mean of 1.75 into float32 was written 2.0) and from a
    narrower float (a float16 mean of 16376.75 into float64 was written 16376.0), rounded
    into integers from floats (the cast alone truncated 2.66 to 2). "" where the input's
    own dtype serves (same kind, and no more precise)."""
    if src.kind in "biu" and out.kind in "fc":
        return "float"
    if src.kind == "f" and out.kind in "fc" and np.finfo(out).nmant > np.finfo(src).nmant:
        return "float"
    if src.kind in "fc" and out.kind in "biu":
        return "round"
    return ""


def _driver_differs_on(dtype: np.dtype) -> bool:
    """Whether tensorstore's driver would give other values than our kernel, so that inputs of
    ``dtype`` take the kernel whatever they are stored in (zarr or numpy, masked or not).

    Floats: the driver's mode merges -0.0 with 0.0 and never lets NaN win, its min and max
    skip NaN, and its mean accumulates in the input dtype (a float32 window of 1e8, 1, -1e8
    and five zeros averages to 0 there, 0.125 in our float64 sum; the driver is faster, but
    not by a voxel's worth). Complex: the same, and its mean sums complex64 in complex64 (our
    kernel sums in complex128; it refuses complex mode, which has no order to break ties by).
    """
    return np.dtype(dtype).kind in "fc"


def _strided_view(src: Source, factors: tuple[int, ...], resampling: Resampling) -> Source | None:
    """Order 0 without smoothing, with exact integer factors, is ``src[::f, ::f, ...]``: for a
    tensorstore-backed input, tensorstore's own stride downsample serves it chunk to chunk (no
    block buffers, no thread hop). None where that does not apply, including shapes whose
    sampling step (in / out) is not the factor: 9 voxels by 4 give 3 outputs sampled every 3rd
    voxel, where a stride-4 view would take voxels 0, 4 and 8."""
    if resampling.interpolates or resampling.integer_steps != factors:
        return None
    return _tensorstore_view(src, factors, "stride")


def normalize_factors(scale_factor: Any, ndim: int) -> tuple[int, ...]:
    """Integer factors >= 1, one per axis (an int applies to every axis).

    Non-integer factors are refused, never truncated: 1.5 would silently become 1 (the input
    unchanged) and 2.9 would become 2.
    """
    if isinstance(scale_factor, (Integral, np.integer)) and not isinstance(scale_factor, bool):
        values: tuple[Any, ...] = (scale_factor,) * ndim
    elif isinstance(scale_factor, (str, bytes)) or not isinstance(scale_factor, Iterable):
        raise InvalidArgumentError(
            f"scale_factor must be an integer >= 1 or one integer per axis, got "
            f"{scale_factor!r}; downsample takes integer factors only (ba.ResizedSource "
            "resamples to any shape)"
        )
    else:
        values = tuple(scale_factor)
    if len(values) != ndim:
        raise InvalidArgumentError(
            f"scale_factor {values} has {len(values)} entries but the input has {ndim} axes"
        )
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (Integral, np.integer)) or value < 1:
            raise InvalidArgumentError(
                f"scale_factor must hold integers >= 1, got {values}; downsample takes integer "
                "factors only (ba.ResizedSource resamples to any shape)"
            )
    return tuple(int(v) for v in values)


def spline_order(order: Any) -> int:
    if (
        isinstance(order, bool)
        or not isinstance(order, (Integral, np.integer))
        or not (0 <= int(order) <= 5)
    ):
        raise InvalidArgumentError(f"order must be an integer from 0 to 5, got {order!r}")
    return int(order)


async def downsample(
    input: Any,
    scale_factor: Any,
    output: Any = None,
    *,
    order: int = 0,
    anti_aliasing: bool = False,
    method: str | None = None,
    block_shape: Any = None,
    mask: Any = None,
    **exec_kwargs: Unpack[ExecKwargs],
) -> OpResult:
    """Downsample by an integer factor per axis to shape ceil(shape / factor).

    Without ``method``, output index i samples input coordinate i * (in/out) with a spline of
    ``order`` (0..5); ``anti_aliasing`` pre-smooths with a Gaussian of sigma
    max(0, (scale-1)/2). The defaults (order 0, no smoothing) never invent values, so they are
    safe for label volumes. Orders 2..5 compute NaN and inf inputs as 0 and give NaN wherever
    the spline (and smoothing) footprint of an output holds one, the same on every block shape
    (a spline prefilter would otherwise spread one NaN along whole lines). ``method`` reduces each window instead: "mode" (the most frequent
    value, ties to the smallest: label-safe without dropping thin objects), "mean" (rounded for
    integers), "min" or "max"; windows clipped at the border use the voxels they have.
    "stride" takes each window's first voxel (``x[::f]``, the nearest-neighbour sampling of
    ngff-zarr and tinybrain): output i is input i * f on every shape, so stride levels of
    levels stay on one grid. ``block_shape`` and ``mask`` are in the output space.
    """
    options = await exec_options(exec_kwargs)
    order = spline_order(order)
    if method is not None:
        if method not in WINDOW_METHODS:
            raise InvalidArgumentError(
                f"method must be None (spline resampling) or one of {WINDOW_METHODS}, got "
                f"{method!r}"
            )
        if order or anti_aliasing:
            raise InvalidArgumentError(
                f"method={method!r} reduces windows; order= and anti_aliasing= belong to the "
                "spline path (method=None): pass one or the other"
            )
    src = as_source(input)
    refuse_empty(src, "downsample")
    factors = normalize_factors(scale_factor, src.ndim)
    target = downscale_shape(src.shape, factors)
    out, array = allocate_output(
        as_source(output) if output is not None else None, target, src.dtype, options
    )
    if out.shape != target:
        raise InvalidArgumentError(
            f"output shape {out.shape} must be the downsampled shape {target} "
            f"(ceil of {src.shape} / {factors})"
        )
    in_chunks = tuple(max(1, c // f) for c, f in zip(src.chunks, factors)) if src.chunks else None
    result = result_kind(src.dtype, out.dtype)
    resampling = Resampling(
        src.shape, target, int(order), bool(anti_aliasing), src.dtype.str, result
    )
    # smoothing/interpolation works on float copies of a 2^ndim larger input region, and heavy
    # kernels ship that region to a process: keep such blocks small (~1 MiB of output)
    smooths = method is None and resampling.interpolates
    target_bytes = COMPUTE_BLOCK_BYTES if smooths else TARGET_BLOCK_BYTES
    shape = resolve_block_shape(block_shape, out, in_chunks, target_bytes)
    kernel: BlockKernel
    if method is not None:
        kernel = ReduceKernel(factors, method, src.shape, result if method == "mean" else "")
        ours = method == "mode" and _compiled_mode_is_faster(src, factors, shape)
        driver_differs = _driver_differs_on(src.dtype) or kernel.result != ""
        view = None if ours or driver_differs else _tensorstore_view(src, factors, method)
    else:
        kernel = ResampleKernel(resampling)
        view = _strided_view(src, factors, resampling)
    if view is not None and mask is None:
        src, kernel = view, BlockKernel()  # a plain copy of tensorstore's downsampled view
    grid = BlockGrid(target, shape)
    task = BlockTask(
        "downsample", src, out, grid, kernel, as_source(mask) if mask is not None else None
    )
    return finish(await run_task(task, options), options, output, array)
