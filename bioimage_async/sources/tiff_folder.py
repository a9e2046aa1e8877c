"""A folder of 2D TIFF slices as one read-only volume, stacked in natural order along axis 0.

Uncompressed slices are memory-mapped per read. Compressed ones decode only the strips or tiles
of the region, each once per conversion (a bounded cache shared by the source's reads): a block
smaller than a slice no longer decodes the whole slice. Where each slice's segments sit (its
"table": offsets, byte counts, a decode function shared by all slices of one layout) is kept for
the last few thousand slices, starting with those the opener parsed anyway, so a conversion
parses each header once. Every raw read opens the slice's file for itself, so reads never share
a handle.
"""

from __future__ import annotations

import glob
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..context import run_blocking
from ..errors import SourceError, SourceNotFoundError
from .base import SourceSpec
from .decoded_cache import DEFAULT_CACHE_BYTES, DecodedCache
from .indexing import Roi, roi_shape
from .parallel_read import fill_in_parts, read_in_parts
from .threaded import ThreadedSource
from .tiff_common import SegmentPlan, native, tifffile_module
from .tiff_segments import PageSegments, SegmentGrid, file_signature, path_reader

#: The slices of a folder opened without a pattern: these endings, in any case.
DEFAULT_SUFFIXES = (".tif", ".tiff")
_DEFAULT_TEXT = "*.tif or *.tiff, any case"

#: How many slices' segment tables a folder source keeps (under 1 KiB each).
_SLICE_TABLES = 4096

Decoders = dict[int, Any]  # tifffile page hash -> its decode function


@dataclass(frozen=True)
class SliceTable:
    """Where a compressed slice's segments are, and which version of its file that describes."""

    segments: PageSegments
    signature: tuple[int, ...]


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders digit runs by value: 'slice2' before 'slice10'."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), name


class TiffFolderSource(ThreadedSource):
    """A folder of same-shaped 2D TIFF slices, stacked in natural order along axis 0.

    ``pattern`` is the glob the slices were chosen by, or None for the default (.tif/.tiff in
    any case). ``decode_count`` counts the strips or tiles decoded so far.
    """

    kind = "tiff_folder"
    serialize_calls = False  # every slice read opens its own file

    def __init__(
        self,
        folder: str,
        pattern: str | None,
        files: list[str],
        *,
        slice_shape: tuple[int, ...],
        dtype: np.dtype,
        segment_shape: tuple[int, ...] | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        tables: dict[int, SliceTable | None] | None = None,
        decoders: Decoders | None = None,
    ) -> None:
        super().__init__()
        self.folder = folder
        self.pattern = pattern
        self.files = files
        self._slice_shape = slice_shape
        self._dtype = native(dtype)
        self._segment_shape = segment_shape
        self._memmappable = True
        self.segment_cache = DecodedCache(cache_bytes)
        self._tables: OrderedDict[int, SliceTable | None] = OrderedDict(tables or {})
        self._tables_lock = threading.Lock()
        self._decoders: Decoders = decoders if decoders is not None else {}

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.files), *self._slice_shape)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        """One strip or tile of the first slice (a whole slice when uncompressed)."""
        return (1, *(self._segment_shape or self._slice_shape))

    @property
    def decode_count(self) -> int:
        return self.segment_cache.decode_count

    @property
    def read_only_reason(self) -> str:
        return f"{self.describe()} is read-only (TIFF is an input format here)"

    def describe(self) -> str:
        return f"TIFF slices {self.pattern or _DEFAULT_TEXT!r} in {self.folder}"

    async def _read(self, roi: Roi) -> np.ndarray:
        """Large regions are split over the blocking pool's threads.

        On cancel, parts already reading in threads finish (their segments stay cached).
        """
        return await read_in_parts(self._fill, roi, self._dtype, self.chunks)

    async def read_roi_into(self, roi: Roi, out: np.ndarray) -> None:
        """Decoded straight into ``out`` (a pooled block buffer): no new array per block."""
        if any(s.stop <= s.start for s in roi):
            return
        await fill_in_parts(self._fill, roi, out, self.chunks)

    def read_blocking(self, roi: Roi) -> np.ndarray:
        out = np.empty(roi_shape(roi), dtype=self._dtype)
        self._fill(out, roi)
        return out

    def _fill(self, out: np.ndarray, roi: Roi) -> None:
        """Fill ``out`` with ``roi``: compressed slices by segments, the others mapped or whole."""
        plan = SegmentPlan()
        for i, z in enumerate(range(roi[0].start, roi[0].stop)):
            file = self.files[z]
            table = self._table_of(z)
            if table is not None:
                plan.add(z, table.segments, path_reader(file, table.signature), out[i], roi[1:])
                continue
            mapped = self._mapped_slice(file)
            if mapped is None:  # a layout segments cannot place: decode the slice whole
                mapped = self._decoded_slice(file)
            out[i] = mapped[roi[1:]]
        plan.fill(self.segment_cache)

    def _mapped_slice(self, file: str) -> np.ndarray | None:
        if not self._memmappable:
            return None
        try:
            data = tifffile_module().memmap(file, mode="r")
        except ValueError:  # compressed or tiled: decode instead, and stop trying
            self._memmappable = False
            return None
        self._check_slice(file, data.shape, data.dtype)
        return data

    def _decoded_slice(self, file: str) -> np.ndarray:
        with tifffile_module().TiffFile(file) as tif:
            data = tif.series[0].asarray(maxworkers=1)
        self._check_slice(file, data.shape, data.dtype)
        return data

    def _table_of(self, z: int) -> SliceTable | None:
        """Slice ``z``'s segment table, or None where it is memory-mapped or decoded whole.

        One thread parses a missing table while the others wait: parsing holds the GIL, and
        two blocks over the same slices would otherwise both parse them.
        """
        with self._tables_lock:
            if z in self._tables:
                self._tables.move_to_end(z)
                return self._tables[z]
            shape, dtype, table = slice_table(self.files[z], self._decoders)
            self._check_slice(self.files[z], shape, dtype)
            self._tables[z] = table
            while len(self._tables) > _SLICE_TABLES:
                self._tables.popitem(last=False)
            return table

    def _check_slice(self, file: str, shape: tuple[int, ...], dtype: Any) -> None:
        if tuple(shape) != self._slice_shape or native(dtype) != self._dtype:
            raise SourceError(
                f"TIFF slice {file} has shape {tuple(shape)} and dtype {np.dtype(dtype)}, but "
                f"the stack {self.pattern or _DEFAULT_TEXT!r} in {self.folder} has slices of "
                f"shape {self._slice_shape} and dtype {self._dtype}; remove the odd file or "
                "narrow pattern= to the slices of one stack"
            )

    def close(self) -> None:
        """Drop the decoded segments and slice tables (no file stays open between reads)."""
        self.segment_cache.clear()
        with self._tables_lock:
            self._tables.clear()

    def to_spec(self) -> SourceSpec:
        return SourceSpec(
            self.kind,
            {
                "folder": self.folder,
                "pattern": self.pattern,
                "num_slices": len(self.files),
                "slice_shape": list(self._slice_shape),
                "dtype": self._dtype.str,
            },
        )

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> TiffFolderSource:
        tifffile_module()
        return await run_blocking(
            _reopen_folder,
            params["folder"],
            params.get("pattern"),
            int(params["num_slices"]),
            tuple(int(n) for n in params["slice_shape"]),
            np.dtype(params["dtype"]),
        )


# ---------------------------------------------------------------------------------------------
# listing and opening
# ---------------------------------------------------------------------------------------------
def list_slices(folder: str, pattern: str | None) -> list[str]:
    """The slice files in natural order: ``pattern`` (a glob), else every .tif/.tiff, any case."""
    if pattern is None:
        names = [n for n in os.listdir(folder) if n.lower().endswith(DEFAULT_SUFFIXES)]
        matches = [os.path.join(folder, n) for n in names]
    else:
        matches = glob.glob(os.path.join(glob.escape(folder), pattern))
    files = [f for f in matches if os.path.isfile(f)]
    if not files:
        raise SourceNotFoundError(
            f"no file in the folder {folder!r} matches pattern {pattern or _DEFAULT_TEXT!r}; "
            "pass the pattern of the slices, e.g. pattern='*.tif' or pattern='slice_*.tiff'"
        )
    return sorted(files, key=lambda f: natural_key(os.path.relpath(f, folder)))


def slice_table(
    file: str, decoders: Decoders
) -> tuple[tuple[int, ...], np.dtype, SliceTable | None]:
    """(shape, dtype, segment table) of one slice; no table where it is memory-mappable or its
    layout is one segments cannot place. Slices of one layout share a decode function."""
    tifffile = tifffile_module()
    try:
        signature = file_signature(file)
        with tifffile.TiffFile(file) as tif:
            series = tif.series[0]
            shape = tuple(int(n) for n in series.shape)
            dtype = native(series.dtype)
            keyframe = series.keyframe
            if keyframe.is_memmappable or len(series) != 1:
                return shape, dtype, None
            grid = SegmentGrid.of(keyframe, shape)
            if grid is None:
                return shape, dtype, None
            decode = decoders.setdefault(keyframe.hash, keyframe.decode)
            segments = PageSegments.of(series[0], grid, dtype, f"TIFF slice {file}", decode)
            return shape, dtype, SliceTable(segments, signature)
    except (tifffile.TiffFileError, ValueError, IndexError) as err:
        raise SourceError(f"cannot read the slice {file!r} as a TIFF image: {err}") from err


def open_folder_blocking(folder: str, pattern: str | None, cache_bytes: int) -> TiffFolderSource:
    """Check every slice's header; keep the tables of the first ones for the reads to come."""
    files = list_slices(folder, pattern)
    decoders: Decoders = {}
    shape, dtype, first = slice_table(files[0], decoders)
    tables: dict[int, SliceTable | None] = {0: first}
    for z, file in enumerate(files[1:], start=1):
        other_shape, other_dtype, table = slice_table(file, decoders)
        if other_shape != shape or other_dtype != dtype:
            raise SourceError(
                f"the slices matching {pattern or _DEFAULT_TEXT!r} in {folder} differ: "
                f"{files[0]} has shape {shape} and dtype {dtype}, {file} has shape "
                f"{other_shape} and dtype {other_dtype}; remove the odd file or narrow "
                "pattern= to one stack"
            )
        if z < _SLICE_TABLES:
            tables[z] = table
    return TiffFolderSource(
        folder,
        pattern,
        files,
        slice_shape=shape,
        dtype=dtype,
        segment_shape=None if first is None else first.segments.grid.chunk_shape,
        cache_bytes=cache_bytes,
        tables=tables,
        decoders=decoders,
    )


def _reopen_folder(
    folder: str,
    pattern: str | None,
    num_slices: int,
    slice_shape: tuple[int, ...],
    dtype: np.dtype,
) -> TiffFolderSource:
    """Reopen from a spec without re-reading every header (each read checks its slices)."""
    if not os.path.isdir(folder):
        raise SourceNotFoundError(f"no such folder of TIFF slices: {folder!r}")
    files = list_slices(folder, pattern)
    if len(files) != num_slices:
        raise SourceError(
            f"the folder {folder} now holds {len(files)} slices matching "
            f"{pattern or _DEFAULT_TEXT!r}, but the spec was made with {num_slices}; the stack "
            "changed since the spec was written"
        )
    decoders: Decoders = {}
    shape, first_dtype, first = slice_table(files[0], decoders)
    source = TiffFolderSource(
        folder,
        pattern,
        files,
        slice_shape=slice_shape,
        dtype=dtype,
        segment_shape=None if first is None else first.segments.grid.chunk_shape,
        tables={0: first},
        decoders=decoders,
    )
    source._check_slice(files[0], shape, first_dtype)
    return source
