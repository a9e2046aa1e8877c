"""copy: block-wise copy (format conversion, or materialising a wrapper source)."""

from __future__ import annotations

from typing import Any

from ..blocking.defaults import TARGET_BLOCK_BYTES, default_block_shape
from ..blocking.grid import BlockGrid
from ..pipeline.task import BlockKernel, BlockTask
from ..sources.base import Source
from ..sources.registry import as_source
from ._exec import allocate_output, exec_options, run_task


def same_source(a: Source, b: Source) -> bool:
    if a is b:
        return True
    try:
        return a.to_spec().to_json() == b.to_spec().to_json()
    except Exception:  # noqa: BLE001 - in-memory sources have no spec; identity decided above
        return False


def resolve_block_shape(
    block_shape: Any,
    output: Source,
    input_chunks: tuple[int, ...] | None,
    target_bytes: int = TARGET_BLOCK_BYTES,
) -> tuple[int, ...]:
    if block_shape is None:
        return default_block_shape(
            output.shape,
            output.dtype.itemsize,
            output.write_granularity,
            input_chunks,
            target_bytes,
        )
    block_shape = tuple(int(b) for b in block_shape)
    if len(block_shape) != output.ndim:
        raise ValueError(
            f"block_shape {block_shape} must have one entry per axis of the output "
            f"(shape {output.shape})"
        )
    return block_shape


async def copy(
    input: Any,
    output: Any = None,
    *,
    block_shape: Any = None,
    mask: Any = None,
    **exec_kwargs: Any,
) -> Any:
    """Copy ``input`` into ``output`` block by block; the output's dtype governs (cast on write).

    Without ``output`` (local runs only) a numpy array is allocated and returned. With ``mask``,
    voxels outside it keep the output's old values and blocks with an empty mask are skipped
    without reading the input. Returns the output (the given one or the new array).
    """
    options = exec_options(**exec_kwargs)
    src = as_source(input)
    out, array = allocate_output(
        as_source(output) if output is not None else None, src.shape, src.dtype, options
    )
    if same_source(src, out):
        raise ValueError("copy needs 'output' to differ from 'input'")
    if out.shape != src.shape:
        raise ValueError(f"output shape {out.shape} must equal the input shape {src.shape}")
    grid = BlockGrid(out.shape, resolve_block_shape(block_shape, out, src.chunks))
    task = BlockTask(
        "copy", src, out, grid, BlockKernel(), as_source(mask) if mask is not None else None
    )
    result = await run_task(task, options)
    if not options.wait:
        return result
    return array if array is not None else output
