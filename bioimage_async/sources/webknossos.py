"""WEBKNOSSOS layers (local datasets or remote ones) as read-only (z, y, x) sources.

webknossos addresses every magnification in Mag(1) (full-resolution) XYZ coordinates. A
WebKnossosSource presents a box of one magnification: ``offset`` and ``size`` are Mag(1) XYZ, as
in webknossos bounding boxes, and the presented shape is at the opened magnification,
``ceil(size / mag)`` in (z, y, x). Local index ``(z, y, x)`` is the voxel at Mag(1) position
``offset + (x, y, z) * mag``, so ``offset`` must be a multiple of the mag.

All reads go through webknossos' own ``MagView.read`` (one code path for wkw, zarr and zarr3,
local or remote) in the bounded blocking thread pool, on a dataset handle of each worker
thread's own, reopened from the recorded parameters (which are also the spec).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..context import run_blocking
from ..errors import (
    FormatNotSupportedError,
    InternalPathNotFoundError,
    InvalidArgumentError,
    MissingDependencyError,
    SourceError,
    SourceNotFoundError,
)
from .base import SourceSpec
from .indexing import Roi
from .physical import normalize_unit, positive_sizes, voxel_centre
from .threaded import ThreadedSource

XYZ = tuple[int, int, int]


_webknossos: Any = None


def _import_webknossos() -> Any:
    """The webknossos module, imported once (the warnings filter is process-global state)."""
    global _webknossos
    if _webknossos is None:
        try:
            with warnings.catch_warnings():
                # webknossos warns at import about optional image readers (czi, ims) it lacks.
                warnings.simplefilter("ignore")
                import webknossos
        except ImportError:
            raise MissingDependencyError("webknossos", "webknossos", "open_webknossos") from None
        _webknossos = webknossos
    return _webknossos


def _is_local(dataset_name_or_url: str, organization_id: str | None) -> bool:
    """A path on disk unless it is a URL or a dataset name with an organization."""
    if dataset_name_or_url.startswith("file://"):
        return True
    return "://" not in dataset_name_or_url and organization_id is None


def _xyz(value: Sequence[int], name: str) -> XYZ:
    values = tuple(int(v) for v in value)
    if len(values) != 3:
        raise InvalidArgumentError(
            f"{name} must have three entries (x, y, z), got {tuple(value)!r}"
        )
    return values  # type: ignore[return-value]


def _open_mag_view(params: dict[str, Any]) -> Any:
    """Open the dataset and return the MagView that ``params`` name (blocking)."""
    wk = _import_webknossos()
    where = params["dataset_name_or_url"]
    if _is_local(where, params.get("organization_id")):
        path = where[len("file://") :] if where.startswith("file://") else where
        if not (Path(path) / "datasource-properties.json").is_file():
            raise SourceNotFoundError(
                f"no webknossos dataset at {path!r} (no datasource-properties.json there); "
                "pass a dataset folder, a URL, or a dataset name with organization_id="
            )
        dataset = wk.Dataset.open(path, read_only=True)
    else:
        dataset = wk.Dataset.open_remote(
            where, organization_id=params.get("organization_id"), read_only=True
        )
    layers = dataset.layers
    layer_name = params.get("layer_name") or ""
    if not layer_name:
        if len(layers) != 1:
            names = ", ".join(repr(n) for n in sorted(layers)) or "none"
            raise SourceError(
                f"the webknossos dataset {where} has {len(layers)} layers ({names}); "
                "pass layer_name= to choose one"
            )
        layer_name = next(iter(layers))
    if layer_name not in layers:
        raise InternalPathNotFoundError(where, layer_name, list(layers))
    layer = layers[layer_name]
    mag = wk.Mag(params["mag"])
    if mag not in layer.mags:
        raise InternalPathNotFoundError(
            where,
            f"{layer_name}/{mag.to_layer_name()}",
            [f"{layer_name}/{m.to_layer_name()}" for m in layer.mags],
        )
    return layer.get_mag(mag)


def _dataset_voxel_size(layer: Any) -> tuple[tuple[float, ...] | None, str | None]:
    """The dataset's Mag(1) voxel size (XYZ) and unit, where it records one."""
    try:
        with_unit = layer.dataset.voxel_size_with_unit
        sizes = positive_sizes(tuple(with_unit.factor))
        unit = normalize_unit(getattr(with_unit.unit, "value", with_unit.unit))
    except (AttributeError, TypeError, ValueError):
        return None, None
    return (sizes, unit) if sizes is not None and len(sizes) == 3 else (None, None)


class WebKnossosSource(ThreadedSource):
    """A box of one magnification of a single-channel webknossos layer, read-only, (z, y, x).

    ``offset`` and ``size`` are Mag(1) XYZ; ``shape`` is ``ceil(size / mag)`` reversed to
    (z, y, x). Areas outside the layer's data read as zeros, as in webknossos.
    """

    kind = "webknossos"
    serialize_calls = False  # each worker thread uses its own dataset handle

    def __init__(
        self,
        mag_view: Any,
        *,
        open_params: dict[str, Any],
        offset: Sequence[int] | None = None,
        size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.open_params = dict(open_params)
        where = self.open_params["dataset_name_or_url"]
        layer = mag_view.layer
        channels = int(layer.num_channels)
        if channels != 1:
            raise FormatNotSupportedError(
                f"the webknossos layer {layer.name!r} of {where} has {channels} channels; "
                "open_webknossos presents single-channel layers only"
            )
        bbox = mag_view.bounding_box
        if tuple(getattr(bbox, "axes", ("x", "y", "z"))) != ("x", "y", "z"):
            raise FormatNotSupportedError(
                f"the webknossos layer {layer.name!r} of {where} has the axes {bbox.axes}; "
                "open_webknossos presents 3D (x, y, z) layers only"
            )
        self.open_params["layer_name"] = layer.name
        self._mag_view = mag_view
        self._local = threading.local()
        self._local.mag_view = mag_view
        self.mag: XYZ = _xyz(mag_view.mag.to_list(), "mag")
        self.xyz_offset: XYZ = _xyz(bbox.topleft if offset is None else offset, "offset")
        if size is None:
            size = tuple(max(e - o, 0) for e, o in zip(bbox.bottomright, self.xyz_offset))
        self.xyz_size: XYZ = _xyz(size, "size")
        if any(s < 0 for s in self.xyz_size):
            raise InvalidArgumentError(f"size must not be negative, got {self.xyz_size}")
        if any(o % m for o, m in zip(self.xyz_offset, self.mag)):
            raise InvalidArgumentError(
                f"offset {self.xyz_offset} (Mag(1) XYZ) is not a multiple of the mag "
                f"{self.mag_name}; at this magnification a box must start on a voxel of it, "
                f"e.g. offset={tuple(o - o % m for o, m in zip(self.xyz_offset, self.mag))}"
            )
        self._size_at_mag = tuple(-(-s // m) for s, m in zip(self.xyz_size, self.mag))
        info = mag_view.info
        self._dtype = np.dtype(info.voxel_type)
        chunk_xyz = _xyz(info.chunk_shape, "chunk_shape")
        shard = getattr(info, "shard_shape", None)
        shard_xyz = None if shard is None else _xyz(shard, "shard_shape")
        self._chunks = tuple(reversed(chunk_xyz))
        self._shards = (
            None if shard_xyz is None or shard_xyz == chunk_xyz else tuple(reversed(shard_xyz))
        )
        self._physical = _dataset_voxel_size(layer)
        # Chunk (and shard) grids are anchored at the origin of each magnification.
        granularity = self.write_granularity or self._chunks
        origin_zyx = tuple(o // m for o, m in zip(reversed(self.xyz_offset), reversed(self.mag)))
        self._grid_offset = tuple((-o) % g for o, g in zip(origin_zyx, granularity))

    # ---- metadata --------------------------------------------------------------------------
    @property
    def voxel_size(self) -> tuple[float, ...] | None:
        """The dataset's voxel size times this magnification, in (z, y, x)."""
        sizes = self._physical[0]
        if sizes is None:
            return None
        return tuple(float(s) * m for s, m in zip(reversed(sizes), reversed(self.mag)))

    @property
    def unit(self) -> str | None:
        return self._physical[1]

    @property
    def translation(self) -> tuple[float, ...] | None:
        """Where the box's first voxel sits (its centre, as OME-Zarr places voxels): at Mag(k)
        it covers k Mag(1) voxels from the offset, so its centre is (k - 1) / 2 of them on."""
        sizes = self._physical[0]
        if sizes is None:
            return None
        level = [o // m for o, m in zip(self.xyz_offset, self.mag)]  # the offset is Mag(1)
        xyz = voxel_centre(level, [s * m for s, m in zip(sizes, self.mag)], sizes)
        return tuple(reversed(xyz))

    @property
    def mag_view(self) -> Any:
        """The webknossos MagView opened in the calling thread."""
        return self._mag_view

    @property
    def mag_name(self) -> str:
        return str(self.open_params["mag"])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(reversed(self._size_at_mag))

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        return self._chunks

    @property
    def shards(self) -> tuple[int, ...] | None:
        return self._shards

    @property
    def grid_offset(self) -> tuple[int, ...]:
        """Where the storage grid (shards, else chunks) starts in local (z, y, x) coordinates."""
        return self._grid_offset

    @property
    def read_only_reason(self) -> str:
        return f"{self.describe()} is read-only (webknossos sources are never written)"

    def describe(self) -> str:
        return (
            f"webknossos layer {self.open_params['layer_name']!r} of "
            f"{self.open_params['dataset_name_or_url']} at mag {self.mag_name}"
        )

    # ---- I/O (in worker threads) ------------------------------------------------------------
    def _thread_mag_view(self) -> Any:
        mag_view = getattr(self._local, "mag_view", None)
        if mag_view is None:
            mag_view = _open_mag_view(self.open_params)
            self._local.mag_view = mag_view
        return mag_view

    def read_blocking(self, roi: Roi) -> np.ndarray:
        wk = _import_webknossos()
        start = tuple(s.start for s in reversed(roi))  # local XYZ at this mag
        stop = tuple(s.stop for s in reversed(roi))
        topleft = tuple(o + a * m for o, a, m in zip(self.xyz_offset, start, self.mag))
        size = tuple((b - a) * m for a, b, m in zip(start, stop, self.mag))
        data = self._thread_mag_view().read(
            absolute_bounding_box=wk.BoundingBox(topleft, size)
        )  # (c, x, y, z) at this magnification
        expected = tuple(b - a for a, b in zip(start, stop))
        if data.shape[1:] != expected:
            raise SourceError(
                f"webknossos returned XYZ shape {data.shape[1:]} for {self.describe()}, "
                f"expected {expected} (Mag(1) box {topleft}+{size})"
            )
        return np.ascontiguousarray(data[0].transpose(2, 1, 0))

    # ---- spec --------------------------------------------------------------------------------
    def to_spec(self) -> SourceSpec:
        params = dict(self.open_params)
        params["offset"] = list(self.xyz_offset)
        params["size"] = list(self.xyz_size)
        return SourceSpec(self.kind, params)

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> WebKnossosSource:
        return await run_blocking(
            open_webknossos,
            params["dataset_name_or_url"],
            organization_id=params.get("organization_id"),
            layer_name=params.get("layer_name") or "",
            mag=params.get("mag", 1),
            offset=params.get("offset"),
            size=params.get("size"),
        )


def open_webknossos(
    dataset_name_or_url: str | os.PathLike[str],
    organization_id: str | None = None,
    layer_name: str = "",
    mag: int | str | Sequence[int] = 1,
    offset: Sequence[int] | None = None,
    size: Sequence[int] | None = None,
) -> WebKnossosSource:
    """Open one magnification of a single-channel webknossos layer as a read-only source.

    A plain blocking function, as in bioimage-py (not a coroutine): opening reads the
    dataset's properties (remote datasets over HTTP); in async code call it through
    ``asyncio.to_thread``. Reads then run in the bounded thread pool.

    Args:
        dataset_name_or_url: a local dataset folder (offline), a dataset URL, or a dataset name
            together with ``organization_id`` (remote access uses webknossos' own context and
            token, e.g. the ``WK_TOKEN`` environment variable).
        organization_id: the organization of a dataset opened by name.
        layer_name: the layer; may be left empty when the dataset has exactly one layer.
        mag: the magnification: an int (isotropic), ``"2-2-1"`` or ``(2, 2, 1)``.
        offset: Mag(1) XYZ origin of the box; a multiple of ``mag``. Default: the mag's
            bounding box origin.
        size: Mag(1) XYZ size of the box. Default: up to the end of the mag's bounding box.

    Returns:
        A read-only WebKnossosSource of shape ``ceil(size / mag)`` in (z, y, x).
    """
    wk = _import_webknossos()
    where = os.fspath(dataset_name_or_url)
    if _is_local(where, organization_id):
        path = where[len("file://") :] if where.startswith("file://") else where
        where = os.path.abspath(os.path.expanduser(path))
    params: dict[str, Any] = {
        "dataset_name_or_url": where,
        "organization_id": organization_id,
        "layer_name": layer_name,
        "mag": wk.Mag(mag).to_layer_name(),
    }
    mag_view = _open_mag_view(params)
    return WebKnossosSource(mag_view, open_params=params, offset=offset, size=size)
