"""TIFF through tifffile, read-only: one (multi-page) file, or a folder of 2D slices.

Nothing reads more than the pages of the requested region. An uncompressed, contiguous file is
memory-mapped (the fast path: a read touches only the requested bytes); otherwise the pages of
the region are decoded one by one in the blocking thread pool. Page lookups and file reads share
tifffile's file-handle lock, while decoding runs outside it, so concurrent reads of one file
decode in parallel. A folder of slices opens one file per slice read, so reads never share a
handle.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any

import numpy as np

from ..context import run_blocking
from ..errors import (
    FormatNotSupportedError,
    InternalPathNotFoundError,
    InvalidArgumentError,
    SourceError,
    SourceNotFoundError,
)
from .base import Source, SourceSpec
from .formats import FormatBackend, LocalFileFormat
from .indexing import Roi, roi_shape
from .location import Location
from .optional import import_optional, refuse_write_mode
from .threaded import ThreadedSource

#: The slices of a folder when open_tiff is given a folder and no pattern.
DEFAULT_PATTERN = "*.tif*"


def _tifffile() -> Any:
    return import_optional("tifffile", "tifffile", "tiff", "the tiff format")


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders digit runs by value: 'slice2' before 'slice10'."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), name


def _native(dtype: Any) -> np.dtype:
    return np.dtype(dtype).newbyteorder("=")


class TiffSource(ThreadedSource):
    """One series of a TIFF file: pages stacked along the leading axes, chunks of one page."""

    kind = "tiff"
    serialize_calls = False  # the file-handle lock guards the file; decoding runs in parallel

    def __init__(
        self,
        path: str,
        *,
        series_index: int,
        shape: tuple[int, ...],
        page_shape: tuple[int, ...],
        dtype: np.dtype,
        series: Any = None,
        memmap: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.path = path
        self.series_index = series_index
        self._shape = shape
        self._page_shape = page_shape
        self._dtype = _native(dtype)
        self._lead = len(shape) - len(page_shape)
        self._series = series
        self._memmap = memmap
        self._file_map: np.ndarray | None = None
        self._page_size = int(np.prod(page_shape, dtype=np.int64))
        self._file_dtype = self._dtype
        if series is not None and series.keyframe.is_memmappable:
            # pages stored uncompressed but not back to back (IFDs in between, as many writers
            # do): one map of the whole file, each page viewed at its own offset
            self._file_dtype = self._dtype.newbyteorder(series.parent.byteorder)
            self._file_map = np.memmap(path, dtype=np.uint8, mode="r")

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        return (1,) * self._lead + self._page_shape

    @property
    def memory_mapped(self) -> bool:
        """Whether reads go through a memory map (uncompressed data), not page decoding."""
        return self._memmap is not None or self._file_map is not None

    @property
    def read_only_reason(self) -> str:
        return f"{self.describe()} is read-only (TIFF is an input format here)"

    def describe(self) -> str:
        series = f" (series {self.series_index})" if self.series_index else ""
        return f"TIFF file {self.path}{series}"

    def mapped_region(self, roi: Roi) -> np.ndarray | None:
        if self._memmap is not None and self._memmap.dtype == self._dtype:
            return self._memmap[roi]
        return None

    def read_blocking(self, roi: Roi) -> np.ndarray:
        if self._memmap is not None:
            return np.array(self._memmap[roi], dtype=self._dtype)
        lead_roi, page_roi = roi[: self._lead], roi[self._lead :]
        lead_shape = self._shape[: self._lead]
        positions = list(np.ndindex(*roi_shape(lead_roi)))
        page_ids = [
            int(np.ravel_multi_index(tuple(s.start + p for s, p in zip(lead_roi, pos)), lead_shape))
            if lead_shape
            else 0
            for pos in positions
        ]
        handle = self._series.parent.filehandle
        with handle.lock:  # page lookups seek in the shared file handle
            pages = [self._series[i] for i in page_ids]
        out = np.empty(roi_shape(roi), dtype=self._dtype)
        for pos, page in zip(positions, pages):
            if self._file_map is not None and page.is_memmappable:
                # uncompressed page: view its bytes in the file, copy only the region's rows
                start = page.dataoffsets[0]
                stop = start + self._page_size * self._file_dtype.itemsize
                data = self._file_map[start:stop].view(self._file_dtype)
            else:
                data = page.asarray(maxworkers=1)  # reads under the handle's lock, decodes outside
            out[pos] = data.reshape(self._page_shape)[page_roi]
        return out

    def close(self) -> None:
        """Release the file (the memory map or the open TiffFile)."""
        self._memmap = None
        self._file_map = None
        if self._series is not None:
            self._series.parent.close()

    def to_spec(self) -> SourceSpec:
        return SourceSpec(self.kind, {"path": self.path, "series": self.series_index})

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> TiffSource:
        _tifffile()
        path = str(params["path"])
        if not os.path.isfile(path):
            raise SourceNotFoundError(f"no such TIFF file: {path!r}")
        return await run_blocking(_open_file_blocking, path, str(int(params.get("series", 0))))


class TiffFolderSource(ThreadedSource):
    """A folder of same-shaped 2D TIFF slices, stacked in natural order along axis 0."""

    kind = "tiff_folder"
    serialize_calls = False  # every slice read opens its own file

    def __init__(
        self,
        folder: str,
        pattern: str,
        files: list[str],
        *,
        slice_shape: tuple[int, ...],
        dtype: np.dtype,
    ) -> None:
        super().__init__()
        self.folder = folder
        self.pattern = pattern
        self.files = files
        self._slice_shape = slice_shape
        self._dtype = _native(dtype)
        self._memmappable = True

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.files), *self._slice_shape)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        return (1, *self._slice_shape)

    @property
    def read_only_reason(self) -> str:
        return f"{self.describe()} is read-only (TIFF is an input format here)"

    def describe(self) -> str:
        return f"TIFF slices {self.pattern!r} in {self.folder}"

    def read_blocking(self, roi: Roi) -> np.ndarray:
        out = np.empty(roi_shape(roi), dtype=self._dtype)
        for i, z in enumerate(range(roi[0].start, roi[0].stop)):
            out[i] = self._read_slice(self.files[z], roi[1:])
        return out

    def _read_slice(self, file: str, region: Roi) -> np.ndarray:
        tifffile = _tifffile()
        if self._memmappable:
            try:
                data = tifffile.memmap(file, mode="r")
            except ValueError:  # compressed or tiled: decode instead, and stop trying
                self._memmappable = False
            else:
                self._check_slice(file, data.shape, data.dtype)
                return data[region]
        with tifffile.TiffFile(file) as tif:
            data = tif.series[0].asarray(maxworkers=1)
        self._check_slice(file, data.shape, data.dtype)
        return data[region]

    def _check_slice(self, file: str, shape: tuple[int, ...], dtype: Any) -> None:
        if tuple(shape) != self._slice_shape or _native(dtype) != self._dtype:
            raise SourceError(
                f"TIFF slice {file} has shape {tuple(shape)} and dtype {np.dtype(dtype)}, but "
                f"the stack {self.pattern!r} in {self.folder} has slices of shape "
                f"{self._slice_shape} and dtype {self._dtype}; remove the odd file or narrow "
                "pattern= to the slices of one stack"
            )

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
        _tifffile()
        return await run_blocking(
            _reopen_folder,
            params["folder"],
            params["pattern"],
            int(params["num_slices"]),
            tuple(int(n) for n in params["slice_shape"]),
            np.dtype(params["dtype"]),
        )


# ---------------------------------------------------------------------------------------------
# opening a file
# ---------------------------------------------------------------------------------------------
def _series_layout(series: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shape, page shape) of a series whose pages stack along its leading axes."""
    full = tuple(int(n) for n in series.shape)
    page = tuple(int(n) for n in series.keyframe.shape)
    num_pages = len(series)
    lead = full[: len(full) - len(page)]
    if full[len(lead) :] == page and int(np.prod(lead, dtype=np.int64)) == num_pages:
        shape = full
    else:  # the series squeezes its axes differently than its pages: stack the pages
        shape = (num_pages, *page) if num_pages > 1 else page
    if int(np.prod(shape, dtype=np.int64)) != int(np.prod(full, dtype=np.int64)):
        raise FormatNotSupportedError(
            f"the TIFF series of shape {full} is not a stack of {num_pages} page(s) of shape "
            f"{page}; this layout is not supported, convert the file with tifffile first"
        )
    return shape, page


def _open_file_blocking(path: str, key: str | None) -> TiffSource:
    tifffile = _tifffile()
    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError) as err:
        raise SourceError(f"cannot read {path!r} as a TIFF file: {err}") from err
    try:
        all_series = tif.series
        if not all_series:
            raise SourceError(f"the TIFF file {path!r} holds no image")
        index = int(key) if key and key.isdigit() else 0
        if key not in (None, "") and not (key.isdigit() and index < len(all_series)):
            raise InternalPathNotFoundError(path, key, [str(i) for i in range(len(all_series))])
        series = all_series[index]
        shape, page_shape = _series_layout(series)
        dtype = series.dtype
        try:
            mapped = tifffile.memmap(path, series=index, mode="r")
        except ValueError:  # compressed, tiled or scattered pages: decode page by page
            tif.filehandle.set_lock(True)
            return TiffSource(
                path,
                series_index=index,
                shape=shape,
                page_shape=page_shape,
                dtype=dtype,
                series=series,
            )
        tif.close()
        return TiffSource(
            path,
            series_index=index,
            shape=shape,
            page_shape=page_shape,
            dtype=dtype,
            memmap=mapped.reshape(shape),
        )
    except BaseException:
        tif.close()
        raise


# ---------------------------------------------------------------------------------------------
# opening a folder of slices
# ---------------------------------------------------------------------------------------------
def _list_slices(folder: str, pattern: str) -> list[str]:
    matches = glob.glob(os.path.join(glob.escape(folder), pattern))
    files = [f for f in matches if os.path.isfile(f)]
    if not files:
        raise SourceNotFoundError(
            f"no file in the folder {folder!r} matches pattern {pattern!r}; pass the pattern "
            "of the slices, e.g. pattern='*.tif' or pattern='slice_*.tiff'"
        )
    return sorted(files, key=lambda f: natural_key(os.path.relpath(f, folder)))


def _slice_header(file: str) -> tuple[tuple[int, ...], np.dtype]:
    tifffile = _tifffile()
    try:
        with tifffile.TiffFile(file) as tif:
            series = tif.series[0]
            return tuple(int(n) for n in series.shape), _native(series.dtype)
    except (tifffile.TiffFileError, ValueError, IndexError) as err:
        raise SourceError(f"cannot read the slice {file!r} as a TIFF image: {err}") from err


def _open_folder_blocking(folder: str, pattern: str) -> TiffFolderSource:
    files = _list_slices(folder, pattern)
    shape, dtype = _slice_header(files[0])
    for file in files[1:]:
        other_shape, other_dtype = _slice_header(file)
        if other_shape != shape or other_dtype != dtype:
            raise SourceError(
                f"the slices matching {pattern!r} in {folder} differ: {files[0]} has shape "
                f"{shape} and dtype {dtype}, {file} has shape {other_shape} and dtype "
                f"{other_dtype}; remove the odd file or narrow pattern= to one stack"
            )
    return TiffFolderSource(folder, pattern, files, slice_shape=shape, dtype=dtype)


def _reopen_folder(
    folder: str, pattern: str, num_slices: int, slice_shape: tuple[int, ...], dtype: np.dtype
) -> TiffFolderSource:
    """Reopen from a spec without re-reading every header (each read checks its slices)."""
    if not os.path.isdir(folder):
        raise SourceNotFoundError(f"no such folder of TIFF slices: {folder!r}")
    files = _list_slices(folder, pattern)
    if len(files) != num_slices:
        raise SourceError(
            f"the folder {folder} now holds {len(files)} slices matching {pattern!r}, but the "
            f"spec was made with {num_slices}; the stack changed since the spec was written"
        )
    source = TiffFolderSource(folder, pattern, files, slice_shape=slice_shape, dtype=dtype)
    shape, first_dtype = _slice_header(files[0])
    source._check_slice(files[0], shape, first_dtype)
    return source


# ---------------------------------------------------------------------------------------------
# the opener
# ---------------------------------------------------------------------------------------------
async def open_tiff(
    path: str | os.PathLike[str],
    internal_path: str | None = None,
    *,
    mode: str = "r",
    pattern: str | None = None,
) -> TiffSource | TiffFolderSource:
    """Open a TIFF file, or a folder of 2D TIFF slices selected by ``pattern``, read-only.

    A file's ``internal_path`` may name a series by number ('1'); the default is the first.
    A folder's slices are matched by ``pattern`` (default '*.tif*', or ``internal_path`` when it
    holds the pattern, as bioimage-py keys image stacks) and stacked in natural order.
    """
    refuse_write_mode("tiff", mode)
    _tifffile()
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        if internal_path not in (None, ""):
            if pattern is not None and pattern != internal_path:
                raise InvalidArgumentError(
                    f"a folder of slices takes one pattern; got internal_path={internal_path!r} "
                    f"and pattern={pattern!r}"
                )
            pattern = internal_path
        return await run_blocking(_open_folder_blocking, path, pattern or DEFAULT_PATTERN)
    if pattern is not None:
        raise InvalidArgumentError(
            f"pattern={pattern!r} selects slices in a folder, but {path!r} is a file; pass the "
            "folder, or drop pattern="
        )
    if not os.path.exists(path):
        raise SourceNotFoundError(f"no such TIFF file or folder: {path!r}")
    return await run_blocking(_open_file_blocking, path, internal_path)


class TiffFormat(LocalFileFormat):
    name = "tiff"
    description = "TIFF, .tif/.tiff, or a folder of 2D slices (pattern='*.tif')"
    extensions = (".tif", ".tiff")
    requires = "tifffile"
    extra = "tiff"

    async def detect(self, location: Location) -> bool:
        return any(
            name.lower().endswith((".tif", ".tiff")) for name in await location.list_names(1000)
        )

    async def open_local(
        self, path: str, internal_path: str | None, *, mode: str, **options: Any
    ) -> Source:
        return await open_tiff(path, internal_path, mode=mode, **options)


FORMAT_BACKENDS: tuple[FormatBackend, ...] = (TiffFormat(),)
