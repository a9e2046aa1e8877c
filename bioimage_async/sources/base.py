"""The Source abstraction: an async, array-like handle on a volume with a reopenable spec.

Data flows through two coroutines, ``read(index)`` and ``write(index, value)``. Subclasses
implement ``_read(roi)`` / ``_write(roi, value)`` on a fully normalised region; index rules,
shape checks, dtype casts and the read-only guard live here once, so no backend can drift.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorstore as ts

from .._loop import run_sync
from ..errors import InvalidArgumentError, NotSerializableError, ReadOnlySourceError
from ..kernels.casting import cast_checked
from .indexing import NormalizedIndex, Roi, normalize_index


@dataclass(frozen=True)
class SourceSpec:
    """Plain-JSON description from which any process can reopen a source.

    ``kind`` names the opener (``"tensorstore"``, ``"hdf5"``, ``"view"``, ...); ``params`` is
    JSON-serializable and may nest the specs of wrapped sources.
    """

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": json.loads(json.dumps(self.params))}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourceSpec:
        if not isinstance(data, dict) or "kind" not in data:
            raise InvalidArgumentError(
                f"a source spec is a dict with a 'kind' key (from SourceSpec.to_json()); "
                f"got {data!r:.200}"
            )
        return cls(kind=str(data["kind"]), params=dict(data.get("params", {})))


_SOURCE_KINDS: dict[str, type[Source]] = {}


def source_class(kind: str) -> type[Source] | None:
    """The Source subclass that reopens specs of ``kind`` (registered by defining it)."""
    return _SOURCE_KINDS.get(kind)


class Source(ABC):
    """An async, array-like handle on a (possibly huge) volume.

    Reading never loads more than the requested region. Index with numpy basic indexing: ints
    (the axis is dropped), slices with step 1, and one Ellipsis.

    A subclass that sets ``kind`` and a ``from_params`` classmethod is reopened by
    ``ba.from_spec`` from its ``to_spec()``: defining the class registers the kind.
    """

    #: The registry key of this source's spec (see ``from_spec``).
    kind: str = ""
    #: The format it was opened as ("zarr3", "n5", ...), where the source knows it.
    format: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind and "from_params" in cls.__dict__:
            _SOURCE_KINDS[kind] = cls

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> Source:
        """Reopen from ``to_spec().params`` (subclasses with a ``kind`` implement it)."""
        raise NotSerializableError(f"{cls.__name__} cannot be reopened from a spec")

    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]: ...

    @property
    @abstractmethod
    def dtype(self) -> np.dtype: ...

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def chunks(self) -> tuple[int, ...] | None:
        """Storage chunk shape (the unit of decoding), or None for unchunked data."""
        return None

    @property
    def shards(self) -> tuple[int, ...] | None:
        """Shard shape (the unit of a file write) where the format shards, else None."""
        return None

    @property
    def write_granularity(self) -> tuple[int, ...] | None:
        """The region two concurrent writers must never share: shards, else chunks."""
        return self.shards or self.chunks

    @property
    def writable(self) -> bool:
        return False

    @property
    def read_only_reason(self) -> str:
        """Why writes are refused, for the error message."""
        return f"{self.describe()} is read-only"

    @property
    def reopenable(self) -> bool:
        """Whether another process can reopen this source from its spec."""
        try:
            self.to_spec()
        except NotSerializableError:
            return False
        return True

    @property
    def voxel_size(self) -> tuple[float, ...] | None:
        """The physical size of a voxel along each axis (in ``unit``), where the format
        records it (OME-Zarr, precomputed, n5, ImageJ TIFF, MRC, NIfTI, HDF5
        ``element_size_um``); None where it does not."""
        return None

    @property
    def unit(self) -> str | None:
        """The unit of ``voxel_size`` (OME-NGFF's names: 'nanometer', 'micrometer', ...)."""
        return None

    @property
    def axes(self) -> str | None:
        """The axes' names as letters of "tczyx" where the file records them (OME-Zarr axes,
        zarr v3 ``dimension_names``, zarr v2 ``_ARRAY_DIMENSIONS``, n5 ``axes``, HDF5
        ``axistags``, TIFF axis letters, NIfTI), else None."""
        return None

    @property
    def translation(self) -> tuple[float, ...] | None:
        """Where voxel 0 sits in physical space (in ``unit``), where the format records it
        (OME-Zarr), else None."""
        return None

    @property
    def grid_offset(self) -> tuple[int, ...]:
        """Where the write grid's borders lie in this source's coordinates: at
        ``grid_offset + k * write_granularity`` on each axis (non-zero for a region of a larger
        array whose chunk grid it does not start on)."""
        return (0,) * self.ndim

    @property
    def serializes_writes(self) -> bool:
        """Whether this handle applies writes one at a time (so in-process writers cannot race)."""
        return False

    @property
    def multiprocess_writable(self) -> bool:
        """Whether several processes may write disjoint chunks of it at once (distributed runs).

        True for chunked stores (zarr, n5, precomputed); False for single-writer files (HDF5)
        and anything living in one process's memory.
        """
        return False

    def writer_lock_path(self) -> str | None:
        """Where a run writing into this source records itself (a local file path), so that a
        second run into the same output is refused while the first lives; None where no such
        record can be kept (memory, object storage)."""
        return None

    def tensorstore(self) -> ts.TensorStore | None:
        """A tensorstore handle over exactly this source's domain (zero origin, this axis
        order), where the source is backed by one; None otherwise. Lets tensorstore copy and
        downsample chunk to chunk without numpy round trips."""
        return None

    async def with_read_cache(self, nbytes: int) -> Source:
        """A handle on the same data for reading whose decoded-chunk cache holds ``nbytes``
        (so blocks with halos decode the chunks they share once); this handle where the
        source has no such cache."""
        return self

    def describe(self) -> str:
        """A short human-readable name, used in error messages."""
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype})"

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.describe()} shape={self.shape} dtype={self.dtype} "
            f"chunks={self.chunks} writable={self.writable}>"
        )

    # ---- the spec -------------------------------------------------------------------------
    def to_spec(self) -> SourceSpec:
        raise NotSerializableError(
            f"{self.describe()} has no reopenable spec (it lives in this process's memory). "
            "Write it to a file-backed format first, e.g. "
            "await ba.create_source('x.zarr', shape=..., dtype=..., chunks=...)."
        )

    # ---- I/O ------------------------------------------------------------------------------
    def normalize(self, index: Any) -> NormalizedIndex:
        return normalize_index(index, self.shape)

    async def read(self, index: Any = ...) -> np.ndarray:
        """Read ``index`` (numpy basic indexing) into a new numpy array."""
        normalized = self.normalize(index)
        data = await self.read_roi(normalized.roi)
        if normalized.squeeze:
            data = data.reshape(normalized.result_shape)
        return data

    async def read_roi(self, roi: Roi) -> np.ndarray:
        """Read a normalised region (one in-bounds slice per axis); the pipeline's fast path."""
        if any(s.stop <= s.start for s in roi):
            return np.empty(tuple(s.stop - s.start for s in roi), dtype=self.dtype)
        return await self._read(roi)

    async def read_roi_into(self, roi: Roi, out: np.ndarray) -> None:
        """Read a normalised region into ``out`` (the region's shape, this dtype). Sources
        that can decode straight into it (tensorstore) spare a new array per read."""
        out[...] = await self.read_roi(roi)

    async def write(self, index: Any, value: Any, *, casting: str = "checked") -> None:
        """Write ``value`` into ``index``.

        The value meets this source's dtype through checked casting: a value it cannot hold
        (out of range, NaN/inf into integers) raises CastingError; ``casting="clip"`` clips and
        ``casting="unsafe"`` is numpy's wrapping ``astype``.
        """
        normalized = self.normalize(index)
        if not self.writable:  # refuse before looking at the value: the real problem first
            await self.write_roi(normalized.roi, np.empty(0, self.dtype))
        await self.write_roi(normalized.roi, self._conform(value, normalized), casting=casting)

    async def write_roi(self, roi: Roi, value: np.ndarray, *, casting: str = "checked") -> None:
        """Write an array of exactly the region's shape into a normalised region (checked
        casting to this source's dtype, see ``write``)."""
        if not self.writable:
            raise ReadOnlySourceError(
                f"cannot write: {self.read_only_reason}. To keep a modified copy, write into a "
                "new array from ba.create_source() (zarr, zarr3, n5, precomputed or hdf5)."
            )
        if any(s.stop <= s.start for s in roi):
            return
        if value.dtype != self.dtype:
            where = "region [" + ", ".join(f"{s.start}:{s.stop}" for s in roi) + "]"
            value = cast_checked(value, self.dtype, casting, f"{where} of {self.describe()}")
        await self._write(roi, value)

    def _conform(self, value: Any, normalized: NormalizedIndex) -> np.ndarray:
        array = np.asarray(value)
        if array.shape != normalized.result_shape and array.shape != normalized.shape:
            if array.ndim == 0:
                array = np.broadcast_to(array, normalized.shape)
            else:
                raise InvalidArgumentError(
                    f"cannot write a value of shape {array.shape} into a region of shape "
                    f"{normalized.result_shape} of {self.describe()}; pass an array of exactly "
                    "the region's shape (or a scalar)"
                )
        return array.reshape(normalized.shape)

    def mapped_region(self, roi: Roi) -> np.ndarray | None:
        """A zero-copy view of a normalised region for memory-mapped sources, else None.

        Touching it may page in from disk: use it from a worker thread, never the event loop.
        """
        return None

    async def copy_region_from(self, roi: Roi, source: Source, source_roi: Roi) -> bool:
        """Copy ``source[source_roi]`` into ``self[roi]`` without a numpy round trip, if this
        pair of sources can (tensorstore to tensorstore); False means: use read + write."""
        return False

    @abstractmethod
    async def _read(self, roi: Roi) -> np.ndarray: ...

    async def _write(self, roi: Roi, value: np.ndarray) -> None:
        raise ReadOnlySourceError(f"cannot write: {self.read_only_reason}")

    # ---- blocking conveniences and views ----------------------------------------------------
    def __getitem__(self, index: Any) -> np.ndarray:
        """Blocking read; inside async code use ``await source.read(index)``."""
        return run_sync(self.read(index))

    def __setitem__(self, index: Any, value: Any) -> None:
        """Blocking write (checked casting); inside async code ``await source.write(...)``."""
        run_sync(self.write(index, value))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self[...]
        return data if dtype is None else data.astype(dtype)

    def view(self, index: Any) -> Source:
        """A lazy sub-region of this source; reads and writes stay inside it."""
        from .view import ViewSource

        return ViewSource(self, self.normalize(index))

    def transpose(self, *order: int) -> Source:
        """A lazy read-only view with the axes reordered as ``numpy.transpose(order)`` (no
        order: reversed), e.g. an ImageJ ZCYX hyperstack as CZYX for an OME-Zarr pyramid."""
        from .transposed import TransposedSource

        if len(order) == 1 and isinstance(order[0], (tuple, list)):
            order = tuple(order[0])
        return TransposedSource(self, order or tuple(reversed(range(self.ndim))))
