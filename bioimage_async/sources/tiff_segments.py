"""The strips and tiles of a TIFF page: which ones a region needs, and decoding one of them.

A compressed TIFF page is stored as segments (strips of rows, or tiles) that decode one by one.
Decoding only the segments a region touches, each once (through a DecodedCache), is what makes a
block-wise conversion cost one decode of the file instead of one per block per page.

Raw bytes are read with ``os.pread`` on a descriptor of our own (no shared file position, so no
lock); tifffile's per-page decode function (zlib, LZW, zstd, JPEG, predictors, byte order, bit
unpacking) decodes them outside any lock. Plain deflate segments (the most common compression of
microscopy TIFFs) decode with libdeflate (from imagecodecs, or the ``deflate`` package): about
twice as fast as the zlib path tifffile takes. Pages whose segments this module
does not describe
(volumetric tiles, NDPI's JPEG strips, layouts whose page shape it cannot place) return None from
``SegmentGrid.of`` and are decoded whole, as before.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SourceError
from .indexing import Roi
from .inflate import Inflate, InflateErrors, InflateInto, pick_inflate, pick_inflate_into

#: libdeflate where installed (see ``inflate``); None: tifffile's decoders do everything
inflate: Inflate | None = pick_inflate()
#: libdeflate decoding into a given buffer (imagecodecs), or None
inflate_into: InflateInto | None = pick_inflate_into()

#: TIFF JPEG compressions: their segments need the page's JPEG tables.
_JPEG = {6, 7, 33007, 34892}
_DEFLATE = {8, 32946}

ReadRaw = Callable[[int, int], bytes]


@dataclass(frozen=True)
class SegmentGrid:
    """Where the segments of one kind of page sit, in that page's (squeezed) coordinates.

    ``layout`` names the page axes: 'yx' (one sample), 'yxs' (samples interleaved, as RGB) or
    'syx' (one plane of segments per sample). A decoded segment is (rows, columns, samples).
    """

    layout: str
    page_shape: tuple[int, ...]
    height: int
    width: int
    seg_h: int
    seg_w: int
    tiled: bool

    @classmethod
    def of(cls, keyframe: Any, page_shape: tuple[int, ...]) -> SegmentGrid | None:
        """The grid of ``keyframe``'s segments, or None where pages must be decoded whole."""
        separate, depth, height, width, contig = (int(n) for n in keyframe.shaped)
        if depth != 1 or int(getattr(keyframe, "imagedepth", 1)) != 1:
            return None  # volumetric tiles
        if keyframe.is_tiled and keyframe.jpegheader is not None:
            return None  # NDPI: one JPEG stream read as tiles by tifffile
        if keyframe.is_tiled:
            if int(keyframe.tiledepth) != 1:
                return None
            seg_h, seg_w = int(keyframe.tilelength), int(keyframe.tilewidth)
        else:
            seg_h, seg_w = min(int(keyframe.rowsperstrip), height), width
        if page_shape == (height, width) and separate == contig == 1:
            layout = "yx"
        elif page_shape == (height, width, contig) and separate == 1:
            layout = "yxs"
        elif page_shape == (separate, height, width) and contig == 1:
            layout = "syx"
        else:
            return None
        if seg_h < 1 or seg_w < 1:
            return None
        return cls(layout, page_shape, height, width, seg_h, seg_w, bool(keyframe.is_tiled))

    @property
    def planes(self) -> int:
        return self.page_shape[0] if self.layout == "syx" else 1

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.seg_h)

    @property
    def columns(self) -> int:
        return math.ceil(self.width / self.seg_w)

    @property
    def count(self) -> int:
        return self.planes * self.rows * self.columns

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """One segment in page coordinates (the source's ``chunks`` for these pages)."""
        yx = (self.seg_h, self.seg_w)
        if self.layout == "yxs":
            return (*yx, self.page_shape[2])
        if self.layout == "syx":
            return (1, *yx)
        return yx

    @property
    def samples(self) -> int:
        """Samples per pixel within one segment (interleaved samples; 1 for planes)."""
        return self.page_shape[2] if self.layout == "yxs" else 1

    def stored_shape(self, index: int) -> tuple[int, int, int]:
        """(rows, columns, samples) as stored: the last strip is short, edge tiles are full."""
        if self.tiled:
            return (self.seg_h, self.seg_w, self.samples)
        return (*self.segment_shape(index), self.samples)

    def segment_shape(self, index: int) -> tuple[int, int]:
        """(rows, columns) of the image that segment ``index`` covers (edges are smaller)."""
        row = (index // self.columns) % self.rows
        column = index % self.columns
        return (
            min(self.seg_h, self.height - row * self.seg_h),
            min(self.seg_w, self.width - column * self.seg_w),
        )

    def pieces(self, page_roi: Roi) -> Iterator[tuple[int, tuple[slice, ...], tuple[Any, ...]]]:
        """(segment index, index into the region's array, index into the segment) per segment."""
        if self.layout == "syx":
            planes, ys, xs = page_roi
            samples: Any = 0
        else:
            planes, ys, xs = slice(0, 1), page_roi[0], page_roi[1]
            samples = page_roi[2] if self.layout == "yxs" else 0
        per_plane = self.rows * self.columns
        for plane in range(planes.start, planes.stop):
            for row in range(ys.start // self.seg_h, math.ceil(ys.stop / self.seg_h)):
                y0 = row * self.seg_h
                y_lo, y_hi = max(ys.start, y0), min(ys.stop, y0 + self.seg_h)
                for column in range(xs.start // self.seg_w, math.ceil(xs.stop / self.seg_w)):
                    x0 = column * self.seg_w
                    x_lo, x_hi = max(xs.start, x0), min(xs.stop, x0 + self.seg_w)
                    dst: tuple[slice, ...] = (
                        slice(y_lo - ys.start, y_hi - ys.start),
                        slice(x_lo - xs.start, x_hi - xs.start),
                    )
                    if self.layout == "syx":
                        dst = (slice(plane - planes.start, plane - planes.start + 1), *dst)
                    src: tuple[Any, ...] = (
                        slice(y_lo - y0, y_hi - y0),
                        slice(x_lo - x0, x_hi - x0),
                        samples,
                    )
                    if self.layout == "syx":
                        src = (np.newaxis, *src)
                    index = plane * per_plane + row * self.columns + column
                    yield index, dst, src


@dataclass(frozen=True)
class PageSegments:
    """One page's segments: where they are in the file and how they decode."""

    grid: SegmentGrid
    offsets: tuple[int, ...]
    bytecounts: tuple[int, ...]
    decode_fn: Callable[..., Any]
    decode_args: dict[str, Any]
    nodata: Any
    dtype: np.dtype
    name: str
    fast: FastDeflate | None = None

    @classmethod
    def of(
        cls,
        page: Any,
        grid: SegmentGrid,
        dtype: np.dtype,
        name: str,
        decode_fn: Callable[..., Any] | None = None,
    ) -> PageSegments:
        """Call with the file-handle lock held: tifffile builds the decode function lazily.

        ``decode_fn``: the decode function of an equivalent page (same tifffile ``hash``), so
        that slices of a folder share one instead of each keeping its parsed file alive.
        """
        keyframe = page.keyframe
        decode_args: dict[str, Any] = {}
        if keyframe.compression in _JPEG:
            decode_args = {
                "jpegtables": getattr(page, "jpegtables", None),
                "jpegheader": keyframe.jpegheader,
            }
        offsets = tuple(int(n) for n in page.dataoffsets)
        bytecounts = tuple(int(n) for n in page.databytecounts)
        if len(offsets) < grid.count or len(bytecounts) < grid.count:
            raise SourceError(
                f"{name} lists {len(offsets)} segments where its layout needs {grid.count}; "
                "the file is truncated or corrupt"
            )
        return cls(
            grid,
            offsets,
            bytecounts,
            decode_fn or keyframe.decode,
            decode_args,
            keyframe.nodata,
            dtype,
            name,
            FastDeflate.of(keyframe),
        )

    def decode(self, index: int, read_raw: ReadRaw) -> np.ndarray:
        """Segment ``index`` as (rows, columns, samples); runs in a worker thread, no lock."""
        count, offset = self.bytecounts[index], self.offsets[index]
        if count == 0 or offset == 0:  # never written: tifffile reads it as the page's nodata
            rows, columns = self.grid.segment_shape(index)
            return np.full((rows, columns, self.grid.samples), self.nodata, dtype=self.dtype)
        raw = read_raw(offset, count)
        if len(raw) != count:
            raise SourceError(
                f"{self.name}: segment {index} should have {count} bytes at offset {offset}, "
                f"the file has {len(raw)}; it is truncated"
            )
        if self.fast is not None:
            segment = self.fast.decode(raw, self.grid.stored_shape(index))
            if segment is not None:
                return segment
        data, _, shape = self.decode_fn(raw, index, **self.decode_args)
        return np.asarray(data).reshape(shape)[0]

    def decode_into(self, index: int, read_raw: ReadRaw, target: np.ndarray) -> np.ndarray | None:
        """Decode segment ``index`` into ``target`` (C-contiguous, its stored size, this
        source's dtype); returns ``target`` shaped as the segment (rows, columns, samples), or
        None where only ``decode`` can (then ``target`` may hold garbage that the usual decode
        and copy overwrite). Runs in a worker thread, no lock."""
        if self.fast is None or not self.fast.decodes_into(target):
            return None
        count, offset = self.bytecounts[index], self.offsets[index]
        if count == 0 or offset == 0:
            return None  # never written: the usual path fills the nodata value
        raw = read_raw(offset, count)
        if len(raw) != count:
            raise SourceError(
                f"{self.name}: segment {index} should have {count} bytes at offset {offset}, "
                f"the file has {len(raw)}; it is truncated"
            )
        segment = target.reshape(self.grid.stored_shape(index))
        return segment if self.fast.decode_into(raw, segment) else None


@dataclass(frozen=True)
class FastDeflate:
    """libdeflate for plain deflate segments of whole-byte samples (none, or integer deltas)."""

    dtype: np.dtype  # as stored, in the file's byte order
    predictor: bool

    @classmethod
    def of(cls, keyframe: Any) -> FastDeflate | None:
        if inflate is None or keyframe.compression not in _DEFLATE:
            return None
        if keyframe.fillorder != 1 or keyframe.is_subsampled:
            return None
        if keyframe.bitspersample not in (8, 16, 32, 64) or keyframe.sampleformat not in (1, 2, 3):
            return None
        integer = keyframe.sampleformat in (1, 2)
        if keyframe.predictor not in ((1, 2) if integer else (1,)):
            return None
        dtype = np.dtype(keyframe.dtype).newbyteorder(keyframe.parent.byteorder)
        if dtype.itemsize * 8 != keyframe.bitspersample:
            return None
        return cls(dtype, keyframe.predictor == 2)

    def decodes_into(self, target: np.ndarray) -> bool:
        """Whether ``decode_into`` can fill ``target``: libdeflate with an output buffer, and
        the target holds this segment's samples (its native-order dtype)."""
        return (
            inflate_into is not None
            and target.flags.c_contiguous
            and target.flags.writeable
            and target.dtype == self.dtype.newbyteorder("=")
        )

    def decode_into(self, raw: bytes, target: np.ndarray) -> bool:
        """Decode into ``target`` (rows, columns, samples); False on a size other than its
        own (a corrupt or unusual segment: the usual path decides what it is)."""
        if inflate_into is None:
            return False
        flat = target.reshape(-1).view(np.uint8)
        try:
            if inflate_into(raw, flat) != flat.size:
                return False
        except InflateErrors:
            return False
        if not self.dtype.isnative:
            target.byteswap(inplace=True)
        if self.predictor:  # horizontal differencing: a running sum along each row
            np.cumsum(target, axis=1, dtype=target.dtype, out=target)
        return True

    def decode(self, raw: bytes, shape: tuple[int, int, int]) -> np.ndarray | None:
        """The segment, or None where its size is unusual (tifffile then decodes it)."""
        nbytes = math.prod(shape) * self.dtype.itemsize
        try:
            data = inflate(raw, max(nbytes, 1)) if inflate is not None else b""
        except InflateErrors:
            return None
        if len(data) != nbytes:
            return None
        segment = np.frombuffer(data, dtype=self.dtype).reshape(shape)
        if not self.dtype.isnative:
            segment = segment.astype(self.dtype.newbyteorder("="))
        if self.predictor:  # horizontal differencing: a running sum along each row
            out = segment if segment.flags.writeable else None  # imagecodecs returns bytes
            segment = np.cumsum(segment, axis=1, dtype=segment.dtype, out=out)
        return segment


def pread_reader(fd: int) -> ReadRaw:
    """Read ``count`` bytes at ``offset`` of an open descriptor; threads need no lock for it."""

    def read(offset: int, count: int) -> bytes:
        data = os.pread(fd, count, offset)
        while 0 < len(data) < count:  # pread may return less than asked on some filesystems
            more = os.pread(fd, count - len(data), offset + len(data))
            if not more:
                break
            data += more
        return data

    return read


def file_signature(file: str | int) -> tuple[int, ...]:
    """What changes when a file is replaced or rewritten: device, inode, size, mtime."""
    st = os.stat(file)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def path_reader(path: str, signature: tuple[int, ...] | None = None) -> ReadRaw:
    """Like pread_reader, opening ``path`` for each read (slices of a folder, many files).

    With ``signature`` (from file_signature when the segment table was read), a file replaced
    or rewritten since is an error rather than bytes read at stale offsets.
    """

    def read(offset: int, count: int) -> bytes:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            if signature is not None and file_signature(fd) != signature:
                raise SourceError(
                    f"the TIFF file {path} changed since its strips and tiles were listed; "
                    "reopen the source"
                )
            return pread_reader(fd)(offset, count)
        finally:
            os.close(fd)

    return read
