"""Opening and creating tensorstore arrays: format detection at a key, OME-Zarr levels, voxel
sizes from each convention, group metadata above nested arrays, and errors said in storage
terms (with a bounded wait for object stores)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import re
from typing import Any

import numpy as np
import tensorstore as ts

from ..context import resource_options, run_blocking
from ..errors import (
    FormatNotSupportedError,
    InternalPathNotFoundError,
    InvalidArgumentError,
    ReadOnlySourceError,
    SourceError,
    SourceExistsError,
    SourceNotFoundError,
)
from .axis_names import ZARR_V2_ATTRIBUTE, axes_from_names
from .base import Source
from .formats import CreateRequest, check_kept_fill
from .location import Location
from .ome_zarr import Level, group_attributes, multiscale_levels, pick_level
from .physical import (
    for_axes,
    in_nanometers,
    n5_voxel_size,
    positive_sizes,
    sizes_in_unit,
    spatial_axes,
    voxel_centre,
    zarr_voxel_size,
)
from .storage import (
    bounded,
    invalid_url,
    no_such_key,
    short_error,
)
from .tensorstore_source import TensorStoreSource, is_lossy, store_context
from .ts_drivers import DRIVERS, Driver, Precomputed, voxel_offset_of

logger = logging.getLogger("bioimage_async")


# ---------------------------------------------------------------------------------------------
# opening and creating
# ---------------------------------------------------------------------------------------------
async def _ts_open(
    spec: dict[str, Any], location: Location, what: str, *, write: bool, create: bool = False
) -> ts.TensorStore:
    """ts.open with errors said in storage terms and, remotely, a bounded wait. A spec that
    says ``assume_metadata`` is opened so (the keyword overrides the spec's member). A lossy
    store is opened without a chunk cache (see ``is_lossy``)."""
    store = await _ts_open_in(spec, location, what, write, create, store_context(is_lossy(spec)))
    if not create and not is_lossy(spec) and is_lossy(store.spec().to_json()):
        store = await _ts_open_in(spec, location, what, write, False, store_context(True))
    return store


async def _ts_open_in(
    spec: dict[str, Any],
    location: Location,
    what: str,
    write: bool,
    create: bool,
    context: ts.Context,
) -> ts.TensorStore:
    try:
        future = ts.open(
            spec,
            context=context,
            read=True,
            write=write,
            create=create,
            open=not create,
            assume_metadata=bool(spec.get("assume_metadata")) and not create,
        )
    except ValueError as err:  # refused before any I/O: the spec (bucket name, ...) is wrong
        if location.is_remote:
            raise invalid_url(err, location) from err
        raise SourceError(f"cannot {what} {location}: {short_error(err)}") from err
    if location.is_remote:
        return await bounded(future, location)
    try:
        return await future
    except ValueError as err:
        raise SourceError(f"cannot {what} {location}: {short_error(err)}") from err


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
    """The error for a missing array: the bucket, the key, or the array inside a group; or
    the array of another format stored there (a zarr v2 array opened as zarr3://)."""
    other = await _array_of_another_format(location, key, driver)
    if other is not None:
        where = f"{location}" + (f" (key {key!r})" if key else "")
        return InvalidArgumentError(
            f"{where} holds a {other} array, not a {driver.format} one: drop the "
            f"'{driver.format}://' prefix (or format=) to open what is there, or name "
            f"'{other}'"
        )
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


async def _array_of_another_format(location: Location, key: str, driver: Driver) -> str | None:
    """The format of an array stored at ``key`` that ``driver`` did not find (None: none)."""
    others = [d for d in DRIVERS.values() if d.format != driver.format]
    try:
        nodes = await asyncio.gather(*(d.node(location, key) for d in others))
    except Exception:  # noqa: BLE001 - only a hint for the message: the not-found error stands
        return None
    found = [d.format for d, node in zip(others, nodes) if node == "array"]
    return found[0] if found else None


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
    ome: Level | None = None
    if driver.format in ("zarr", "zarr3"):
        key, ome = await ome_level(location, key, level)
        if ome is not None:
            physical = (ome.voxel_size, ome.unit)
    elif level is not None and not isinstance(driver, Precomputed):
        raise InvalidArgumentError(
            f"level= selects a level of an OME-Zarr multiscale or a precomputed layer; "
            f"{location} is {driver.format}"
        )
    if driver.format == "zarr":
        driver = await _zarr_driver(location, key)
    if level is not None and isinstance(driver, Precomputed):
        scale_index = level
    offset: tuple[float, ...] | None = None
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
        if not key and scale_index is not None and not 0 <= scale_index < len(scale_keys):
            # a bare IndexError before; and -1 opened the last scale of a '.gz' layer only
            raise InvalidArgumentError(
                f"scale {scale_index} is out of range: the precomputed layer {location} has "
                f"{len(scale_keys)} scales (0..{len(scale_keys) - 1}: {', '.join(scale_keys)})"
            )
        gz = await gzip_layer_source(location, info, key, scale_index, writable)
        if gz is not None:
            return gz
        spec = driver.scale_spec(location, key, scale_index)
        physical = precomputed_voxel_size(info, key, scale_index)
        offset = precomputed_translation(info, key, scale_index)
    else:
        if await driver.node(location, key) != "array":
            raise await _not_found(location, key, driver)
        spec = await driver.existing_spec(location, key)
    try:
        opened = await _ts_open(spec, location, f"open {driver.format} array", write=writable)
    except SourceError as error:
        refused = error.__cause__
        if driver.format in ("zarr", "zarr3") and isinstance(refused, ValueError):
            raise _zarr_metadata_refused(location, key, driver, refused) from refused
        raise
    store = driver.present(opened)
    # zarr v3 and n5 names come as the store's labels (TensorStoreSource reads them)
    axes = ome.axes if ome is not None and ome.axes and len(ome.axes) == store.ndim else None
    if driver.format == "n5":
        physical = await n5_physical(location, key, store.ndim)
    elif driver.format in ("zarr", "zarr3") and ome is None:  # a plain array
        attributes = await driver.attributes(location, key)
        physical = zarr_voxel_size(attributes, store.ndim)
        if driver.format == "zarr":
            axes = axes_from_names(attributes.get(ZARR_V2_ATTRIBUTE), store.ndim)
    voxel_size, unit = physical
    if voxel_size is not None and len(voxel_size) != store.ndim:
        voxel_size = None  # metadata that does not match the array: better none than wrong
    translation = ome.translation if ome is not None else offset
    if translation is not None and len(translation) != store.ndim:
        translation = None
    return TensorStoreSource(
        store,
        writable=writable,
        opened_with=spec,
        format=driver.format,
        location=str(location.join(key)) if key else str(location),
        storage=location.storage,
        lock_path=writer_lock_path(location, key),
        voxel_size=voxel_size,
        unit=unit,
        axes=axes,
        translation=translation,
    )


def _zarr_metadata_refused(
    location: Location, key: str, driver: Driver, err: ValueError
) -> FormatNotSupportedError:
    """tensorstore refused a zarr array's metadata (numcodecs filters such as Delta or
    FixedScaleOffset, a compressor it lacks such as lz4, a sharding codec followed by
    whole-shard codecs, a string or structured dtype). Its first line alone ("filters are not
    supported", or "Sharding codec" cut before the JSON) named neither the cause nor the way
    out: zarr-python, which wrote most such arrays, reads the ones of numeric dtype."""
    where = str(location.join(key)) if key else str(location)
    reason = _without_json(str(err))
    if re.search(r'"(dtype|data_type)"|"field"', str(err)):
        return FormatNotSupportedError(
            f"cannot open the {driver.format} array {where}: its data type is not a numeric "
            f"one ({reason}). bioimage_async reads and converts numeric volumes only (bool, "
            "integers, floats, complex); string, object and structured arrays are refused. "
            "Store the values as a numeric array (one array per field of a structured dtype)"
        )
    return FormatNotSupportedError(
        f"cannot open the {driver.format} array {where}: tensorstore, bioimage_async's zarr "
        f"reader, refuses its metadata ({reason}). If zarr-python reads it (numcodecs filters "
        "and codecs, a numeric dtype), open it through zarr-python: "
        f"ba.as_source(zarr.open_array({where!r}, mode='r')); or rewrite it with zarr-python "
        "without those filters/codecs"
    )


def _without_json(text: str, limit: int = 400) -> str:
    """tensorstore's message with its spec payload dropped and JSON objects shown as {...}."""
    text = re.sub(r"\s*\[tensorstore_spec='.*", "", text.strip(), flags=re.DOTALL)
    text = re.sub(r"^[A-Z_]+: ", "", text)
    out: list[str] = []
    depth = 0
    for char in text:
        if char == "{":
            if depth == 0:
                out.append("{...}")
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        elif depth == 0:
            out.append(char)
    return " ".join("".join(out).split())[:limit]


async def ome_level(location: Location, key: str, level: int | None) -> tuple[str, Level | None]:
    """For an OME-Zarr multiscale group at ``key``: the key of the chosen level and the level;
    for an array listed by its parent's multiscale: its level; else None."""
    attributes = await group_attributes(location, key)
    if attributes is not None:
        levels = multiscale_levels(attributes)
        if levels is None:
            if level is not None:
                raise InvalidArgumentError(
                    f"level={level}: {location.join(key)} is a group without OME-Zarr "
                    "multiscales metadata"
                )
            return key, None
        chosen = pick_level(levels, level, str(location.join(key)))
        return "/".join(p for p in (key, chosen.path) if p), chosen
    if level is not None:
        raise InvalidArgumentError(
            f"level={level} selects a level of an OME-Zarr multiscale group; "
            f"{location.join(key)} is an array (open the group, or drop level=)"
        )
    parent, _, name = key.rpartition("/")
    parent_attributes = await group_attributes(location, parent) if name else None
    for candidate in multiscale_levels(parent_attributes or {}) or []:
        if candidate.path == name:
            return key, candidate
    return key, None


def _precomputed_scale(info: dict[str, Any], key: str, scale_index: int | None) -> dict[str, Any]:
    scales = info.get("scales") or []
    chosen = next((sc for sc in scales if key and str(sc.get("key")) == key), None)
    if chosen is None and scales:
        chosen = scales[scale_index or 0] if (scale_index or 0) < len(scales) else None
    return chosen or {}


def precomputed_translation(
    info: dict[str, Any], key: str, scale_index: int | None
) -> tuple[float, ...] | None:
    """Where the scale's first voxel sits, in nm (tensorstore presents the array from 0;
    dropping the offset put pyramids of it at the wrong place): see ``voxel_centre``."""
    scale = _precomputed_scale(info, key, scale_index)
    sizes = positive_sizes(scale.get("resolution"))
    base = positive_sizes(((info.get("scales") or [{}])[0]).get("resolution"))
    offset = scale.get("voxel_offset") or [0, 0, 0]
    if sizes is None or base is None or len(sizes) != 3 or len(base) != 3 or len(offset) != 3:
        return None
    xyz = voxel_centre(offset, sizes, base)
    zyx = tuple(reversed(xyz))
    channels = int(info.get("num_channels", 1))
    return (0.0,) * (channels > 1) + zyx


def precomputed_voxel_size(
    info: dict[str, Any], key: str, scale_index: int | None
) -> tuple[tuple[float, ...] | None, str | None]:
    chosen = _precomputed_scale(info, key, scale_index)
    sizes = positive_sizes(chosen.get("resolution"))
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
                if factors is None:  # N5-viewer: the group lists every sN's factors
                    factors = _viewer_scale(attributes, parts[-1] if parts else "")
                if factors is not None and len(factors) <= ndim:
                    zyx = tuple(reversed(factors))
                    sizes = found[0]
                    scaled = sizes[: ndim - len(zyx)] + tuple(
                        s * f for s, f in zip(sizes[ndim - len(zyx) :], zyx)
                    )
                    return scaled, found[1]
            return found
    return None, None


def _viewer_scale(group: dict[str, Any], name: str) -> tuple[float, ...] | None:
    """Level ``sN``'s factors (fastest axis first) from an N5-viewer group's ``scales``."""
    match = re.fullmatch(r"s(\d+)", name)
    scales = group.get("scales")
    if match is None or not isinstance(scales, list) or int(match.group(1)) >= len(scales):
        return None
    return positive_sizes(scales[int(match.group(1))])


async def _aligned_scale(location: Location, spec: dict[str, Any]) -> dict[str, Any]:
    """A scale added to an existing layer starts where the layer's first scale starts.

    Sources present a scale from 0, so the new scale's voxel 0 is written from the first
    scale's voxel 0 (a downsample of it), which sits at that scale's ``voxel_offset``. Created
    at voxel offset 0, the new scale sat that many voxels away from the layer in cloud-volume
    and neuroglancer, silently. Its offset is the first scale's corner in the new resolution.
    Where that corner falls inside a new voxel (an odd offset, a factor of 2) the scale is
    refused: rounded down as cloud-volume's ``add_scale`` does, every voxel downsampled from
    the first scale's voxel 0 on would sit a fraction of a window away from its place."""
    info = await location.read_json("info")
    scales = (info or {}).get("scales") or []
    scale = dict(spec.get("scale_metadata") or {})
    if not scales or "voxel_offset" in scale:
        return spec
    first = scales[0]
    offset = first.get("voxel_offset") or [0, 0, 0]
    base = positive_sizes(first.get("resolution"))
    sizes = positive_sizes(scale.get("resolution"))
    if base is None or sizes is None or len(offset) != 3 or not any(offset):
        return spec
    exact = [float(o) * b / s for o, b, s in zip(offset, base, sizes)]
    if any(abs(v - round(v)) > 1e-6 for v in exact):
        raise InvalidArgumentError(
            f"the first scale of {location} starts at voxel_offset {list(offset)} (x, y, z) in "
            f"{list(base)} nm voxels, which is not a whole number of this scale's {list(sizes)} "
            "nm voxels: downsampled from the first scale's voxel 0, its voxels would sit "
            "between this scale's grid positions, where cloud-volume and neuroglancer place "
            "them. Downsample a view of the first scale that starts on a multiple of the "
            "factor (e.g. view = src.view(np.s_[:, :, 1:]) for an odd x offset) into a scale "
            "created with translation= where its first window's centre sits (view.translation "
            "plus half this scale's voxel minus half the first scale's, on each axis), or move "
            "the layer's voxel_offset to a multiple of the factor"
        )
    scale["voxel_offset"] = [round(v) for v in exact]
    return {**spec, "scale_metadata": scale}


async def _existing_compressed_layer(
    location: Location, key: str, request: CreateRequest
) -> Source | None:
    """An existing precomputed layer of '<chunk>.gz' (.br, ...) files, through cloud-volume as
    ``open_source`` serves it: tensorstore would read its data as zeros and write plain chunk
    files beside the compressed ones."""
    from .precomputed_gzip import gzip_layer_source

    info = await location.read_json("info")
    if info is None:
        return None
    source = await gzip_layer_source(location, info, key, None, True)
    if source is not None:
        _check_existing_layout(location, tuple(source.shape), source.dtype, request)
        _note_kept_chunks(location, source.chunks, request)
    return source


def _check_existing_layout(
    location: Location, shape: tuple[int, ...], dtype: Any, request: CreateRequest
) -> None:
    """exist_ok opens what is there only when it is what was asked for (byte order aside:
    tensorstore presents '>u2' as uint16, and the values are the same)."""
    native = request.dtype.newbyteorder("=")
    if tuple(shape) != tuple(request.shape) or np.dtype(dtype).newbyteorder("=") != native:
        raise SourceExistsError(
            f"the existing array at {location} has shape {tuple(shape)} and dtype "
            f"{np.dtype(dtype)}, not the requested {tuple(request.shape)} / "
            f"{request.dtype}; remove it or choose another path"
        )


def _no_resolution(location: Location, key: str) -> None:
    """precomputed records a resolution whatever is known: 1 nm without ``voxel_size``. For a
    scale added to a layer that is wrong beside the others' (refused); for a new layer it is
    a made-up size (said)."""
    if key:
        raise InvalidArgumentError(
            f"the scale {key!r} added to the precomputed layer {location} needs voxel_size= "
            "(its resolution, e.g. the first scale's times the downsampling factor): without "
            "it 1 nm would be recorded, and viewers would draw the scale at the wrong size"
        )
    logger.warning(
        "%s: no voxel_size given; the precomputed layer records a resolution of 1 nm per "
        "voxel, which viewers and readers take as its size. Pass voxel_size= and unit=",
        location,
    )


def _existing_voxel_size(
    info: dict[str, Any], location: Location, key: str, request: CreateRequest
) -> tuple[tuple[float, ...] | None, str | None]:
    """The voxel size of an existing layer that exist_ok opens (in the request's unit): its
    scale's ``resolution`` is not rewritten (it names the scale), so another one asked for is
    refused rather than reported by the handle while the file keeps its own."""
    sizes, _ = precomputed_voxel_size(info, key, None)
    if sizes is None:
        return request.voxel_size, request.unit
    spatial = [axis >= len(sizes) - 3 for axis in range(len(sizes))]
    if request.voxel_size is not None:
        asked = sizes_in_unit(request.voxel_size, request.unit or "nanometer", "nanometer", spatial)
        if len(asked) != len(sizes) or not all(
            math.isclose(a, b, rel_tol=1e-9) for a, b in zip(asked, sizes)
        ):
            raise SourceExistsError(
                f"the existing layer at {location} has voxel size {sizes} nanometer, not the "
                f"requested {request.voxel_size} {request.unit or 'nanometer'}; a scale's "
                "resolution names it and is not rewritten. Write into it without voxel_size=, "
                "or remove it first"
            )
        return request.voxel_size, request.unit or "nanometer"
    unit = request.unit or "nanometer"
    return sizes_in_unit(sizes, "nanometer", unit, spatial), unit


def _existing_translation(
    info: dict[str, Any], key: str, request: CreateRequest
) -> tuple[float, ...] | None:
    """Where an existing layer that exist_ok opens sits, in the request's unit."""
    found = precomputed_translation(info, key, None)
    if found is None:
        return None
    spatial = [axis >= len(found) - 3 for axis in range(len(found))]
    return sizes_in_unit(found, "nanometer", request.unit, spatial)


def _placed_scale(
    info: dict[str, Any],
    location: Location,
    key: str,
    request: CreateRequest,
    spec: dict[str, Any],
    exists: bool,
) -> dict[str, Any]:
    """The spec of a scale whose voxel 0 sits at ``request.translation``, read back as
    ``open_source`` reads it (a coarser scale's voxel centres are half a first-scale voxel
    further on). An existing scale (exist_ok) is opened only where it sits there: writing
    into one placed elsewhere would put the data at the wrong place, silently."""
    assert request.translation is not None
    scales = info.get("scales") or []
    there = _precomputed_scale(info, key, None) if exists else {}
    if request.voxel_size is not None:
        sizes = in_nanometers(list(reversed(request.voxel_size[-3:])), request.unit)
    elif there.get("resolution"):
        sizes = [float(v) for v in there["resolution"]]
    else:
        raise InvalidArgumentError(
            f"translation {request.translation} needs voxel_size=: precomputed records where "
            "a layer sits in voxels (its voxel_offset), so the translation is divided by the "
            "voxel size"
        )
    base = [float(v) for v in scales[0]["resolution"]] if scales else sizes
    wanted = voxel_offset_of(request.translation, request.unit, sizes, base)
    if exists:
        found = [int(v) for v in there.get("voxel_offset") or [0, 0, 0]]
        if found != wanted:
            raise SourceExistsError(
                f"the existing layer at {location} starts at voxel_offset {found} (x, y, z), "
                f"not at {wanted}, where translation={tuple(request.translation)} places it; "
                "write into it without translation=, or remove it first"
            )
        return spec
    scale = {**spec.get("scale_metadata", {}), "voxel_offset": wanted}
    return {**spec, "scale_metadata": scale}


async def _check_kept_physical(
    location: Location, key: str, driver: Driver, request: CreateRequest
) -> CreateRequest:
    """exist_ok writes the request's voxel size and axis names where the array records none;
    other ones than it records are refused (they were written over the array's own, so its
    existing voxels were said to be of another size, or their axes renamed). Returns the
    request without what the array already records (kept as it is written)."""
    if request.voxel_size is None and request.dimension_names is None:
        return request
    existing = await open_tensorstore(location, key or None, driver=driver)
    kept = dataclasses.replace(
        request,
        dimension_names=None if existing.axes is not None else request.dimension_names,
        voxel_size=None if existing.voxel_size is not None else request.voxel_size,
        unit=None if existing.voxel_size is not None else request.unit,
    )
    where = f"{location}" + (f" (key {key!r})" if key else "")
    names = request.dimension_names
    wanted_axes = axes_from_names(names, existing.ndim) if names is not None else None
    if wanted_axes is not None and existing.axes is not None and wanted_axes != existing.axes:
        raise SourceExistsError(
            f"the existing array at {where} names its axes {existing.axes!r}, not the requested "
            f"{wanted_axes!r}; pass the same dimension_names (or none), or remove it first"
        )
    if request.voxel_size is None or existing.voxel_size is None:
        return kept
    spatial = spatial_axes(existing.ndim, existing.axes)
    have = sizes_in_unit(existing.voxel_size, existing.unit, request.unit, spatial)
    if len(have) != len(request.voxel_size) or not all(
        math.isclose(a, b, rel_tol=1e-6) for a, b in zip(have, request.voxel_size)
    ):
        shown = ", ".join(f"{v:g}" for v in existing.voxel_size)
        raise SourceExistsError(
            f"the existing array at {where} records a voxel size of ({shown}) "
            f"{existing.unit or '(no unit)'}, not the requested {tuple(request.voxel_size)} "
            f"{request.unit or '(no unit)'}; pass the same voxel_size (or none), or remove it "
            "first"
        )
    return kept


def _note_kept_chunks(
    location: Location, chunks: tuple[int, ...] | None, request: CreateRequest
) -> None:
    """exist_ok keeps the existing array's chunks and codecs: say so when others were asked
    for (the voxels are right; the layout is not what the call, e.g. --overwrite, names)."""
    if chunks is not None and tuple(chunks) != tuple(request.chunks):
        logger.warning(
            "%s exists: writing into it keeps its chunks %s (and codecs), not the requested %s; "
            "remove it first to get the new layout",
            location,
            tuple(chunks),
            tuple(request.chunks),
        )


def _note_kept_shards(location: Location, store: ts.TensorStore, request: CreateRequest) -> None:
    """exist_ok keeps the existing array's shards: say so when other shards were named."""
    if request.shards is None:
        return
    read = tuple(int(n or 0) for n in store.chunk_layout.read_chunk.shape or ())
    write = tuple(int(n or 0) for n in store.chunk_layout.write_chunk.shape or ())
    if write != tuple(request.shards):
        kept = "no shards" if write == read else f"its shards {write}"
        logger.warning(
            "%s exists: writing into it keeps %s, not the requested shards %s; remove it "
            "first to get the new layout",
            location,
            kept,
            tuple(request.shards),
        )


def _note_kept_codec(
    location: Location, driver: Driver, wanted: dict[str, Any], store: ts.TensorStore
) -> None:
    """exist_ok keeps the existing array's compression: say so when another was asked for
    (create_source(compression='gzip', exist_ok=True) on a blosc array said nothing)."""
    try:
        have = codec_name(driver.format, store.spec().to_json())
    except (ValueError, TypeError):
        return
    asked = codec_name(driver.format, wanted)
    if asked is not None and have is not None and asked != have:
        logger.warning(
            "%s exists: writing into it keeps its compression %s, not the requested %s; remove "
            "it first to get the new codec",
            location,
            have,
            asked,
        )


def codec_name(format: str, spec: dict[str, Any]) -> str | None:
    """A short name of a tensorstore spec's compression ('blosc-lz4', 'zstd', 'raw', 'none');
    None where the spec does not say."""
    metadata = spec.get("metadata") or {}
    if format == "zarr":
        if "compressor" not in metadata:
            return None
        return _named(metadata["compressor"], "id")
    if format == "n5":
        if "compression" not in metadata:
            return None
        named = _named(metadata["compression"], "type")
        return "none" if named == "raw" else named
    if format == "zarr3":
        if "codecs" not in metadata:
            return None
        return "+".join(_zarr3_compressors(metadata["codecs"])) or "none"
    if format == "precomputed":
        encoding = (spec.get("scale_metadata") or {}).get("encoding")
        return None if encoding is None else str(encoding)
    return None


def _named(codec: Any, key: str) -> str:
    if not codec:
        return "none"
    name = str(codec.get(key))
    return f"{name}-{codec['cname']}" if name == "blosc" and codec.get("cname") else name


def _zarr3_compressors(codecs: list[Any]) -> list[str]:
    """The bytes-to-bytes codecs of a zarr v3 codec chain, inside a sharding codec too."""
    names: list[str] = []
    for codec in codecs or []:
        if not isinstance(codec, dict):
            continue
        name = str(codec.get("name"))
        configuration = codec.get("configuration") or {}
        if name == "sharding_indexed":
            names += _zarr3_compressors(configuration.get("codecs") or [])
        elif name not in ("bytes", "transpose", "crc32c"):
            cname = configuration.get("cname")
            names.append(f"{name}-{cname}" if name == "blosc" and cname else name)
    return names


#: The file a run writing into a local array keeps inside its folder while it runs.
WRITER_LOCK = ".bioimage_async-writer.json"


def writer_lock_path(location: Location, key: str) -> str | None:
    if not location.is_local:
        return None  # object stores have no atomic create-if-absent for a lock record
    return os.path.join(str(location.join(key)) if key else str(location), WRITER_LOCK)


#: The formats whose folders hold groups and arrays (a node of one hides a node of another).
_CONTAINERS = ("zarr", "zarr3", "n5")


async def _nodes_at(location: Location, key: str) -> list[tuple[str, Driver]]:
    """Every (node, driver) stored at ``key``: zarr v2, zarr v3 and n5 metadata alike."""
    drivers = [DRIVERS[name] for name in _CONTAINERS]
    nodes = await asyncio.gather(*(d.node(location, key) for d in drivers))
    return [(node, d) for node, d in zip(nodes, drivers) if node is not None]


def _what(node: str, driver: Driver) -> str:
    return {"zarr": "a zarr v2", "zarr3": "a zarr v3", "n5": "an n5"}[driver.format] + " " + node


async def _existing_array(location: Location, key: str, driver: Driver, exist_ok: bool) -> bool:
    """Whether an array of this format is at ``key`` (for ``exist_ok``). A group there, or an
    array of another format, is refused whatever ``exist_ok`` says: the new array's metadata
    would hide the group's arrays from every reader (or sit beside the other array's), and
    ``exist_ok`` reopens an existing array, it never replaces a group or deletes data."""
    if isinstance(driver, Precomputed):  # a layer's scales are added to its one info file
        others = await _nodes_at(location, "")
        if others:
            node, other = others[0]
            raise SourceExistsError(
                f"{location} holds {_what(node, other)}: a precomputed layer's 'info' beside "
                "it would mix the two formats in one folder (and opening the folder would give "
                "the layer). Choose another path"
            )
        return await driver.node(location, key) == "array"
    await _refuse_inside_precomputed_layer(location, key, driver)
    found = await _nodes_at(location, key)
    if not found:
        return False
    if len(found) == 1 and found[0] == ("array", driver):
        return True
    where = str(location.join(key)) if key else str(location)
    node, other = next(((n, d) for n, d in found if n == "group"), found[0])
    if node == "group":
        inside = await list_arrays(location.join(key), other, limit=20)
        holding = f" holding {', '.join(inside)}" if inside else ""
        raise SourceExistsError(
            f"{where} is {_what(node, other)}{holding}, not an array: a new {driver.format} "
            f"array there would hide its contents. Write the array inside the group with "
            f"internal_path='<name>', or choose another path. exist_ok=True does not replace "
            "a group (it reopens an existing array of the same shape and dtype); to replace the "
            "group, remove it first"
        )
    raise SourceExistsError(
        f"{where} holds {_what(node, other)}, not a {driver.format} array: creating one there "
        f"would mix the two formats' metadata in one folder. Choose another path (or "
        f"internal_path), or open the existing array with format='{other.format}'"
    )


async def _refuse_inside_precomputed_layer(location: Location, key: str, driver: Driver) -> None:
    """A zarr/n5 array in a precomputed layer's folder (or below it) sits beside the layer's
    'info', which every reader finds first: ``open_source`` of the folder kept giving the layer's
    voxels, not the array (or OME-Zarr pyramid) just written there."""
    parts = [p for p in key.split("/") if p]
    for depth in range(len(parts) + 1):
        here = location.join(*parts[:depth]) if depth else location
        if await DRIVERS["precomputed"].node(here, "") == "array":
            raise SourceExistsError(
                f"{here} is a neuroglancer precomputed layer (its 'info' lists scales): a "
                f"{driver.format} array inside it would sit beside the layer's data, and "
                "opening the folder would still give the layer. Choose another path"
            )


async def _ensure_parent_groups(location: Location, key: str, driver: Driver) -> None:
    """Write group metadata above a nested array so other libraries can walk the container;
    refuse a nested array below an existing array (no reader would find it there)."""
    parts = [p for p in key.split("/") if p][:-1]
    for depth in range(len(parts) + 1):
        parent = "/".join(parts[:depth])
        found = await _nodes_at(location, parent)
        array = next((d for n, d in found if n == "array"), None)
        if array is not None:
            where = str(location.join(parent)) if parent else str(location)
            raise SourceExistsError(
                f"{where} is {_what('array', array)}, which cannot hold {key!r} (no reader "
                "looks for arrays inside an array): choose another path or internal_path"
            )
        if driver.group_file is not None and not any(d is driver for _, d in found):
            name, content = driver.group_file
            await location.join(*parts[:depth]).write(name, content)


async def create_tensorstore(
    location: Location, request: CreateRequest, *, driver: Driver
) -> Source:
    if location.read_only:
        raise ReadOnlySourceError(
            f"cannot create an array at {location}: {location.scheme} URLs are read-only; "
            "create it on a local path, s3:// or gs://"
        )
    key = (request.internal_path or "").strip("/")
    spec = driver.create_spec(location, key, request)
    # tensorstore retries a create in a missing s3 bucket forever (uncancellable): check first
    await location.check_bucket()
    exists = await _existing_array(location, key, driver, request.exist_ok)
    if exists and not request.exist_ok:
        where = f"{location}" + (f" (key {key!r})" if key else "")
        raise SourceExistsError(
            f"an array already exists at {where}; pass exist_ok=True to open it for writing, "
            "or remove it first"
        )
    if key and driver.format != "precomputed":
        await _ensure_parent_groups(location, key, driver)
    if not exists and isinstance(driver, Precomputed) and request.voxel_size is None:
        _no_resolution(location, key)
    translation = None
    # the layer's info (read once): where its scales sit and at which resolution
    info = (await location.read_json("info") or {}) if isinstance(driver, Precomputed) else {}
    if isinstance(driver, Precomputed) and request.translation is not None:
        spec = _placed_scale(info, location, key, request, spec, exists)
        translation = request.translation
    if key and not exists and isinstance(driver, Precomputed):
        spec = await _aligned_scale(location, spec)
    if exists and isinstance(driver, Precomputed) and translation is None:
        translation = _existing_translation(info, key, request)
    if exists and isinstance(driver, Precomputed):
        compressed = await _existing_compressed_layer(location, key, request)
        if compressed is not None:
            return compressed
    if exists:  # open what is there (whatever its codecs); shape and dtype are checked below
        spec = await driver.existing_spec(location, key)
        store = await _ts_open(spec, location, f"open {driver.format} array", write=True)
    else:
        store = await _ts_open(
            spec, location, f"create {driver.format} array", write=True, create=True
        )
    store = driver.present(store)
    if exists:
        _check_existing_layout(location, tuple(store.shape), store.dtype.numpy_dtype, request)
        _note_kept_chunks(
            location, tuple(int(n or 0) for n in store.chunk_layout.read_chunk.shape or ()), request
        )
        _note_kept_shards(location, store, request)
        if request.compression not in (None, "default"):  # named: say when it is not kept
            _note_kept_codec(location, driver, driver.create_spec(location, key, request), store)
    where = str(location.join(key)) if key else str(location)
    if exists:
        check_kept_fill(where, store.fill_value, request.fill_value)
    voxel_size, unit = request.voxel_size, request.unit
    if exists and isinstance(driver, Precomputed):
        voxel_size, unit = _existing_voxel_size(info, location, key, request)
    elif exists:  # the array's own names and sizes are kept (other ones refused)
        request = await _check_kept_physical(location, key, driver, request)
    await driver.annotate(location, key, request)
    names = request.dimension_names
    return TensorStoreSource(
        store,
        writable=True,
        opened_with=spec if exists else None,
        format=driver.format,
        location=where,
        storage=location.storage,
        lock_path=writer_lock_path(location, key),
        voxel_size=voxel_size,
        unit=unit,
        translation=translation,
        axes=None if names is None else axes_from_names(names, store.ndim),
    )
