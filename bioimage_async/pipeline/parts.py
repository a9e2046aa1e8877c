"""Compute one large block in parts, on several threads.

Blocks are the unit of I/O, and a sharded output makes them as large as its shards (tens of MiB
of output, eight times that of input for a 2x downsample), so that each shard is written once.
Few such blocks fit the memory budget at a time: one block computed on one thread would leave
the other cores idle. The kernels that run in threads (numpy and the compiled kernels release
the GIL) compute such a block as slabs along its first axis, in parallel; each output voxel
depends only on its own input region, so the parts equal the whole, bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..sources.indexing import Roi

#: Blocks with more output bytes than this are computed in parts.
SPLIT_BYTES = 4 * 1024 * 1024

_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """A pool of its own: the parts are awaited from a thread of the blocking pool, which
    must not wait on work queued behind itself."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="bioimage-parts")
    return _POOL


def compute_in_parts(
    roi: Roi,
    data: np.ndarray,
    out_bytes_per_voxel: int,
    input_roi: Callable[[Roi], Roi],
    compute: Callable[[Roi, np.ndarray], np.ndarray],
) -> np.ndarray:
    """``compute(roi, data)``, as slabs of ``roi`` along its first axis longer than one when the
    output is larger than SPLIT_BYTES. ``data`` is the block's input, ``input_roi(roi)``."""
    shape = [s.stop - s.start for s in roi]
    parts = min(os.cpu_count() or 1, int(np.prod(shape)) * out_bytes_per_voxel // SPLIT_BYTES)
    axis = next((a for a, n in enumerate(shape) if n > 1), None)
    if parts < 2 or axis is None:
        return compute(roi, data)
    parts = min(parts, shape[axis])
    origin = [s.start for s in input_roi(roi)]
    bounds = np.linspace(roi[axis].start, roi[axis].stop, parts + 1).round().astype(int)

    def part(lo: int, hi: int) -> np.ndarray:
        sub = roi[:axis] + (slice(int(lo), int(hi)),) + roi[axis + 1 :]
        need = input_roi(sub)
        local = tuple(slice(s.start - o, s.stop - o) for s, o in zip(need, origin))
        return compute(sub, data[local])

    results = list(_pool().map(part, bounds[:-1], bounds[1:]))
    return np.concatenate(results, axis=axis)
