"""tensorstore-backed sources: zarr v2, zarr v3 (with sharding), n5 and neuroglancer precomputed,
on a local disk or in object storage (s3://, gs://, http(s):// read-only).

tensorstore is natively async (its futures are awaitable), so these sources never touch the
blocking thread pool. Every store is opened with the process-wide Context (bounded pools and a
decoded-chunk cache) and presented in C order with a zero origin (see ``ts_drivers``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np
import tensorstore as ts

from ..context import resource_options, run_blocking, tensorstore_context
from ..errors import (
    InternalPathNotFoundError,
    InvalidArgumentError,
    ReadOnlySourceError,
    SourceError,
    SourceExistsError,
    SourceNotFoundError,
)
from .base import Source, SourceSpec
from .formats import CreateRequest, FormatBackend
from .indexing import Roi
from .location import Location
from .ome_zarr import group_attributes, multiscale_levels, pick_level
from .physical import for_axes, n5_voxel_size, positive_sizes
from .raw_copy import RawCopyPlan, copy_region_keys, raw_copy_plan
from .storage import (
    StorageOptions,
    bounded,
    invalid_url,
    no_such_key,
    storage_error,
    with_credentials,
)
from .ts_drivers import DRIVERS, Driver, Precomputed


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
        storage: StorageOptions | None = None,
        lock_path: str | None = None,
        voxel_size: tuple[float, ...] | None = None,
        unit: str | None = None,
    ) -> None:
        self.store = store
        self._raw_plans: dict[int, tuple[Source, RawCopyPlan | None]] = {}
        #: chunk (shard) files copied here as they are, without decoding (see copy_region_from)
        self.raw_chunk_files = 0
        self._voxel_size = voxel_size
        self._unit = unit
        self._lock_path = lock_path
        self._writable = writable
        self.format = format or str(store.spec().to_json().get("driver", "tensorstore"))
        self.location = location
        self.storage = storage or StorageOptions()
        #: the parsed URL of a remote array (errors are said in storage terms), else None
        self.remote: Location | None = None
        if location is not None:
            parsed = Location.parse(location, self.storage)
            self.remote = parsed if parsed.is_remote else None
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

    @property
    def multiprocess_writable(self) -> bool:
        return True  # one object per chunk (shard): aligned writers never share one

    def tensorstore(self) -> ts.TensorStore:
        return self.store

    def writer_lock_path(self) -> str | None:
        return self._lock_path

    @property
    def voxel_size(self) -> tuple[float, ...] | None:
        return self._voxel_size

    @property
    def unit(self) -> str | None:
        return self._unit

    def describe(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"{self.format} array{where}"

    async def _read(self, roi: Roi) -> np.ndarray:
        if self.remote is None:
            return await self.store[roi].read()
        try:
            return await self.store[roi].read()
        except ValueError as err:  # tensorstore retried it (storage_retries): say what failed
            raise storage_error(err, self.remote) from err

    async def _write(self, roi: Roi, value: np.ndarray) -> None:
        if self.remote is None:
            await self.store[roi].write(value)
            return
        try:
            await self.store[roi].write(value)
        except (ValueError, NotImplementedError) as err:
            raise storage_error(err, self.remote) from err

    async def copy_region_from(self, roi: Roi, source: Source, source_roi: Roi) -> bool:
        """Copy without a numpy round trip: the encoded chunk files as they are where input and
        output store the same chunk grid, dtype and codecs (no decoding at all), else chunk to
        chunk inside tensorstore, or from a memory map."""
        if not self.writable:
            return False
        other = source.tensorstore()
        if other is None:
            mapped = source.mapped_region(source_roi)
            if mapped is None or mapped.dtype != self.dtype:
                return False
            # tensorstore copies the view into its own buffer inside write(): page faults of
            # the memory map happen there, so call it from a worker thread
            futures = await run_blocking(self.store[roi].write, mapped)
            await futures
            return True
        if roi == source_roi:
            plan = self._raw_plan(source)
            keys = plan.output.region_keys(roi) if plan is not None else None
            if plan is not None and keys is not None:
                await copy_region_keys(plan, keys)
                self.raw_chunk_files += len(keys)
                return True
        region = other[source_roi]
        if region.dtype != self.store.dtype:
            region = ts.cast(region, self.store.dtype)
        try:
            await self.store[roi].write(region)  # chunk to chunk inside tensorstore
        except ValueError as err:
            remote = self.remote or _remote_location(source)
            if remote is None:
                raise
            raise storage_error(err, remote) from err
        return True

    def _raw_plan(self, source: Source) -> RawCopyPlan | None:
        """Whether ``source``'s chunk files are valid here as they are (asked once per source)."""
        cached = self._raw_plans.get(id(source))
        if cached is None or cached[0] is not source:
            cached = (source, raw_copy_plan(source, self))
            self._raw_plans[id(source)] = cached
        return cached[1]

    def to_spec(self) -> SourceSpec:
        spec = self.store.spec(minimal_spec=True, retain_context=False).to_json()
        spec.pop("context", None)
        params: dict[str, Any] = {
            "tensorstore": spec,
            "writable": self._writable,
            "format": self.format,
            "location": self.location,
            "lock_path": self._lock_path,
            "voxel_size": None if self._voxel_size is None else list(self._voxel_size),
            "unit": self._unit,
        }
        if self.remote is not None:  # endpoint, region, a named profile: never a secret
            params["storage"] = self.storage.recorded()
        return SourceSpec(self.kind, params)

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> TensorStoreSource:
        """Reopen in this process: the endpoint comes with the spec, credentials from here."""
        spec = dict(params["tensorstore"])
        writable = bool(params.get("writable", False))
        storage = StorageOptions.coerce(params.get("storage"))
        location = params.get("location")
        if isinstance(spec.get("kvstore"), dict):
            spec["kvstore"] = with_credentials(spec["kvstore"], storage)
        where = Location.parse(location, storage) if location else None
        try:
            future = ts.open(
                spec, read=True, write=writable, open=True, context=tensorstore_context()
            )
        except ValueError as err:
            if where is None or not where.is_remote:
                raise SourceError(f"cannot reopen {location or spec}: {_short(err)}") from err
            raise invalid_url(err, where) from err
        store = await (bounded(future, where) if where is not None and where.is_remote else future)
        return cls(
            store,
            writable=writable,
            format=params.get("format"),
            location=location,
            storage=storage,
            lock_path=params.get("lock_path"),
            voxel_size=None if params.get("voxel_size") is None else tuple(params["voxel_size"]),
            unit=params.get("unit"),
        )


def _remote_location(source: Source) -> Location | None:
    """The object-store URL a source (or the source it views) reads from, for messages."""
    try:
        spec = source.to_spec().to_json()
    except SourceError:
        return None
    stack: list[Any] = [spec]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            location = item.get("location")
            if isinstance(location, str) and "://" in location:
                parsed = Location.parse(location, StorageOptions.coerce(item.get("storage")))
                if parsed.is_remote:
                    return parsed
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _layout_shape(shape: Any, volume_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    if shape is None:
        return None
    values = tuple(int(n) if n else 0 for n in shape)
    if not values or all(n == 0 for n in values):
        return None
    return tuple(n if n > 0 else max(v, 1) for n, v in zip(values, volume_shape))


def wrap_tensorstore(store: ts.TensorStore) -> TensorStoreSource:
    """as_source() of a user's TensorStore: keep it as given (its own Context), zero-origin."""
    writable = bool(getattr(store, "writable", False))
    if store.ndim and any(int(o) != 0 for o in store.domain.origin):
        store = store[ts.d[:].translate_to[0]]
    return TensorStoreSource(store, writable=writable)


# ---------------------------------------------------------------------------------------------
# opening and creating
# ---------------------------------------------------------------------------------------------
async def _ts_open(
    spec: dict[str, Any], location: Location, what: str, *, write: bool, create: bool = False
) -> ts.TensorStore:
    """ts.open with errors said in storage terms and, remotely, a bounded wait."""
    try:
        future = ts.open(
            spec,
            context=tensorstore_context(),
            read=True,
            write=write,
            create=create,
            open=not create,
        )
    except ValueError as err:  # refused before any I/O: the spec (bucket name, ...) is wrong
        if location.is_remote:
            raise invalid_url(err, location) from err
        raise SourceError(f"cannot {what} {location}: {_short(err)}") from err
    if location.is_remote:
        return await bounded(future, location)
    try:
        return await future
    except ValueError as err:
        raise SourceError(f"cannot {what} {location}: {_short(err)}") from err


def _short(err: Exception) -> str:
    """tensorstore's message without the JSON spec it appends (1000+ characters)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    for marker in (" [tensorstore_spec=", " [source locations=", " [os_error_code=", " {"):
        text = text.split(marker, 1)[0]
    return text.replace("\\x00", "/")[:300]  # tensorstore escapes its path separator


#: How long listing a bucket prefix may take when it only serves an error message.
LISTING_BUDGET = 10.0


async def list_arrays(location: Location, driver: Driver, limit: int = 200) -> list[str]:
    """Keys of the arrays below a zarr/n5 container, for error messages.

    Locally a walk of the folders. Remotely, first what the group's metadata names
    (consolidated metadata, OME-Zarr multiscales); then, on s3/gs, a listing of the keys below
    the group (cut after ``LISTING_BUDGET`` seconds) whose array metadata files are kept. http
    cannot list, so there only the metadata's names are found.
    """
    if not location.is_local:
        return await _remote_arrays(location, limit)

    def walk() -> list[str]:
        import json

        found: list[str] = []
        root = location.local_path
        for dirpath, dirnames, filenames in os.walk(root):
            is_array = any(
                name in filenames for name in (".zarray", "attributes.json", "zarr.json")
            ) and _local_is_array(os.path.join(dirpath), filenames, json)
            if is_array and dirpath != str(root):
                found.append(os.path.relpath(dirpath, root))
            dirnames[:] = [] if is_array else [d for d in dirnames if not d.startswith(".")]
            if len(found) >= limit:
                break
        return sorted(found)

    return await run_blocking(walk)


def _local_is_array(folder: str, filenames: list[str], json: Any) -> bool:
    if ".zarray" in filenames:
        return True
    for name, test in (
        ("zarr.json", lambda m: m.get("node_type") == "array"),
        ("attributes.json", lambda m: "dimensions" in m),
    ):
        if name in filenames:
            try:
                with open(os.path.join(folder, name)) as handle:
                    if test(json.load(handle)):
                        return True
            except (OSError, ValueError):
                continue
    return False


async def _remote_arrays(location: Location, limit: int) -> list[str]:
    named = await _arrays_named_by_metadata(location)
    if named:
        return sorted(named)[:limit]
    budget = min(resource_options().storage_timeout, LISTING_BUDGET)
    keys = await location.list_keys(timeout=budget)
    if not keys:
        return []
    found: set[str] = set()
    maybe: set[str] = set()
    for key in keys:
        folder, _, name = key.rpartition("/")
        if not folder or any(part.startswith(".") for part in folder.split("/")):
            continue
        if name == ".zarray":
            found.add(folder)
        elif name in ("zarr.json", "attributes.json"):
            maybe.add(folder)
    checks = sorted(maybe - found)[:limit]
    nodes = await asyncio.gather(*(_remote_node(location, folder) for folder in checks))
    found.update(folder for folder, node in zip(checks, nodes) if node == "array")
    return sorted(found)[:limit]


async def _remote_node(location: Location, folder: str) -> str | None:
    for driver in (DRIVERS["zarr3"], DRIVERS["n5"]):
        node = await driver.node(location, folder)
        if node is not None:
            return node
    return None


async def _arrays_named_by_metadata(location: Location) -> list[str]:
    """Arrays a group names itself: consolidated metadata or OME-Zarr multiscales."""
    consolidated = await location.read_json(".zmetadata")
    if consolidated is not None:
        entries = consolidated.get("metadata") or {}
        return [k.rsplit("/", 1)[0] for k in entries if k.endswith("/.zarray")]
    v3 = await location.read_json("zarr.json")
    attributes: dict[str, Any] = {}
    if v3 is not None:
        entries = (v3.get("consolidated_metadata") or {}).get("metadata") or {}
        arrays = [k for k, v in entries.items() if (v or {}).get("node_type") == "array"]
        if arrays:
            return arrays
        attributes = v3.get("attributes") or {}
        attributes = attributes.get("ome") or attributes
    else:
        attributes = await location.read_json(".zattrs") or {}
    paths = []
    for scale in attributes.get("multiscales") or []:
        for dataset in (scale or {}).get("datasets") or []:
            if isinstance(dataset, dict) and dataset.get("path") is not None:
                paths.append(str(dataset["path"]))
    return paths


async def _not_found(location: Location, key: str, driver: Driver) -> Exception:
    """The error for a missing array: the bucket, the key, or the array inside a group."""
    if location.is_local:
        return InternalPathNotFoundError(
            str(location), key or None, await list_arrays(location, driver)
        )
    await location.check_bucket()  # raises, naming the bucket, when it is missing
    root = await asyncio.gather(*(d.node(location, "") for d in (DRIVERS["zarr"], driver)))
    if not any(root) and not await location.exists(".zattrs"):
        return no_such_key(location, key)
    return InternalPathNotFoundError(
        str(location), key or None, await list_arrays(location, driver)
    )


async def _zarr_driver(location: Location, key: str) -> Driver:
    """zarr v2 or v3, by what is stored at the key (or, for a group, the container)."""
    for driver in (DRIVERS["zarr"], DRIVERS["zarr3"]):
        if await driver.node(location, key) is not None:
            return driver
    for driver in (DRIVERS["zarr"], DRIVERS["zarr3"]):
        if key and await driver.node(location, "") is not None:
            return driver
    raise await _not_found(location, key, DRIVERS["zarr"])


async def open_tensorstore(
    location: Location,
    internal_path: str | None,
    *,
    driver: Driver,
    mode: str = "r",
    scale_index: int | None = None,
    level: int | None = None,
) -> Source:
    """Open an existing zarr/zarr3/n5/precomputed array; an OME-Zarr multiscale group opens its
    level ``level`` (default the full resolution), with its voxel size."""
    writable = mode != "r"
    if writable and location.read_only:
        raise ReadOnlySourceError(
            f"{location} is served over {location.scheme}, which is read-only; open it with "
            "mode='r' and write to a local path, s3:// or gs://"
        )
    if location.is_local and not await location.exists():
        raise SourceNotFoundError(f"no such file or folder: {str(location)!r}")
    key = (internal_path or "").strip("/")
    physical: tuple[tuple[float, ...] | None, str | None] = (None, None)
    if driver.format in ("zarr", "zarr3"):
        key, physical = await ome_level(location, key, level)
    elif level is not None and not isinstance(driver, Precomputed):
        raise InvalidArgumentError(
            f"level= selects a level of an OME-Zarr multiscale or a precomputed layer; "
            f"{location} is {driver.format}"
        )
    if driver.format == "zarr":
        driver = await _zarr_driver(location, key)
    if level is not None and isinstance(driver, Precomputed):
        scale_index = level
    if isinstance(driver, Precomputed):
        from .precomputed_gzip import gzip_layer_source

        info = await location.read_json("info")
        if info is None and location.is_remote:
            await location.check_bucket()
            raise no_such_key(location, "info")
        if info is None:
            raise SourceNotFoundError(f"no precomputed layer at {location} (no 'info' file)")
        scale_keys = [str(scale.get("key")) for scale in info.get("scales") or []]
        if key and key not in scale_keys:
            raise InternalPathNotFoundError(str(location), key, scale_keys)
        gz = await gzip_layer_source(location, info, key, scale_index, writable)
        if gz is not None:
            return gz
        spec = driver.scale_spec(location, key, scale_index)
        physical = precomputed_voxel_size(info, key, scale_index)
    else:
        if await driver.node(location, key) != "array":
            raise await _not_found(location, key, driver)
        spec = driver.open_spec(location, key)
    store = driver.present(
        await _ts_open(spec, location, f"open {driver.format} array", write=writable)
    )
    if driver.format == "n5":
        physical = await n5_physical(location, key, store.ndim)
    voxel_size, unit = physical
    if voxel_size is not None and len(voxel_size) != store.ndim:
        voxel_size = None  # metadata that does not match the array: better none than wrong
    return TensorStoreSource(
        store,
        writable=writable,
        format=driver.format,
        location=str(location.join(key)) if key else str(location),
        storage=location.storage,
        lock_path=writer_lock_path(location, key),
        voxel_size=voxel_size,
        unit=unit,
    )


async def ome_level(
    location: Location, key: str, level: int | None
) -> tuple[str, tuple[tuple[float, ...] | None, str | None]]:
    """For an OME-Zarr multiscale group at ``key``: the key of the chosen level and its voxel
    size; for an array listed by its parent's multiscale: its voxel size; else nothing."""
    attributes = await group_attributes(location, key)
    if attributes is not None:
        levels = multiscale_levels(attributes)
        if levels is None:
            if level is not None:
                raise InvalidArgumentError(
                    f"level={level}: {location.join(key)} is a group without OME-Zarr "
                    "multiscales metadata"
                )
            return key, (None, None)
        chosen = pick_level(levels, level, str(location.join(key)))
        return "/".join(p for p in (key, chosen.path) if p), (chosen.voxel_size, chosen.unit)
    if level is not None:
        raise InvalidArgumentError(
            f"level={level} selects a level of an OME-Zarr multiscale group; "
            f"{location.join(key)} is an array (open the group, or drop level=)"
        )
    parent, _, name = key.rpartition("/")
    parent_attributes = await group_attributes(location, parent) if name else None
    for candidate in multiscale_levels(parent_attributes or {}) or []:
        if candidate.path == name:
            return key, (candidate.voxel_size, candidate.unit)
    return key, (None, None)


def precomputed_voxel_size(
    info: dict[str, Any], key: str, scale_index: int | None
) -> tuple[tuple[float, ...] | None, str | None]:
    scales = info.get("scales") or []
    chosen = next((sc for sc in scales if key and str(sc.get("key")) == key), None)
    if chosen is None and scales:
        chosen = scales[scale_index or 0] if (scale_index or 0) < len(scales) else None
    sizes = positive_sizes((chosen or {}).get("resolution"))
    if sizes is None:
        return None, None
    channels = int(info.get("num_channels", 1))
    return for_axes(tuple(reversed(sizes)), 3 + (channels > 1)), "nanometer"


async def n5_physical(
    location: Location, key: str, ndim: int
) -> tuple[tuple[float, ...] | None, str | None]:
    """From the dataset's attributes, else its parent groups' (BigDataViewer, N5-viewer)."""
    parts = [p for p in key.split("/") if p]
    for depth in range(len(parts), -1, -1):
        attributes = await location.join(*parts[:depth]).read_json("attributes.json") or {}
        found = n5_voxel_size(attributes, ndim)
        if found is not None:
            if depth < len(parts):  # a group's resolution, scaled by the dataset's own factors
                own = await location.join(*parts).read_json("attributes.json") or {}
                factors = positive_sizes(own.get("downsamplingFactors"))
                if factors is not None and len(factors) <= ndim:
                    zyx = tuple(reversed(factors))
                    sizes = found[0]
                    scaled = sizes[: ndim - len(zyx)] + tuple(
                        s * f for s, f in zip(sizes[ndim - len(zyx) :], zyx)
                    )
                    return scaled, found[1]
            return found
    return None, None


#: The file a run writing into a local array keeps inside its folder while it runs.
WRITER_LOCK = ".bioimage_async-writer.json"


def writer_lock_path(location: Location, key: str) -> str | None:
    if not location.is_local:
        return None  # object stores have no atomic create-if-absent for a lock record
    return os.path.join(str(location.join(key)) if key else str(location), WRITER_LOCK)


async def _ensure_parent_groups(location: Location, key: str, driver: Driver) -> None:
    """Write group metadata above a nested array so other libraries can walk the container."""
    if driver.group_file is None:
        return
    name, content = driver.group_file
    parts = [p for p in key.split("/") if p][:-1]
    for depth in range(len(parts) + 1):
        folder = location.join(*parts[:depth])
        if await driver.node(location, "/".join(parts[:depth])) is None:
            await folder.write(name, content)


async def create_tensorstore(
    location: Location, request: CreateRequest, *, driver: Driver
) -> TensorStoreSource:
    if location.read_only:
        raise ReadOnlySourceError(
            f"cannot create an array at {location}: {location.scheme} URLs are read-only; "
            "create it on a local path, s3:// or gs://"
        )
    key = (request.internal_path or "").strip("/")
    spec = driver.create_spec(location, key, request)
    # tensorstore retries a create in a missing s3 bucket forever (uncancellable): check first
    await location.check_bucket()
    exists = await driver.node(location, key) == "array"
    if exists and not request.exist_ok:
        where = f"{location}" + (f" (key {key!r})" if key else "")
        raise SourceExistsError(
            f"an array already exists at {where}; pass exist_ok=True to open it for writing, "
            "or remove it first"
        )
    if key and driver.format != "precomputed":
        await _ensure_parent_groups(location, key, driver)
    if exists:  # open what is there (whatever its codecs); shape and dtype are checked below
        existing = driver.open_spec(location, key)
        store = await _ts_open(existing, location, f"open {driver.format} array", write=True)
    else:
        store = await _ts_open(
            spec, location, f"create {driver.format} array", write=True, create=True
        )
    store = driver.present(store)
    if exists and (
        tuple(store.shape) != tuple(request.shape) or store.dtype.numpy_dtype != request.dtype
    ):
        raise SourceExistsError(
            f"the existing array at {location} has shape {tuple(store.shape)} and dtype "
            f"{store.dtype.numpy_dtype}, not the requested {tuple(request.shape)} / "
            f"{request.dtype}; remove it or choose another path"
        )
    where = str(location.join(key)) if key else str(location)
    return TensorStoreSource(
        store,
        writable=True,
        format=driver.format,
        location=where,
        storage=location.storage,
        lock_path=writer_lock_path(location, key),
        voxel_size=request.voxel_size,
        unit=request.unit,
    )


# ---------------------------------------------------------------------------------------------
# the four format backends
# ---------------------------------------------------------------------------------------------
class TensorStoreFormat(FormatBackend):
    """A chunked format served by tensorstore, locally or in object storage."""

    writable = True
    creatable = True
    remote = True
    driver_name = ""

    @property
    def driver(self) -> Driver:
        return DRIVERS[self.driver_name]

    async def detect(self, location: Location) -> bool:
        return await self.driver.node(location, "") is not None

    async def open(
        self,
        location: Location,
        internal_path: str | None,
        *,
        mode: str,
        scale_index: int | None = None,
        level: int | None = None,
        **options: Any,
    ) -> Source:
        if options:
            raise InvalidArgumentError(
                f"unexpected keyword argument(s) for {self.name}: {sorted(options)}"
            )
        if scale_index is not None and self.name != "precomputed":
            raise InvalidArgumentError(
                f"scale_index= applies to precomputed layers, not {self.name}"
            )
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise InvalidArgumentError(f"level must be an integer, got {level!r}")
        return await open_tensorstore(
            location,
            internal_path,
            driver=self.driver,
            mode=mode,
            scale_index=scale_index,
            level=level,
        )

    async def create(self, location: Location, request: CreateRequest) -> Source:
        return await create_tensorstore(location, request, driver=self.driver)


class ZarrFormat(TensorStoreFormat):
    name = "zarr"
    description = "zarr v2 (created) or v3 (auto-detected on open), .zarr"
    extensions = (".zarr",)
    url_prefixes = ("zarr", "zarr2")
    driver_name = "zarr"

    async def detect(self, location: Location) -> bool:
        for version in ("zarr", "zarr3"):
            if await DRIVERS[version].node(location, "") is not None:
                return True
        return False


class Zarr3Format(TensorStoreFormat):
    name = "zarr3"
    description = "zarr v3, incl. sharding"
    url_prefixes = ("zarr3",)
    driver_name = "zarr3"

    async def detect(self, location: Location) -> bool:
        return False  # zarr detects both versions


class N5Format(TensorStoreFormat):
    name = "n5"
    description = "n5 (z5py/BigDataViewer axis order), .n5"
    extensions = (".n5",)
    url_prefixes = ("n5",)
    driver_name = "n5"


class PrecomputedFormat(TensorStoreFormat):
    name = "precomputed"
    description = "neuroglancer precomputed, precomputed://... or a folder with 'info'"
    url_prefixes = ("precomputed",)
    driver_name = "precomputed"

    async def detect(self, location: Location) -> bool:
        return await location.read_json("info") is not None


FORMAT_BACKENDS: tuple[FormatBackend, ...] = (
    PrecomputedFormat(),
    ZarrFormat(),
    Zarr3Format(),
    N5Format(),
)
