"""TIFF through tifffile, read-only: one (multi-page) file, or a folder of 2D slices.

Nothing reads more than the pages of the requested region. An uncompressed, contiguous file is
memory-mapped (the fast path: a read touches only the requested bytes), and so is an ImageJ
stack saved the way ImageJ saves stacks over 4 GiB (one IFD, the planes back to back after it).
Otherwise a read decodes only the strips or tiles of its region (``tiff_segments``), each read
from the file with ``os.pread`` on a descriptor of our own and decoded in the blocking thread
pool outside any lock. Decoded segments go through a bounded cache shared by the reads of one
source, so blocks smaller than a page, or not aligned to its strips, still decode every segment
once per conversion. Page lookups (IFD parsing) hold tifffile's file-handle lock.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections import OrderedDict
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
from .decoded_cache import DEFAULT_CACHE_BYTES, DecodedCache
from .formats import FormatBackend, LocalFileFormat
from .indexing import Roi, roi_shape
from .location import Location
from .optional import refuse_write_mode
from .parallel_read import fill_in_parts, read_in_parts
from .threaded import ThreadedSource
from .tiff_common import SegmentPlan, native, tifffile_module
from .tiff_folder import (
    DEFAULT_SUFFIXES,
    TiffFolderSource,
    natural_key,
    open_folder_blocking,
)
from .tiff_metadata import layout_axes, source_axes, tiff_voxel_size
from .tiff_segments import PageSegments, SegmentGrid, pread_reader

logger = logging.getLogger("bioimage_async")

#: ``internal_path`` that stacks every page of a file (one series per page: written page by page)
PAGES = "pages"

#: how many segments' offsets the kept page tables hold at most (~15 MB; the first looked up
#: leave first): a page's table is read from the file once, not once per block that reads it
KNOWN_SEGMENTS = 1 << 18

__all__ = [
    "DEFAULT_SUFFIXES",
    "TiffFolderSource",
    "TiffSource",
    "natural_key",
    "open_tiff",
]


def page_number(lead_roi: Roi, position: tuple[int, ...], lead_shape: tuple[int, ...]) -> int:
    """The page (C order over the leading axes) at ``position`` within ``lead_roi``.

    Plain arithmetic: ``np.ravel_multi_index`` costs ~1 us a call, 7x this (2 ms per 2,048
    pages).
    """
    number = 0
    for axis, size in enumerate(lead_shape):
        number = number * size + lead_roi[axis].start + position[axis]
    return number


class TiffSource(ThreadedSource):
    """One series of a TIFF file: pages stacked along the leading axes.

    ``chunks`` is one strip or tile of a page (one page for memory-mapped files), so default
    block shapes follow the file's segments. ``decode_count`` counts the segments decoded so far.
    """

    #: (voxel size in C order, unit) from ImageJ's metadata and the resolution tags
    physical: tuple[tuple[float, ...] | None, str | None] = (None, None)

    @property
    def voxel_size(self) -> tuple[float, ...] | None:
        return self.physical[0]

    @property
    def unit(self) -> str | None:
        return self.physical[1]

    #: the series' axis letters as tifffile names them ('ZCYX', 'YXS', 'QYX', ...)
    file_axes: str = ""

    #: every page of the file stacked (``internal_path='pages'``), not one series
    all_pages: bool = False

    @property
    def axes(self) -> str | None:
        """The file's axes as "tczyx" letters (an ImageJ hyperstack's 'zcyx', an RGB
        file's 'yxc'), or None for a plain stack whose leading axes are not named."""
        return source_axes(self.file_axes) if self.file_axes else None

    kind = "tiff"
    serialize_calls = False  # page lookups take the file-handle lock; decoding runs in parallel

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
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        super().__init__()
        self.path = path
        self.series_index = series_index
        self._shape = shape
        self._page_shape = page_shape
        self._dtype = native(dtype)
        self._lead = len(shape) - len(page_shape)
        self._series = series
        self._memmap = memmap
        self._file_map: np.ndarray | None = None
        self._page_size = int(np.prod(page_shape, dtype=np.int64))
        self._file_dtype = self._dtype
        self._grids: dict[int, SegmentGrid | None] = {}
        #: the segment tables of pages looked up so far, within KNOWN_SEGMENTS (many blocks
        #: read each page)
        self._page_segments: OrderedDict[int, PageSegments] = OrderedDict()
        self._known_segments = 0
        self._grid: SegmentGrid | None = None
        self.segment_cache = DecodedCache(cache_bytes)
        self._fd: int | None = None
        if series is None:
            return
        keyframe = series.keyframe
        if keyframe.is_memmappable:
            # pages stored uncompressed but not back to back (IFDs in between, as many writers
            # do): one map of the whole file, each page viewed at its own offset
            self._file_dtype = self._dtype.newbyteorder(series.parent.byteorder)
            self._file_map = np.memmap(path, dtype=np.uint8, mode="r")
        else:
            self._grid = self._grid_of(keyframe)
            self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self._close_fd = weakref.finalize(self, os.close, self._fd)
            self._read_raw = pread_reader(self._fd)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        page = self._grid.chunk_shape if self._grid is not None else self._page_shape
        return (1,) * self._lead + page

    @property
    def memory_mapped(self) -> bool:
        """Whether reads go through a memory map (uncompressed data), not segment decoding."""
        return self._memmap is not None or self._file_map is not None

    @property
    def decode_count(self) -> int:
        """Strips or tiles decoded so far by this source (each once while it stays cached)."""
        return self.segment_cache.decode_count

    @property
    def read_only_reason(self) -> str:
        return f"{self.describe()} is read-only (TIFF is an input format here)"

    def describe(self) -> str:
        series = f" (series {self.series_index})" if self.series_index else ""
        if self.all_pages:
            series = " (all pages)"
        return f"TIFF file {self.path}{series}"

    def mapped_region(self, roi: Roi) -> np.ndarray | None:
        if self._memmap is not None and self._memmap.dtype == self._dtype:
            return self._memmap[roi]
        return None

    async def _read(self, roi: Roi) -> np.ndarray:
        """Decoded reads split large regions over the blocking pool's threads.

        On cancel, parts already decoding in threads finish (their segments stay cached).
        """
        if self._memmap is not None:
            return await super()._read(roi)
        return await read_in_parts(self._fill, roi, self._dtype, self.chunks)

    async def read_roi_into(self, roi: Roi, out: np.ndarray) -> None:
        """Decoded straight into ``out`` (a pooled block buffer), mapped pages copied into it."""
        if any(s.stop <= s.start for s in roi):
            return
        mapped = self.mapped_region(roi)
        if mapped is not None:
            await run_blocking(np.copyto, out, mapped)
        elif self._memmap is not None:
            await super().read_roi_into(roi, out)
        else:
            await fill_in_parts(self._fill, roi, out, self.chunks)

    def read_blocking(self, roi: Roi) -> np.ndarray:
        if self._memmap is not None:
            return np.array(self._memmap[roi], dtype=self._dtype)
        out = np.empty(roi_shape(roi), dtype=self._dtype)
        self._fill(out, roi)
        return out

    def _fill(self, out: np.ndarray, roi: Roi) -> None:
        """Fill ``out`` with ``roi``: mapped pages are copied, the others' segments decoded."""
        lead_roi, page_roi = roi[: self._lead], roi[self._lead :]
        lead_shape = self._shape[: self._lead]
        positions = list(np.ndindex(*roi_shape(lead_roi)))
        page_ids = [page_number(lead_roi, pos, lead_shape) for pos in positions]
        handle = self._series.parent.filehandle
        with handle.lock:  # page lookups seek in the shared file handle
            known = [self._page_segments.get(i) for i in page_ids]
            pages = [None if seg else self._series[i] for seg, i in zip(known, page_ids)]
            segments = [
                seg or self._segments_of(page, i) for seg, page, i in zip(known, pages, page_ids)
            ]
        plan = SegmentPlan()
        for pos, page_id, page, page_segments in zip(positions, page_ids, pages, segments):
            if page_segments is not None:
                plan.add(page_id, page_segments, self._read_raw, out[pos], page_roi)
                continue
            assert page is not None  # looked up: no segment table known for it
            if self._file_map is not None and page.is_memmappable:
                # uncompressed page: view its bytes in the file, copy only the region's rows
                start = page.dataoffsets[0]
                stop = start + self._page_size * self._file_dtype.itemsize
                data = self._file_map[start:stop].view(self._file_dtype)
                out[pos] = data.reshape(self._page_shape)[page_roi]
            else:  # a layout segments cannot place: decode it whole
                out[pos] = page.asarray(maxworkers=1).reshape(self._page_shape)[page_roi]
        plan.fill(self.segment_cache)

    def _grid_of(self, keyframe: Any) -> SegmentGrid | None:
        if keyframe.hash not in self._grids:
            fits = tuple(int(n) for n in keyframe.shape) == self._page_shape
            self._grids[keyframe.hash] = (
                SegmentGrid.of(keyframe, self._page_shape) if fits else None
            )
        return self._grids[keyframe.hash]

    def _segments_of(self, page: Any, page_id: int) -> PageSegments | None:
        """Where page ``page_id``'s segments are; call with the file-handle lock held."""
        if self._fd is None or (self._file_map is not None and page.is_memmappable):
            return None
        grid = self._grid_of(page.keyframe)
        if grid is None:
            return None
        segments = PageSegments.of(page, grid, self._dtype, f"{self.describe()}, page {page_id}")
        self._page_segments[page_id] = segments
        self._known_segments += len(segments.offsets)
        while self._known_segments > KNOWN_SEGMENTS and len(self._page_segments) > 1:
            _, old = self._page_segments.popitem(last=False)
            self._known_segments -= len(old.offsets)
        return segments

    def close(self) -> None:
        """Release the file (the memory map, the open TiffFile and the read descriptor)."""
        self._memmap = None
        self._file_map = None
        self.segment_cache.clear()
        self._page_segments.clear()  # their decode functions hold the parsed file
        self._known_segments = 0
        if self._fd is not None:
            self._close_fd()
        if self._series is not None:
            self._series.parent.close()

    def to_spec(self) -> SourceSpec:
        if self.all_pages:
            return SourceSpec(self.kind, {"path": self.path, "pages": True})
        return SourceSpec(self.kind, {"path": self.path, "series": self.series_index})

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> TiffSource:
        tifffile_module()
        path = str(params["path"])
        if not os.path.isfile(path):
            raise SourceNotFoundError(f"no such TIFF file: {path!r}")
        series = PAGES if params.get("pages") else str(int(params.get("series", 0)))
        return await run_blocking(_open_file_blocking, path, series, DEFAULT_CACHE_BYTES)


# ---------------------------------------------------------------------------------------------
# opening a file
# ---------------------------------------------------------------------------------------------
def _say_other_series(path: str, all_series: Any) -> None:
    """Opening series 0 of a file that holds more says so: a stack written page by page
    (tifffile's ``append=True``, a writer loop) holds one series per page, and reading only
    its first plane was silent."""
    first = all_series[0]
    same = all(
        len(s) == 1 and s.shape == first.shape and s.dtype == first.dtype for s in all_series
    )
    hint = (
        f"; they look like the planes of one stack written page by page: open them as one "
        f"with internal_path={PAGES!r}"
        if same
        else ""
    )
    logger.warning(
        "TIFF file %s holds %d series: series 0 (shape %s) is opened; internal_path='1' and "
        "so on open the others%s",
        path,
        len(all_series),
        tuple(first.shape),
        hint,
    )


def _pages_as_series(tif: Any, path: str) -> Any:
    """Every page of the file as one stack (``internal_path='pages'``): the planes of a stack
    written page by page, which tifffile reads as one series per page."""
    pages = list(tif.pages)
    first = pages[0]
    for number, page in enumerate(pages):
        if page.shape != first.shape or page.dtype != first.dtype:
            raise FormatNotSupportedError(
                f"internal_path={PAGES!r} stacks every page of {path!r}, but page {number} has "
                f"shape {page.shape} and dtype {page.dtype} where page 0 has {first.shape} and "
                f"{first.dtype}; open its series one by one (internal_path='0', '1', ...)"
            )
    shape = (len(pages), *first.shape)
    return tifffile_module().TiffPageSeries(
        pages, shape, first.dtype, "I" + first.axes, parent=tif, kind="generic"
    )


def _memory_map(path: str, index: int, series: Any) -> tuple[np.ndarray | None, str]:
    """The series mapped into memory, or None and tifffile's reason why it cannot be.

    tifffile.memmap parses the file again (~5 ms for 128 pages) only to refuse a series without
    one data offset (compressed, tiled or scattered pages), so the series is asked first.
    """
    if series.dataoffset is None:
        return None, "image data are not memory-mappable"
    try:
        return tifffile_module().memmap(path, series=index, mode="r"), ""
    except ValueError as err:
        return None, str(err)


def _series_layout(series: Any) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
    """(shape, page shape, contiguous) of a series whose pages stack along its leading axes.

    ``contiguous``: the series' data is one block after its first IFD, as in ImageJ stacks over
    4 GiB (one IFD for all planes); such a series must be memory-mapped, its pages have no IFDs.
    """
    full = tuple(int(n) for n in series.shape)
    page = tuple(int(n) for n in series.keyframe.shape)
    num_pages = len(series)
    lead = full[: len(full) - len(page)]
    stacked = full[len(lead) :] == page
    if stacked and int(np.prod(lead, dtype=np.int64)) == num_pages:
        return full, page, False
    if stacked and getattr(series, "dataoffset", None) is not None:
        return full, page, True  # planes back to back after one IFD (ImageJ, truncate=True)
    # the series squeezes its axes differently than its pages: stack the pages
    shape = (num_pages, *page) if num_pages > 1 else page
    if int(np.prod(shape, dtype=np.int64)) != int(np.prod(full, dtype=np.int64)):
        raise FormatNotSupportedError(
            f"the TIFF series of shape {full} is not a stack of {num_pages} page(s) of shape "
            f"{page}; this layout is not supported, convert the file with tifffile first"
        )
    return shape, page, False


def _open_file_blocking(path: str, key: str | None, cache_bytes: int) -> TiffSource:
    tifffile = tifffile_module()
    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError) as err:
        raise SourceError(f"cannot read {path!r} as a TIFF file: {err}") from err
    try:
        all_series = tif.series
        if not all_series:
            raise SourceError(f"the TIFF file {path!r} holds no image")
        pages = key == PAGES
        index = int(key) if key and key.isdigit() else 0
        if key not in (None, "", PAGES) and not (key.isdigit() and index < len(all_series)):
            names = [str(i) for i in range(len(all_series))] + [PAGES]
            raise InternalPathNotFoundError(path, key, names)
        if key in (None, "") and len(all_series) > 1:
            _say_other_series(path, all_series)
        series = _pages_as_series(tif, path) if pages else all_series[index]
        shape, page_shape, contiguous = _series_layout(series)
        dtype = series.dtype
        letters = "" if pages else layout_axes(series, shape, page_shape)
        physical = tiff_voxel_size(tif, series, index, letters)
        # tifffile maps series by index, not the stack of every page
        mapped, why_not = (None, "") if pages else _memory_map(path, index, series)
        if mapped is None:  # compressed, tiled or scattered pages: decode segments
            if contiguous:
                raise FormatNotSupportedError(
                    f"the TIFF series of shape {series.shape} in {path!r} stores its planes "
                    f"after one IFD but cannot be memory-mapped ({why_not})"
                )
            tif.filehandle.set_lock(True)
            source = TiffSource(
                path,
                series_index=index,
                shape=shape,
                page_shape=page_shape,
                dtype=dtype,
                series=series,
                cache_bytes=cache_bytes,
            )
        else:
            tif.close()
            source = TiffSource(
                path,
                series_index=index,
                shape=shape,
                page_shape=page_shape,
                dtype=dtype,
                memmap=mapped.reshape(shape),
            )
        source.physical = physical
        source.file_axes = letters
        source.all_pages = pages
        return source
    except BaseException:
        tif.close()
        raise


# ---------------------------------------------------------------------------------------------
# the opener
# ---------------------------------------------------------------------------------------------
async def open_tiff(
    path: str | os.PathLike[str],
    internal_path: str | None = None,
    *,
    mode: str = "r",
    pattern: str | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> TiffSource | TiffFolderSource:
    """Open a TIFF file, or a folder of 2D TIFF slices selected by ``pattern``, read-only.

    A file's ``internal_path`` may name a series by number ('1'); the default is the first
    (with a warning when there are more). ``'pages'`` stacks every page of the file: a stack
    written page by page (tifffile's ``append=True``) holds one series per page.
    A folder's slices are matched by ``pattern`` (a glob; ``internal_path`` may hold it, as
    bioimage-py keys image stacks); without one, every file ending in .tif or .tiff in any case
    (IMG_0001.TIF too). Slices stack in natural order. ``cache_bytes`` bounds the decoded strips
    and tiles kept for reuse by later reads (compressed data only).
    """
    refuse_write_mode("tiff", mode)
    tifffile_module()
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        if internal_path not in (None, ""):
            if pattern is not None and pattern != internal_path:
                raise InvalidArgumentError(
                    f"a folder of slices takes one pattern; got internal_path={internal_path!r} "
                    f"and pattern={pattern!r}"
                )
            pattern = internal_path
        return await run_blocking(open_folder_blocking, path, pattern or None, cache_bytes)
    if pattern is not None:
        raise InvalidArgumentError(
            f"pattern={pattern!r} selects slices in a folder, but {path!r} is a file; pass the "
            "folder, or drop pattern="
        )
    if not os.path.exists(path):
        raise SourceNotFoundError(f"no such TIFF file or folder: {path!r}")
    return await run_blocking(_open_file_blocking, path, internal_path, cache_bytes)


class TiffFormat(LocalFileFormat):
    name = "tiff"
    open_options = ("pattern", "cache_bytes")
    description = "TIFF, .tif/.tiff, or a folder of 2D slices (any-case .tif/.tiff)"
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
