"""Normalise numpy basic indices to a region of interest.

Sources accept ints (negative counts from the end; the axis is dropped), slices with step 1
(negative bounds count from the end) and one Ellipsis. Unlike numpy, slice bounds outside the
volume are an error rather than silently clipped: in block-wise code a clipped slice hides a
wrong block computation.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidIndexError

Roi = tuple[slice, ...]


@dataclass(frozen=True)
class NormalizedIndex:
    """A full region (one slice per axis, concrete bounds) and the axes an int index drops."""

    roi: Roi
    squeeze: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the region before squeezing."""
        return tuple(s.stop - s.start for s in self.roi)

    @property
    def result_shape(self) -> tuple[int, ...]:
        """Shape of what a read returns (int-indexed axes dropped)."""
        return tuple(n for axis, n in enumerate(self.shape) if axis not in self.squeeze)


def _resolve_bound(value: Any, size: int, axis: int, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise InvalidIndexError(f"slice {what} {value!r} on axis {axis} is not an integer")
    value = int(value)
    resolved = value + size if value < 0 else value
    if resolved < 0 or resolved > size:
        raise InvalidIndexError(
            f"slice {what} {value} is out of bounds for axis {axis} with size {size}"
        )
    return resolved


def normalize_index(index: Any, shape: tuple[int, ...]) -> NormalizedIndex:
    """Turn ``index`` into a NormalizedIndex over ``shape``, or raise InvalidIndexError."""
    items = index if isinstance(index, tuple) else (index,)
    ellipses = sum(1 for item in items if item is Ellipsis)
    if ellipses > 1:
        raise InvalidIndexError("an index can only have a single ellipsis ('...')")
    explicit = len(items) - ellipses
    if explicit > len(shape):
        raise InvalidIndexError(
            f"too many indices: {explicit} given for a {len(shape)}-dimensional source"
        )
    if ellipses:
        at = next(i for i, item in enumerate(items) if item is Ellipsis)
        fill = (slice(None),) * (len(shape) - explicit)
        items = items[:at] + fill + items[at + 1 :]
    else:
        items = items + (slice(None),) * (len(shape) - len(items))

    roi: list[slice] = []
    squeeze: list[int] = []
    for axis, (item, size) in enumerate(zip(items, shape)):
        if isinstance(item, slice):
            if item.step not in (None, 1):
                raise InvalidIndexError(
                    f"slice step {item.step} on axis {axis} is not supported; sources only "
                    "read contiguous regions. Read with step 1 and subsample the numpy result."
                )
            start = 0 if item.start is None else _resolve_bound(item.start, size, axis, "start")
            stop = size if item.stop is None else _resolve_bound(item.stop, size, axis, "stop")
            if start > stop:
                raise InvalidIndexError(
                    f"slice {item.start}:{item.stop} on axis {axis} has start after stop"
                )
            roi.append(slice(start, stop))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            value = int(item)
            resolved = value + size if value < 0 else value
            if not 0 <= resolved < size:
                raise InvalidIndexError(
                    f"index {value} is out of bounds for axis {axis} with size {size}"
                )
            roi.append(slice(resolved, resolved + 1))
            squeeze.append(axis)
        elif item is None:
            raise InvalidIndexError(
                "np.newaxis / None is not supported in a source index; add the axis to the "
                "numpy result instead"
            )
        else:
            raise InvalidIndexError(
                f"index {_shown(item)} on axis {axis} is not basic indexing (fancy, boolean "
                "and list indices are not supported); use ints, slices with step 1 and '...'"
            )
    return NormalizedIndex(tuple(roi), tuple(squeeze))


def _shown(item: Any) -> str:
    """An index for a message: arrays by dtype and shape (never their values)."""
    if isinstance(item, np.ndarray):
        return f"<a {item.dtype} array of shape {item.shape}>"
    if isinstance(item, (list, tuple)) and len(item) > 8:
        return f"<a {type(item).__name__} of {len(item)} items>"
    return repr(item)


def roi_shape(roi: Roi) -> tuple[int, ...]:
    return tuple(s.stop - s.start for s in roi)


def full_roi(shape: tuple[int, ...]) -> Roi:
    return tuple(slice(0, n) for n in shape)


def spread_positions(grid: Sequence[int]) -> list[tuple[int, ...]]:
    """Positions of a chunk grid spread over it: the first, middle and last index on every
    axis (at most 3**ndim), the origin first. Where a store cannot be listed, a few chunks
    looked up here tell its layout even when the first one was never written."""
    per_axis = [sorted({0, (n - 1) // 2, n - 1}) for n in grid]
    return sorted(itertools.product(*per_axis), key=lambda p: (any(p), p))
