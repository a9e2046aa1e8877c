"""Wrapper sources computed on read: a resampled view and a threshold.

Copying a wrapper materialises it (``await ba.copy(ThresholdSource(src, 128), out)``). Their
compute runs in the blocking thread pool, never on the event loop.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np

from ..context import run_blocking
from ..errors import InvalidArgumentError
from ..kernels.resample import Resampling
from .base import Source, SourceSpec
from .indexing import Roi


class ResizedSource(Source):
    """``source`` resampled to ``shape`` with the seed's semantics (see kernels.resample)."""

    kind = "resized"

    def __init__(
        self,
        source: Source,
        shape: tuple[int, ...],
        *,
        order: int = 0,
        anti_aliasing: bool = False,
    ) -> None:
        self.source = source
        self.kernel = Resampling(
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
        data = await self.source.read_roi(self.kernel.input_roi(roi))
        return await run_blocking(self.kernel.compute, roi, data)

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
    """A boolean view: ``source > threshold`` (or ``>=``, ``<``, ``<=`` via ``comparison``).

    The threshold is held as a Python int or float, what it is after the spec's JSON trip to a
    worker: numpy compares a float32 volume with ``np.float64(0.1)`` in float64 but with
    ``0.1`` in float32 (NEP 50), so a voxel of float32(0.1) would be True in the process that
    built the source and False in its workers. Held as a Python number, it compares as numpy's
    ``data > 0.1`` everywhere.
    """

    kind = "threshold"
    _COMPARISONS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}

    def __init__(self, source: Source, threshold: float, comparison: str = ">") -> None:
        if comparison not in self._COMPARISONS:
            raise InvalidArgumentError(
                f"comparison must be one of {sorted(self._COMPARISONS)}, got {comparison!r}"
            )
        self.source = source
        self.threshold = _plain_number(threshold)
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
        return await run_blocking(self._compare, data)  # a block-sized pass: off the loop

    def _compare(self, data: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # 1e40 against float32 is inf there: still right
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


def _plain_number(value: Any) -> int | float:
    """``value`` as the Python int or float it becomes in JSON (bools and integers as int)."""
    if isinstance(value, (Integral, np.integer, np.bool_)):
        return int(value)
    if isinstance(value, (Real, np.floating)):
        return float(value)
    raise InvalidArgumentError(
        f"threshold must be a real number (int or float), got {value!r}; it is compared with "
        "every voxel"
    )
