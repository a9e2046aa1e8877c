"""tensorstore-backed sources: zarr v2, zarr v3 (with sharding), n5 and neuroglancer precomputed.

tensorstore is natively async (its futures are awaitable), so these sources never touch the
blocking thread pool. Every store is opened with the process-wide Context (bounded pools and a
decoded-chunk cache), and is presented zero-origin; precomputed volumes are presented in C order
(z, y, x), with a channel axis first only when there is more than one channel.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from ..context import run_blocking, tensorstore_context
from ..errors import (
    FormatNotSupportedError,
    InternalPathNotFoundError,
    SourceError,
    SourceExistsError,
)
from .base import Source, SourceSpec
from .indexing import Roi

TENSORSTORE_FORMATS = ("zarr", "zarr3", "n5", "precomputed")


class TensorStoreSource(Source):
    """A source over a ``tensorstore.TensorStore`` (opened with bioimage_async's Context)."""

    kind = "tensorstore"

    def __init__(
        self,
        store: ts.TensorStore,
        *,
        writable: bool,
        format: str | None = None,
        location: str | None = None,
    ) -> None:
        self.store = store
        self._writable = writable
        self.format = format or str(store.spec().to_json().get("driver", "tensorstore"))
        self.location = location
        self._dtype = np.dtype(store.dtype.numpy_dtype)
        self._shape = tuple(int(n) for n in store.shape)
        layout = store.chunk_layout
        read_chunk = _layout_shape(layout.read_chunk.shape, self._shape)
        write_chunk = _layout_shape(layout.write_chunk.shape, self._shape)
        self._chunks = read_chunk
        self._shards = write_chunk if write_chunk != read_chunk else None

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def chunks(self) -> tuple[int, ...] | None:
        return self._chunks

    @property
    def shards(self) -> tuple[int, ...] | None:
        return self._shards

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def read_only_reason(self) -> str:
        return f"{self.describe()} was opened read-only (mode='r'); reopen it with mode='r+'"

    def describe(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"{self.format} array{where}"

    async def _read(self, roi: Roi) -> np.ndarray:
        return await self.store[roi].read()

    async def _write(self, roi: Roi, value: np.ndarray) -> None:
        await self.store[roi].write(value)

    async def copy_region_from(self, roi: Roi, source: Source, source_roi: Roi) -> bool:
        if not self.writable:
            return False
        if not isinstance(source, TensorStoreSource):
            mapped = source.mapped_region(source_roi)
            if mapped is None or mapped.dtype != self.dtype:
                return False
            # tensorstore copies the view into its own buffer inside write(): page faults of
            # the memory map happen there, so call it from a worker thread
            futures = await run_blocking(self.store[roi].write, mapped)
            await futures
            return True
        region = source.store[source_roi]
        if region.dtype != self.store.dtype:
            region = ts.cast(region, self.store.dtype)
        await self.store[roi].write(region)  # chunk to chunk inside tensorstore
        return True

    def to_spec(self) -> SourceSpec:
        spec = self.store.spec(minimal_spec=True, retain_context=False).to_json()
        spec.pop("context", None)
        return SourceSpec(
            self.kind,
            {
                "tensorstore": spec,
                "writable": self._writable,
                "format": self.format,
                "location": self.location,
            },
        )

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> TensorStoreSource:
        spec = dict(params["tensorstore"])
        writable = bool(params.get("writable", False))
        store = await ts.open(
            spec, read=True, write=writable, open=True, context=tensorstore_context()
        )
        return cls(
            store, writable=writable, format=params.get("format"), location=params.get("location")
        )


def _layout_shape(shape: Any, volume_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    if shape is None:
        return None
    values = tuple(int(n) if n else 0 for n in shape)
    if not values or all(n == 0 for n in values):
        return None
    return tuple(n if n > 0 else max(v, 1) for n, v in zip(values, volume_shape))


def _normalize_store(store: ts.TensorStore, driver: str) -> ts.TensorStore:
    """Zero origin everywhere; precomputed from (x, y, z, c) to (z, y, x) or (c, z, y, x)."""
    if driver == "neuroglancer_precomputed":
        channels = int(store.shape[3])
        store = store[ts.d[:].transpose[3, 2, 1, 0]]  # -> c, z, y, x
        if channels == 1:
            store = store[0]
    return store[ts.d[:].translate_to[0]] if store.ndim else store


# ---------------------------------------------------------------------------------------------
# detecting what a folder holds
# ---------------------------------------------------------------------------------------------
def kvstore_for(path: str) -> dict[str, Any]:
    """A tensorstore kvstore spec for a local path or a URL tensorstore understands."""
    for prefix in ("precomputed://", "zarr://", "zarr3://", "n5://"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
    if "://" in path and not path.startswith("file://"):
        return {"url": path} if not path.endswith("/") else {"url": path}
    if path.startswith("file://"):
        path = path[len("file://") :]
    return {"driver": "file", "path": os.path.abspath(path) + "/"}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def zarr_node(folder: Path) -> tuple[str, str] | None:
    """('zarr'|'zarr3', 'array'|'group') for a zarr node folder, else None."""
    if (folder / ".zarray").is_file():
        return "zarr", "array"
    if (folder / ".zgroup").is_file():
        return "zarr", "group"
    meta = _read_json(folder / "zarr.json")
    if meta is not None:
        return "zarr3", str(meta.get("node_type", "array"))
    return None


def n5_node(folder: Path) -> str | None:
    meta = _read_json(folder / "attributes.json")
    if meta is None:
        return None
    return "array" if "dimensions" in meta else "group"


def list_arrays(root: Path, fmt: str, limit: int = 200) -> list[str]:
    """Keys of the arrays below a zarr/n5 container, for error messages."""
    found: list[str] = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        is_array = (
            n5_node(here) == "array" if fmt == "n5" else (zarr_node(here) or ("", ""))[1] == "array"
        )
        if is_array and here != root:
            found.append(str(here.relative_to(root)))
            dirnames.clear()
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if not is_array else []
        if len(found) >= limit:
            break
    return found


def detect_zarr_version(path: Path, internal_path: str | None) -> str:
    """'zarr' or 'zarr3' for the node at ``path/internal_path`` (or the container)."""
    node = zarr_node(path / (internal_path or ""))
    if node is None:
        node = zarr_node(path)
    if node is None:
        raise InternalPathNotFoundError(str(path), internal_path, list_arrays(path, "zarr"))
    return node[0]


# ---------------------------------------------------------------------------------------------
# open and create
# ---------------------------------------------------------------------------------------------
async def open_tensorstore(
    path: str,
    internal_path: str | None,
    *,
    format: str,
    mode: str = "r",
    scale_index: int | None = None,
    **kwargs: Any,
) -> TensorStoreSource:
    """Open an existing zarr/zarr3/n5/precomputed array."""
    if kwargs:
        raise TypeError(f"unexpected keyword argument(s) for {format}: {sorted(kwargs)}")
    writable = mode != "r"
    is_url = "://" in path and not path.startswith(("file://", "precomputed://"))
    local = Path(path.replace("precomputed://", "").replace("file://", ""))
    if not is_url and not local.exists():
        raise FileNotFoundError(f"no such file or folder: {str(local)!r}")
    key = (internal_path or "").strip("/")
    if format == "zarr" and not is_url:
        format = detect_zarr_version(local, key)
    driver = {
        "zarr": "zarr",
        "zarr3": "zarr3",
        "n5": "n5",
        "precomputed": "neuroglancer_precomputed",
    }[format]
    spec: dict[str, Any] = {"driver": driver, "kvstore": kvstore_for(path)}
    if driver == "neuroglancer_precomputed":
        if key:
            spec["scale_metadata"] = {"key": key}
        elif scale_index is not None:
            spec["scale_index"] = scale_index
    elif key:
        spec["path"] = key
    if not is_url and driver != "neuroglancer_precomputed":
        _check_array_exists(local, key, format)
    try:
        store = await ts.open(
            spec, read=True, write=writable, open=True, context=tensorstore_context()
        )
    except ValueError as err:
        raise SourceError(f"cannot open {format} array {path!r} (key {key!r}): {err}") from err
    return TensorStoreSource(
        _normalize_store(store, driver),
        writable=writable,
        format=format,
        location=str(local / key) if key else str(path),
    )


def _check_array_exists(root: Path, key: str, fmt: str) -> None:
    node_dir = root / key
    kind = n5_node(node_dir) if fmt == "n5" else (zarr_node(node_dir) or (None, None))[1]
    if kind != "array":
        raise InternalPathNotFoundError(str(root), key or None, list_arrays(root, fmt))


_DTYPE_N5 = {
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


def _compression(fmt: str, compression: str | None) -> Any:
    name = "none" if compression in (None, "none", "raw") else compression
    if fmt == "zarr":
        return {
            "default": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
            "blosc": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
            "zstd": {"id": "zstd", "level": 3},
            "gzip": {"id": "zlib", "level": 5},
            "none": None,
        }.get(name, KeyError)
    if fmt == "zarr3":
        return {
            "default": [{"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5}}],
            "blosc": [{"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5}}],
            "zstd": [{"name": "zstd", "configuration": {"level": 3}}],
            "gzip": [{"name": "gzip", "configuration": {"level": 5}}],
            "none": [],
        }.get(name, KeyError)
    if fmt == "n5":
        return {
            "default": {"type": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
            "blosc": {"type": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
            "gzip": {"type": "gzip", "level": 5},
            "zstd": {"type": "zstd", "level": 3},
            "none": {"type": "raw"},
        }.get(name, KeyError)
    if fmt == "precomputed":
        return {
            "default": "raw",
            "none": "raw",
            "raw": "raw",
            "jpeg": "jpeg",
            "compressed_segmentation": "compressed_segmentation",
        }.get(name, KeyError)
    raise FormatNotSupportedError(f"unknown tensorstore format {fmt!r}")


_COMPRESSIONS = {
    "zarr": "default, blosc, zstd, gzip, none",
    "zarr3": "default, blosc, zstd, gzip, none",
    "n5": "default, blosc, gzip, zstd, none",
    "precomputed": "default (raw), raw, jpeg, compressed_segmentation",
}


def _ensure_parent_groups(root: Path, key: str, fmt: str) -> None:
    """Write group metadata above a nested array so other libraries can walk the container."""
    parts = [p for p in key.split("/") if p][:-1]
    folders = [root] + [root.joinpath(*parts[: i + 1]) for i in range(len(parts))]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        if fmt == "zarr" and not (folder / ".zgroup").exists():
            (folder / ".zgroup").write_text('{"zarr_format": 2}')
        elif fmt == "zarr3" and not (folder / "zarr.json").exists():
            (folder / "zarr.json").write_text(
                '{"zarr_format": 3, "node_type": "group", "attributes": {}}'
            )
        elif fmt == "n5" and not (folder / "attributes.json").exists():
            (folder / "attributes.json").write_text('{"n5": "2.0.0"}')


def _create_spec(
    path: str,
    key: str,
    fmt: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    chunks: tuple[int, ...],
    compression: str | None,
    shards: tuple[int, ...] | None,
    fill_value: Any,
) -> dict[str, Any]:
    codec = _compression(fmt, compression)
    if codec is KeyError:
        raise FormatNotSupportedError(
            f"unknown compression {compression!r} for {fmt}; choose one of {_COMPRESSIONS[fmt]}"
        )
    if shards is not None and fmt != "zarr3":
        raise FormatNotSupportedError(
            f"shards= needs format='zarr3' (sharded zarr v3); {fmt} has no sharding"
        )
    kvstore = kvstore_for(path)
    if fmt == "zarr":
        metadata: dict[str, Any] = {
            "shape": list(shape),
            "chunks": list(chunks),
            "dtype": dtype.str,
            "compressor": codec,
            "fill_value": _json_fill(fill_value, dtype),
            "order": "C",
        }
        return {"driver": "zarr", "kvstore": kvstore, "path": key, "metadata": metadata}
    if fmt == "zarr3":
        bytes_codec = {"name": "bytes", "configuration": {"endian": "little"}}
        inner = [bytes_codec] + list(codec)
        if shards is not None:
            if any(s % c for s, c in zip(shards, chunks)):
                raise ValueError(
                    f"shards {tuple(shards)} must be a multiple of chunks {tuple(chunks)}"
                )
            codecs = [
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": list(chunks),
                        "codecs": inner,
                        "index_codecs": [bytes_codec, {"name": "crc32c"}],
                    },
                }
            ]
            grid = list(shards)
        else:
            codecs, grid = inner, list(chunks)
        metadata = {
            "shape": list(shape),
            "data_type": dtype.name,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": grid}},
            "codecs": codecs,
            "fill_value": _json_fill(fill_value, dtype),
        }
        return {"driver": "zarr3", "kvstore": kvstore, "path": key, "metadata": metadata}
    if fmt == "n5":
        if dtype.name not in _DTYPE_N5:
            raise FormatNotSupportedError(
                f"n5 cannot store dtype {dtype}; use one of {sorted(_DTYPE_N5)} or zarr"
            )
        metadata = {
            "dimensions": list(shape),
            "blockSize": list(chunks),
            "dataType": dtype.name,
            "compression": codec,
        }
        return {"driver": "n5", "kvstore": kvstore, "path": key, "metadata": metadata}
    if fmt == "precomputed":
        if len(shape) not in (3, 4):
            raise FormatNotSupportedError(
                f"precomputed volumes are 3D (z, y, x) or 4D (c, z, y, x); got shape {shape}"
            )
        channels = shape[0] if len(shape) == 4 else 1
        zyx, czyx_chunks = shape[-3:], chunks[-3:]
        spec: dict[str, Any] = {
            "driver": "neuroglancer_precomputed",
            "kvstore": kvstore,
            "multiscale_metadata": {
                "data_type": dtype.name,
                "num_channels": channels,
                "type": "segmentation" if dtype.kind in "ui" and dtype.itemsize >= 4 else "image",
            },
            "scale_metadata": {
                "size": list(reversed(zyx)),
                "chunk_size": list(reversed(czyx_chunks)),
                "resolution": [1, 1, 1],
                "encoding": codec,
            },
        }
        if key:
            spec["scale_metadata"]["key"] = key
        return spec
    raise FormatNotSupportedError(f"unknown tensorstore format {fmt!r}")


def _json_fill(value: Any, dtype: np.dtype) -> Any:
    if value is None:
        return None
    if dtype.kind == "b":
        return bool(value)
    if dtype.kind in "iu":
        return int(value)
    return float(value)


async def create_tensorstore(
    path: str,
    *,
    shape: tuple[int, ...],
    dtype: np.dtype,
    chunks: tuple[int, ...],
    format: str,
    internal_path: str | None,
    compression: str | None,
    shards: tuple[int, ...] | None,
    fill_value: Any,
    exist_ok: bool,
) -> TensorStoreSource:
    key = (internal_path or "").strip("/")
    local = (
        None
        if "://" in path and not path.startswith(("file://", "precomputed://"))
        else Path(path.replace("precomputed://", "").replace("file://", ""))
    )
    spec = _create_spec(path, key, format, shape, dtype, chunks, compression, shards, fill_value)
    driver = spec["driver"]
    exists = local is not None and _array_exists(local, key, format)
    if exists and not exist_ok:
        where = f"{local}" + (f" (key {key!r})" if key else "")
        raise SourceExistsError(
            f"an array already exists at {where}; pass exist_ok=True to open it for writing, "
            "or remove it first"
        )
    if local is not None and key and format != "precomputed":
        _ensure_parent_groups(local, key, format)
    try:
        if exists:  # open what is there (whatever its codecs); shape and dtype checked below
            existing = {
                k: v for k, v in spec.items() if k not in ("metadata", "multiscale_metadata")
            }
            if driver == "neuroglancer_precomputed":
                existing["scale_metadata"] = {"key": key} if key else {}
                if not key:
                    existing.pop("scale_metadata")
            store = await ts.open(
                existing, read=True, write=True, open=True, context=tensorstore_context()
            )
        else:
            store = await ts.open(
                spec, read=True, write=True, create=True, context=tensorstore_context()
            )
    except ValueError as err:
        raise SourceError(
            f"cannot create {format} array at {path!r}: {err}. If an array with another shape, "
            "dtype or chunking exists there, remove it or choose another path."
        ) from err
    store = _normalize_store(store, driver)
    if exists and (tuple(store.shape) != tuple(shape) or store.dtype.numpy_dtype != dtype):
        raise SourceExistsError(
            f"the existing array at {path!r} has shape {tuple(store.shape)} and dtype "
            f"{store.dtype.numpy_dtype}, not the requested {tuple(shape)} / {dtype}; "
            "remove it or choose another path"
        )
    location = str(local / key) if local is not None and key else path
    return TensorStoreSource(store, writable=True, format=format, location=location)


def _array_exists(root: Path, key: str, fmt: str) -> bool:
    folder = root / key
    if fmt == "n5":
        return n5_node(folder) == "array"
    if fmt == "precomputed":
        info = _read_json(root / "info")
        if info is None:
            return False
        return (
            any(scale.get("key") == key for scale in info.get("scales", []))
            if key
            else bool(info.get("scales"))
        )
    node = zarr_node(folder)
    return node is not None and node[1] == "array"


def wrap_tensorstore(store: ts.TensorStore) -> TensorStoreSource:
    """as_source() of a user's TensorStore: keep it as given (its own Context), zero-origin."""
    writable = bool(getattr(store, "writable", False))
    if store.ndim and any(int(o) != 0 for o in store.domain.origin):
        store = store[ts.d[:].translate_to[0]]
    return TensorStoreSource(store, writable=writable)
