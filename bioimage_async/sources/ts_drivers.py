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
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import tensorstore as ts

from ..errors import FormatNotSupportedError, InvalidArgumentError
from .axis_names import ZARR_V2_ATTRIBUTE
from .formats import CreateRequest
from .location import Location
from .physical import in_nanometers, pixel_resolution

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

    async def attributes(self, location: Location, key: str) -> dict[str, Any]:
        return await location.join(key).read_json("attributes.json") or {}

    async def annotate(self, location: Location, key: str, request: CreateRequest) -> None:
        await _merge_json(location.join(key), "attributes.json", self._recorded(request))

    def present(self, store: ts.TensorStore) -> ts.TensorStore:
        if store.ndim > 1:
            store = store[ts.d[:].transpose[::-1]]
        return super().present(store)


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
        """A scale by key, by index, or the first one."""
        spec: dict[str, Any] = {"driver": self.ts_driver, "kvstore": location.kvstore()}
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


async def _merge_json(here: Location, name: str, wanted: dict[str, Any]) -> None:
    """Set ``wanted``'s members in the JSON document ``name`` (written only when it changes)."""
    if not wanted:
        return
    document = await here.read_json(name) or {}
    if any(document.get(k) != v for k, v in wanted.items()):
        await here.write(name, json.dumps({**document, **wanted}, indent=1).encode())


DRIVERS: dict[str, Driver] = {d.format: d for d in (ZarrV2(), ZarrV3(), N5(), Precomputed())}
