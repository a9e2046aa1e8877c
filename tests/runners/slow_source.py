"""A reopenable test source that reads a zarr slowly and counts every read in a file.

Used by the crash tests: a run over it takes long enough to be killed halfway, and the count
file (one appended line per read, surviving the kill) tells how often each block was read.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

import bioimage_async as ba
from bioimage_async.context import run_blocking
from bioimage_async.sources.indexing import Roi


class SlowCountingSource(ba.Source):
    kind = "test_slow_counting"

    def __init__(self, inner: ba.Source, counts: str, delay: float) -> None:
        self.inner = inner
        self.counts = counts
        self.delay = delay

    @property
    def shape(self) -> tuple[int, ...]:
        return self.inner.shape

    @property
    def dtype(self) -> np.dtype:
        return self.inner.dtype

    @property
    def chunks(self) -> tuple[int, ...] | None:
        return self.inner.chunks

    async def _read(self, roi: Roi) -> np.ndarray:
        await run_blocking(self._count, roi)
        return await self.inner.read_roi(roi)

    def _count(self, roi: Roi) -> None:
        time.sleep(self.delay)
        line = ",".join(str(s.start) for s in roi) + "\n"
        fd = os.open(self.counts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def to_spec(self) -> ba.SourceSpec:
        return ba.SourceSpec(
            self.kind,
            {"inner": self.inner.to_spec().to_json(), "counts": self.counts, "delay": self.delay},
        )

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> SlowCountingSource:
        return cls(await ba.from_spec(params["inner"]), params["counts"], params["delay"])


def read_counts(path: str) -> dict[tuple[int, ...], int]:
    counts: dict[tuple[int, ...], int] = {}
    if not os.path.exists(path):
        return counts
    with open(path) as handle:
        for line in handle:
            if line.strip():
                key = tuple(int(v) for v in line.split(","))
                counts[key] = counts.get(key, 0) + 1
    return counts
