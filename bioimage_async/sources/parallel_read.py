"""Read one large region of a decoding source as parts filled concurrently in the blocking pool.

A block of a conversion is one read, and the pipeline keeps several in flight, so blocks already
spread over the pool's threads. A single large read (``src[...]``, a big slab) would decode on
one thread only; splitting it along its first long axis lets every thread of the pool decode.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import numpy as np

from ..context import resource_options, run_blocking
from .indexing import Roi, roi_shape

#: Regions smaller than this are read by one thread (splitting costs more than it saves).
PART_BYTES = 8 * 1024 * 1024

Fill = Callable[[np.ndarray, Roi], None]


def split_roi(roi: Roi, parts: int, align: tuple[int, ...] | None = None) -> list[Roi]:
    """Up to ``parts`` pieces of ``roi`` along its first axis longer than one (chunk-aligned)."""
    axis = next((a for a, s in enumerate(roi) if s.stop - s.start > 1), None)
    if axis is None or parts < 2:
        return [roi]
    start, stop = roi[axis].start, roi[axis].stop
    unit = max(1, align[axis]) if align is not None else 1
    first_unit, last_unit = start // unit, math.ceil(stop / unit)
    per_part = max(1, math.ceil((last_unit - first_unit) / parts))
    pieces: list[Roi] = []
    for u in range(first_unit, last_unit, per_part):
        lo, hi = max(start, u * unit), min(stop, (u + per_part) * unit)
        pieces.append(roi[:axis] + (slice(lo, hi),) + roi[axis + 1 :])
    return pieces


async def read_in_parts(
    fill: Fill, roi: Roi, dtype: np.dtype, align: tuple[int, ...] | None = None
) -> np.ndarray:
    """A new array of ``roi`` filled by ``fill(out_part, part_roi)`` calls in the blocking pool.

    On cancel the parts already running in threads finish (their output is dropped); parts not
    yet started are not run.
    """
    out = np.empty(roi_shape(roi), dtype=dtype)
    await fill_in_parts(fill, roi, out, align)
    return out


async def fill_in_parts(
    fill: Fill, roi: Roi, out: np.ndarray, align: tuple[int, ...] | None = None
) -> None:
    """Fill ``out`` (``roi``'s shape) as ``read_in_parts`` does: the pipeline's pooled block
    buffers are filled in place, sparing a fresh array (and its page faults) per block.

    On cancel, parts already running in threads still write into ``out``: the caller must
    not hand it to anyone else (the pipeline drops the buffer of a block that did not finish).
    """
    threads = resource_options().blocking_threads
    parts = split_roi(roi, min(threads, out.nbytes // PART_BYTES), align)
    if len(parts) == 1:
        await run_blocking(fill, out, roi)
        return

    def view(part: Roi) -> np.ndarray:
        return out[tuple(slice(p.start - r.start, p.stop - r.start) for p, r in zip(part, roi))]

    await asyncio.gather(*(run_blocking(fill, view(part), part) for part in parts))
