"""Lazy sub-region views: run any op on a region of interest of a huge volume."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorstore as ts

from .base import Source, SourceSpec
from .indexing import NormalizedIndex, Roi


class ViewSource(Source):
    """The region ``index`` of ``parent``; int-indexed axes are dropped, as in numpy."""

    kind = "view"

    def __init__(self, parent: Source, region: NormalizedIndex) -> None:
        self.parent = parent
        self.region = region
        self._kept = tuple(a for a in range(parent.ndim) if a not in region.squeeze)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.region.result_shape

    @property
    def dtype(self) -> np.dtype:
        return self.parent.dtype

    def _kept_axes(self, values: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return None if values is None else tuple(values[a] for a in self._kept)

    @property
    def chunks(self) -> tuple[int, ...] | None:
        return self._kept_axes(self.parent.chunks)

    @property
    def shards(self) -> tuple[int, ...] | None:
        return self._kept_axes(self.parent.shards)

    @property
    def grid_offset(self) -> tuple[int, ...]:
        """Where the parent's chunk borders lie in this view's coordinates: at
        ``grid_offset + k * write_granularity`` on each axis (for write safety)."""
        granularity = self.parent.write_granularity
        parent_offset = self.parent.grid_offset
        if granularity is None:
            return (0,) * self.ndim
        return tuple(
            (parent_offset[a] - self.region.roi[a].start) % granularity[a] for a in self._kept
        )

    @property
    def voxel_size(self) -> tuple[float, ...] | None:
        return self._kept_floats(self.parent.voxel_size)

    @property
    def unit(self) -> str | None:
        return self.parent.unit

    @property
    def axes(self) -> str | None:
        axes = self.parent.axes
        return None if axes is None else "".join(axes[a] for a in self._kept)

    @property
    def translation(self) -> tuple[float, ...] | None:
        """The parent's origin moved to the view's first voxel (voxel i sits at
        ``translation + i * voxel_size``)."""
        origin, sizes = self.parent.translation, self.parent.voxel_size
        if origin is None:  # the parent starts at 0; a crop away from it must not
            if not any(r.start for r in self.region.roi):
                return None
            origin = (0.0,) * self.parent.ndim
        steps = sizes if sizes is not None else (1.0,) * len(origin)
        moved = [o + s * r.start for o, s, r in zip(origin, steps, self.region.roi)]
        return tuple(moved[a] for a in self._kept)

    def _kept_floats(self, values: tuple[float, ...] | None) -> tuple[float, ...] | None:
        return None if values is None else tuple(values[a] for a in self._kept)

    @property
    def writable(self) -> bool:
        return self.parent.writable

    @property
    def read_only_reason(self) -> str:
        return self.parent.read_only_reason

    @property
    def serializes_writes(self) -> bool:
        return self.parent.serializes_writes

    @property
    def multiprocess_writable(self) -> bool:
        return self.parent.multiprocess_writable

    def writer_lock_path(self) -> str | None:
        return self.parent.writer_lock_path()

    def tensorstore(self) -> ts.TensorStore | None:
        store = self.parent.tensorstore()
        if store is None:
            return None
        index = tuple(
            s.start if a in self.region.squeeze else s for a, s in enumerate(self.region.roi)
        )
        region = store[index]
        return region[ts.d[:].translate_to[0]] if region.ndim else region

    def describe(self) -> str:
        bounds = ", ".join(f"{s.start}:{s.stop}" for s in self.region.roi)
        return f"view [{bounds}] of {self.parent.describe()}"

    def _parent_roi(self, roi: Roi) -> Roi:
        parent_roi = list(self.region.roi)
        for local, axis in zip(roi, self._kept):
            origin = self.region.roi[axis].start
            parent_roi[axis] = slice(origin + local.start, origin + local.stop)
        return tuple(parent_roi)

    async def _read(self, roi: Roi) -> np.ndarray:
        data = await self.parent.read_roi(self._parent_roi(roi))
        return data.reshape(tuple(s.stop - s.start for s in roi))

    async def _write(self, roi: Roi, value: np.ndarray) -> None:
        parent_roi = self._parent_roi(roi)
        await self.parent.write_roi(
            parent_roi, value.reshape(tuple(s.stop - s.start for s in parent_roi))
        )

    def to_spec(self) -> SourceSpec:
        return SourceSpec(
            self.kind,
            {
                "source": self.parent.to_spec().to_json(),
                "roi": [[s.start, s.stop] for s in self.region.roi],
                "squeeze": list(self.region.squeeze),
            },
        )

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> ViewSource:
        from .registry import from_spec

        parent = await from_spec(params["source"])
        roi = tuple(slice(int(a), int(b)) for a, b in params["roi"])
        return cls(parent, NormalizedIndex(roi, tuple(int(a) for a in params["squeeze"])))
