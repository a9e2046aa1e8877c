"""Whether two sources are, in part, the same voxels in storage.

An op that reads neighbours (a halo) must not write where it reads: blocks would read voxels
that other blocks already overwrote. Comparing the two objects, or their whole specs, misses the
same array opened twice (``mode='r'`` and ``mode='r+'`` differ in their specs) and a view of
it (``arr.view[:, :]`` against ``arr``), so both are resolved to the array they look into.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..sources.base import Source
from ..sources.numpy_source import NumpySource
from ..sources.view import ViewSource

#: spec parameters that describe the handle, not the stored array
_HANDLE_PARAMS = ("writable", "voxel_size", "unit", "axes")


def base_region(source: Source) -> tuple[Source, list[tuple[int, int]] | None]:
    """The source a chain of views looks into and the region of it they cover (None: all)."""
    region: list[tuple[int, int]] | None = None
    while isinstance(source, ViewSource):
        roi = source.region.roi  # in the parent's coordinates, every parent axis
        mapped = [(int(s.start), int(s.stop)) for s in roi]
        if region is not None:  # the region so far is in this view's (kept) axes
            kept = [a for a in range(len(roi)) if a not in source.region.squeeze]
            for (lo, hi), axis in zip(region, kept):
                start = int(roi[axis].start)
                mapped[axis] = (start + lo, start + hi)
        region = mapped
        source = source.parent
    return source, region


def _storage_key(source: Source) -> Any:
    try:
        spec = source.to_spec().to_json()
    except Exception:  # noqa: BLE001 - in-memory sources have no spec: identity decides
        return None
    params = dict(spec.get("params") or {})
    for name in _HANDLE_PARAMS:
        params.pop(name, None)
    return (spec.get("kind"), repr(sorted(params.items(), key=lambda item: item[0])))


def _same_storage(a: Source, b: Source) -> bool:
    if a is b:
        return True
    if isinstance(a, NumpySource) and isinstance(b, NumpySource):
        return bool(np.shares_memory(a.array, b.array))
    key = _storage_key(a)
    return key is not None and key == _storage_key(b)


def shares_voxels(a: Source, b: Source) -> bool:
    """Whether ``a`` and ``b`` may hold some of the same stored voxels."""
    base_a, region_a = base_region(a)
    base_b, region_b = base_region(b)
    if not _same_storage(base_a, base_b):
        return False
    if region_a is None or region_b is None:
        return True
    return all(
        lo_a < hi_b and lo_b < hi_a for (lo_a, hi_a), (lo_b, hi_b) in zip(region_a, region_b)
    )


def same_voxels(a: Source, b: Source) -> bool:
    """Whether ``a`` and ``b`` are exactly the same stored voxels, in the same order."""
    base_a, region_a = base_region(a)
    base_b, region_b = base_region(b)
    if not _same_storage(base_a, base_b):
        return False
    whole_a = region_a is None or _covers(base_a, region_a)
    whole_b = region_b is None or _covers(base_b, region_b)
    if whole_a or whole_b:
        return whole_a and whole_b and a.shape == b.shape
    return region_a == region_b and a.shape == b.shape


def _covers(base: Source, region: list[tuple[int, int]]) -> bool:
    return all(lo == 0 and hi == n for (lo, hi), n in zip(region, base.shape))
