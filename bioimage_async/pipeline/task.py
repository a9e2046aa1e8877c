"""A BlockTask: everything a runner needs to process blocks, local or distributed.

The ops validate their arguments and build one; runners only execute it. The per-block
computation is a picklable ``BlockKernel`` so the same task runs in this process, in a process
pool, or in a slurm worker that reopens the sources from their specs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..blocking.grid import Block, BlockGrid
from ..sources.base import Source
from ..sources.indexing import Roi


class BlockKernel:
    """How one output block is computed from its input region. Must be picklable.

    The default is a copy: read the block's region and write it unchanged.
    """

    #: Where compute runs: "none" (a copy: data goes straight from read to write), "light"
    #: (cheap numpy work: the blocking thread pool) or "heavy" (the process pool).
    compute_cost: str = "none"

    #: True where ``compute`` keeps no reference to its input once it returns (the library's
    #: own kernels), so the pipeline may read the next block's input into the same memory.
    #: User functions (``map_blocks``) might keep one: False.
    input_is_scratch: ClassVar[bool] = False

    @property
    def needs_compute(self) -> bool:
        return self.compute_cost != "none"

    def input_roi(self, block: Block) -> Roi:
        """The region of the input this block reads (its halo included)."""
        return block.roi

    def compute(self, block: Block, data: np.ndarray) -> np.ndarray:
        """The output block (shape ``block.shape``) from the input region's data."""
        return data

    def describe(self) -> dict[str, Any]:
        return {"kernel": type(self).__name__}


@dataclass
class BlockTask:
    """The blocks of ``grid`` (output space): read ``input``, compute, write into ``output``."""

    name: str
    input: Source
    output: Source
    grid: BlockGrid
    kernel: BlockKernel = field(default_factory=BlockKernel)
    mask: Source | None = None
    #: how values meet the output dtype: "checked" (refuse what does not fit), "clip", "unsafe"
    casting: str = "checked"

    def sources(self) -> dict[str, Source]:
        named = {"input": self.input, "output": self.output}
        if self.mask is not None:
            named["mask"] = self.mask
        return named

    def input_bytes_of_largest_block(self) -> int:
        """The input region of a block in the middle of the grid (it has the widest halo)."""
        if self.grid.num_blocks == 0:
            return 0
        middle = self.grid.block_id(tuple(n // 2 for n in self.grid.grid_shape))
        return self._input_bytes(self.grid.block(middle))

    def bytes_per_block(self) -> int:
        """Memory one block in flight holds in this process (input region plus output)."""
        block = self.grid.block(0)
        n_out = int(np.prod(block.shape, dtype=np.int64)) * self.output.dtype.itemsize
        return self._input_bytes(block) + n_out

    def _input_bytes(self, block: Block) -> int:
        in_shape = [s.stop - s.start for s in self.kernel.input_roi(block)]
        return int(np.prod(in_shape, dtype=np.int64)) * self.input.dtype.itemsize
