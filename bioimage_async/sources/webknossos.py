"""WEBKNOSSOS layers (local datasets or remote ones) as read-only (z, y, x) sources.

webknossos addresses every magnification in Mag(1) (full-resolution) XYZ coordinates. A
WebKnossosSource presents a box of one magnification: ``offset`` and ``size`` are Mag(1) XYZ, as
in webknossos bounding boxes, and the presented shape is at the opened magnification,
``ceil(size / mag)`` in (z, y, x). Local index ``(z, y, x)`` is the voxel at Mag(1) position
``offset + (x, y, z) * mag``, so ``offset`` must be a multiple of the mag.

All reads go through webknossos' own ``MagView.read`` (one code path for wkw, zarr and zarr3,
local or remote) in the bounded blocking thread pool, on a dataset handle of each worker
thread's own, reopened from the recorded parameters (which are also the spec).

``open_source`` hands a local webknossos dataset's folders here (``WebKnossosFormat``): a mag
folder holds a zarr array stored as (c, x, y, z) in Fortran order with no axis names (zarr v2),
which opened as a plain array would be taken for (c, z, y, x). ``datasource-properties.json``
in the dataset folder says which folders are layers and mags.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..context import run_blocking
from ..errors import (
    BioimageAsyncError,
    FormatNotSupportedError,
    InternalPathNotFoundError,
    InvalidArgumentError,
    MissingDependencyError,
    ReadOnlySourceError,
    SourceError,
    SourceNotFoundError,
)
from .base import Source, SourceSpec
from .formats import FormatBackend
from .indexing import Roi
from .location import Location
from .physical import normalize_unit, positive_sizes, voxel_centre
from .threaded import ThreadedSource

logger = logging.getLogger("bioimage_async")

XYZ = tuple[int, int, int]


_webknossos: Any = None


def _import_webknossos(what: str = "open_webknossos") -> Any:
    """The webknossos module, imported once (the warnings filter is process-global state)."""
    global _webknossos
    if _webknossos is None:
        try:
            with warnings.catch_warnings():
                # webknossos warns at import about optional image readers (czi, ims) it lacks.
                warnings.simplefilter("ignore")
                import webknossos
        except ImportError:
            raise MissingDependencyError("webknossos", "webknossos", what) from None
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
    format = "webknossos"
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
    def axes(self) -> str:
        """Always (z, y, x): webknossos' (c, x, y, z) reads are presented reversed."""
        return "zyx"

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


# ---- the folders of a local dataset, as open_source meets them ---------------------------------
PROPERTIES_FILE = "datasource-properties.json"


@dataclass(frozen=True)
class LayerEntry:
    """One layer as ``datasource-properties.json`` lists it: its mags in the listed order (the
    order of the OME-Zarr levels webknossos writes beside zarr layers), each with the folders
    its array may be in."""

    name: str
    data_format: str
    mags: tuple[XYZ, ...]
    mag_folders: tuple[tuple[Path, ...], ...]


@dataclass(frozen=True)
class DatasetFolder:
    """A folder of a local webknossos dataset: the dataset folder itself (``layer`` None), a
    layer folder (``mag`` None) or a mag folder."""

    folder: str
    dataset: str
    layers: tuple[LayerEntry, ...]
    layer: LayerEntry | None = None
    mag: XYZ | None = None

    def mag_paths(self) -> list[str]:
        """Every 'layer/mag' of the dataset (what internal_path may name)."""
        return [f"{layer.name}/{mag_name(mag)}" for layer in self.layers for mag in layer.mags]


def mag_name(mag: Sequence[int]) -> str:
    """webknossos' folder name of a mag: "2" when isotropic, else "2-2-1"."""
    x, y, z = mag
    return str(x) if x == y == z else f"{x}-{y}-{z}"


def _mag_of(value: Any) -> XYZ | None:
    """A mag as the properties record it (``[2, 2, 1]``, ``2`` or ``"2-2-1"``), or None."""
    if isinstance(value, str):
        value = value.split("-") if "-" in value else [value] * 3
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value] * 3
    try:
        mag = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        return None
    return mag if len(mag) == 3 and all(m > 0 for m in mag) else None  # type: ignore[return-value]


def _mag_folders(dataset: Path, layer: str, mag: XYZ, entry: dict[str, Any]) -> tuple[Path, ...]:
    """Where a mag's array may live: its recorded ``path`` (relative to the dataset folder),
    else the layer folder's "2" or "2-2-2" (webknossos looks for both)."""
    recorded = entry.get("path")
    if isinstance(recorded, str) and recorded:
        if recorded.startswith("file://"):
            recorded = recorded[len("file://") :]
        elif "://" in recorded:
            return ()  # a mag in object storage is never a local folder
        return (dataset / recorded,)
    x, y, z = mag
    return (dataset / layer / mag_name(mag), dataset / layer / f"{x}-{y}-{z}")


def _read_properties(dataset: Path) -> dict[str, Any]:
    where = dataset / PROPERTIES_FILE
    try:
        properties = json.loads(where.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise SourceError(
            f"cannot read the webknossos dataset properties {str(where)!r} ({err}); fix the "
            "file, or pass format= to open the array in the folder as stored"
        ) from None
    if not isinstance(properties, dict):
        raise SourceError(
            f"the webknossos dataset properties {str(where)!r} hold no JSON object; fix the "
            "file, or pass format= to open the array in the folder as stored"
        )
    return properties


def _layers(dataset: Path) -> tuple[LayerEntry, ...]:
    """The layers the dataset's properties list."""
    found = []
    for layer in _read_properties(dataset).get("dataLayers") or []:
        if not isinstance(layer, dict) or not isinstance(layer.get("name"), str):
            continue
        name = layer["name"]
        mags: dict[XYZ, tuple[Path, ...]] = {}
        # "mags" since webknossos 0.12; older wkw datasets list "wkwResolutions"
        listed = [(e, "mag") for e in layer.get("mags") or []]
        listed += [(e, "resolution") for e in layer.get("wkwResolutions") or []]
        for entry, key in listed:
            mag = _mag_of(entry.get(key)) if isinstance(entry, dict) else None
            if mag is not None and mag not in mags:
                mags[mag] = _mag_folders(dataset, name, mag, entry)
        found.append(
            LayerEntry(name, str(layer.get("dataFormat", "")), tuple(mags), tuple(mags.values()))
        )
    return tuple(found)


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def find_dataset_folder(folder: str | os.PathLike[str]) -> DatasetFolder | None:
    """The webknossos dataset, layer or mag that a local folder is, from the
    ``datasource-properties.json`` in it, one level up (a layer named as the folder) or two
    levels up (a mag whose array is this folder); None when it is none of them.

    Blocking (a few stats and one small JSON file): call it in a worker thread.
    """
    path = Path(os.path.abspath(folder))
    if not path.is_dir():
        return None
    if (path / PROPERTIES_FILE).is_file():
        return DatasetFolder(str(path), str(path), _layers(path))
    parent, grandparent = path.parent, path.parent.parent
    if parent != path and (parent / PROPERTIES_FILE).is_file():
        layers = _layers_around(parent, path)
        for layer in layers:
            if layer.name == path.name:
                return DatasetFolder(str(path), str(parent), layers, layer)
    if grandparent != parent and (grandparent / PROPERTIES_FILE).is_file():
        layers = _layers_around(grandparent, path)
        for layer in layers:
            for mag, folders in zip(layer.mags, layer.mag_folders):
                if any(_same_folder(path, f) for f in folders):
                    return DatasetFolder(str(path), str(grandparent), layers, layer, mag)
    return None


def _layers_around(dataset: Path, folder: Path) -> tuple[LayerEntry, ...]:
    """The layers of a dataset folder above ``folder``; none (with a warning) where its
    properties cannot be read: a damaged file one or two levels up must not stop an unrelated
    array from opening (``folder`` then opens by its own format, without the dataset's axes)."""
    try:
        return _layers(dataset)
    except BioimageAsyncError as error:
        logger.warning(
            "%s is below %s, whose %s cannot be read (%s): opening it by its own format, "
            "without the dataset's axis order or voxel size",
            folder,
            dataset,
            PROPERTIES_FILE,
            str(error).splitlines()[0][:200],
        )
        return ()


def open_dataset_folder(found: DatasetFolder, *, level: int | None = None) -> WebKnossosSource:
    """The mag a dataset folder names, opened as ``open_webknossos`` does (blocking). A layer
    folder (or a single-layer dataset folder) opens its mag number ``level`` in the listed
    order (default the first, as OME-Zarr's level 0)."""
    where = found.dataset
    if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
        raise InvalidArgumentError(f"level must be an integer, got {level!r}")
    layer = found.layer
    if layer is None:  # the dataset folder: its one layer
        if len(found.layers) != 1:
            raise InternalPathNotFoundError(where, None, found.mag_paths())
        layer = found.layers[0]
    if found.mag is not None:
        if level is not None:
            raise InvalidArgumentError(
                f"level={level} picks a mag of a webknossos layer folder; {found.folder} is "
                f"the mag {mag_name(found.mag)} already: open its layer folder with level=, "
                "or drop level="
            )
        return open_webknossos(where, layer_name=layer.name, mag=found.mag)
    index = 0 if level is None else level
    if not 0 <= index < len(layer.mags):
        listed = ", ".join(mag_name(m) for m in layer.mags) or "none"
        raise InvalidArgumentError(
            f"level={index} is not a mag of the webknossos layer {layer.name!r} of {where}, "
            f"which has {len(layer.mags)} ({listed}); pass level= from 0 to "
            f"{len(layer.mags) - 1}, or open a mag folder"
        )
    return open_webknossos(where, layer_name=layer.name, mag=layer.mags[index])


class WebKnossosFormat(FormatBackend):
    """The folders of a local webknossos dataset (wkw, zarr and zarr3 layers): the dataset, a
    layer or a mag folder, opened read-only as (z, y, x) through the webknossos library."""

    name = "webknossos"
    description = (
        "a local webknossos dataset's folder, its layer or mag folders (datasource-properties.json)"
    )
    requires = "webknossos"
    extra = "webknossos"

    def check_installed(self) -> None:
        _import_webknossos(
            "opening a webknossos dataset's folder (or pass format='zarr' to open a zarr "
            "layer's array as stored, (c, x, y, z))"
        )

    async def detect(self, location: Location) -> bool:
        return (
            location.is_local and await run_blocking(find_dataset_folder, location.path) is not None
        )

    async def open(
        self,
        location: Location,
        internal_path: str | None,
        *,
        mode: str,
        level: int | None = None,
        **options: Any,
    ) -> Source:
        target = location.join(internal_path or "")
        found = await run_blocking(find_dataset_folder, target.path) if target.is_local else None
        if found is None:
            raise SourceNotFoundError(
                f"{str(target)!r} is no local webknossos dataset, layer or mag folder (no "
                f"{PROPERTIES_FILE} in it, or one or two levels up, that lists it)"
            )
        return await self.open_found(found, mode=mode, level=level, **options)

    async def open_found(
        self, found: DatasetFolder, *, mode: str, level: int | None = None, **options: Any
    ) -> Source:
        """Open a folder ``find_dataset_folder`` recognised, read-only. Opening reads the
        dataset's properties in the blocking thread pool; cancelling the await abandons it."""
        if options:
            raise InvalidArgumentError(
                f"unexpected keyword argument(s) for the webknossos folder {found.folder}: "
                f"{sorted(options)}; a layer folder takes level="
            )
        if mode != "r":
            stored = "" if found.layer is None else found.layer.data_format
            raw = (
                f", or open the array as stored (axes c, x, y, z) with format={stored!r}"
                if stored in ("zarr", "zarr3") and found.mag is not None
                else ""
            )
            raise ReadOnlySourceError(
                f"cannot open the webknossos folder {found.folder} with mode={mode!r}: "
                f"webknossos layers open read-only here; write them with the webknossos "
                f"library{raw}"
            )
        return await run_blocking(self._open_blocking, found, level)

    def _open_blocking(self, found: DatasetFolder, level: int | None) -> WebKnossosSource:
        self.check_installed()
        return open_dataset_folder(found, level=level)


FORMAT_BACKENDS: tuple[FormatBackend, ...] = (WebKnossosFormat(),)
