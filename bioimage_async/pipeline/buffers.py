"""Input buffers reused from block to block, so a run does not fault in fresh memory per block.

Why: a smoothing downsample reads each block's input region (8 MiB for the default blocks of
64^3 chunks) into a new array that is dropped after the compute. The allocator returns such
large arrays to the kernel, so every block touches fresh pages: measured at twice the page
faults of tensorstore's own downsample, ~0.1 s of CPU per 256 MiB on this VM (a fault costs
~2 us here). Reading into a few buffers that live for the run costs the faults once.

Only kernels that promise to keep no reference to their input (``BlockKernel.input_is_scratch``)
read into pooled buffers (compressed TIFF and HDF5 inputs decode straight into them). Copies
do not: all their blocks are often in flight at once, so a pool reuses nothing and only keeps
memory (measured: 60 MiB more peak on a 128 MiB TIFF, no faster). A buffer returns to the pool once the compute is done (so it is not
held while the block is written), or only after the write where the result is a view of it;
a block that fails drops its buffer (a thread may still be reading it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from .task import BlockTask

__all__ = ["BufferPool", "input_buffers"]


class BufferPool:
    """Flat byte buffers handed out as arrays of any shape and dtype; at most ``keep`` idle,
    holding at most ``max_idle_bytes`` together (a huge block's buffer is freed, not kept).

    New buffers hold at least ``min_bytes`` (the largest block's input), so a buffer made for a
    small border block also serves the interior blocks after it.
    """

    def __init__(self, keep: int, min_bytes: int = 0, max_idle_bytes: int | None = None) -> None:
        self.keep = max(0, int(keep))
        self.min_bytes = max(0, int(min_bytes))
        self.max_idle_bytes = max_idle_bytes
        self._idle: list[np.ndarray] = []
        self._lock = threading.Lock()
        #: buffers allocated (not reused): a statistic for tests
        self.allocated = 0

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """(array of ``shape`` and ``dtype``, the buffer to give back with ``give``)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        with self._lock:
            fits = [i for i, b in enumerate(self._idle) if b.nbytes >= nbytes]
            best = min(fits, key=lambda i: self._idle[i].nbytes) if fits else None
            buffer = self._idle.pop(best) if best is not None else None
            if buffer is None:
                self.allocated += 1
        if buffer is None:
            buffer = huge_page_aligned(max(nbytes, self.min_bytes, 1))
        return buffer[:nbytes].view(dtype).reshape(shape), buffer

    def give(self, buffer: np.ndarray) -> None:
        """Return a buffer; the smallest idle ones are dropped beyond ``keep``."""
        with self._lock:
            self._idle.append(buffer)
            if len(self._idle) > self.keep:  # the smallest goes (by position: arrays compare
                del self._idle[self._index(min)]  # by value)
            while self.max_idle_bytes is not None and (
                sum(b.nbytes for b in self._idle) > self.max_idle_bytes
            ):
                del self._idle[self._index(max)]  # a huge buffer is freed rather than kept

    def _index(self, pick: Callable[..., int]) -> int:
        return pick(range(len(self._idle)), key=lambda i: self._idle[i].nbytes)


#: the kernel's transparent huge page size on x86-64 and most arm64 systems
HUGE_PAGE = 2 * 1024 * 1024


def huge_page_aligned(nbytes: int) -> np.ndarray:
    """A byte buffer that starts on a huge-page boundary when it spans several huge pages.

    numpy asks for transparent huge pages on large arrays, but malloc's mapping starts 4 KiB
    past a boundary, so the first and last partial 2 MiB stay in 4 KiB pages: ~520 page
    faults per 16 MiB buffer instead of 8 (measured here). Aligning costs one huge page of
    address space, most of it never touched.
    """
    if nbytes < 2 * HUGE_PAGE:
        return np.empty(nbytes, dtype=np.uint8)
    raw = np.empty(nbytes + HUGE_PAGE, dtype=np.uint8)
    offset = -raw.ctypes.data % HUGE_PAGE
    return raw[offset : offset + nbytes]


def input_buffers(task: BlockTask, in_flight: int, max_bytes: int) -> BufferPool | None:
    """The pool for a run's input regions: one buffer per block in flight, at most
    ``max_bytes`` kept idle. None where a block reads more than that: its buffer would not be
    kept (one shard-sized block per pyramid level has nothing to reuse anyway)."""
    largest = task.input_bytes_of_largest_block()
    return BufferPool(in_flight, largest, max_bytes) if largest <= max_bytes else None
