"""The block grid: how a volume is cut into blocks, with ids in C order.

Block ids follow bioimage-py: id 0 is the block at the origin, the last axis varies fastest,
edge blocks are clipped to the volume. A block with a halo has an ``outer_roi`` (what is read,
clipped at the volume border), the ``inner_roi`` (what is written) and the ``inner_local_roi``
(the inner region in the coordinates of the outer array, used to crop the halo off).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError, InvalidIndexError
from ..sources.indexing import Roi, normalize_index


@dataclass(frozen=True)
class Block:
    """One block of a grid: its id, its region and, with a halo, its read region."""

    id: int
    roi: Roi
    outer_roi: Roi

    @property
    def inner_roi(self) -> Roi:
        return self.roi

    @property
    def inner_local_roi(self) -> Roi:
        return tuple(
            slice(i.start - o.start, i.stop - o.start) for i, o in zip(self.roi, self.outer_roi)
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.roi)

    @property
    def begin(self) -> tuple[int, ...]:
        return tuple(s.start for s in self.roi)

    @property
    def end(self) -> tuple[int, ...]:
        return tuple(s.stop for s in self.roi)


class BlockGrid:
    """A regular grid of blocks over ``shape``; blocks are computed on demand, never stored."""

    def __init__(
        self,
        shape: Sequence[int],
        block_shape: Sequence[int],
        halo: Sequence[int] | None = None,
    ) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.block_shape = tuple(int(b) for b in block_shape)
        if len(self.block_shape) != len(self.shape):
            raise InvalidArgumentError(
                f"block_shape {self.block_shape} has {len(self.block_shape)} entries but the "
                f"volume has {len(self.shape)} axes (shape {self.shape})"
            )
        if any(b < 1 for b in self.block_shape):
            raise InvalidArgumentError(
                f"block_shape {self.block_shape} must be positive on every axis"
            )
        self.halo = tuple(int(h) for h in halo) if halo is not None else (0,) * len(self.shape)
        if len(self.halo) != len(self.shape) or any(h < 0 for h in self.halo):
            raise InvalidArgumentError(
                f"halo {self.halo} must have one non-negative entry per axis of shape {self.shape}"
            )
        self.grid_shape = tuple(
            max(1, math.ceil(n / b)) if n else 0 for n, b in zip(self.shape, self.block_shape)
        )
        self.num_blocks = math.prod(self.grid_shape)

    def __len__(self) -> int:
        return self.num_blocks

    def __repr__(self) -> str:
        return (
            f"BlockGrid(shape={self.shape}, block_shape={self.block_shape}, halo={self.halo}, "
            f"blocks={self.num_blocks})"
        )

    def grid_position(self, block_id: int) -> tuple[int, ...]:
        if not 0 <= block_id < self.num_blocks:
            raise InvalidIndexError(
                f"block id {block_id} is out of range: this grid has {self.num_blocks} blocks "
                f"(ids 0..{self.num_blocks - 1})"
            )
        position = []
        for n in reversed(self.grid_shape):
            block_id, rest = divmod(block_id, n)
            position.append(rest)
        return tuple(reversed(position))

    def block_id(self, position: Sequence[int]) -> int:
        block_id = 0
        for p, n in zip(position, self.grid_shape):
            block_id = block_id * n + int(p)
        return block_id

    def block(self, block_id: int) -> Block:
        position = self.grid_position(block_id)
        roi = tuple(
            slice(p * b, min((p + 1) * b, n))
            for p, b, n in zip(position, self.block_shape, self.shape)
        )
        outer = tuple(
            slice(max(s.start - h, 0), min(s.stop + h, n))
            for s, h, n in zip(roi, self.halo, self.shape)
        )
        return Block(block_id, roi, outer)

    def __iter__(self) -> Iterator[Block]:
        return (self.block(i) for i in range(self.num_blocks))

    def check_ids(self, block_ids: Iterable[int]) -> list[int]:
        """Sorted unique ids, refusing any outside the grid up front (not at run time)."""
        ids = sorted({int(i) for i in block_ids})
        bad = [i for i in ids if not 0 <= i < self.num_blocks]
        if bad:
            raise InvalidArgumentError(
                f"block_ids {bad[:10]} are out of range: the grid {self.grid_shape} of "
                f"block_shape {self.block_shape} over shape {self.shape} has ids "
                f"0..{self.num_blocks - 1}"
            )
        return ids

    def ids_in_roi(self, roi: Any) -> list[int]:
        """Ids of the blocks that intersect a region (e.g. to re-run a damaged area), given as
        a source index is (slices, ints, '...', negative bounds; past the volume refused). An
        empty region has none (an unnormalised one gave other rows' blocks and id -1)."""
        import itertools

        region = normalize_index(roi, self.shape).roi
        if any(s.stop <= s.start for s in region):
            return []
        ranges = [
            range(s.start // b, math.ceil(s.stop / b)) for s, b in zip(region, self.block_shape)
        ]
        return [self.block_id(p) for p in itertools.product(*ranges)]
