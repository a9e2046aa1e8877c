"""Write safety: concurrent writers must never share an output chunk (or shard).

Two writers that touch one chunk each read-modify-write it, and one of the two updates is lost.
Along each axis, neighbouring blocks share a chunk exactly when the boundary between them does
not fall on the chunk grid, so the check and the grouping are separable per axis: blocks that
share chunks form runs on every axis, and a group is one run per axis (a box of blocks).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..errors import UnsafeBlockShapeError
from .grid import BlockGrid


def _axis_runs(n_blocks: int, block: int, grain: int, offset: int) -> list[range]:
    """Runs of consecutive block indices along one axis that share a chunk of size ``grain``."""
    runs: list[range] = []
    start = 0
    for p in range(1, n_blocks):
        if (p * block - offset) % grain:
            continue
        runs.append(range(start, p))
        start = p
    runs.append(range(start, n_blocks))
    return runs


def _aligned(grid: BlockGrid, grain: Sequence[int], offset: Sequence[int]) -> bool:
    return all(
        n <= 1 or (b % g == 0 and o % g == 0)
        for n, b, g, o in zip(grid.grid_shape, grid.block_shape, grain, offset)
    )


def propose_block_shape(
    block_shape: Sequence[int], chunks: Sequence[int], shape: Sequence[int]
) -> tuple[int, ...]:
    """The chunk multiple nearest to ``block_shape`` (never above the volume's extent)."""
    proposal = []
    for b, c, n in zip(block_shape, chunks, shape):
        multiple = max(1, round(b / c)) * c
        proposal.append(min(multiple, max(c, math.ceil(n / c) * c)))
    return tuple(proposal)


@dataclass(frozen=True)
class WritePlan:
    """How blocks are handed to writers: one block per work item, or boxes of blocks."""

    grid: BlockGrid
    runs: tuple[tuple[range, ...], ...] | None = None  # per axis, when grouping is needed
    #: when blocks share chunks that no block shape can keep apart (a region that starts off
    #: the chunk grid): the (grain, offset) of the chunks whose writes one process must take
    #: turns on (``pipeline.chunk_guard``)
    guarded: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    @property
    def grouped(self) -> bool:
        return self.runs is not None

    def groups(self, block_ids: Sequence[int] | None = None) -> Iterator[list[int]]:
        """Work items: lists of block ids that one writer processes in order.

        Costs O(blocks selected), never O(grid): with ``block_ids`` the boxes are found from
        the selected ids alone.
        """
        if self.runs is None:
            ids = range(self.grid.num_blocks) if block_ids is None else block_ids
            return ([i] for i in ids)
        if block_ids is None:
            return self._all_boxes()
        return self._boxes_of(block_ids)

    def _all_boxes(self) -> Iterator[list[int]]:
        assert self.runs is not None
        for box in itertools.product(*self.runs):
            yield [self.grid.block_id(p) for p in itertools.product(*box)]

    def _boxes_of(self, block_ids: Sequence[int]) -> Iterator[list[int]]:
        assert self.runs is not None
        starts = [[run.start for run in axis] for axis in self.runs]
        boxes: dict[tuple[int, ...], list[int]] = {}
        for block_id in sorted(set(block_ids)):
            position = self.grid.grid_position(block_id)
            key = tuple(bisect.bisect_right(s, p) - 1 for s, p in zip(starts, position))
            boxes.setdefault(key, []).append(block_id)
        for key in sorted(boxes):
            yield boxes[key]


def plan_writes(
    grid: BlockGrid,
    chunks: Sequence[int] | None,
    shards: Sequence[int] | None,
    offset: Sequence[int] | None,
    *,
    concurrent: bool,
    output_name: str = "the output",
    one_writer: bool = False,
) -> WritePlan:
    """Check that concurrent block writes never share a chunk; group blocks within shards.

    ``offset``: where the output's chunk borders lie in its own coordinates (a region of a larger
    array): at ``offset + k * chunk`` on each axis. ``one_writer``: every write is made by this
    process (a local run), so blocks of a region that starts off the chunk grid can take turns
    on the chunks they share instead of being refused.

    Raises UnsafeBlockShapeError, proposing a block shape, when blocks would split chunks.
    """
    if not concurrent or chunks is None or grid.num_blocks <= 1:
        return WritePlan(grid)
    offset = tuple(offset) if offset is not None else (0,) * len(grid.shape)
    if not _aligned(grid, chunks, offset):
        if any(o % c for o, c in zip(offset, chunks)):
            if one_writer:
                return WritePlan(grid, guarded=(tuple(shards or chunks), offset))
            raise UnsafeBlockShapeError(
                f"{output_name} is a region that does not start on a chunk boundary (chunks "
                f"{tuple(chunks)}: its first chunk border lies {offset} voxels into it), so "
                "parallel writers would share chunks. Use a region that starts on a chunk "
                "boundary, run it locally (job_type='local', where blocks take turns on the "
                "chunks they share), or write one block at a time with "
                "job_config=ba.RunnerConfig(in_flight=1)."
            )
        proposal = propose_block_shape(grid.block_shape, chunks, grid.shape)
        raise UnsafeBlockShapeError(
            f"unsafe block shape for writing: block_shape {grid.block_shape} is not a multiple "
            f"of the chunk shape {tuple(chunks)} of {output_name}, so parallel blocks would "
            f"write the same chunk and lose data. Use a block shape that is a chunk multiple, "
            f"e.g. block_shape={proposal}"
        )
    if shards is None or _aligned(grid, shards, offset):
        return WritePlan(grid)
    runs = tuple(
        tuple(_axis_runs(n, b, s, o))
        for n, b, s, o in zip(grid.grid_shape, grid.block_shape, shards, offset)
    )
    return WritePlan(grid, runs)
