"""copy: block-wise copy (format conversion, or materialising a wrapper source)."""

from __future__ import annotations

from typing import Any, Unpack

from ..blocking.defaults import (
    ALIGNED_COPY_BLOCK_BYTES,
    COPY_BLOCK_BYTES,
    TARGET_BLOCK_BYTES,
    default_block_shape,
)
from ..blocking.grid import BlockGrid
from ..errors import InvalidArgumentError
from ..pipeline.task import BlockKernel, BlockTask
from ..runners.options import ExecKwargs
from ..sources.base import Source
from ..sources.registry import as_source
from ._exec import OpResult, allocate_output, exec_options, finish, run_task
from .overlap import same_voxels, shares_voxels


def resolve_block_shape(
    block_shape: Any,
    output: Source,
    input_chunks: tuple[int, ...] | None,
    target_bytes: int = TARGET_BLOCK_BYTES,
    align_bytes: int | None = None,
) -> tuple[int, ...]:
    if block_shape is None:
        return default_block_shape(
            output.shape,
            output.dtype.itemsize,
            output.write_granularity,
            input_chunks,
            target_bytes,
            align_bytes,
        )
    shape = positive_int_tuple(block_shape, "block_shape")
    if len(shape) != output.ndim:
        raise InvalidArgumentError(
            f"block_shape {shape} must have one entry per axis of the output (shape {output.shape})"
        )
    return shape


def positive_int_tuple(values: Any, what: str) -> tuple[int, ...]:
    """A tuple of positive integers, refusing floats, strings and scalars with the value."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InvalidArgumentError(f"{what} must be a tuple of positive integers, got {values!r}")
    result = []
    for value in values:
        if isinstance(value, bool) or not float(value).is_integer() or int(value) < 1:
            raise InvalidArgumentError(
                f"{what} must be a tuple of positive integers, got {tuple(values)!r}"
            )
        result.append(int(value))
    return tuple(result)


async def copy(
    input: Any,
    output: Any = None,
    *,
    block_shape: Any = None,
    mask: Any = None,
    **exec_kwargs: Unpack[ExecKwargs],
) -> OpResult:
    """Copy ``input`` into ``output`` block by block; the output's dtype governs (cast on write).

    Without ``output`` (local runs only) a numpy array is allocated and returned. With ``mask``,
    voxels outside it keep the output's old values (the dtype check looks only inside it) and
    blocks with an empty mask are skipped without reading the input. Returns the output (the
    given one or the new array).

    Between two whole arrays with the same chunk grid, dtype, fill value and codecs, each
    block moves the encoded chunk files from store to store without decoding them (see
    ``sources.raw_copy``), in every backend, journaled and resumable like any block.

    Default blocks are whole output chunks (shards) of about 16 MiB, widened to hold whole input
    chunks (TIFF strips, HDF5 chunks) up to 32 MiB: a copy computes nothing, so bigger blocks
    only lower the per-block costs, and no input chunk is decoded for several blocks.
    """
    options = await exec_options(exec_kwargs)
    src = as_source(input)
    out, array = allocate_output(
        as_source(output) if output is not None else None, src.shape, src.dtype, options
    )
    if same_voxels(src, out):
        raise InvalidArgumentError("copy needs 'output' to differ from 'input'")
    if shares_voxels(src, out):
        raise InvalidArgumentError(
            "copy cannot write into a region that overlaps its input (the same array, opened "
            "twice, through shifted views, a transposed or reversed handle or a wrapper): "
            "blocks would read voxels that other blocks already overwrote; copy into a "
            "separate array, then back"
        )
    if out.shape != src.shape:
        raise InvalidArgumentError(
            f"output shape {out.shape} must equal the input shape {src.shape}"
        )
    grid = BlockGrid(
        out.shape,
        resolve_block_shape(
            block_shape, out, src.chunks, COPY_BLOCK_BYTES, ALIGNED_COPY_BLOCK_BYTES
        ),
    )
    task = BlockTask(
        "copy", src, out, grid, BlockKernel(), as_source(mask) if mask is not None else None
    )
    return finish(await run_task(task, options), options, output, array)
