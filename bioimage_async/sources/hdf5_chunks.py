"""Chunked HDF5 datasets read as raw chunks under the library's lock, decoded outside it.

The HDF5 library serialises every call (h5py holds one process-wide lock), so decompressing
through h5py runs on one core. ``dataset.id.read_direct_chunk`` returns a chunk's stored bytes
quickly; decoding them here (zlib and friends release the GIL) lets the blocking pool's threads
decode chunks in parallel. Decoded chunks go through a bounded cache, so blocks that share a
chunk decode it once.

Only what can be decoded exactly as HDF5 would takes this path: integer and float data stored
in a standard type, with a defined fill value that unallocated chunks read as, through the filters below (each optional decoder
used only when its package imports). Anything else (fletcher32, scale-offset, szip, n-bit, lzf,
unknown filters, contiguous or compact layouts, writable files) is read through h5py as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SourceError
from .decoded_cache import DecodedCache, Piece
from .indexing import Roi
from .inflate import inflate_or_zlib, pick_inflate

#: bytes, a bytearray or a uint8 array: anything with the buffer protocol
Buffer = Any
#: decode(stored bytes, size of the decoded chunk) -> decoded bytes
Decoder = Callable[[Buffer, int], Buffer]

DEFLATE, SHUFFLE, LZ4, BLOSC, ZSTD = 1, 2, 32004, 32001, 32015


def _blosc() -> Decoder | None:
    try:
        from numcodecs import blosc
    except ImportError:
        return None
    return lambda data, nbytes: blosc.decompress(data)


def _zstd() -> Decoder | None:
    try:
        import zstandard
    except ImportError:
        return None
    # a decompressor per call: they are not thread-safe, and cheap to make
    return lambda data, nbytes: zstandard.ZstdDecompressor().decompress(
        data, max_output_size=max(nbytes, 1)
    )


def _lz4() -> Decoder | None:
    try:
        import lz4.block
    except ImportError:
        return None

    def decode(data: Buffer, nbytes: int) -> Buffer:
        # the HDF5 LZ4 filter's framing: total size (8 bytes), block size (4), then per block
        # its stored size (4) and bytes; a block stored at full size was not compressed
        total = int.from_bytes(data[:8], "big")
        block = int.from_bytes(data[8:12], "big")
        pos, done, parts = 12, 0, []
        while done < total and block > 0:
            size = int.from_bytes(data[pos : pos + 4], "big")
            expected = min(block, total - done)
            stored = data[pos + 4 : pos + 4 + size]
            pos += 4 + size
            done += expected
            parts.append(
                stored
                if size == expected
                else lz4.block.decompress(stored, uncompressed_size=expected)
            )
        return b"".join(parts)

    return decode


def unshuffle(data: Buffer, itemsize: int) -> Buffer:
    """Undo HDF5's byte shuffle (all first bytes, then all second bytes, ...)."""
    if itemsize <= 1:
        return data
    raw = np.frombuffer(data, dtype=np.uint8)
    count = raw.size // itemsize
    body = np.ascontiguousarray(raw[: count * itemsize].reshape(itemsize, count).T).reshape(-1)
    if count * itemsize == raw.size:
        return body
    return np.concatenate([body, raw[count * itemsize :]])  # a tail HDF5 leaves unshuffled


def _decoder(code: int, itemsize: int) -> Decoder | None:
    if code == DEFLATE:
        return inflate_or_zlib(pick_inflate())
    if code == SHUFFLE:
        return lambda data, nbytes: unshuffle(data, itemsize)
    if code == BLOSC:
        return _blosc()
    if code == ZSTD:
        return _zstd()
    if code == LZ4:
        return _lz4()
    return None


@dataclass(frozen=True)
class ChunkCodec:
    """How a dataset's stored chunks decode: its filters in reverse, each with its mask bit."""

    steps: tuple[tuple[int, Decoder], ...]
    dtype: np.dtype
    chunk_shape: tuple[int, ...]
    fill_value: Any

    @classmethod
    def of(cls, dataset: Any) -> ChunkCodec | None:
        """The codec of ``dataset``, or None when h5py must read it (see the module doc)."""
        import h5py

        dsid = dataset.id
        if not all(hasattr(dsid, n) for n in ("read_direct_chunk", "get_chunk_info_by_coord")):
            return None
        dtype = np.dtype(dataset.dtype)
        if dtype.kind not in "iuf" or dataset.chunks is None or not dataset.shape:
            return None
        dcpl = dsid.get_create_plist()
        if dcpl.get_layout() != h5py.h5d.CHUNKED or dcpl.get_external_count() > 0:
            return None
        if not dsid.get_type().equal(h5py.h5t.py_create(dtype)):
            return None  # a non-standard type h5py converts on read
        if dcpl.fill_value_defined() == h5py.h5d.FILL_VALUE_UNDEFINED:
            return None
        if dcpl.get_fill_time() == h5py.h5d.FILL_TIME_NEVER:
            return None  # unallocated chunks are not the fill value there: h5py decides
        steps: list[tuple[int, Decoder]] = []
        for position in range(dcpl.get_nfilters()):
            code = dcpl.get_filter(position)[0]
            decoder = _decoder(code, dtype.itemsize)
            if decoder is None:
                return None
            steps.append((position, decoder))
        return cls(
            tuple(reversed(steps)),
            dtype,
            tuple(int(c) for c in dataset.chunks),
            np.array(dataset.fillvalue, dtype=dtype),
        )

    @property
    def chunk_bytes(self) -> int:
        return math.prod(self.chunk_shape) * self.dtype.itemsize

    def decode(self, data: Buffer, filter_mask: int) -> np.ndarray:
        """A stored chunk as an array (file byte order); a set mask bit skips that filter."""
        for position, decoder in self.steps:
            if not filter_mask & (1 << position):
                data = decoder(data, self.chunk_bytes)
        nbytes = memoryview(data).nbytes
        if nbytes != self.chunk_bytes:
            raise SourceError(
                f"a chunk decoded to {nbytes} bytes, not the {self.chunk_bytes} of its "
                f"{self.chunk_shape} {self.dtype} chunk; the file is corrupt"
            )
        return np.frombuffer(data, dtype=self.dtype).reshape(self.chunk_shape)

    def filled(self) -> np.ndarray:
        """An unallocated chunk: the fill value everywhere, as h5py reads it (no memory)."""
        return np.broadcast_to(self.fill_value, self.chunk_shape)


class ChunkReader:
    """Fills regions of one dataset from its chunks: raw reads under ``lock``, decoding outside.

    All methods run in worker threads.
    """

    def __init__(self, dataset: Any, codec: ChunkCodec, lock: Any, cache: DecodedCache) -> None:
        self.dataset = dataset
        self.codec = codec
        self.lock = lock
        self.cache = cache
        self.shape = tuple(int(n) for n in dataset.shape)

    def fill(self, out: np.ndarray, roi: Roi) -> None:
        """Copy ``roi`` into ``out`` (an array of its shape), decoding each missing chunk once."""
        chunks = self.codec.chunk_shape
        ranges = [range(s.start // c, math.ceil(s.stop / c)) for s, c in zip(roi, chunks)]
        stored = math.prod(chunks)  # edge chunks are stored whole
        pieces = []
        for position in np.ndindex(*(len(r) for r in ranges)):
            origin = tuple((r[p]) * c for r, p, c in zip(ranges, position, chunks))
            lo = [max(s.start, o) for s, o in zip(roi, origin)]
            hi = [min(s.stop, o + c) for s, o, c in zip(roi, origin, chunks)]
            dst = tuple(slice(a - s.start, b - s.start) for a, b, s in zip(lo, hi, roi))
            src = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, origin))
            inside = math.prod(min(c, n - o) for c, n, o in zip(chunks, self.shape, origin))
            pieces.append(Piece(origin, out, dst, src, inside, stored))
        self.cache.fill(pieces, self._decode)

    def _decode(self, origin: Hashable) -> np.ndarray:
        with self.lock:  # h5py: one call at a time on this handle
            stored = self._read_raw(origin)  # type: ignore[arg-type]
        if stored is None:
            return self.codec.filled()
        filter_mask, data = stored
        return self.codec.decode(data, filter_mask)

    def _read_raw(self, origin: tuple[int, ...]) -> tuple[int, bytes] | None:
        """(filter mask, stored bytes) of the chunk at ``origin``; None if never written."""
        dsid = self.dataset.id
        try:
            return dsid.read_direct_chunk(origin)
        except (RuntimeError, OSError, ValueError, KeyError):
            if dsid.get_chunk_info_by_coord(origin).byte_offset is None:
                return None
            raise
