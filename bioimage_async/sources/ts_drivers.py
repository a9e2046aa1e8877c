"""tensorstore drivers as small strategy objects: one per chunked format.

Each driver knows its format's metadata files (to tell an array from a group and to write group
metadata above nested arrays), its codecs, the tensorstore spec that creates an array, and how
the stored axis order maps to the C order (z, y, x) every Source presents:

- zarr v2 / v3: stored in C order already;
- n5: ``dimensions`` are stored fastest-axis first ([X, Y, Z]); z5py, BigDataViewer, Fiji and
  bioimage-py show that as a C-order (Z, Y, X) array, so we reverse the axes on open and write
  ``dimensions``/``blockSize`` reversed on create (tensorstore's n5 driver alone would show
  (X, Y, Z), transposed with respect to every other n5 tool);
- precomputed: (x, y, z, c) stored; shown as (z, y, x), or (c, z, y, x) with several channels.

Opening an existing array goes through ``existing_spec``, where a driver adds what tensorstore
cannot know from the metadata alone: the chunk-key separator of a zarr v2 array whose
``.zarray`` leaves it out, and the z5py blosc settings tensorstore's n5 parser refuses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorstore as ts

from ..context import resource_options, run_blocking
from ..errors import FormatNotSupportedError, InvalidArgumentError, SourceError
from .axis_names import ZARR_V2_ATTRIBUTE
from .formats import CreateRequest
from .indexing import spread_positions
from .location import Location
from .physical import in_nanometers, pixel_resolution
from .storage import open_kvstore

logger = logging.getLogger("bioimage_async")

#: n5 can store only these dtypes.
_N5_DTYPES = {
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "int32",
    "int64",
    "float32",
    "float64",
}


def json_fill(value: Any, dtype: np.dtype) -> Any:
    """A fill value in the JSON form the metadata needs."""
    if value is None:
        return None
    if dtype.kind == "b":
        return bool(value)
    if dtype.kind in "iu":
        return int(value)
    if dtype.kind == "c":
        raise FormatNotSupportedError(
            f"complex dtype {dtype} is not supported by bioimage_async's chunked formats; store "
            "the real and imaginary parts as two float arrays (or a trailing axis of size 2)"
        )
    return float(value)


def refuse_fill_value(format: str, request: CreateRequest) -> None:
    """n5 and precomputed have no fill value in their metadata: unwritten chunks read as 0 in
    every reader, so another fill value would hold in this process only, or nowhere."""
    if request.fill_value not in (None, 0):
        raise FormatNotSupportedError(
            f"the {format} format has no fill value (unwritten chunks read as 0 everywhere), "
            f"so fill_value={request.fill_value!r} cannot be kept; pass fill_value=0 or create "
            "a zarr or zarr3 array"
        )


class Driver:
    """How one chunked format maps onto tensorstore."""

    format: str = ""
    ts_driver: str = ""
    #: compression name -> the codec JSON of this format
    compressions: dict[str, Any] = {}
    #: (file name, content) of the metadata that makes a folder a group, or None
    group_file: tuple[str, bytes] | None = None

    async def node(self, location: Location, key: str) -> str | None:
        """'array', 'group' or None for what is stored at ``key`` below ``location``."""
        raise NotImplementedError

    def open_spec(self, location: Location, key: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"driver": self.ts_driver, "kvstore": location.kvstore()}
        if key:
            spec["path"] = key
        return spec

    async def existing_spec(self, location: Location, key: str) -> dict[str, Any]:
        """The spec that opens the existing array at ``key`` and reads what is stored."""
        return self.open_spec(location, key)

    def codec(self, compression: str | None) -> Any:
        name = "none" if compression in (None, "none", "raw") else compression
        if name not in self.compressions:
            raise FormatNotSupportedError(
                f"unknown compression {compression!r} for {self.format}; choose one of "
                f"{', '.join(self.compressions)}"
            )
        return self.compressions[name]

    def create_spec(self, location: Location, key: str, request: CreateRequest) -> dict[str, Any]:
        raise NotImplementedError

    def present(self, store: ts.TensorStore) -> ts.TensorStore:
        """The store in C order (z, y, x) with a zero origin."""
        return store[ts.d[:].translate_to[0]] if store.ndim else store

    def check_shards(self, request: CreateRequest) -> None:
        if request.shards is not None:
            raise FormatNotSupportedError(
                f"shards= needs format='zarr3' (sharded zarr v3); {self.format} has no sharding"
            )

    async def attributes(self, location: Location, key: str) -> dict[str, Any]:
        """The user attributes of the array at ``key`` ({} where there are none)."""
        return {}

    async def annotate(self, location: Location, key: str, request: CreateRequest) -> None:
        """Record the request's axis names and voxel size on the array at ``key`` where it does
        not record them yet (a new zarr v2 array: tensorstore writes no ``.zattrs``; an array
        reopened by ``exist_ok``). Other attributes stay as they are."""


class ZarrV2(Driver):
    format = "zarr"
    ts_driver = "zarr"
    compressions = {
        "default": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
        "blosc": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
        "zstd": {"id": "zstd", "level": 3},
        "gzip": {"id": "zlib", "level": 5},
        "none": None,
    }
    group_file = (".zgroup", b'{"zarr_format": 2}')

    async def node(self, location: Location, key: str) -> str | None:
        here = location.join(key)
        if await here.exists(".zarray"):
            return "array"
        if await here.exists(".zgroup"):
            return "group"
        return None

    def create_spec(self, location: Location, key: str, request: CreateRequest) -> dict[str, Any]:
        self.check_shards(request)
        metadata = {
            "shape": list(request.shape),
            "chunks": list(request.chunks),
            "dtype": request.dtype.str,
            "compressor": self.codec(request.compression),
            "fill_value": json_fill(request.fill_value, request.dtype),
            "order": "C",
        }
        if request.dimension_separator is not None:
            metadata["dimension_separator"] = request.dimension_separator
        return {**self.open_spec(location, key), "metadata": metadata}

    async def existing_spec(self, location: Location, key: str) -> dict[str, Any]:
        """With ``dimension_separator`` '/' when the array's chunks are nested but its
        ``.zarray`` does not say so: tensorstore would look for '0.0.0' and read fill values."""
        spec = self.open_spec(location, key)
        here = location.join(key)
        separator = await chunk_separator(here, await here.read_json(".zarray") or {})
        if separator is not None:
            spec["metadata"] = {"dimension_separator": separator}
        return spec

    async def attributes(self, location: Location, key: str) -> dict[str, Any]:
        return await location.join(key).read_json(".zattrs") or {}

    async def annotate(self, location: Location, key: str, request: CreateRequest) -> None:
        wanted: dict[str, Any] = {}
        if request.dimension_names is not None:  # xarray's convention: zarr v2 has no place
            wanted[ZARR_V2_ATTRIBUTE] = list(request.dimension_names)
        if request.voxel_size is not None:
            wanted["pixelResolution"] = pixel_resolution(request.voxel_size, request.unit)
        await _merge_json(location.join(key), ".zattrs", wanted)


class ZarrV3(Driver):
    format = "zarr3"
    ts_driver = "zarr3"
    compressions = {
        "default": [{"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5}}],
        "blosc": [{"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5}}],
        "zstd": [{"name": "zstd", "configuration": {"level": 3}}],
        "gzip": [{"name": "gzip", "configuration": {"level": 5}}],
        "none": [],
    }
    group_file = ("zarr.json", b'{"zarr_format": 3, "node_type": "group", "attributes": {}}')

    async def node(self, location: Location, key: str) -> str | None:
        meta = await location.join(key).read_json("zarr.json")
        if meta is None:
            return None
        return str(meta.get("node_type", "array"))

    def check_shards(self, request: CreateRequest) -> None:
        shards = request.shards
        if shards is not None and (
            len(shards) != len(request.chunks)
            or any(s < 1 or s % c for s, c in zip(shards, request.chunks))
        ):
            raise InvalidArgumentError(
                f"shards {tuple(shards)} must be a positive multiple of chunks "
                f"{tuple(request.chunks)} on every axis"
            )

    def create_spec(self, location: Location, key: str, request: CreateRequest) -> dict[str, Any]:
        self.check_shards(request)
        bytes_codec = {"name": "bytes", "configuration": {"endian": "little"}}
        inner = [bytes_codec] + list(self.codec(request.compression))
        if request.shards is not None:
            codecs: list[Any] = [
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": list(request.chunks),
                        "codecs": inner,
                        "index_codecs": [bytes_codec, {"name": "crc32c"}],
                    },
                }
            ]
            grid = list(request.shards)
        else:
            codecs, grid = inner, list(request.chunks)
        metadata: dict[str, Any] = {
            "shape": list(request.shape),
            "data_type": request.dtype.name,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": grid}},
            "codecs": codecs,
            "fill_value": json_fill(request.fill_value, request.dtype),
        }
        metadata.update(self._recorded(request))
        return {**self.open_spec(location, key), "metadata": metadata}

    @staticmethod
    def _recorded(request: CreateRequest) -> dict[str, Any]:
        recorded: dict[str, Any] = {}
        if request.dimension_names is not None:
            recorded["dimension_names"] = list(request.dimension_names)
        if request.voxel_size is not None:
            resolution = pixel_resolution(request.voxel_size, request.unit)
            recorded["attributes"] = {"pixelResolution": resolution}
        return recorded

    async def attributes(self, location: Location, key: str) -> dict[str, Any]:
        meta = await location.join(key).read_json("zarr.json") or {}
        attributes = meta.get("attributes")
        return attributes if isinstance(attributes, dict) else {}

    async def annotate(self, location: Location, key: str, request: CreateRequest) -> None:
        wanted = self._recorded(request)
        here = location.join(key)
        meta = await here.read_json("zarr.json")
        if meta is None or not wanted:
            return
        updated = dict(meta)
        if "dimension_names" in wanted:
            updated["dimension_names"] = wanted["dimension_names"]
        if "attributes" in wanted:
            updated["attributes"] = {**(meta.get("attributes") or {}), **wanted["attributes"]}
        if updated != meta:
            await here.write("zarr.json", json.dumps(updated, indent=1).encode())


class N5(Driver):
    format = "n5"
    ts_driver = "n5"
    compressions = {
        "default": {"type": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
        "blosc": {"type": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
        "gzip": {"type": "gzip", "level": 5},
        "zstd": {"type": "zstd", "level": 3},
        "none": {"type": "raw"},
    }
    group_file = ("attributes.json", b'{"n5": "2.0.0"}')

    async def node(self, location: Location, key: str) -> str | None:
        meta = await location.join(key).read_json("attributes.json")
        if meta is None:
            return None
        return "array" if "dimensions" in meta else "group"

    def create_spec(self, location: Location, key: str, request: CreateRequest) -> dict[str, Any]:
        self.check_shards(request)
        refuse_fill_value(self.format, request)
        if request.dtype.name not in _N5_DTYPES:
            raise FormatNotSupportedError(
                f"n5 cannot store dtype {request.dtype}; use one of {sorted(_N5_DTYPES)} or zarr"
            )
        metadata: dict[str, Any] = {  # fastest axis first, as z5py, BigDataViewer, Fiji write it
            "dimensions": list(reversed(request.shape)),
            "blockSize": list(reversed(request.chunks)),
            "dataType": request.dtype.name,
            "compression": self.codec(request.compression),
            **self._recorded(request),
        }
        return {**self.open_spec(location, key), "metadata": metadata}

    @staticmethod
    def _recorded(request: CreateRequest) -> dict[str, Any]:
        """Names and sizes, fastest axis first: tensorstore's and neuroglancer's ``axes``,
        N5-viewer's ``pixelResolution`` and saalfeld's ``resolution`` + ``unit``."""
        recorded: dict[str, Any] = {}
        if request.dimension_names is not None:
            recorded["axes"] = list(reversed(request.dimension_names))
        if request.voxel_size is not None:
            recorded["pixelResolution"] = pixel_resolution(request.voxel_size, request.unit)
            recorded["resolution"] = recorded["pixelResolution"]["dimensions"]
            if request.unit:
                recorded["unit"] = request.unit
        return recorded

    async def existing_spec(self, location: Location, key: str) -> dict[str, Any]:
        """z5py's blosc metadata, given without its ``nthreads`` (a setting of the writer, not
        of the data) and assumed: tensorstore refuses the stored object's extra member."""
        spec = self.open_spec(location, key)
        here = location.join(key)
        meta = await here.read_json("attributes.json") or {}
        compression = meta.get("compression")
        if not isinstance(compression, dict):
            return spec
        _check_n5_codec(here, compression)
        if compression.get("type") == "blosc" and "nthreads" in compression:
            spec["metadata"] = _n5_core_metadata(meta)
            spec["assume_metadata"] = True
        return spec

    async def attributes(self, location: Location, key: str) -> dict[str, Any]:
        return await location.join(key).read_json("attributes.json") or {}

    async def annotate(self, location: Location, key: str, request: CreateRequest) -> None:
        await _merge_json(location.join(key), "attributes.json", self._recorded(request))

    def present(self, store: ts.TensorStore) -> ts.TensorStore:
        if store.ndim > 1:
            store = store[ts.d[:].transpose[::-1]]
        return super().present(store)


#: The n5 compression types tensorstore decodes.
_TS_N5_CODECS = ("raw", "gzip", "bzip2", "xz", "blosc", "zstd")


def _check_n5_codec(here: Location, compression: dict[str, Any]) -> None:
    """Name the codec tensorstore cannot decode (its own error names only a JSON member)."""
    kind = compression.get("type")
    if kind is None or kind in _TS_N5_CODECS:
        return
    raise FormatNotSupportedError(
        f"the n5 array {here} is compressed with {kind!r} (as z5py's compression={kind!r} and "
        f"Java N5 write it), which tensorstore, bioimage_async's n5 reader, cannot decode (it reads "
        f"{', '.join(_TS_N5_CODECS)}). Read it with z5py (z5py.File(path, 'r')[key][...], then "
        "ba.as_source(array)), or rewrite it with compression='gzip' or 'raw'"
    )


def _n5_core_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The members tensorstore's n5 metadata takes, blosc's ``nthreads`` left out."""
    core: dict[str, Any] = {
        k: meta[k] for k in ("dimensions", "blockSize", "dataType") if k in meta
    }
    core["compression"] = {k: v for k, v in meta["compression"].items() if k != "nthreads"}
    axes = meta.get("axes")
    if isinstance(axes, list) and len(axes) == len(core.get("dimensions") or ()):
        core["axes"] = axes
    return core


# ---------------------------------------------------------------------------------------------
# zarr v2 chunk-key layout: dotted '0.0.0' files or nested '0/0/0' folders
# ---------------------------------------------------------------------------------------------
#: How many entries of a local array folder are looked at for its chunk-key layout.
LAYOUT_SCAN_LIMIT = 10_000
#: How long the remote listing that tells a chunk-key layout may take (seconds).
LAYOUT_BUDGET = 5.0
#: What each separator's chunk keys look like, for messages.
_LAYOUT_NAMES = {".": "dotted chunk files ('0.0.0')", "/": "nested chunk folders ('0/0/0')"}


async def chunk_separator(here: Location, zarray: dict[str, Any]) -> str | None:
    """The separator to open the zarr v2 array at ``here`` with, where ``.zarray`` is not to
    be trusted: '/' when it names none (zarr-python's NestedDirectoryStore before 2.8 wrote
    none) and the chunks are nested; else None. A layout the metadata cannot read is refused:
    no reader returns fill values for chunks stored under another name."""
    shape = zarray.get("shape")
    ndim = len(shape) if isinstance(shape, list) else 0
    if ndim < 2:  # one axis: '0' is both layouts' key
        return None
    declared = zarray.get("dimension_separator")
    if declared not in (None, ".", "/"):
        return None  # tensorstore refuses the metadata itself, naming the value
    found = await _chunk_layouts(here, _chunk_grid(zarray), {declared} if declared else {".", "/"})
    if found is None and declared is None and not here.is_local:
        logger.warning(
            "the zarr v2 array %s names no dimension_separator in its .zarray, and no chunk was "
            "found where it was looked for (%s): it is read with dotted chunk keys, zarr's "
            "default. If it was written with nested keys (zarr-python's NestedDirectoryStore "
            'before 2.8), its chunks read as the fill value: add "dimension_separator": "/" '
            "to its .zarray",
            here,
            "its chunks could not be listed"
            if here.scheme not in ("s3", "gs")
            else "listing timed out or was refused",
        )
    if not found:
        return None
    if declared is None:
        return _undeclared_separator(here, found)
    if declared not in found:
        (other,) = found
        raise SourceError(
            f"the zarr v2 array {here} declares dimension_separator {declared!r} in its .zarray, "
            f"but holds {_LAYOUT_NAMES[other]}, none of its {_LAYOUT_NAMES[declared]}: read as "
            f"declared, every chunk would read as the fill value. If those chunks are this "
            f'array\'s, set "dimension_separator": {other!r} in its .zarray'
        )
    return None


def _undeclared_separator(here: Location, found: set[str]) -> str | None:
    """'/' for nested chunks alone; None (the default '.') for dotted ones alone."""
    if found == {".", "/"}:
        raise SourceError(
            f"the zarr v2 array {here} names no dimension_separator in its .zarray and holds "
            f"both {_LAYOUT_NAMES['.']} and {_LAYOUT_NAMES['/']} (zarr's NestedDirectoryStore "
            "before 2.8): which are its chunks cannot be told. Remove the stale ones, or add "
            '"dimension_separator": "." or "/" to its .zarray'
        )
    return "/" if found == {"/"} else None


def _chunk_grid(zarray: dict[str, Any]) -> tuple[int, ...]:
    """Chunks per axis (1 where the metadata is malformed: tensorstore then says why)."""
    shape, chunks = zarray.get("shape") or [], zarray.get("chunks") or []
    try:
        return tuple(max(1, -(-int(n) // int(c))) for n, c in zip(shape, chunks, strict=True))
    except (TypeError, ValueError, ZeroDivisionError):
        return (1,) * len(shape)


async def _chunk_layouts(
    here: Location, grid: tuple[int, ...], enough: set[str]
) -> set[str] | None:
    """The separators ('.', '/') of the chunk keys stored below the array (a local scan stops
    once it has found ``enough``); None if unknown."""
    ndim = len(grid)
    if here.is_local:
        folder = str(here.local_path)
        return await run_blocking(_local_layouts, folder, ndim, enough, LAYOUT_SCAN_LIMIT)
    if here.scheme in ("s3", "gs"):
        try:
            for row in spread_positions(
                grid[:-1]
            ):  # the first row, else rows spread over the array
                found = await asyncio.gather(*(_remote_row(here, sep, row) for sep in "./"))
                if any(found):
                    return {sep for sep, hit in zip("./", found) if hit}
            # a sparse array (or an empty one): every key, within the budget; an empty set
            # took an old nested array whose chunks sit elsewhere for dotted, all fill
            budget = min(resource_options().storage_timeout, LAYOUT_BUDGET)
            keys = await here.list_keys(timeout=budget)
            return None if keys is None else _layouts_of(keys, ndim)
        except (SourceError, ValueError, NotImplementedError, TimeoutError) as err:
            # a bucket that serves reads but refuses listing (403), or a slow one
            logger.debug("cannot list the chunks of %s (%s): probing chunks", here, err)
    return await _probed_chunk_layouts(here, grid)


async def _probed_chunk_layouts(here: Location, grid: tuple[int, ...]) -> set[str] | None:
    """Where listing cannot tell (http, a bucket that refuses it): the layouts under which the
    first chunk exists, else chunks spread over the array (the first, middle and last index
    of every axis). Taking the metadata on trust read an old nested array whose first chunk
    was never written as all fill value. A server error propagates (it says nothing about
    the layout); chunks absent under both names leave the metadata to decide (None)."""
    positions = spread_positions(grid)
    for batch in (positions[:1], positions[1:]):
        names = [(sep, sep.join(map(str, p))) for p in batch for sep in "./"]
        hits = await asyncio.gather(*(here.exists(name) for _, name in names))
        found = {sep for (sep, _), hit in zip(names, hits) if hit}
        if found:
            return found
    return None


def _layouts_of(keys: list[str], ndim: int) -> set[str]:
    """The separators of the chunk keys among a listing's keys (relative to the array)."""
    dotted, nested = _chunk_key(".", ndim), _chunk_key("/", ndim)
    found: set[str] = set()
    for key in keys:
        if dotted.fullmatch(key):
            found.add(".")
        elif nested.fullmatch(key):
            found.add("/")
        if len(found) == 2:
            break
    return found


def _chunk_key(separator: str, ndim: int) -> re.Pattern[str]:
    return re.compile(re.escape(separator).join(["[0-9]+"] * ndim))


def _local_layouts(folder: str, ndim: int, enough: set[str], limit: int) -> set[str]:
    """The layouts among a folder's first ``limit`` entries, up to ``enough`` of them. A digit-named folder holding
    metadata is a node, not chunks (a v2 array folder holds none; a group is never scanned)."""
    dotted, digits = _chunk_key(".", ndim), re.compile("[0-9]+")
    found: set[str] = set()
    try:
        with os.scandir(folder) as entries:
            for count, entry in enumerate(entries):
                if count >= limit or enough <= found:
                    break
                if "." not in found and dotted.fullmatch(entry.name) and entry.is_file():
                    found.add(".")
                elif "/" not in found and digits.fullmatch(entry.name) and entry.is_dir():
                    if _holds_chunks(entry.path):
                        found.add("/")
    except OSError:
        return set()
    return found


def _holds_chunks(folder: str) -> bool:
    """Whether a digit-named folder holds nested chunk keys: something, and no node metadata
    (an empty folder, or one holding only attributes, is no chunk row)."""
    names = (".zarray", ".zgroup", ".zattrs", "zarr.json", "attributes.json")
    if any(os.path.exists(os.path.join(folder, name)) for name in names):
        return False
    with os.scandir(folder) as entries:
        return any(True for _ in entries)


async def _remote_row(here: Location, separator: str, row: tuple[int, ...]) -> bool:
    """Whether the chunk row at ``row`` (the indices of every axis but the last) has keys with
    this separator: a one-prefix listing, bounded however large the array."""
    prefix = "".join(f"{i}{separator}" for i in row)
    end = prefix[:-1] + chr(ord(separator) + 1)
    store = await open_kvstore(here.kvstore(), here)
    budget = min(resource_options().storage_timeout, LAYOUT_BUDGET)
    keys = await asyncio.wait_for(store.list(ts.KvStore.KeyRange(prefix, end)), budget)
    pattern = _chunk_key(separator, len(row) + 1)
    return any(pattern.fullmatch(k.decode("utf-8", "replace")) for k in keys)


class Precomputed(Driver):
    format = "precomputed"
    ts_driver = "neuroglancer_precomputed"
    compressions = {
        "default": "raw",
        "none": "raw",
        "raw": "raw",
        "jpeg": "jpeg",
        "compressed_segmentation": "compressed_segmentation",
    }

    async def node(self, location: Location, key: str) -> str | None:
        info = await location.read_json("info")
        if info is None:
            return None
        scales = info.get("scales") or []
        if not key:
            return "array" if scales else "group"
        return "array" if any(s.get("key") == key for s in scales) else None

    def open_spec(self, location: Location, key: str) -> dict[str, Any]:
        return self.scale_spec(location, key, None)

    def scale_spec(self, location: Location, key: str, scale_index: int | None) -> dict[str, Any]:
        """A scale by key, by index, or the first one. Chunks of zeros are stored too
        (``store_data_equal_to_fill_value``): precomputed has no fill value, and cloud-volume
        and igneous take a missing chunk for an unwritten one (an error by default)."""
        spec: dict[str, Any] = {
            "driver": self.ts_driver,
            "kvstore": location.kvstore(),
            "store_data_equal_to_fill_value": True,
        }
        if key:
            spec["scale_metadata"] = {"key": key}
        elif scale_index is not None:
            spec["scale_index"] = scale_index
        return spec

    def create_spec(self, location: Location, key: str, request: CreateRequest) -> dict[str, Any]:
        self.check_shards(request)
        refuse_fill_value(self.format, request)
        shape, dtype = request.shape, request.dtype
        if len(shape) not in (3, 4):
            raise FormatNotSupportedError(
                f"precomputed volumes are 3D (z, y, x) or 4D (c, z, y, x); got shape {shape}"
            )
        channels = shape[0] if len(shape) == 4 else 1
        resolution = [1.0, 1.0, 1.0]
        if request.voxel_size is not None:  # precomputed's resolution is nm, x y z
            resolution = in_nanometers(list(reversed(request.voxel_size[-3:])), request.unit)
        scale: dict[str, Any] = {
            "size": list(reversed(shape[-3:])),
            "chunk_size": list(reversed(request.chunks[-3:])),
            "resolution": resolution,
            "encoding": self.codec(request.compression),
        }
        if key:
            scale["key"] = key
        return {
            "driver": self.ts_driver,
            "kvstore": location.kvstore(),
            "store_data_equal_to_fill_value": True,  # as scale_spec: every written chunk
            "multiscale_metadata": {
                "data_type": dtype.name,
                "num_channels": channels,
                "type": "segmentation" if dtype.kind in "ui" and dtype.itemsize >= 4 else "image",
            },
            "scale_metadata": scale,
        }

    def present(self, store: ts.TensorStore) -> ts.TensorStore:
        channels = int(store.shape[3])
        store = store[ts.d[:].transpose[3, 2, 1, 0]]  # -> c, z, y, x
        if channels == 1:
            store = store[0]
        return super().present(store)


def voxel_offset_of(
    translation: Sequence[float],
    unit: str | None,
    sizes: Sequence[float],
    base: Sequence[float],
) -> list[int]:
    """The (x, y, z) ``voxel_offset`` of a scale of resolution ``sizes`` (nm, x y z) whose
    voxel 0 sits at ``translation`` (C order, in ``unit``), in a layer whose first scale has
    resolution ``base``: the inverse of how it is read (``physical.voxel_centre``). precomputed
    records whole voxels, so another position is refused, not rounded."""
    if any(translation[:-3]):
        raise InvalidArgumentError(
            f"translation {tuple(translation)} moves the channel axis; precomputed places "
            "only z, y and x: give 0 there"
        )
    where = in_nanometers(list(reversed(translation[-3:])), unit)
    offset = []
    for t, size, first in zip(where, sizes, base):
        voxels = (t - (size - first) / 2) / size
        if abs(voxels - round(voxels)) > 1e-6 * max(1.0, abs(voxels)):
            raise InvalidArgumentError(
                f"translation {tuple(translation[-3:])} is not a whole number of voxels of "
                f"{tuple(reversed(sizes))} nm (precomputed records a voxel_offset): "
                f"{voxels:g} voxels on one axis. Round it to a multiple of the voxel size, or "
                "build a pyramid, whose OME-Zarr metadata records any translation"
            )
        offset.append(round(voxels))
    return offset


async def _merge_json(here: Location, name: str, wanted: dict[str, Any]) -> None:
    """Set ``wanted``'s members in the JSON document ``name`` (written only when it changes)."""
    if not wanted:
        return
    raw = await here.read(name)
    document = {} if raw is None else _json_object(raw)
    if document is None:  # rewriting it would drop what it holds
        raise SourceError(
            f"{here.join(name)} is not a JSON object (cut short or damaged?): its members "
            "would be lost if it were rewritten. Repair or remove it, then try again"
        )
    if any(document.get(k) != v for k, v in wanted.items()):
        await here.write(name, json.dumps({**document, **wanted}, indent=1).encode())


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


DRIVERS: dict[str, Driver] = {d.format: d for d in (ZarrV2(), ZarrV3(), N5(), Precomputed())}
