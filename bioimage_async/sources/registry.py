"""Opening, creating and reopening sources, derived from the format registry (``formats``).

The format of a path is, in this order: ``format=``; a neuroglancer-style URL prefix
(``zarr3://s3://...``); the extension (any case); what the folder or URL holds (each format's
``detect``). ``create_source`` takes the format the same way, from the prefix or extension, and
refuses a ``format=`` that contradicts them: ``out.h5`` is never silently a zarr folder.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from typing import Any

import numpy as np

from ..context import run_blocking
from ..errors import (
    FormatNotSupportedError,
    InvalidArgumentError,
    NotSerializableError,
    SourceNotFoundError,
)
from ..kernels.casting import exact_fill_value
from .axis_names import axes_from_names
from .base import Source, SourceSpec, source_class
from .formats import (
    CreateRequest,
    FormatBackend,
    creatable_formats,
    format_backend,
    format_for_extension,
    format_for_prefix,
    formats,
    known_formats_text,
    load_format_backends,
)
from .location import Location
from .optional import refuse_write_mode
from .physical import check_unit, on_spatial_axes, positive_sizes
from .storage import StorageOptions
from .webknossos import WebKnossosFormat, find_dataset_folder

MODES = ("r", "r+", "a", "w")

#: The folders of local webknossos datasets. Checked before any format's content detection: a
#: mag folder of a zarr layer holds a plain zarr array stored as (c, x, y, z) without axis names,
#: which the zarr format would present as an unnamed (c, z, y, x) look-alike.
WEBKNOSSOS = WebKnossosFormat()

#: Modules holding spec kinds that are not formats (imported when such a spec is reopened).
SPEC_MODULES = ("view", "transposed", "wrappers", "cloudvolume", "webknossos", "tensorstore_source")


async def resolve_format(
    location: Location, format: str | None = None, options: dict[str, Any] | None = None
) -> FormatBackend:
    """The format backend of an existing path or URL."""
    if format is not None:
        return format_backend(format)
    if location.prefix is not None:
        named = format_for_prefix(location.prefix)
        if named is None:
            raise FormatNotSupportedError(
                f"unknown format prefix '{location.prefix}://' in {location}; known prefixes: "
                + ", ".join(f"{p}://" for b in formats() for p in b.url_prefixes)
            )
        return named
    by_extension = format_for_extension(location.name)
    if by_extension is not None:
        return by_extension
    if options and options.get("pattern") is not None:
        return format_backend("tiff")
    if location.is_local and not await location.exists():
        raise SourceNotFoundError(f"no such file or folder: {str(location)!r}")
    if await location.is_dir():
        for backend in formats():
            if await backend.detect(location):
                return backend
    raise FormatNotSupportedError(
        f"cannot tell the format of {str(location)!r} from its extension or content. Pass "
        f"format= with one of: {known_formats_text()}"
    )


async def check_installed(backend: FormatBackend) -> None:
    """The backend's library, imported in a worker thread the first time: a first import would
    stall the event loop (h5py ~25 ms, nibabel ~50 ms here)."""
    if backend.requires is None or backend.requires in sys.modules:
        backend.check_installed()
    else:
        await run_blocking(backend.check_installed)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InvalidArgumentError(f"mode must be one of {MODES}, got {mode!r}")


async def open_source(
    path: str | os.PathLike[str],
    internal_path: str | None = None,
    *,
    format: str | None = None,
    mode: str = "r",
    storage: StorageOptions | dict[str, Any] | None = None,
    **options: Any,
) -> Source:
    """Open an existing volume as a Source, inferring the format from the path.

    ``path`` is a local path or a URL (``s3://``, ``gs://``, ``http(s)://`` read-only, and the
    prefixed forms ``precomputed://``, ``zarr://``, ``zarr3://``, ``n5://``). ``internal_path``
    selects the array inside a container (HDF5 dataset, zarr/n5 group key, precomputed scale
    key). ``mode='r'`` opens read-only; 'r+'/'a'/'w' open writable formats for writing
    (creation is ``create_source``'s job). ``storage`` sets an object store's endpoint and
    region for this call (default: the AWS_* environment variables).

    Per-format options: ``level=`` (an OME-Zarr multiscale's level, or a precomputed scale
    index), ``scale_index=`` (precomputed), ``pattern=`` (a folder of TIFF slices, glob),
    ``cache_bytes=`` (TIFF and HDF5: the decoded-segment cache), ``dtype=`` (KNOSSOS cubes).

    A local webknossos dataset's folder, one of its layer folders or mag folders (found by the
    ``datasource-properties.json`` in it or one or two levels up, or named by ``internal_path``
    inside it, e.g. ``"color/1"``) opens read-only through the webknossos library as
    ``open_webknossos`` does: (z, y, x), with the dataset's voxel size; a layer folder opens
    its first listed mag, or ``level=``. ``format="zarr"`` (or "zarr3") opens a zarr layer's
    array as stored instead: (c, x, y, z).
    """
    _check_mode(mode)
    internal_path = _internal_path(internal_path)
    location = Location.parse(path, StorageOptions.coerce(storage))
    await load_format_backends()
    if format is None and location.prefix is None and location.is_local:
        target = location.join(internal_path or "")
        found = await run_blocking(find_dataset_folder, target.path)
        if found is not None:
            return await WEBKNOSSOS.open_found(found, mode=mode, **options)
    backend = await resolve_format(location, format, options)
    if location.is_remote and not backend.remote:
        raise FormatNotSupportedError(
            f"the {backend.name} format is read from local files only, not from {location}; "
            "copy the file to a local disk first (object storage serves zarr, zarr3, n5 and "
            "precomputed)"
        )
    await check_installed(backend)
    if mode != "r" and not backend.writable:
        refuse_write_mode(backend.name, mode)
    return _numeric(await backend.open(location, internal_path, mode=mode, **options))


def _numeric(source: Source) -> Source:
    """Refuse voxels that are records, strings or objects (a NIfTI RGB24 image's R, G, B
    fields): no block-wise op, cast or fill value applies to them."""
    dtype = source.dtype
    if dtype.fields is None and dtype.kind not in "OSUV":
        return source
    fields = f" (fields {', '.join(dtype.names)})" if dtype.names else ""
    raise FormatNotSupportedError(
        f"{source.describe()} holds voxels of dtype {dtype}{fields}, not numbers: bioimage_async "
        "reads numeric and boolean voxels only. Split the fields into a channel axis of numbers "
        "first (e.g. numpy.lib.recfunctions.structured_to_unstructured on the data read with "
        "the format's own library)"
    )


def _internal_path(internal_path: Any) -> str | None:
    """A key (a string or a path), else refused: ``open_source(layer, 1)`` failed with
    "'int' object has no attribute 'strip'"; a scale's position is ``scale_index=``/``level=``."""
    if internal_path is None or isinstance(internal_path, str):
        return internal_path
    if isinstance(internal_path, os.PathLike):
        return str(os.fspath(internal_path))
    hint = ""
    if isinstance(internal_path, int) and not isinstance(internal_path, bool):
        hint = (
            f"; to pick a precomputed scale or an OME-Zarr level by its position, pass "
            f"scale_index={internal_path} or level={internal_path}"
        )
    raise InvalidArgumentError(
        f"internal_path names an array by its key (a string), got {internal_path!r}{hint}"
    )


def _compatible(named: FormatBackend, chosen: FormatBackend) -> bool:
    zarr = {"zarr", "zarr3"}
    return named.name == chosen.name or (named.name in zarr and chosen.name in zarr)


def _positive_ints(values: Any, what: str) -> tuple[int, ...]:
    try:
        items = tuple(values)
    except TypeError:
        raise InvalidArgumentError(f"{what} must be a tuple of integers, got {values!r}") from None
    result = []
    for value in items:
        if isinstance(value, bool) or int(value) != value:
            raise InvalidArgumentError(f"{what} must hold integers, got {items!r}")
        result.append(int(value))
    return tuple(result)


def create_request(
    *,
    shape: Any,
    dtype: Any,
    chunks: Any,
    internal_path: str | None,
    compression: str | None,
    shards: Any,
    fill_value: Any,
    exist_ok: bool,
    voxel_size: Any = None,
    unit: str | None = None,
    dimension_names: Any = None,
    dimension_separator: str | None = None,
    translation: Any = None,
) -> CreateRequest:
    """Validated, normalised create_source arguments (chunks clipped to the shape)."""
    shape = _positive_ints(shape, "shape")
    if any(n < 0 for n in shape):
        raise InvalidArgumentError(f"shape {shape} must not be negative")
    given = _positive_ints(chunks, "chunks")
    if len(given) != len(shape) or any(c < 1 for c in given):
        raise InvalidArgumentError(
            f"chunks {given} must have one positive entry per axis of shape {shape}"
        )
    clipped = tuple(min(c, max(n, 1)) for c, n in zip(given, shape))
    shard_shape = None if shards is None else _positive_ints(shards, "shards")
    names = _dimension_names(dimension_names, len(shape))
    if voxel_size is not None:
        sizes = positive_sizes(voxel_size)
        if sizes is None or len(sizes) not in (len(shape), 3) or len(sizes) > len(shape):
            raise InvalidArgumentError(
                f"voxel_size {voxel_size!r} must hold one positive size per axis of shape "
                f"{shape} (or per spatial axis z, y, x)"
            )
        voxel_size = on_spatial_axes(sizes, len(shape), axes_from_names(names, len(shape)))
    unit = check_unit(unit)
    translation = _translation(translation, len(shape), names)
    if dimension_separator not in (None, ".", "/"):
        raise InvalidArgumentError(
            f"dimension_separator must be '.' or '/', got {dimension_separator!r}"
        )
    return CreateRequest(
        shape=shape,
        dtype=np.dtype(dtype),
        chunks=clipped,
        internal_path=internal_path,
        compression=compression,
        shards=shard_shape,
        fill_value=exact_fill_value(fill_value, np.dtype(dtype)),
        exist_ok=bool(exist_ok),
        voxel_size=voxel_size,
        unit=unit,
        dimension_names=names,
        dimension_separator=dimension_separator,
        translation=translation,
    )


def _translation(
    translation: Any, ndim: int, names: tuple[str, ...] | None
) -> tuple[float, ...] | None:
    """Per axis, 0 on the non-spatial ones (all 0 is kept: exist_ok compares it)."""
    if translation is None:
        return None
    try:
        values = tuple(float(v) for v in translation)
    except (TypeError, ValueError):
        values = ()
    if len(values) not in (ndim, 3) or len(values) > ndim or not all(map(math.isfinite, values)):
        raise InvalidArgumentError(
            f"translation {translation!r} must hold one finite number per axis of an array "
            f"with {ndim} axes (or per spatial axis z, y, x)"
        )
    return on_spatial_axes(values, ndim, axes_from_names(names, ndim), fill=0.0)


def _dimension_names(names: Any, ndim: int) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str):
        names = tuple(names)  # "czyx": one letter per axis
    names = tuple(names)
    if len(names) != ndim or not all(isinstance(n, str) for n in names):
        raise InvalidArgumentError(
            f"dimension_names {names!r} must hold one name (a string) per axis of an array "
            f"with {ndim} axes, e.g. {tuple('tczyx'[-ndim:]) if 0 < ndim <= 5 else ('a',)}"
        )
    return names


async def create_source(
    path: str | os.PathLike[str],
    *,
    shape: tuple[int, ...],
    dtype: Any,
    chunks: tuple[int, ...],
    format: str | None = None,
    internal_path: str | None = None,
    compression: str | None = "default",
    shards: tuple[int, ...] | None = None,
    fill_value: Any = 0,
    exist_ok: bool = False,
    voxel_size: tuple[float, ...] | None = None,
    unit: str | None = None,
    storage: StorageOptions | dict[str, Any] | None = None,
    dimension_names: tuple[str, ...] | None = None,
    dimension_separator: str | None = None,
    translation: tuple[float, ...] | None = None,
) -> Source:
    """Create a new chunked array and open it writable.

    formats: "zarr" (v2), "zarr3" (v3, optional ``shards``), "n5", "precomputed", "hdf5" (local
    only). Without ``format=`` the format follows the URL prefix or the extension as in
    ``open_source`` (``.zarr``, ``.n5``, ``.h5/.hdf5/.hdf``); an unknown extension is an error
    that lists the formats, and a ``format=`` that contradicts the extension is an error too.

    ``compression``: "default" (blosc-lz4; HDF5 gzip level 1), "blosc", "zstd", "gzip", "none";
    precomputed: "raw", "jpeg", "compressed_segmentation"; HDF5 also "lzf". ``exist_ok=True``
    opens an existing array of the same shape and dtype for writing (a ``fill_value``, and on
    precomputed a ``voxel_size`` or ``translation``, other than its own is refused: they would
    not be written); a group (or an array of
    another format) at the path is refused whatever ``exist_ok`` says, since the new array
    would hide what it holds: write inside it with ``internal_path``. ``voxel_size``/``unit``
    are written into the array's metadata and read back by ``open_source``: zarr v2/v3 and
    n5 ``pixelResolution`` (n5 also ``resolution``), precomputed ``resolution`` (nm), HDF5
    ``element_size_um`` (micrometres: HDF5 needs ``unit``). ``dimension_names`` (e.g.
    ``("c", "y", "x")``) name the axes: zarr v3 ``dimension_names``, zarr v2
    ``_ARRAY_DIMENSIONS`` (xarray's), n5 ``axes``, HDF5 ``axistags`` (vigra's); a format
    without a place for either (precomputed's axes are fixed) refuses it instead of losing it.
    ``fill_value`` (what unwritten voxels read as) must fit the dtype exactly; n5 and
    precomputed have no fill value and take only 0. ``dimension_separator`` (zarr v2 only)
    names the chunk keys' separator: '.' (zarr's default) or '/' (OME-NGFF's requirement).
    ``translation`` (where voxel 0 sits, in the unit of ``voxel_size``, one per axis or per
    spatial axis) is recorded by precomputed (the scale's ``voxel_offset``, so it must be a
    whole number of voxels and needs ``voxel_size``); the other formats have no place for it
    and refuse it (a pyramid records it in OME-Zarr metadata).
    """
    location = Location.parse(path, StorageOptions.coerce(storage))
    await load_format_backends()
    backend = creation_backend(location, format)
    if location.is_remote and not backend.remote:
        raise FormatNotSupportedError(
            f"the {backend.name} format is written to local files only, not to {location}; "
            "object storage takes zarr, zarr3, n5 and precomputed"
        )
    if dimension_separator is not None and backend.name != "zarr":
        raise InvalidArgumentError(
            f"dimension_separator is a zarr v2 setting; the {backend.name} format names its "
            "chunks its own way"
        )
    request = create_request(
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        internal_path=internal_path,
        compression=compression,
        shards=shards,
        fill_value=fill_value,
        exist_ok=exist_ok,
        voxel_size=voxel_size,
        unit=unit,
        dimension_names=dimension_names,
        dimension_separator=dimension_separator,
        translation=translation,
    )
    _check_recordable(backend, request)
    await check_installed(backend)
    return await backend.create(location, request)


def creation_backend(location: Location, format: str | None) -> FormatBackend:
    """The format ``create_source`` writes at ``location``: ``format=``, else the one its URL
    prefix or extension names (they must agree)."""
    named = (
        format_for_prefix(location.prefix)
        if location.prefix is not None
        else format_for_extension(location.name)
    )
    if format is None:
        if named is None:
            raise FormatNotSupportedError(
                f"cannot tell which format to create at {str(location)!r} from its extension; "
                f"name it .zarr, .n5 or .h5, or pass format= one of "
                f"{', '.join(creatable_formats())}"
            )
        backend = named
    else:
        backend = format_backend(format)
        if named is not None and not _compatible(named, backend):
            raise FormatNotSupportedError(
                f"format={format!r} contradicts the path {str(location)!r}, which names the "
                f"{named.name} format; rename the path or drop format="
            )
    if not backend.creatable:
        raise FormatNotSupportedError(
            f"cannot create format {backend.name!r}; create_source writes one of "
            f"{', '.join(creatable_formats())}"
        )
    return backend


def _check_recordable(backend: FormatBackend, request: CreateRequest) -> None:
    """A voxel size or axis names the format has no place for are refused, not dropped."""
    for given, able, what, argument in (
        (request.voxel_size, "records_voxel_size", "a voxel size", "voxel_size"),
        (request.dimension_names, "records_axis_names", "axis names", "dimension_names"),
        (request.translation, "records_translation", "a translation", "translation"),
    ):
        if given is None or not any(given) or getattr(backend, able):
            continue  # (a translation of 0 is what every array has)
        keeping = [b.name for b in formats() if b.creatable and getattr(b, able)]
        raise FormatNotSupportedError(
            f"the {backend.name} format has no place for {what}, so {argument}="
            f"{tuple(given)!r} would be lost; create one of {', '.join(keeping)} to keep "
            f"them, or omit {argument}="
        )


# ---- specs ------------------------------------------------------------------------------------
async def from_spec(spec: SourceSpec | dict[str, Any]) -> Source:
    """Reopen a source from ``source.to_spec()`` or its JSON form."""
    if not isinstance(spec, SourceSpec):
        spec = SourceSpec.from_json(spec)
    if spec.kind == "open_source":  # reopen by path, with open_source's own arguments
        return await open_source(**spec.params)
    if spec.kind == "numpy":
        raise NotSerializableError(
            "an in-memory numpy source cannot be reopened from a spec; write it to a file first"
        )
    cls = source_class(spec.kind)
    if cls is None:
        formats()  # the built-in format modules define most kinds
        for module in SPEC_MODULES:
            importlib.import_module(f"{__package__}.{module}")
        cls = source_class(spec.kind)
    if cls is None:
        raise FormatNotSupportedError(f"unknown source spec kind {spec.kind!r}")
    return await cls.from_params(spec.params)


def as_source(obj: Any) -> Source:
    """Wrap an array-like object as a Source (idempotent on Sources).

    Accepts a Source, a numpy array, a ``tensorstore.TensorStore``, a zarr-python array (reopened
    through tensorstore for its I/O) or an h5py dataset. Paths are refused: use open_source.
    """
    if isinstance(obj, Source):
        return obj
    if isinstance(obj, (str, bytes, os.PathLike)):
        raise InvalidArgumentError(
            f"as_source() takes an array, not a path ({obj!r}); open files with "
            "`await ba.open_source(path)` (or ba.sync.open_source in blocking code)"
        )
    if isinstance(obj, np.ndarray):
        from .numpy_source import NumpySource

        return NumpySource(obj)
    module = type(obj).__module__ or ""
    if module.startswith("tensorstore"):
        from .tensorstore_source import wrap_tensorstore

        return wrap_tensorstore(obj)
    if module.startswith("zarr"):
        from .zarr_python import wrap_zarr_array

        return wrap_zarr_array(obj)
    if module.startswith("h5py"):
        from .hdf5 import wrap_h5py_dataset

        return wrap_h5py_dataset(obj)
    raise InvalidArgumentError(
        f"cannot use an object of type {type(obj).__name__} as a source; pass a numpy array, a "
        "tensorstore.TensorStore, a zarr array, an h5py dataset or a bioimage_async Source"
    )


def infer_format(path: str | os.PathLike[str]) -> str:
    """The name of a path's format by prefix or extension (no I/O), or '' when unknown."""
    location = Location.parse(path)
    if location.prefix is not None:
        named = format_for_prefix(location.prefix)
    else:
        named = format_for_extension(location.name)
    return named.name if named is not None else ""
