"""as_source() of a zarr-python array: local arrays are reopened through tensorstore.

zarr-python does every block's I/O under the GIL (4.5-5x slower than tensorstore on a copy, see
../shared/notes); reopening the same files through tensorstore keeps the user's handle as the
way to name an array and gives the pipeline the fast path. Arrays in stores tensorstore cannot
reach (memory, custom stores) fall back to the zarr handle in the blocking thread pool.

``as_source`` is synchronous and is called from async code: it must neither block the caller's
event loop on I/O nor start a loop of its own. So the tensorstore handle is opened lazily, on the
first read or write (shape, dtype and chunks come from the zarr array, already in memory).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from ..errors import BioimageAsyncError
from .axis_names import ZARR_V2_ATTRIBUTE, axes_from_names
from .base import Source, SourceSpec
from .indexing import Roi
from .threaded import ThreadedSource

logger = logging.getLogger("bioimage_async")


class ZarrPythonSource(ThreadedSource):
    """Fallback: a zarr-python array read and written in the blocking thread pool."""

    kind = "zarr_python"
    serialize_calls = False

    def __init__(self, array: Any) -> None:
        super().__init__()
        self.array = array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def chunks(self) -> tuple[int, ...] | None:
        return tuple(self.array.chunks)

    @property
    def shards(self) -> tuple[int, ...] | None:
        # without it, chunk-aligned blocks sharing a shard were written concurrently and each
        # read-modify-write of the shard lost the others' chunks
        return _shards(self.array)

    @property
    def writable(self) -> bool:
        return not getattr(self.array, "read_only", False)

    @property
    def axes(self) -> str | None:
        return zarr_array_axes(self.array)

    def describe(self) -> str:
        return f"zarr-python array {getattr(self.array, 'name', '')}"

    def read_blocking(self, roi: Roi) -> np.ndarray:
        return np.asarray(self.array[roi])

    def write_blocking(self, roi: Roi, value: np.ndarray) -> None:
        self.array[roi] = value


class LocalZarrSource(Source):
    """A zarr-python array on a local store, served by a tensorstore handle opened on first use.

    Until the first read or write, ``tensorstore()`` is None (the pipeline then reads and writes
    through numpy, which opens the handle); afterwards the chunk-to-chunk fast paths apply.
    """

    def __init__(self, array: Any, root: Path) -> None:
        self.array = array
        self.root = root
        self.key = str(getattr(array, "path", "") or "")
        self._writable = not getattr(array, "read_only", False)
        self._inner: Source | None = None
        self._opening: asyncio.Lock | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        """Native byte order: tensorstore reads a '>u2' array as native uint16 (the dtype said
        '>u2' while reads returned uint16)."""
        return np.dtype(self.array.dtype).newbyteorder("=")

    @property
    def chunks(self) -> tuple[int, ...] | None:
        return tuple(int(c) for c in self.array.chunks)

    @property
    def shards(self) -> tuple[int, ...] | None:
        return _shards(self.array)

    @property
    def axes(self) -> str | None:
        return zarr_array_axes(self.array)

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def multiprocess_writable(self) -> bool:
        return True

    def describe(self) -> str:
        where = self.root / self.key if self.key else self.root
        return f"zarr array at {where} (from zarr-python)"

    def tensorstore(self) -> ts.TensorStore | None:
        return None if self._inner is None else self._inner.tensorstore()

    def writer_lock_path(self) -> str | None:
        folder = self.root / self.key if self.key else self.root
        return str(folder / ".bioimage_async-writer.json")

    async def _source(self) -> Source:
        if self._inner is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._inner is None:
                    from .registry import open_source

                    mode = "r+" if self._writable else "r"
                    try:
                        self._inner = await open_source(
                            str(self.root), self.key or None, format="zarr", mode=mode
                        )
                    except BioimageAsyncError as error:  # a codec tensorstore lacks
                        logger.info(
                            "%s: tensorstore cannot open it (%s); reading through zarr-python",
                            self.describe(),
                            str(error).splitlines()[0][:200],
                        )
                        self._inner = ZarrPythonSource(self.array)
        return self._inner

    async def _read(self, roi: Roi) -> np.ndarray:
        return await (await self._source()).read_roi(roi)

    async def _write(self, roi: Roi, value: np.ndarray) -> None:
        await (await self._source()).write_roi(roi, value)

    async def copy_region_from(self, roi: Roi, source: Source, source_roi: Roi) -> bool:
        return await (await self._source()).copy_region_from(roi, source, source_roi)

    def to_spec(self) -> SourceSpec:
        """Reopen by path (the same spec before and after the lazy open, so resumes match)."""
        return SourceSpec(
            "open_source",
            {
                "path": str(self.root),
                "internal_path": self.key or None,
                "format": "zarr",
                "mode": "r+" if self._writable else "r",
            },
        )


def _shards(array: Any) -> tuple[int, ...] | None:
    """A zarr-python array's shard shape (the unit of a write), None when it is not sharded."""
    shards = getattr(array, "shards", None)
    return None if shards is None else tuple(int(s) for s in shards)


def zarr_array_axes(array: Any) -> str | None:
    """The axes a zarr-python array names: v3 ``dimension_names``, v2 ``_ARRAY_DIMENSIONS``
    (read from the metadata zarr-python already holds, no I/O)."""
    names = getattr(getattr(array, "metadata", None), "dimension_names", None)
    if names is None:
        attributes = getattr(getattr(array, "metadata", None), "attributes", None) or {}
        names = attributes.get(ZARR_V2_ATTRIBUTE)
    return axes_from_names(names, len(array.shape))


def _local_root(array: Any) -> Path | None:
    store = getattr(array, "store", None)
    root = getattr(store, "root", None)
    if root is None:
        return None
    return Path(str(root))


#: zarr v2 compressors tensorstore's zarr driver decodes (numcodecs ids)
_TENSORSTORE_V2_COMPRESSORS = {"blosc", "zlib", "gzip", "bz2", "zstd"}


def tensorstore_reads_v2(array: Any) -> bool:
    """False for a zarr v2 array with filters (Delta, FixedScaleOffset, Quantize, ...) or a
    compressor tensorstore lacks (lz4, lzma): reopened through tensorstore, its first read
    failed though zarr-python reads it. Told from the metadata in memory, no I/O."""
    metadata = getattr(array, "metadata", None)
    if getattr(metadata, "zarr_format", None) != 2:
        return True
    if getattr(metadata, "filters", None):
        return False
    compressor = getattr(metadata, "compressor", None)
    if compressor is None:
        return True
    return getattr(compressor, "codec_id", None) in _TENSORSTORE_V2_COMPRESSORS


def wrap_zarr_array(array: Any) -> Source:
    root = _local_root(array)
    if root is None or not tensorstore_reads_v2(array):
        return ZarrPythonSource(array)
    return LocalZarrSource(array, root)
