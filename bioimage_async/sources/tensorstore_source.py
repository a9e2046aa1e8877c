"""The tensorstore-backed Source: zarr v2, zarr v3 (with sharding), n5 and neuroglancer
precomputed, on a local disk or in object storage (s3://, gs://, http(s):// read-only).

tensorstore is natively async (its futures are awaitable), so these sources never touch the
blocking thread pool. Every store is opened with the process-wide Context (bounded pools and a
decoded-chunk cache) and presented in C order with a zero origin (see ``ts_drivers``); opening
and creating live in ``tensorstore_open``, the four format backends in ``tensorstore_formats``.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import tensorstore as ts

from ..context import run_blocking, tensorstore_context
from ..errors import (
    SourceError,
)
from .axis_names import store_axes, unlabelled
from .base import Source, SourceSpec
from .indexing import Roi
from .location import Location
from .raw_copy import RawCopyPlan, copy_region_keys, raw_copy_plan
from .storage import (
    StorageOptions,
    bounded,
    invalid_url,
    short_error,
    storage_error,
    with_credentials,
)


def is_lossy(spec: dict[str, Any]) -> bool:
    """Whether a store encodes chunks lossily (precomputed jpeg). Its chunk cache would keep
    the values written, not the ones stored: reads in this process (the writing handle, or a
    fresh open_source, which shares the cache) returned exact values while the file, other
    processes, cloud-volume and neuroglancer hold the jpeg-decoded ones."""
    return (spec.get("scale_metadata") or {}).get("encoding") == "jpeg"


def store_context(uncached: bool) -> ts.Context:
    """The process's context, or a child of it without a chunk cache (for lossy stores)."""
    shared = tensorstore_context()
    return ts.Context({"cache_pool": {"total_bytes_limit": 0}}, shared) if uncached else shared


class TensorStoreSource(Source):
    """A source over a ``tensorstore.TensorStore`` (opened with bioimage_async's Context).

    The store's dimension labels (zarr v3 ``dimension_names``, n5 ``axes``) become ``axes``
    where they name t, c, z, y, x, and the store is kept unlabelled: tensorstore aligns
    labelled domains by name, so a copy between arrays named differently would fail.
    """

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
        axes: str | None = None,
        translation: tuple[float, ...] | None = None,
        opened_with: dict[str, Any] | None = None,
    ) -> None:
        self._axes = axes if axes is not None else store_axes(store)
        #: spec members the opening needed beyond the stored metadata (``KEPT_SPEC``)
        self._opened_with = kept_spec(opened_with or {})
        self.store = store = unlabelled(store)
        self._translation = translation
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
        # a view that starts inside a chunk (a user's store[5:], translated to zero) has its
        # chunk borders off the multiples of the chunk shape: writers must know where they are
        self._grid_offset = _grid_offset(store, write_chunk)

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
    def grid_offset(self) -> tuple[int, ...]:
        return self._grid_offset

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

    @property
    def axes(self) -> str | None:
        return self._axes

    @property
    def translation(self) -> tuple[float, ...] | None:
        return self._translation

    async def with_read_cache(self, nbytes: int) -> Source:
        """Reopened read-only with a cache pool of its own (the process's thread pools and
        limits are inherited). Only arrays opened from a location are reopened: a user's
        in-memory TensorStore would reopen empty."""
        if self.location is None:
            return self
        context = ts.Context(
            {"cache_pool": {"total_bytes_limit": int(nbytes)}}, tensorstore_context()
        )
        params = {**self.to_spec().params, "writable": False}
        return await type(self).from_params(params, context=context)

    def describe(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"{self.format} array{where}"

    async def _read(self, roi: Roi) -> np.ndarray:
        return cast(np.ndarray, await self._in_storage_terms(self.store[roi].read()))

    async def read_roi_into(self, roi: Roi, out: np.ndarray) -> None:
        """tensorstore copies the chunks straight into ``out`` (wrapped, not copied)."""
        if any(s.stop <= s.start for s in roi):
            return
        target = ts.array(out, copy=False, write=True, context=tensorstore_context())
        await self._in_storage_terms(target.write(self.store[roi]))

    async def _write(self, roi: Roi, value: np.ndarray) -> None:
        await self._in_storage_terms(
            self.store[roi].write(value), (ValueError, NotImplementedError)
        )

    async def _in_storage_terms(
        self, future: Any, errors: tuple[type[Exception], ...] = (ValueError, NotImplementedError)
    ) -> Any:
        """Await a tensorstore future. For a remote array, a failure (tensorstore already
        retried it, ``storage_retries``) is said in storage terms: bucket, key, credentials."""
        if self.remote is None:
            return await future
        try:
            return await future
        except errors as err:
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
        spec.update(self._opened_with)
        params: dict[str, Any] = {
            "tensorstore": spec,
            "writable": self._writable,
            "format": self.format,
            "location": self.location,
            "lock_path": self._lock_path,
            "voxel_size": None if self._voxel_size is None else list(self._voxel_size),
            "unit": self._unit,
            "axes": self._axes,
        }
        if self._translation is not None:  # a precomputed voxel offset, an OME-Zarr level's
            params["translation"] = list(self._translation)
        if self.remote is not None:  # endpoint, region, a named profile: never a secret
            params["storage"] = self.storage.recorded()
        return SourceSpec(self.kind, params)

    @classmethod
    async def from_params(
        cls, params: dict[str, Any], *, context: ts.Context | None = None
    ) -> TensorStoreSource:
        """Reopen in this process: the endpoint comes with the spec, credentials from here."""
        spec = dict(params["tensorstore"])
        writable = bool(params.get("writable", False))
        storage = StorageOptions.coerce(params.get("storage"))
        location = params.get("location")
        if isinstance(spec.get("kvstore"), dict):
            spec["kvstore"] = with_credentials(spec["kvstore"], storage)
        where = Location.parse(location, storage) if location else None

        async def reopen(context: ts.Context) -> ts.TensorStore:
            try:
                future = ts.open(
                    spec,
                    read=True,
                    write=writable,
                    open=True,
                    # a spec that carries the stored metadata (z5py's blosc n5, whose 'nthreads'
                    # tensorstore refuses) is opened on it, as in the process that made the spec
                    assume_metadata=bool(spec.get("assume_metadata")),
                    context=context,
                )
            except ValueError as err:
                if where is None or not where.is_remote:
                    raise SourceError(
                        f"cannot reopen {location or spec}: {short_error(err)}"
                    ) from err
                raise invalid_url(err, where) from err
            remote = where is not None and where.is_remote
            return await (bounded(future, where) if remote and where is not None else future)

        store = await reopen(context or store_context(False))
        if is_lossy(store.spec().to_json()):  # read back as stored, never as written
            store = await reopen(store_context(True))
        return cls(
            store,
            writable=writable,
            format=params.get("format"),
            location=location,
            storage=storage,
            lock_path=params.get("lock_path"),
            voxel_size=None if params.get("voxel_size") is None else tuple(params["voxel_size"]),
            unit=params.get("unit"),
            axes=params.get("axes"),
            translation=None
            if params.get("translation") is None
            else tuple(float(v) for v in params["translation"]),
            opened_with=spec,
        )


#: Spec members that opening an array may need and tensorstore's minimal spec drops: a nested
#: zarr v2 array's separator and z5py's blosc metadata (``metadata``), read on trust
#: (``assume_metadata``). A worker reopening without them would read a nested array as fill
#: values, or be refused.
KEPT_SPEC = ("metadata", "assume_metadata")


def kept_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: spec[k] for k in KEPT_SPEC if k in spec}


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


def _grid_offset(store: ts.TensorStore, write_chunk: tuple[int, ...] | None) -> tuple[int, ...]:
    """Where the write chunks' borders lie, relative to the domain's origin, per axis."""
    try:
        grid_origin = store.chunk_layout.grid_origin
    except (ValueError, AttributeError):
        grid_origin = None
    if grid_origin is None or write_chunk is None:
        return (0,) * store.ndim
    offsets = []
    for grid, origin, chunk in zip(grid_origin, store.domain.origin, write_chunk):
        if grid is None or abs(int(grid)) > 2**62:  # an axis the layout leaves free
            offsets.append(0)
        else:
            offsets.append((int(grid) - int(origin)) % chunk)
    return tuple(offsets)


def wrap_tensorstore(store: ts.TensorStore) -> TensorStoreSource:
    """as_source() of a user's TensorStore: keep it as given (its own Context), zero-origin."""
    writable = bool(getattr(store, "writable", False))
    if store.ndim and any(int(o) != 0 for o in store.domain.origin):
        store = store[ts.d[:].translate_to[0]]
    return TensorStoreSource(store, writable=writable)
