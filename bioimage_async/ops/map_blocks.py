"""map_blocks: apply a user function to every block (with a halo), in a process pool."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..blocking.grid import Block, BlockGrid
from ..pipeline.task import BlockKernel, BlockTask
from ..sources.indexing import Roi
from ..sources.registry import as_source
from ._exec import allocate_output, exec_options, run_task
from .copy import resolve_block_shape, same_source


@dataclass(frozen=True)
class FunctionKernel(BlockKernel):
    """``fn(data) -> array`` on the block with its halo; the halo is cropped off afterwards."""

    fn: Callable[[np.ndarray], np.ndarray]
    compute_cost: str = "heavy"

    def input_roi(self, block: Block) -> Roi:
        return block.outer_roi

    def compute(self, block: Block, data: np.ndarray) -> np.ndarray:
        result = np.asarray(self.fn(data))
        if result.shape != data.shape:
            raise ValueError(
                f"the function returned shape {result.shape} for block {block.id}, but its input "
                f"(block plus halo) had shape {data.shape}; map_blocks needs the same shape back"
            )
        return result[block.inner_local_roi]

    def describe(self) -> dict[str, Any]:
        return {"kernel": "FunctionKernel", "fn": getattr(self.fn, "__qualname__", repr(self.fn))}


async def map_blocks(
    fn: Callable[[np.ndarray], np.ndarray],
    input: Any,
    output: Any = None,
    *,
    block_shape: Any = None,
    halo: Any = None,
    mask: Any = None,
    **exec_kwargs: Any,
) -> Any:
    """Write ``fn(block_with_halo)`` (halo cropped) into ``output`` for every block.

    ``fn`` runs in worker processes, so it must be picklable by cloudpickle (lambdas, closures
    and functions from your own modules work). The halo is clipped at the volume border.
    """
    options = exec_options(**exec_kwargs)
    if not callable(fn):
        raise TypeError(f"map_blocks needs a callable fn, got {type(fn).__name__}")
    src = as_source(input)
    out, array = allocate_output(
        as_source(output) if output is not None else None, src.shape, src.dtype, options
    )
    if out.shape != src.shape:
        raise ValueError(f"output shape {out.shape} must equal the input shape {src.shape}")
    if same_source(src, out) and halo is not None and any(halo):
        raise ValueError(
            "map_blocks with a halo cannot write into its own input (blocks would read "
            "neighbours already overwritten); use a separate output"
        )
    if halo is not None:
        halo = (int(halo),) * src.ndim if isinstance(halo, int) else tuple(int(h) for h in halo)
    grid = BlockGrid(out.shape, resolve_block_shape(block_shape, out, src.chunks), halo)
    task = BlockTask(
        "map_blocks",
        src,
        out,
        grid,
        FunctionKernel(fn),
        as_source(mask) if mask is not None else None,
    )
    result = await run_task(task, options)
    if not options.wait:
        return result
    return array if array is not None else output
