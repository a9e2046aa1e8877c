"""downsample: ceil-mode, label-safe by default, block-wise equal to the whole-array result."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import tensorstore as ts

from ..blocking.defaults import COMPUTE_BLOCK_BYTES, TARGET_BLOCK_BYTES
from ..blocking.grid import BlockGrid
from ..pipeline.task import BlockKernel, BlockTask
from ..sources.base import Source
from ..sources.registry import as_source
from ..sources.tensorstore_source import TensorStoreSource
from ._exec import allocate_output, exec_options, run_task
from .copy import resolve_block_shape
from .resample import ResampleKernel, downscale_shape


def _strided_view(src: Source, factors: tuple[int, ...], kernel: ResampleKernel) -> Source | None:
    """Order 0 without smoothing, with exact integer factors, is ``src[::f, ::f, ...]``: for a
    tensorstore input, tensorstore's own stride downsample serves it chunk to chunk (no block
    buffers, no thread hop). None where that does not apply."""
    if kernel.order or kernel.anti_aliasing or kernel.integer_steps is None:
        return None
    if not isinstance(src, TensorStoreSource):
        return None
    view = ts.downsample(src.store, list(factors), "stride")
    return TensorStoreSource(view, writable=False, format=src.format, location=src.location)


def normalize_factors(scale_factor: Any, ndim: int) -> tuple[int, ...]:
    if isinstance(scale_factor, Integral):
        factors = (int(scale_factor),) * ndim
    else:
        factors = tuple(int(f) for f in scale_factor)
        if len(factors) != ndim:
            raise ValueError(
                f"scale_factor {tuple(scale_factor)} has {len(factors)} entries but the input "
                f"has {ndim} axes"
            )
    if any(f < 1 for f in factors):
        raise ValueError(f"downsample needs scale factors >= 1, got {factors}")
    return factors


async def downsample(
    input: Any,
    scale_factor: Any,
    output: Any = None,
    *,
    order: int = 0,
    anti_aliasing: bool = False,
    block_shape: Any = None,
    mask: Any = None,
    **exec_kwargs: Any,
) -> Any:
    """Downsample by an integer factor per axis to shape ceil(shape / factor).

    Output index i samples input coordinate i * (in/out) with a spline of ``order`` (0..5);
    ``anti_aliasing`` pre-smooths with a Gaussian of sigma max(0, (scale-1)/2). The defaults
    (order 0, no smoothing) never invent values, so they are safe for label volumes.
    ``block_shape`` and ``mask`` are in the output space.
    """
    options = exec_options(**exec_kwargs)
    if not 0 <= int(order) <= 5:
        raise ValueError(f"order must be between 0 and 5, got {order}")
    src = as_source(input)
    factors = normalize_factors(scale_factor, src.ndim)
    target = downscale_shape(src.shape, factors)
    out, array = allocate_output(
        as_source(output) if output is not None else None, target, src.dtype, options
    )
    if out.shape != target:
        raise ValueError(
            f"output shape {out.shape} must be the downsampled shape {target} "
            f"(ceil of {src.shape} / {factors})"
        )
    in_chunks = tuple(max(1, c // f) for c, f in zip(src.chunks, factors)) if src.chunks else None
    resample = ResampleKernel(src.shape, target, int(order), bool(anti_aliasing), src.dtype.str)
    kernel: BlockKernel = resample
    strided = _strided_view(src, factors, resample)
    if strided is not None and mask is None:
        src, kernel = strided, BlockKernel()  # a plain copy of tensorstore's strided view
    # smoothing/interpolation works on float copies of a 2^ndim larger input region, and heavy
    # kernels ship that region to a process: keep such blocks small (~1 MiB of output)
    computes = kernel is resample and (resample.order > 0 or resample.anti_aliasing)
    target_bytes = COMPUTE_BLOCK_BYTES if computes else TARGET_BLOCK_BYTES
    grid = BlockGrid(target, resolve_block_shape(block_shape, out, in_chunks, target_bytes))
    task = BlockTask(
        "downsample", src, out, grid, kernel, as_source(mask) if mask is not None else None
    )
    result = await run_task(task, options)
    if not options.wait:
        return result
    return array if array is not None else output
