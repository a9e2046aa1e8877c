"""Whether two sources are, in part, the same voxels in storage.

An op that reads neighbours (a halo) must not write where it reads: blocks would read voxels
that other blocks already overwrote. An op that writes in place (output = input) must read
each voxel where it writes it. Comparing the two objects, or their whole specs, misses the
same array opened twice (``mode='r'`` and ``mode='r+'`` differ in their specs), a view of it
(``arr.view[:, :]`` against ``arr``), a transposed, reversed or thresholded handle on it, and a
tensorstore handle taken from it (``ba.as_source(src.tensorstore().T)``), so every source is
resolved to the stored array it looks into, the region of it that it covers, and whether it
presents those voxels in their stored order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..sources.base import Source
from ..sources.numpy_source import NumpySource
from ..sources.view import ViewSource

#: spec parameters that describe the handle, not the stored array
_HANDLE_PARAMS = (
    "writable",
    "mode",
    "voxel_size",
    "unit",
    "axes",
    "location",
    "lock_path",
    "format",
)
#: members of a tensorstore spec that pick out the stored array (the transform says which part)
_STORED = ("driver", "kvstore", "path", "scale_index", "field")

Region = list[tuple[int, int]]


@dataclass
class Resolved:
    """What a source looks into: ``base`` (its stored array, or the handle on it), ``key`` (what
    names that stored array; None: only ``base`` itself), the ``region`` of it (None: all of it,
    or not known), ``axes`` (the stored axis each presented axis walks along, in order) and
    ``rearranged`` (values changed or walked in steps: a threshold, a resize, a cast, a
    reversed or strided axis)."""

    base: Source
    key: Any
    region: Region | None
    axes: tuple[int, ...] | None
    rearranged: bool


def _wrapped(source: Source) -> Source | None:
    """The source a wrapper (TransposedSource, ThresholdSource, ResizedSource) reads from."""
    inner = getattr(source, "parent", None)
    if not isinstance(inner, Source):
        inner = getattr(source, "source", None)
    return inner if isinstance(inner, Source) else None


def resolve(source: Source) -> Resolved:
    region: Region | None = None
    axes: list[int] | None = list(range(source.ndim))
    rearranged = False
    while True:
        if isinstance(source, ViewSource):
            region = _through_view(source, region)
            kept = [a for a in range(source.parent.ndim) if a not in source.region.squeeze]
            axes = None if axes is None else [kept[a] for a in axes]
            source = source.parent
            continue
        inner = _wrapped(source)
        if inner is None:
            break
        region, axes, rearranged, source = None, None, True, inner  # reordered or changed
    spec = _spec(source)
    if spec is None or spec.get("kind") != "tensorstore":
        return Resolved(source, _storage_key(spec), region, _tuple(axes), rearranged)
    stored = dict(spec["params"].get("tensorstore") or {})
    adapter = False
    while isinstance(stored.get("base"), dict):  # cast, downsample, ...: values of its base
        stored, adapter = dict(stored["base"]), True
    transform = stored.pop("transform", None) or {}
    kvstore = stored.get("kvstore")
    in_memory = isinstance(kvstore, dict) and kvstore.get("driver") == "memory"
    if stored.get("driver") == "array" or in_memory:  # no name but the handle
        key: Any = None
    else:
        named = {k: stored.get(k) for k in _STORED}
        if isinstance(kvstore, dict) and kvstore.get("driver") == "file":  # "a.zarr/": absolute,
            # through symlinks (a link to the input is the input)
            absolute = os.path.realpath(str(kvstore.get("path", ""))) + "/"
            named["kvstore"] = {**kvstore, "path": absolute}
        key = ("tensorstore", json.dumps(named, sort_keys=True))
    if adapter:
        return Resolved(source, key, None, None, True)
    mapped, outputs, stepped = _through_transform(transform, region)
    if outputs is None or axes is None:
        return Resolved(source, key, mapped, None, rearranged or stepped)
    return Resolved(source, key, mapped, tuple(outputs[a] for a in axes), rearranged or stepped)


def _tuple(axes: list[int] | None) -> tuple[int, ...] | None:
    return None if axes is None else tuple(axes)


def _through_view(view: ViewSource, region: Region | None) -> Region:
    roi = view.region.roi  # in the parent's coordinates, every parent axis
    mapped = [(int(s.start), int(s.stop)) for s in roi]
    if region is not None:  # the region so far is in this view's (kept) axes
        kept = [a for a in range(len(roi)) if a not in view.region.squeeze]
        for (lo, hi), axis in zip(region, kept):
            start = int(roi[axis].start)
            mapped[axis] = (start + lo, start + hi)
    return mapped


def _bound(value: Any) -> int:
    return int(value[0] if isinstance(value, list) else value)


def _through_transform(
    transform: dict[str, Any], region: Region | None
) -> tuple[Region | None, list[int] | None, bool]:
    """A tensorstore handle's region of its stored array, the stored axis each of its input
    axes maps to, and whether it walks in steps (reversed or strided axes, index arrays: then
    the region is None)."""
    lows = [_bound(v) for v in transform.get("input_inclusive_min", [])]
    highs = [_bound(v) for v in transform.get("input_exclusive_max", [])]
    if not lows or len(lows) != len(highs):
        return None, None, False
    covered = [
        (lo + r[0], lo + r[1]) if region is not None else (lo, hi)
        for (lo, hi), r in zip(zip(lows, highs), region or [(0, 0)] * len(lows))
    ]
    outputs = transform.get("output")
    if outputs is None:  # identity: input coordinates are the stored ones
        return covered, list(range(len(lows))), False
    mapped: Region = []
    output_of = [0] * len(lows)
    for index, output in enumerate(outputs):
        offset = int(output.get("offset", 0))
        if "index_array" in output:
            return None, None, True
        if "input_dimension" not in output:  # a fixed index: one plane of that axis
            mapped.append((offset, offset + 1))
            continue
        axis, stride = int(output["input_dimension"]), int(output.get("stride", 1))
        if stride != 1:
            return None, None, True  # reversed or strided: which stored voxels is not a box
        output_of[axis] = index
        lo, hi = covered[axis]
        mapped.append((offset + lo, offset + hi))
    return mapped, output_of, False


def _spec(source: Source) -> dict[str, Any] | None:
    try:
        return source.to_spec().to_json()
    except Exception:  # noqa: BLE001 - in-memory sources have no spec: identity decides
        return None


def _storage_key(spec: dict[str, Any] | None) -> Any:
    if spec is None:
        return None
    params = dict(spec.get("params") or {})
    for name in _HANDLE_PARAMS:
        params.pop(name, None)
    path = params.get("path")
    if isinstance(path, str) and "://" not in path:  # a local file, through symlinks
        params["path"] = os.path.realpath(path)
    return (spec.get("kind"), repr(sorted(params.items(), key=lambda item: item[0])))


def _same_storage(a: Resolved, b: Resolved) -> bool:
    if a.base is b.base:
        return True
    if isinstance(a.base, NumpySource) and isinstance(b.base, NumpySource):
        return bool(np.shares_memory(a.base.array, b.base.array))
    return a.key is not None and a.key == b.key


def _same_layout(a: np.ndarray, b: np.ndarray) -> bool:
    """The same memory, walked the same way (``a.T`` and ``a[::-1]`` share ``a``'s memory but
    are other voxels at each index)."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.strides == b.strides
        and a.shape == b.shape
        and a.dtype == b.dtype
    )


def shares_voxels(a: Source, b: Source) -> bool:
    """Whether ``a`` and ``b`` may hold some of the same stored voxels."""
    ra, rb = resolve(a), resolve(b)
    if not _same_storage(ra, rb):
        return False
    if ra.region is None or rb.region is None:
        return True
    return all(
        lo_a < hi_b and lo_b < hi_a for (lo_a, hi_a), (lo_b, hi_b) in zip(ra.region, rb.region)
    )


def same_voxels(a: Source, b: Source) -> bool:
    """Whether ``a`` and ``b`` are exactly the same stored voxels, in the same order."""
    if a is b:
        return True
    ra, rb = resolve(a), resolve(b)
    if not _same_storage(ra, rb) or ra.rearranged or rb.rearranged or a.shape != b.shape:
        return False
    if isinstance(ra.base, NumpySource) and isinstance(rb.base, NumpySource):
        if not _same_layout(ra.base.array, rb.base.array):
            return False
    if ra.axes != rb.axes:
        return False
    region_a, region_b = _full(ra), _full(rb)
    return region_a is not None and region_a == region_b


def _full(resolved: Resolved) -> Region | None:
    """The region of the stored array, "all of it" spelled out where the base is that array
    (no tensorstore handle in between); None where it is not known."""
    if resolved.region is not None:
        return resolved.region
    if resolved.axes is None:
        return None
    return [(0, n) for n in resolved.base.shape]
