"""Whether a chunk file's bytes encode a chunk of its array, checked without decoding where the
codec allows it.

A raw copy (``raw_copy``) writes the bytes it read as the output's chunk, undecoded. A server
that answers a GET with 200 and an HTML page (a gateway, CDN or sign-in page), or ends a body
early on a response without Content-Length, would so leave a corrupt output behind a copy that
reports success, where decoding would have refused the bytes. So each key's bytes are held
against the framing its codec writes before they are written:

- uncompressed (zarr ``null`` / ``bytes``, n5 ``raw``, precomputed ``raw``): the exact length;
- blosc: its header's compressed size is the length, its decoded size the chunk's;
- gzip: the magic bytes, and the trailer's decoded size (mod 2**32) is the chunk's;
- zstd: the frames' block headers end exactly at the end, and their content sizes (where
  written) add up to the chunk's size;
- zlib, bzip2, xz (nothing in their framing says where they end): decoded, in a worker
  thread (zlib by libdeflate where installed);
- crc32c (zarr v3): the checksum (skipped on large data when no C crc32c library is there);
- n5: the chunk header (mode 0, the rank, dims within blockSize), then its payload as above;
- zarr v3 sharding: the index (its crc32c), each inner chunk inside the file and checked;
- precomputed jpeg / png: the image size and components in the header, and the end marker;
  compressed_segmentation: the bounds tensorstore's decoder checks, and that the lookup table
  stored last holds the indices its blocks use; sharded: every shard and minishard index range
  inside the file (and gzip'd chunks' magic).

Arrays whose codecs have no check here get None from ``chunk_check``: they take the decoding
path. Zarr stores full-size edge chunks; n5 writers store full (tensorstore) or clipped (z5py,
n5-java) ones, and the header says which; precomputed stores clipped ones, named by their bounds.
"""

from __future__ import annotations

import bz2
import lzma
import math
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .inflate import InflateErrors, pick_inflate

#: (bytes) -> what is wrong with them, or None
Check = Callable[[memoryview], "str | None"]
#: (bytes, decoded size or None when not known) -> what is wrong, or None
SizedCheck = Callable[[memoryview, "int | None"], "str | None"]
#: (key, bytes) -> what is wrong, or None
KeyCheck = Callable[[str, memoryview], "str | None"]


@dataclass(frozen=True)
class ChunkCheck:
    """How to check one array's chunk (shard) files.

    ``decodes`` says the check spends CPU in proportion to the bytes (it decodes, or walks a
    shard's inner chunks): it then belongs in a worker thread, not on the event loop.
    """

    problem: KeyCheck
    decodes: bool


# ---- codecs ------------------------------------------------------------------------------------
def _uncompressed(data: memoryview, size: int | None) -> str | None:
    if size is not None and len(data) != size:
        return f"{len(data)} bytes where the uncompressed chunk has {size}"
    return None


def _blosc(data: memoryview, size: int | None) -> str | None:
    if len(data) < 16:
        return f"{len(data)} bytes, too few for a blosc frame (its header has 16)"
    nbytes, _, cbytes = struct.unpack_from("<III", data, 4)
    if cbytes != len(data):
        return f"{len(data)} bytes that are not a blosc frame (its header gives {cbytes} bytes)"
    if size is not None and nbytes != size:
        return f"a blosc frame of {nbytes} decoded bytes where the chunk has {size}"
    return None


def _gzip(data: memoryview, size: int | None) -> str | None:
    if len(data) < 18 or data[:3] != b"\x1f\x8b\x08":
        return f"{len(data)} bytes that are not a gzip stream (no gzip magic)"
    (isize,) = struct.unpack_from("<I", data, len(data) - 4)
    if size is not None and isize != size % 2**32:
        return (
            f"{len(data)} bytes that are not a whole gzip stream (its trailer gives {isize} "
            f"decoded bytes, the chunk has {size})"
        )
    return None


_ZSTD_MAGIC = 0xFD2FB528


def _zstd(data: memoryview, size: int | None) -> str | None:
    """Walks the frames' block headers (a few per 128 KiB), nothing is decoded."""
    end, pos, content = len(data), 0, 0
    while pos < end or pos == 0:
        if end - pos < 8:
            return f"{end} bytes that are not a whole zstd frame (it ends at byte {pos})"
        magic, skip = struct.unpack_from("<II", data, pos)
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame
            pos += 8 + skip
            continue
        if magic != _ZSTD_MAGIC:
            return f"{end} bytes that are not a zstd frame (no zstd magic at byte {pos})"
        found = _zstd_frame(data, pos + 4)
        if isinstance(found, str):
            return f"{end} bytes that are not a whole zstd frame ({found})"
        pos, frame_size = found
        content = -1 if frame_size is None or content < 0 else content + frame_size
    if pos != end:
        return f"{end} bytes that are not a whole zstd frame (its blocks end at byte {pos})"
    if size is not None and content >= 0 and content != size:
        return f"zstd frames of {content} decoded bytes where the chunk has {size}"
    return None


def _zstd_frame(data: memoryview, pos: int) -> tuple[int, int | None] | str:
    """(end, content size or None) of the frame whose header starts at ``pos``."""
    end = len(data)
    descriptor = data[pos]
    if descriptor & 0x08:
        return "a reserved bit is set in its header"
    single = descriptor >> 5 & 1
    pos += 1 + (1 - single) + (0, 1, 2, 4)[descriptor & 3]
    width = (single, 2, 4, 8)[descriptor >> 6]
    if pos + width > end:
        return "its header is cut short"
    content = int.from_bytes(data[pos : pos + width], "little") if width else None
    if width == 2 and content is not None:
        content += 256
    pos += width
    while True:
        if pos + 3 > end:
            return "its blocks are cut short"
        header = int.from_bytes(data[pos : pos + 3], "little")
        kind = header >> 1 & 3
        if kind == 3:
            return f"a reserved block type at byte {pos}"
        pos += 3 + (1 if kind == 1 else header >> 3)
        if header & 1:
            break
    pos += 4 * (descriptor >> 2 & 1)  # the content checksum
    return (pos, content) if pos <= end else "its last block is cut short"


def _decodes(make: Callable[[], Any], name: str, data: memoryview, size: int | None) -> str | None:
    """Decode with a stdlib decompressor: its framing alone does not say where it ends."""
    decompressor = make()
    try:
        decoded = decompressor.decompress(data)
    except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError) as err:
        return f"{len(data)} bytes that are not a {name} stream ({err})"
    if not decompressor.eof:
        return f"{len(data)} bytes of a {name} stream that is cut short"
    if decompressor.unused_data:
        return f"a {name} stream followed by {len(decompressor.unused_data)} more bytes"
    if size is not None and len(decoded) != size:
        return f"a {name} stream of {len(decoded)} decoded bytes where the chunk has {size}"
    return None


_INFLATE = pick_inflate()


def _zlib(data: memoryview, size: int | None) -> str | None:
    """Decoded by libdeflate where installed (twice zlib's speed), else by zlib; zlib also
    says what is wrong with a stream libdeflate refuses."""
    if len(data) < 6 or data[0] & 0x0F != 8 or (data[0] << 8 | data[1]) % 31:
        return f"{len(data)} bytes that are not a zlib stream (no zlib header)"
    if _INFLATE is not None and size is not None:
        try:
            if len(_INFLATE(data, size)) == size:
                return None
        except InflateErrors:
            pass
    return _decodes(zlib.decompressobj, "zlib", data, size)


_bz2: SizedCheck = partial(_decodes, bz2.BZ2Decompressor, "bzip2")
_xz: SizedCheck = partial(_decodes, lzma.LZMADecompressor, "xz")
#: codecs whose check is cheap even when the decoded size is not known
_SELF_DELIMITED: dict[str, SizedCheck] = {"blosc": _blosc, "zstd": _zstd}
_DECODING = (_zlib, _bz2, _xz)


# ---- crc32c (zarr v3) --------------------------------------------------------------------------
def _fast_crc32c() -> Callable[[memoryview], int] | None:
    try:
        import google_crc32c

        if google_crc32c.implementation == "c":
            return lambda data: int(google_crc32c.value(bytes(data)))
    except ImportError:
        pass
    try:
        import crc32c

        return lambda data: int(crc32c.crc32c(data))
    except ImportError:
        return None


_CRC32C_FAST = _fast_crc32c()
#: without a C implementation only this much is checksummed in Python (a shard index)
_CRC32C_PYTHON_LIMIT = 256 * 1024
_CRC32C_TABLE: list[int] = []


def _crc32c(data: memoryview) -> int | None:
    """The CRC-32C of ``data``, or None where only Python could compute it and it is large."""
    if _CRC32C_FAST is not None:
        return _CRC32C_FAST(data)
    if len(data) > _CRC32C_PYTHON_LIMIT:
        return None
    if not _CRC32C_TABLE:
        for n in range(256):
            for _ in range(8):
                n = (n >> 1) ^ (0x82F63B78 if n & 1 else 0)
            _CRC32C_TABLE.append(n)
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_problem(data: memoryview) -> str | None:
    """Whether the last 4 bytes of ``data`` are the CRC-32C of the others."""
    if len(data) < 4:
        return f"{len(data)} bytes, too few for a crc32c checksum"
    (stored,) = struct.unpack_from("<I", data, len(data) - 4)
    computed = _crc32c(data[:-4])
    if computed is not None and computed != stored:
        return f"{len(data)} bytes whose crc32c checksum does not match"
    return None


def _under_crc32c(inner: Check, data: memoryview) -> str | None:
    return _crc32c_problem(data) or inner(data[:-4])


def _sized(check: SizedCheck, size: int | None) -> Check:
    """``check`` with the decoded size known in advance."""
    return lambda data: check(data, size)


# ---- zarr v3 -----------------------------------------------------------------------------------
def _zarr3(codecs: list[dict[str, Any]], shape: list[int], itemsize: int) -> Check | None:
    """The check of what a zarr v3 codec chain writes for a chunk of ``shape``, or None."""
    names = [str(codec.get("name")) for codec in codecs]
    at = 0
    while at < len(names) and names[at] == "transpose":  # moves elements, keeps their number
        at += 1
    if at == len(names):
        return None
    check: Check | None
    size: int | None
    if names[at] == "bytes":
        size = math.prod(shape) * itemsize
        check = _sized(_uncompressed, size)
    elif names[at] == "sharding_indexed":
        size = None
        check = _shard(codecs[at].get("configuration") or {}, shape, itemsize)
    else:
        return None
    for name in names[at + 1 :]:  # the bytes -> bytes codecs, innermost first
        if check is None:
            return None
        if name == "crc32c":
            check = partial(_under_crc32c, check)
            size = None if size is None else size + 4
        elif name in _SELF_DELIMITED or (name == "gzip" and size is not None):
            # what lies under a compressor is not seen without decoding: its framing is checked
            check = _sized({"gzip": _gzip, **_SELF_DELIMITED}[name], size)
            size = None
        else:
            return None
    return check


def _shard(config: dict[str, Any], shape: list[int], itemsize: int) -> Check | None:
    """The check of a zarr v3 shard: its index, and each inner chunk it lists."""
    inner_shape = [int(n) for n in config.get("chunk_shape") or []]
    inner = _zarr3(config.get("codecs") or [], inner_shape, itemsize)
    index_codecs = config.get("index_codecs") or []
    names = [codec.get("name") for codec in index_codecs]
    if inner is None or not inner_shape or names not in (["bytes"], ["bytes", "crc32c"]):
        return None
    endian = (index_codecs[0].get("configuration") or {}).get("endian", "little")
    count = math.prod(shape) // math.prod(inner_shape)
    return partial(
        _shard_problem,
        inner=inner,
        count=count,
        crc=names[-1] == "crc32c",
        index_dtype=np.dtype("<u8" if endian == "little" else ">u8"),
        at_end=config.get("index_location", "end") == "end",
    )


_MISSING = 2**64 - 1


def _shard_problem(
    data: memoryview, *, inner: Check, count: int, crc: bool, index_dtype: Any, at_end: bool
) -> str | None:
    size, index_size = len(data), 16 * count + 4 * crc
    if size < index_size:
        return f"{size} bytes, too few for a shard index of {index_size}"
    index = data[size - index_size :] if at_end else data[:index_size]
    if crc and (problem := _crc32c_problem(index)):
        return f"a shard whose index is wrong: {problem}"
    table = np.frombuffer(index[: 16 * count], dtype=index_dtype).reshape(count, 2)
    present = ~((table[:, 0] == _MISSING) & (table[:, 1] == _MISSING))
    low, high = (0, size - index_size) if at_end else (index_size, size)
    offsets, lengths = table[present, 0], table[present, 1]
    outside = (offsets < low) | (offsets > high) | (lengths > high - np.minimum(offsets, high))
    if outside.any():
        return f"{size} bytes that are not a shard (its index points past the end of the data)"
    for number, (offset, length) in zip(np.flatnonzero(present), zip(offsets, lengths)):
        problem = inner(data[int(offset) : int(offset) + int(length)])
        if problem is not None:
            return f"a shard whose inner chunk {number} is wrong: {problem}"
    return None


# ---- n5 ----------------------------------------------------------------------------------------
def _n5_payload(compression: dict[str, Any]) -> SizedCheck | None:
    kind = compression.get("type")
    if kind == "gzip":
        return _zlib if compression.get("useZlib") else _gzip
    return {
        "raw": _uncompressed,
        "blosc": _blosc,
        "zstd": _zstd,
        "bzip2": _bz2,
        "xz": _xz,
    }.get(str(kind))


def _n5_problem(
    key: str, data: memoryview, *, block: list[int], itemsize: int, payload: SizedCheck
) -> str | None:
    rank = len(block)
    header = 4 + 4 * rank
    if len(data) < header:
        return f"{len(data)} bytes, too few for an n5 chunk header ({header})"
    mode, ndim = struct.unpack_from(">HH", data)
    if mode != 0 or ndim != rank:
        return (
            f"{len(data)} bytes that are not an n5 chunk (its header gives mode {mode} and "
            f"{ndim} dimensions, not mode 0 and {rank})"
        )
    dims = struct.unpack_from(f">{rank}I", data, 4)
    if any(d > b for d, b in zip(dims, block)):
        return f"an n5 chunk of {list(dims)}, larger than the blockSize {block}"
    problem = payload(data[header:], math.prod(dims) * itemsize)
    return None if problem is None else f"an n5 chunk header, then {problem}"


# ---- precomputed -------------------------------------------------------------------------------
_BOUNDS = re.compile(r"(-?\d+)-(-?\d+)_(-?\d+)-(-?\d+)_(-?\d+)-(-?\d+)")


def _extent(key: str) -> list[int] | None:
    """The (x, y, z) size of the chunk a precomputed key names by its bounds."""
    found = _BOUNDS.fullmatch(key.rsplit("/", 1)[-1])
    if found is None:
        return None
    edges = [int(v) for v in found.groups()]
    return [edges[i + 1] - edges[i] for i in (0, 2, 4)]


def _raw_chunk(data: memoryview, extent: list[int], channels: int, itemsize: int) -> str | None:
    return _uncompressed(data, math.prod(extent) * channels * itemsize)


def _jpeg(data: memoryview, extent: list[int], channels: int, itemsize: int) -> str | None:
    """Start and end markers, and the frame header's pixels and components."""
    if data[:2] != b"\xff\xd8":
        return f"{len(data)} bytes that are not a jpeg image (no start marker)"
    if data[-2:] != b"\xff\xd9":
        return f"{len(data)} bytes of a jpeg image that is cut short (no end marker)"
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:  # the scan starts before any frame header
            break
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 10 > len(data):
                break
            height, width = struct.unpack_from(">HH", data, pos + 5)
            components = data[pos + 9]
            if width * height != math.prod(extent) or components != channels:
                return (
                    f"a jpeg image of {width}x{height} pixels, {components} components, where "
                    f"the chunk has {math.prod(extent)} voxels, {channels} channels"
                )
            return None
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return f"{len(data)} bytes that are not a jpeg image (no frame header)"


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNG_COMPONENTS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _png(data: memoryview, extent: list[int], channels: int, itemsize: int) -> str | None:
    if len(data) < 45 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return f"{len(data)} bytes that are not a png image (no png signature)"
    if data[-12:] != _PNG_END:
        return f"{len(data)} bytes of a png image that is cut short (no end chunk)"
    width, height = struct.unpack_from(">II", data, 16)
    components = _PNG_COMPONENTS.get(data[25])
    if width * height != math.prod(extent) or components != channels:
        return (
            f"a png image of {width}x{height} pixels, {components} components, where the chunk "
            f"has {math.prod(extent)} voxels, {channels} channels"
        )
    return None


def _segmentation(
    data: memoryview, extent: list[int], channels: int, itemsize: int, *, block: list[int]
) -> str | None:
    """The bounds tensorstore's compressed_segmentation decoder checks on every block, and
    that the lookup table stored last holds every index its blocks use: a cut body ends inside
    it (only those blocks' indices are read, a few hundred voxels)."""
    if len(data) % 4 or len(data) // 4 < channels:
        return f"{len(data)} bytes that are not compressed_segmentation data"
    words = np.frombuffer(data, dtype="<u4")
    grid = [-(-e // b) for e, b in zip(extent, block)]
    blocks, label_words = math.prod(grid), itemsize // 4
    for channel in range(channels):
        start = int(words[channel])
        if start > len(words) or len(words) - start < 2 * blocks:
            return (
                f"{len(data)} bytes that are not compressed_segmentation data (channel {channel})"
            )
        count = len(words) - start  # what tensorstore's decoder lets this channel use
        headers = words[start : start + 2 * blocks].reshape(blocks, 2).astype(np.int64)
        table, bits, values = (
            headers[:, 0] & 0xFFFFFF,
            headers[:, 0] >> 24,
            headers[:, 1] & 0xFFFFFF,
        )
        ends = values + (bits * math.prod(block) + 31) // 32
        if (
            not np.isin(bits, (0, 1, 2, 4, 8, 16, 32)).all()
            or (ends > count).any()
            or (table + label_words > count).any()
        ):
            return (
                f"{len(data)} bytes that are not whole compressed_segmentation data (a block of "
                f"channel {channel} points past the end)"
            )
        last = int(table.max())
        for number in np.flatnonzero((table == last) & (bits > 0)):
            encoded = words[start + int(values[number]) : start + int(ends[number])]
            used = _largest_index(encoded, int(bits[number]), int(number), grid, extent, block)
            if last + (used + 1) * label_words > count:
                return (
                    f"{len(data)} bytes of compressed_segmentation data cut short (the lookup "
                    f"table stored last lacks index {used} of channel {channel})"
                )
    return None


def _largest_index(
    encoded: np.ndarray,
    bits: int,
    number: int,
    grid: list[int],
    extent: list[int],
    block: list[int],
) -> int:
    """The largest lookup-table index block ``number`` uses inside the chunk (x fastest)."""
    position = (number % grid[0], number // grid[0] % grid[1], number // (grid[0] * grid[1]))
    sx, sy, sz = (min(b, e - i * b) for e, b, i in zip(extent, block, position))
    z, y, x = np.meshgrid(np.arange(sz), np.arange(sy), np.arange(sx), indexing="ij")
    offsets = ((x + block[0] * (y + block[1] * z)) * bits).ravel()
    shifted = encoded[offsets // 32].astype(np.uint64) >> (offsets % 32).astype(np.uint64)
    return int((shifted & ((1 << bits) - 1)).max())


def _precomputed_shard(data: memoryview, *, sharding: dict[str, Any]) -> str | None:
    """A neuroglancer_uint64_sharded_v1 file: the shard index, then each minishard index and
    the chunk ranges it lists lie inside the file (gzip'd chunks start with the gzip magic)."""
    index_size = 16 * 2 ** int(sharding.get("minishard_bits", 0))
    if len(data) < index_size:
        return f"{len(data)} bytes, too few for a shard index of {index_size}"
    limit = len(data) - index_size
    for number, (start, end) in enumerate(np.frombuffer(data[:index_size], "<u8").reshape(-1, 2)):
        if not int(start) <= int(end) <= limit:
            return f"{len(data)} bytes that are not a shard (minishard {number} lies past its end)"
        if start == end:
            continue
        encoded = data[index_size + int(start) : index_size + int(end)]
        try:
            raw = (
                zlib.decompress(encoded, 31)
                if sharding.get("minishard_index_encoding") == "gzip"
                else bytes(encoded)
            )
        except zlib.error as err:
            return f"a shard whose minishard index {number} is not gzip data ({err})"
        if len(raw) % 24:
            return f"a shard whose minishard index {number} has {len(raw)} bytes"
        _, gaps, sizes = np.frombuffer(raw, "<u8").reshape(3, -1).astype(object)
        begin = 0
        for gap, size in zip(gaps, sizes):
            begin += gap
            if begin + size > limit:
                return f"a shard whose minishard {number} lists a chunk past its end"
            chunk = data[index_size + begin : index_size + begin + size]
            if sharding.get("data_encoding") == "gzip" and (problem := _gzip(chunk, None)):
                return f"a shard whose minishard {number} holds a chunk of {problem}"
            begin += size
    return None


def _by_extent(
    chunk: Callable[[memoryview, list[int], int, int], str | None], channels: int, itemsize: int
) -> KeyCheck:
    def problem(key: str, data: memoryview) -> str | None:
        extent = _extent(key)
        if extent is None:
            return f"a key that names no precomputed chunk ({key!r})"
        return chunk(data, extent, channels, itemsize)

    return problem


def _precomputed(spec: dict[str, Any], itemsize: int) -> ChunkCheck | None:
    scale = spec.get("scale_metadata") or {}
    channels = int((spec.get("multiscale_metadata") or {}).get("num_channels", 1))
    if scale.get("sharding"):
        check = partial(_precomputed_shard, sharding=scale["sharding"])
        return ChunkCheck(lambda key, data: check(data), decodes=True)
    encoding = scale.get("encoding")
    chunk: Callable[[memoryview, list[int], int, int], str | None]
    if encoding == "compressed_segmentation":
        block = [int(n) for n in scale["compressed_segmentation_block_size"]]
        chunk = partial(_segmentation, block=block)
    elif encoding in ("raw", "jpeg", "png"):
        chunk = {"raw": _raw_chunk, "jpeg": _jpeg, "png": _png}[encoding]
    else:
        return None
    return ChunkCheck(_by_extent(chunk, channels, itemsize), decodes=False)


# ---- per driver --------------------------------------------------------------------------------
def _whole(check: Check, decodes: bool) -> ChunkCheck:
    return ChunkCheck(lambda key, data: check(data), decodes=decodes)


def chunk_check(driver: str, spec: dict[str, Any], itemsize: int) -> ChunkCheck | None:
    """The check of an array's chunk files from its tensorstore spec, or None where its codecs
    have none here (the array then takes the decoding path)."""
    metadata = spec.get("metadata") or {}
    if driver == "zarr":
        compressor = metadata.get("compressor")
        if metadata.get("filters"):
            return None
        kind = None if compressor is None else compressor.get("id")
        payload = {None: _uncompressed, "gzip": _gzip, "zlib": _zlib, "bz2": _bz2}.get(kind)
        payload = payload or _SELF_DELIMITED.get(str(kind))
        if payload is None:
            return None
        size = math.prod(int(n) for n in metadata["chunks"]) * itemsize
        return _whole(_sized(payload, size), payload in _DECODING)
    if driver == "zarr3":
        shape = metadata["chunk_grid"]["configuration"]["chunk_shape"]
        codecs = metadata.get("codecs") or []
        check = _zarr3(codecs, [int(n) for n in shape], itemsize)
        if check is None:
            return None
        names = {str(codec.get("name")) for codec in codecs}
        slow_crc = "crc32c" in names and _CRC32C_FAST is None
        return _whole(check, decodes="sharding_indexed" in names or slow_crc)
    if driver == "n5":
        n5_payload = _n5_payload(metadata.get("compression") or {"type": "raw"})
        if n5_payload is None:
            return None
        block = [int(n) for n in metadata["blockSize"]]
        problem = partial(_n5_problem, block=block, itemsize=itemsize, payload=n5_payload)
        return ChunkCheck(problem, decodes=n5_payload in _DECODING)
    if driver == "neuroglancer_precomputed":
        return _precomputed(spec, itemsize)
    return None
