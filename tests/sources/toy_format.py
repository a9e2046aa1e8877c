"""A toy format used only by the tests: one .npy file, memory-mapped.

It shows what a new format costs: this one module, and one registration line
(``ba.register_format(NpyFormat())``); open_source, create_source, from_spec, the extension
lookup and the CLI's choices pick it up from the registry.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import bioimage_async as ba
from bioimage_async.context import run_blocking
from bioimage_async.sources.indexing import Roi


class NpySource(ba.Source):
    kind = "toy_npy"

    def __init__(self, path: str, writable: bool) -> None:
        self.path = path
        self.array = np.load(path, mmap_mode="r+" if writable else "r")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def writable(self) -> bool:
        return self.array.flags.writeable

    @property
    def serializes_writes(self) -> bool:
        return True

    async def _read(self, roi: Roi) -> np.ndarray:
        return await run_blocking(np.array, self.array[roi])

    async def _write(self, roi: Roi, value: np.ndarray) -> None:
        self.array[roi] = value

    def to_spec(self) -> ba.SourceSpec:
        return ba.SourceSpec(self.kind, {"path": self.path, "writable": self.writable})

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> NpySource:
        return cls(params["path"], params["writable"])


class NpyFormat(ba.FormatBackend):
    name = "toy_npy"
    description = "a .npy file (toy format of the tests)"
    extensions = (".npy",)
    writable = True
    creatable = True

    async def open(self, location, internal_path, *, mode, **options):
        return NpySource(str(location.local_path), writable=mode != "r")

    async def create(self, location, request):
        def make() -> None:
            array = np.lib.format.open_memmap(
                str(location.local_path), mode="w+", dtype=request.dtype, shape=request.shape
            )
            array[...] = request.fill_value
            array.flush()

        await run_blocking(make)
        return NpySource(str(location.local_path), writable=True)
