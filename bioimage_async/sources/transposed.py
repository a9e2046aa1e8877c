"""Lazy axis reorderings: an ImageJ hyperstack (ZCYX) or an RGB file (YXC) read as CZYX / CYX.

OME-Zarr wants its axes in t, c, z, y, x order, and many files keep theirs in another; a
transposed view lets ``ba.pyramid`` (or ``ba.copy``) take them as they are, block by block,
without a converted copy first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from .base import Source, SourceSpec
from .indexing import Roi


def check_order(order: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """``order`` as numpy's ``transpose`` takes it: each axis 0..ndim-1 exactly once."""
    if sorted(order) != list(range(ndim)):
        raise InvalidArgumentError(
            f"a transpose order names each of the {ndim} axes once (a permutation of "
            f"{tuple(range(ndim))}), got {order}"
        )
    return order


class TransposedSource(Source):
    """``parent`` with its axes reordered: axis ``i`` of this source is ``order[i]`` of the
    parent (as ``numpy.transpose``). Read-only; voxel sizes, axes and translation follow."""

    kind = "transposed"

    def __init__(self, parent: Source, order: tuple[int, ...]) -> None:
        self.parent = parent
        self.order = check_order(tuple(int(a) for a in order), parent.ndim)
        self._inverse = tuple(int(a) for a in np.argsort(self.order))

    def _permuted(self, values: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        return None if values is None else tuple(values[a] for a in self.order)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.parent.shape[a] for a in self.order)

    @property
    def dtype(self) -> np.dtype:
        return self.parent.dtype

    @property
    def chunks(self) -> tuple[int, ...] | None:
        return self._permuted(self.parent.chunks)

    @property
    def shards(self) -> tuple[int, ...] | None:
        return self._permuted(self.parent.shards)

    @property
    def voxel_size(self) -> tuple[float, ...] | None:
        return self._permuted(self.parent.voxel_size)

    @property
    def unit(self) -> str | None:
        return self.parent.unit

    @property
    def axes(self) -> str | None:
        axes = self.parent.axes
        return None if axes is None else "".join(axes[a] for a in self.order)

    @property
    def translation(self) -> tuple[float, ...] | None:
        return self._permuted(self.parent.translation)

    @property
    def read_only_reason(self) -> str:
        return f"{self.describe()} is a read-only view; write into its parent instead"

    def describe(self) -> str:
        return f"transpose {self.order} of {self.parent.describe()}"

    async def _read(self, roi: Roi) -> np.ndarray:
        parent_roi = tuple(roi[axis] for axis in self._inverse)
        data = await self.parent.read_roi(parent_roi)
        return np.ascontiguousarray(data.transpose(self.order))

    def to_spec(self) -> SourceSpec:
        return SourceSpec(
            self.kind, {"source": self.parent.to_spec().to_json(), "order": list(self.order)}
        )

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> TransposedSource:
        from .registry import from_spec

        return cls(await from_spec(params["source"]), tuple(int(a) for a in params["order"]))
