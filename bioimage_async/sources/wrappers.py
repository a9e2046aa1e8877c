"""Wrapper sources computed on read: a resampled view and a threshold.

Copying a wrapper materialises it (``await ba.copy(ThresholdSource(src, 128), out)``). Their
compute runs in the blocking thread pool, never on the event loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..blocking.grid import Block
from ..context import run_blocking
from .base import Source, SourceSpec
from .indexing import Roi


class ResizedSource(Source):
    """``source`` resampled to ``shape`` with the seed's semantics (see ops.resample)."""

    kind = "resized"

    def __init__(
        self,
        source: Source,
        shape: tuple[int, ...],
        *,
        order: int = 0,
        anti_aliasing: bool = False,
    ) -> None:
        from ..ops.resample import ResampleKernel

        self.source = source
        self.kernel = ResampleKernel(
            tuple(source.shape),
            tuple(int(n) for n in shape),
            order,
            anti_aliasing,
            source.dtype.str,
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return self.kernel.out_shape

    @property
    def dtype(self) -> np.dtype:
        return self.source.dtype

    @property
    def chunks(self) -> tuple[int, ...] | None:
        if self.source.chunks is None:
            return None
        return tuple(max(1, round(c / s)) for c, s in zip(self.source.chunks, self.kernel.scales))

    def describe(self) -> str:
        return f"{self.source.describe()} resized to {self.shape} (order {self.kernel.order})"

    async def _read(self, roi: Roi) -> np.ndarray:
        block = Block(-1, roi, roi)
        data = await self.source.read_roi(self.kernel.input_roi(block))
        return await run_blocking(self.kernel.compute, block, data)

    def to_spec(self) -> SourceSpec:
        return SourceSpec(
            self.kind,
            {
                "source": self.source.to_spec().to_json(),
                "shape": list(self.shape),
                "order": self.kernel.order,
                "anti_aliasing": self.kernel.anti_aliasing,
            },
        )

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> ResizedSource:
        from .registry import from_spec

        return cls(
            await from_spec(params["source"]),
            tuple(params["shape"]),
            order=int(params["order"]),
            anti_aliasing=bool(params["anti_aliasing"]),
        )


class ThresholdSource(Source):
    """A boolean view: ``source > threshold`` (or ``>=``, ``<``, ``<=`` via ``comparison``)."""

    kind = "threshold"
    _COMPARISONS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}

    def __init__(self, source: Source, threshold: float, comparison: str = ">") -> None:
        if comparison not in self._COMPARISONS:
            raise ValueError(
                f"comparison must be one of {sorted(self._COMPARISONS)}, got {comparison!r}"
            )
        self.source = source
        self.threshold = threshold
        self.comparison = comparison

    @property
    def shape(self) -> tuple[int, ...]:
        return self.source.shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(bool)

    @property
    def chunks(self) -> tuple[int, ...] | None:
        return self.source.chunks

    def describe(self) -> str:
        return f"{self.source.describe()} {self.comparison} {self.threshold}"

    async def _read(self, roi: Roi) -> np.ndarray:
        data = await self.source.read_roi(roi)
        return self._COMPARISONS[self.comparison](data, self.threshold)

    def to_spec(self) -> SourceSpec:
        return SourceSpec(
            self.kind,
            {
                "source": self.source.to_spec().to_json(),
                "threshold": self.threshold,
                "comparison": self.comparison,
            },
        )

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> ThresholdSource:
        from .registry import from_spec

        return cls(await from_spec(params["source"]), params["threshold"], params["comparison"])
