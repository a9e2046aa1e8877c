"""Precomputed layers whose chunk files are gzip'd as ``<chunk>.gz`` (cloud-volume's default on
``file://``, and common on disks copied from buckets).

tensorstore's precomputed driver looks only for ``<chunk>`` and reads a layer of ``.gz`` files
as all fill value, silently; a write through it would create a plain ``<chunk>`` beside the
``.gz`` one and shadow the rest of that chunk with zeros for every later reader. So every
precomputed open first looks for ``.gz`` chunk names and, where it finds them, serves the layer
through cloud-volume, the tool that wrote them: reads decode both names, writes keep the
layer's convention (read-modify-write of the ``.gz`` files).

Detection: a local scale folder is listed (up to ``LISTING_LIMIT`` names); remotely, chunks
spread over the scale are looked up under both names, and where none was written a bucket lists
the scale's keys (within ``LIST_BUDGET``). Only over http (no listing) does such a sparse layer
open through tensorstore, with a warning.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from ..context import resource_options, run_blocking
from ..errors import FormatNotSupportedError, MissingDependencyError
from .base import Source
from .indexing import spread_positions
from .location import Location

logger = logging.getLogger("bioimage_async")

LISTING_LIMIT = 10_000
#: seconds a remote scale's listing may take (a sparse scale whose probed chunks are absent)
LIST_BUDGET = 5.0


def first_chunk_name(scale: dict[str, Any]) -> str:
    """The file name of the chunk at the scale's origin (precomputed's unsharded naming)."""
    return chunk_name(scale, (0, 0, 0))


def chunk_name(scale: dict[str, Any], position: tuple[int, ...]) -> str:
    """The file name of the chunk at grid ``position`` (x, y, z)."""
    offset = [int(v) for v in scale.get("voxel_offset", [0, 0, 0])]
    size = [int(v) for v in scale["size"]]
    chunk = [int(v) for v in scale["chunk_sizes"][0]]
    bounds = [
        f"{o + i * c}-{min(o + (i + 1) * c, o + n)}"
        for o, c, n, i in zip(offset, chunk, size, position)
    ]
    return "_".join(bounds)


def _chunk_grid(scale: dict[str, Any]) -> list[int]:
    """Chunks per axis (x, y, z) of an unsharded scale."""
    size = [int(v) for v in scale["size"]]
    chunk = [int(v) for v in scale["chunk_sizes"][0]]
    return [max(1, -(-n // c)) for n, c in zip(size, chunk)]


#: the suffixes cloud-volume's storage (cloudfiles) gives compressed chunk files on disks,
#: and the ``compress=`` that makes cloud-volume write them (its own default is gzip for raw
#: and compressed_segmentation layers, none for jpeg: a write would add a second file kind)
COMPRESSED_SUFFIXES = {".gz": "gzip", ".br": "br", ".zstd": "zstd", ".xz": "xz", ".bz2": "bzip2"}
_CHUNK_NAME = re.compile(r"^-?\d+--?\d+_-?\d+--?\d+_-?\d+--?\d+")


def _suffix(name: str) -> str | None:
    """'' for a plain chunk file, its suffix for a compressed one, None for other files."""
    if not _CHUNK_NAME.match(name):
        return None
    return next((s for s in COMPRESSED_SUFFIXES if name.endswith(s)), "")


async def compressed_chunk_suffix(location: Location, scale: dict[str, Any]) -> str | None:
    """The suffix of the scale's compressed chunk files ('.gz', '.br', ...), or None."""
    if scale.get("sharding"):
        return None  # shard files carry their own per-chunk encoding, never a suffix
    folder = location.join(str(scale["key"]))
    if location.is_local:
        return _one_kind(folder, await folder.list_names(LISTING_LIMIT))
    # remotely (no cheap listing): a chunk's names, at the origin, else at chunks spread over
    # the scale; a layer whose first chunk was never written opened through tensorstore,
    # which read every '.gz' chunk as missing: zeros
    for position in spread_positions(_chunk_grid(scale)):
        name = chunk_name(scale, position)
        suffixes = ["", *COMPRESSED_SUFFIXES]
        found = await asyncio.gather(*(folder.exists(name + suffix) for suffix in suffixes))
        if any(found):
            return next(s for s, hit in zip(suffixes, found) if hit) or None
    # a sparse scale: its keys where the store lists them (s3, gs), within a budget
    keys = await folder.list_keys(timeout=min(resource_options().storage_timeout, LIST_BUDGET))
    if keys is not None:
        return _one_kind(folder, keys)
    logger.warning(
        "no chunk of the precomputed scale %s was found where it was looked for, and its "
        "chunks cannot be listed: it is read as plain chunk files. If they are "
        "'<chunk>.gz' files (cloud-volume writing to a folder, then uploaded as files), they "
        "read as missing: open the layer with ba.open_cloudvolume instead",
        folder,
    )
    return None


def _one_kind(folder: Location, names: list[str]) -> str | None:
    """The one compressed suffix among a scale's chunk file names (None: plain files)."""
    kinds = {_suffix(name) for name in names}
    kinds.discard(None)
    if len(kinds) > 1:
        shown = ", ".join(f"'<chunk>{k}'" for k in sorted(str(k) for k in kinds))
        raise FormatNotSupportedError(
            f"the precomputed scale {folder} holds chunk files of several kinds ({shown}): "
            "which copy of a chunk is current cannot be told (readers pick either). Keep "
            "one kind, e.g. rewrite the layer with cloud-volume, and open it again"
        )
    suffix = kinds.pop() if kinds else None
    return suffix or None


def _scale_of(
    info: dict[str, Any], key: str, scale_index: int | None
) -> tuple[int, dict[str, Any]]:
    scales = info.get("scales") or []
    if key:
        for index, scale in enumerate(scales):
            if str(scale.get("key")) == key:
                return index, scale
    index = scale_index or 0
    return index, scales[index]


async def gzip_layer_source(
    location: Location,
    info: dict[str, Any],
    key: str,
    scale_index: int | None,
    writable: bool,
) -> Source | None:
    """A cloud-volume source for a layer of ``.gz`` chunk files; None for an ordinary layer."""
    if not info.get("scales"):
        return None
    mip, scale = _scale_of(info, key, scale_index)
    suffix = await compressed_chunk_suffix(location, scale)
    if suffix is None:
        return None
    if not location.is_local:  # cloud-volume looks for suffixed names on file:// only
        raise FormatNotSupportedError(
            f"the precomputed layer {location} stores its chunks as '<chunk>{suffix}' files, "
            "which neither tensorstore nor cloud-volume reads from a bucket or server (both "
            "would read every chunk as missing, zeros). Serve the files without the suffix "
            "with Content-Encoding set (as cloud-volume uploads them), or copy the layer to a "
            "local disk and open it there"
        )
    if int(info.get("num_channels", 1)) != 1:
        raise FormatNotSupportedError(
            f"the precomputed layer {location} stores '<chunk>{suffix}' files, which "
            "tensorstore cannot read, and has several channels, which the cloud-volume reader "
            "here does not present. Recompress it without gzip (e.g. with igneous or "
            "cloud-volume's compress=False) and open it again"
        )
    from .cloudvolume import open_cloudvolume

    cloudpath = f"file://{location.path}" if location.is_local else str(location)
    try:
        source = await run_blocking(
            open_cloudvolume,
            cloudpath,
            mip=mip,
            fill_missing=True,
            read_only=not writable,
            compress=COMPRESSED_SUFFIXES[suffix],  # writes keep the layer's own kind of file
        )
    except MissingDependencyError as err:
        raise MissingDependencyError(
            "cloud-volume",
            "cloudvolume",
            f"the precomputed layer {location}, whose chunks are gzip'd '<chunk>.gz' files "
            "(tensorstore would read them as fill value),",
        ) from err
    return source
