"""CloudVolume (neuroglancer precomputed) layers as writable (z, y, x) sources.

CloudVolume addresses a layer in absolute (x, y, z, channel) voxel coordinates starting at the
layer's ``voxel_offset``. A CloudVolumeSource presents a box of it, ``offset`` and ``size`` in
absolute XYZ, as a zero-origin (z, y, x) array: local index ``(z, y, x)`` is absolute voxel
``offset + (x, y, z)``. Only single-channel layers are presented; for multi-channel layers use
``open_source("precomputed://...")``, which presents (c, z, y, x) through tensorstore.

CloudVolume blocks and one handle is not safe to share between threads, so every read and write
runs in the bounded blocking thread pool on a handle of that worker thread's own, reopened from
the recorded open parameters (the parameters are also the spec another process reopens).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..context import run_blocking
from ..errors import (
    FormatNotSupportedError,
    InvalidArgumentError,
    InvalidIndexError,
    MissingDependencyError,
    NotSerializableError,
    SourceError,
    SourceNotFoundError,
)
from .base import SourceSpec
from .indexing import Roi
from .physical import positive_sizes, voxel_centre
from .threaded import ThreadedSource

logger = logging.getLogger("bioimage_async")

XYZ = tuple[int, int, int]


def _import_cloudvolume() -> Any:
    try:
        import cloudvolume
    except ImportError:
        raise MissingDependencyError("cloud-volume", "cloudvolume", "open_cloudvolume") from None
    return cloudvolume


def _over_http(cloudpath: str) -> bool:
    return cloudpath.removeprefix("precomputed://").startswith(("http://", "https://"))


def _normalize_cloudpath(cloudpath: str | os.PathLike[str]) -> str:
    """A cloudpath another process can reopen: local paths become absolute ``file://`` paths."""
    path = os.fspath(cloudpath)
    bare = path[len("precomputed://") :] if path.startswith("precomputed://") else path
    if "://" not in bare:
        return "file://" + os.path.abspath(os.path.expanduser(bare))
    return path


def _xyz(value: Sequence[int], name: str) -> XYZ:
    values = tuple(int(v) for v in value)
    if len(values) != 3:
        raise InvalidArgumentError(
            f"{name} must have three entries (x, y, z), got {tuple(value)!r}"
        )
    return values  # type: ignore[return-value]


class CloudVolumeSource(ThreadedSource):
    """A box of a single-channel CloudVolume layer as a writable (z, y, x) source.

    ``offset`` and ``size`` are absolute XYZ voxel coordinates at the opened mip; indices are
    local to ``offset``. ``chunks`` is the layer's chunk size in (z, y, x), ``shards`` the box
    of one shard file of a sharded layer (as tensorstore lays it out), and ``grid_offset`` says
    where that grid (anchored at the layer's ``voxel_offset``) starts in local coordinates, so
    that blocks of concurrent writers can be aligned to the layer's real write grid.
    """

    kind = "cloudvolume"
    serialize_calls = False  # each worker thread uses its own handle

    def __init__(
        self,
        volume: Any,
        *,
        open_params: dict[str, Any],
        offset: Sequence[int] | None = None,
        size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        channels = int(volume.num_channels)
        if channels != 1:
            raise FormatNotSupportedError(
                f"the CloudVolume layer {volume.cloudpath} has {channels} channels; "
                "open_cloudvolume presents single-channel layers only. Open it with "
                f"ba.open_source('precomputed://{volume.cloudpath}'), which presents "
                "(c, z, y, x), and take a view of one channel"
            )
        self.open_params = dict(open_params)
        self.cloudpath: str = self.open_params["cloudpath"]
        self._volume = volume
        self._local = threading.local()
        self._local.volume = volume  # the opening thread may reuse its handle
        voxel_offset = _xyz(volume.voxel_offset, "voxel_offset")
        volume_size = _xyz(volume.volume_size, "volume_size")
        layer_end = tuple(o + s for o, s in zip(voxel_offset, volume_size))
        self.voxel_offset: XYZ = voxel_offset
        self.xyz_offset: XYZ = voxel_offset if offset is None else _xyz(offset, "offset")
        if size is None:
            size = tuple(max(e - o, 0) for e, o in zip(layer_end, self.xyz_offset))
        self.xyz_size: XYZ = _xyz(size, "size")
        if any(s < 0 for s in self.xyz_size):
            raise InvalidArgumentError(f"size must not be negative, got {self.xyz_size}")
        end = tuple(o + s for o, s in zip(self.xyz_offset, self.xyz_size))
        bounded = bool(self.open_params.get("bounded", True))
        if bounded and (
            any(o < lo for o, lo in zip(self.xyz_offset, voxel_offset))
            or any(e > hi for e, hi in zip(end, layer_end))
        ):
            raise InvalidIndexError(
                f"the box offset={self.xyz_offset}, size={self.xyz_size} (XYZ) reaches outside the "
                f"layer {self.cloudpath} at mip {self.open_params.get('mip', 0)}, whose bounds "
                f"are {voxel_offset} to {layer_end} (XYZ, end exclusive); choose a box inside "
                "them or open with bounded=False"
            )
        self._dtype = np.dtype(volume.dtype)
        self._voxel_size = positive_sizes(tuple(reversed([float(r) for r in volume.resolution])))
        chunk_xyz = _xyz(volume.chunk_size, "chunk_size")
        self._chunks = tuple(reversed(chunk_xyz))
        self._shards: tuple[int, ...] | None = None
        self._unknown_shards: str | None = None
        if volume.scale.get("sharding"):
            try:
                shard_xyz = _shard_shape(self.cloudpath, str(volume.key))
            except Exception as err:  # tensorstore cannot open this kind of path
                self._unknown_shards = f"{type(err).__name__}: {err}"
            else:
                if shard_xyz != chunk_xyz:
                    self._shards = tuple(reversed(shard_xyz))
        # The chunk (and shard) grid is anchored at the layer's voxel offset.
        granularity = self.write_granularity or self._chunks
        self._grid_offset = tuple(
            (v - o) % g
            for v, o, g in zip(reversed(voxel_offset), reversed(self.xyz_offset), granularity)
        )

    # ---- metadata --------------------------------------------------------------------------
    @property
    def volume(self) -> Any:
        """The CloudVolume handle opened in the calling thread (for metadata; I/O uses its own)."""
        return self._volume

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(reversed(self.xyz_size))

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def voxel_size(self) -> tuple[float, ...] | None:
        """The layer's resolution at this mip (nm; x y z in the info), in (z, y, x)."""
        return self._voxel_size

    @property
    def unit(self) -> str | None:
        return "nanometer" if self._voxel_size is not None else None

    @property
    def axes(self) -> str | None:
        """A single-channel layer's axes, as the tensorstore path names them (a converted
        layer then records them, as one read through tensorstore does)."""
        return "zyx"

    @property
    def translation(self) -> tuple[float, ...] | None:
        """Where the box's first voxel sits (nm; see ``voxel_centre``), so a pyramid of it
        lines up with the layer."""
        base = positive_sizes([float(r) for r in self._volume.meta.resolution(0)])
        if self._voxel_size is None or base is None:
            return None
        xyz = voxel_centre(self.xyz_offset, tuple(reversed(self._voxel_size)), base)
        return (0.0,) * (self.ndim - 3) + tuple(reversed(xyz))

    @property
    def chunks(self) -> tuple[int, ...]:
        return self._chunks

    @property
    def shards(self) -> tuple[int, ...] | None:
        """For sharded layers, the (z, y, x) box one shard file holds; else None."""
        return self._shards

    @property
    def grid_offset(self) -> tuple[int, ...]:
        """Where the layer's write grid (shards, else chunks) starts in local (z, y, x).

        ``(voxel_offset - offset) mod write_granularity``: write-grid borders lie at local index
        ``grid_offset + k * write_granularity`` on each axis.
        """
        return self._grid_offset

    @property
    def writable(self) -> bool:
        return self._unknown_shards is None and not self.open_params.get("read_only", False)

    @property
    def multiprocess_writable(self) -> bool:
        return True  # chunk (shard) files: disjoint blocks aligned to them never collide

    @property
    def read_only_reason(self) -> str:
        if self.open_params.get("read_only", False):
            return f"{self.describe()} was opened read-only (mode='r'); reopen it with mode='r+'"
        return (
            f"{self.describe()} is sharded and its shard shape could not be determined "
            f"({self._unknown_shards}), so concurrent writers could share a shard"
        )

    def describe(self) -> str:
        mip = self.open_params.get("mip", 0)
        return f"CloudVolume layer {self.cloudpath} (mip {mip}, XYZ box {self.xyz_offset}+{self.xyz_size})"

    # ---- I/O (in worker threads) ------------------------------------------------------------
    def _thread_volume(self) -> Any:
        volume = getattr(self._local, "volume", None)
        if volume is None:
            cloudvolume = _import_cloudvolume()
            volume = cloudvolume.CloudVolume(**_cloudvolume_kwargs(self.open_params))
            self._local.volume = volume
        return volume

    def _absolute(self, roi: Roi) -> tuple[slice, slice, slice]:
        z, y, x = roi
        ox, oy, oz = self.xyz_offset
        return (
            slice(ox + x.start, ox + x.stop),
            slice(oy + y.start, oy + y.stop),
            slice(oz + z.start, oz + z.stop),
        )

    def read_blocking(self, roi: Roi) -> np.ndarray:
        cloudvolume = _import_cloudvolume()
        try:
            cutout = self._thread_volume()[self._absolute(roi)]
        except cloudvolume.exceptions.EmptyVolumeException as err:
            if _over_http(self.cloudpath):  # cloud-files takes a 403 for a missing file
                raise SourceError(
                    f"cannot read {self.describe()}: chunks in the region {roi} were not "
                    f"served ({err}): never written, or forbidden (over http(s) cloud-files "
                    "reports a 403 as a missing file). Check that the layer is public; "
                    "ba.open_source('precomputed://<url>') tells the two apart"
                ) from err
            raise SourceError(
                f"cannot read {self.describe()}: chunks in the region {roi} were never written "
                f"({err}). Open it with fill_missing=True to read missing chunks as zeros"
            ) from err
        data = np.asarray(cutout).view(np.ndarray)[..., 0]  # (x, y, z, 1) -> (x, y, z)
        return np.ascontiguousarray(data.transpose(2, 1, 0))

    def write_blocking(self, roi: Roi, value: np.ndarray) -> None:
        cloudvolume = _import_cloudvolume()
        xyz = value.transpose(2, 1, 0)[..., np.newaxis]  # (z, y, x) -> (x, y, z, 1), no copy
        try:
            self._thread_volume()[self._absolute(roi)] = xyz
        except cloudvolume.exceptions.EmptyVolumeException as err:
            raise SourceError(
                f"cannot write the region {roi} of {self.describe()}: it covers part of a chunk "
                f"that was never written, which must be read to merge the write ({err}). Open "
                "it with fill_missing=True, or align the writes to the chunk grid"
            ) from err

    # ---- spec --------------------------------------------------------------------------------
    def to_spec(self) -> SourceSpec:
        extra = self.open_params.get("kwargs", {})
        if "secrets" in extra:
            raise NotSerializableError(
                f"{self.describe()} was opened with secrets=, which a spec would write into run "
                "folders in plain text; put the credentials in CloudVolume's secrets files "
                "(~/.cloudvolume/secrets) on every node instead"
            )
        params = dict(self.open_params)
        params["offset"] = list(self.xyz_offset)
        params["size"] = list(self.xyz_size)
        try:
            json.dumps(params)
        except TypeError as err:
            raise NotSerializableError(
                f"{self.describe()} has open parameters that are not plain JSON ({err}); pass "
                "only JSON values (numbers, strings, lists, dicts) to open_cloudvolume"
            ) from err
        return SourceSpec(self.kind, params)

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> CloudVolumeSource:
        params = dict(params)
        offset = params.pop("offset", None)
        size = params.pop("size", None)
        extra = params.pop("kwargs", {})
        cloudpath = params.pop("cloudpath")
        return await run_blocking(
            open_cloudvolume, cloudpath, offset=offset, size=size, **params, **extra
        )


def _shard_shape(cloudpath: str, key: str) -> XYZ:
    """The XYZ voxel box of one shard of a sharded scale, as tensorstore lays it out."""
    import tensorstore as ts

    from ..context import tensorstore_context
    from .location import Location

    spec = {
        "driver": "neuroglancer_precomputed",
        "kvstore": Location.parse(cloudpath.removeprefix("precomputed://")).kvstore(),
        "scale_metadata": {"key": key},
    }
    store = ts.open(spec, read=True, open=True, context=tensorstore_context()).result()
    shape = store.chunk_layout.write_chunk.shape
    if shape is None or any(n is None for n in shape[:3]):
        raise SourceError(f"tensorstore reports no shard shape for {cloudpath} ({key})")
    return _xyz([int(n) for n in shape[:3] if n is not None], "shard shape")


def _cloudvolume_kwargs(open_params: dict[str, Any]) -> dict[str, Any]:
    kwargs = {k: v for k, v in open_params.items() if k not in ("kwargs", "read_only")}
    kwargs.update(open_params.get("kwargs", {}))
    kwargs.setdefault("progress", False)
    return kwargs


def open_cloudvolume(
    cloudpath: str | os.PathLike[str],
    mip: int = 0,
    fill_missing: bool = False,
    bounded: bool = True,
    cache: bool = False,
    non_aligned_writes: bool = True,
    offset: Sequence[int] | None = None,
    size: Sequence[int] | None = None,
    read_only: bool = False,
    **kwargs: Any,
) -> CloudVolumeSource:
    """Open a single-channel CloudVolume layer as a writable (z, y, x) source.

    A plain blocking function, as in bioimage-py (not a coroutine): opening reads the layer's
    ``info``; in async code call it through ``asyncio.to_thread``. Reads and writes then run in
    the bounded thread pool, one CloudVolume handle per worker thread.

    Args:
        cloudpath: a CloudVolume path (``gs://``, ``s3://``, ``file://``, ``precomputed://...``)
            or a local folder holding an ``info`` file.
        mip: the resolution level to open.
        fill_missing: read chunks that were never written as zeros instead of failing. A fresh
            layer written by blocks not aligned to its chunk grid needs it (the partial chunks
            are read, merged and rewritten). Over http(s) cloud-files reports a forbidden
            chunk (403) as missing, so it reads as zeros too (a warning says so).
        bounded: refuse boxes and reads outside the layer's bounds.
        cache: CloudVolume's local disk cache.
        non_aligned_writes: allow writes not aligned to the chunk grid (merged read-modify-write;
            blocks of concurrent writers must still never share a chunk).
        offset: absolute XYZ origin of the box to present; default the layer's ``voxel_offset``.
        size: XYZ size of the box; default up to the end of the layer.
        read_only: refuse writes through this source.
        kwargs: further CloudVolume arguments (JSON values only; they are recorded in the spec).
            On ``file://`` layers CloudVolume gzips the chunks it writes into ``*.gz`` files by
            default, which tensorstore (``open_source("precomputed://...")``) does not read:
            pass ``compress=False`` to keep such a layer readable by both.

    Returns:
        A CloudVolumeSource of shape ``size[::-1]`` (z, y, x).
    """
    cloudvolume = _import_cloudvolume()
    open_params: dict[str, Any] = {
        "cloudpath": _normalize_cloudpath(cloudpath),
        "mip": mip,
        "fill_missing": bool(fill_missing),
        "bounded": bool(bounded),
        "cache": cache,
        "non_aligned_writes": bool(non_aligned_writes),
    }
    if read_only:
        open_params["read_only"] = True
    if fill_missing and _over_http(open_params["cloudpath"]):
        logger.warning(
            "%s: over http(s) cloud-volume (cloud-files) cannot tell a chunk it may not read "
            "(403 Forbidden) from one never written, so with fill_missing=True forbidden chunks "
            "read as zeros. ba.open_source('precomputed://<url>') reads through tensorstore, "
            "which fails on a forbidden chunk and reads only missing ones as zeros",
            open_params["cloudpath"],
        )
    kwargs.pop("progress", None)
    if kwargs:
        open_params["kwargs"] = dict(kwargs)
    try:
        volume = cloudvolume.CloudVolume(**_cloudvolume_kwargs(open_params))
    except cloudvolume.exceptions.InfoUnavailableError as err:
        raise SourceNotFoundError(
            f"no CloudVolume layer at {open_params['cloudpath']!r}: it has no readable info file"
        ) from err
    return CloudVolumeSource(volume, open_params=open_params, offset=offset, size=size)
