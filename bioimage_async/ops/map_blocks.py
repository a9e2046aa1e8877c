"""map_blocks: apply a user function to every block (with a halo), in a process pool."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from numbers import Integral
from typing import Any, Unpack

import numpy as np

from ..blocking.grid import Block, BlockGrid
from ..errors import InvalidArgumentError
from ..pipeline.task import BlockKernel, BlockTask
from ..runners.options import ExecKwargs
from ..sources.indexing import Roi
from ..sources.registry import as_source
from ._exec import OpResult, allocate_output, exec_options, finish, run_task
from .copy import resolve_block_shape
from .fingerprint import function_fingerprint
from .overlap import same_voxels, shares_voxels


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
            raise InvalidArgumentError(
                f"the function returned shape {result.shape} for block {block.id}, but its input "
                f"(block plus halo) had shape {data.shape}; map_blocks needs the same shape back"
            )
        return result[block.inner_local_roi]

    def describe(self) -> dict[str, Any]:
        return {
            "kernel": "FunctionKernel",
            "fn": getattr(self.fn, "__qualname__", repr(self.fn)),
            "fn_sha256": function_fingerprint(self.fn),  # resumes must run the same computation
        }


async def map_blocks(
    fn: Callable[[np.ndarray], np.ndarray],
    input: Any,
    output: Any = None,
    *,
    block_shape: Any = None,
    halo: Any = None,
    mask: Any = None,
    **exec_kwargs: Unpack[ExecKwargs],
) -> OpResult:
    """Write ``fn(block_with_halo)`` (halo cropped) into ``output`` for every block.

    ``fn`` runs in worker processes, so it must be picklable by cloudpickle (lambdas, closures
    and functions from your own modules work). It receives the block with its halo (clipped at
    the volume border) and must return an array of that same shape; its values meet the
    output dtype through checked casting (see ``casting=``). With ``mask``, voxels outside the
    mask keep the output's old values (only those inside are checked) and blocks with an empty
    mask are skipped unread.
    """
    options = await exec_options(exec_kwargs)
    if not callable(fn):
        raise InvalidArgumentError(f"map_blocks needs a callable fn, got {type(fn).__name__}")
    src = as_source(input)
    out, array = allocate_output(
        as_source(output) if output is not None else None, src.shape, src.dtype, options
    )
    if out.shape != src.shape:
        raise InvalidArgumentError(
            f"output shape {out.shape} must equal the input shape {src.shape}"
        )
    if halo is not None:
        halo = halo_tuple(halo, src.ndim)
    if halo is not None and any(halo) and shares_voxels(src, out):
        raise InvalidArgumentError(
            "map_blocks with a halo cannot write into its own input (blocks would read "
            "neighbours already overwritten), and the output holds voxels of the input (the "
            "same array, opened twice, through a view, a transposed handle or a wrapper); use a "
            "separate output"
        )
    if shares_voxels(src, out) and not same_voxels(src, out):
        raise InvalidArgumentError(
            "map_blocks cannot write into its own input seen another way: the output and the "
            "input hold some of the same stored voxels, but at other positions (a shifted view, "
            "a transposed or reversed handle, a wrapper such as ThresholdSource), so blocks "
            "would read voxels that other blocks already overwrote; write to a separate output "
            "(or to exactly the input, unwrapped, which is safe without a halo)"
        )
    grid = BlockGrid(out.shape, resolve_block_shape(block_shape, out, src.chunks), halo)
    task = BlockTask(
        "map_blocks",
        src,
        out,
        grid,
        FunctionKernel(fn),
        as_source(mask) if mask is not None else None,
    )
    return finish(await run_task(task, options), options, output, array)


def halo_tuple(halo: Any, ndim: int) -> tuple[int, ...]:
    """A halo per axis (an int applies to every axis); non-negative integers only."""
    values = (halo,) * ndim if isinstance(halo, Integral) else halo
    problem = InvalidArgumentError(
        f"halo must be a non-negative integer or one per axis ({ndim} axes), got {halo!r}"
    )
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise problem
    result = tuple(values)
    if len(result) != ndim or not all(
        isinstance(h, Integral) and not isinstance(h, bool) and int(h) >= 0 for h in result
    ):
        raise problem
    return tuple(int(h) for h in result)
