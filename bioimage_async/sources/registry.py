"""Opening, creating and reopening sources: format inference and the spec registry.

Backends are imported lazily, by module path, so that a missing optional library only matters
when its format is used, and then says which extra to install.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatNotSupportedError, MissingDependencyError
from .base import Source, SourceSpec
from .optional import refuse_write_mode


@dataclass(frozen=True)
class FormatInfo:
    """How to open one format: where its opener lives and what it needs."""

    name: str
    module: str
    opener: str
    requires: str | None  # the importable package the backend needs
    extra: str | None  # the pip extra that installs it
    writable: bool
    description: str


FORMATS: dict[str, FormatInfo] = {
    f.name: f
    for f in (
        FormatInfo(
            "zarr",
            "tensorstore_source",
            "open_tensorstore",
            None,
            None,
            True,
            "zarr v2 or v3 (auto-detected), .zarr",
        ),
        FormatInfo(
            "zarr3",
            "tensorstore_source",
            "open_tensorstore",
            None,
            None,
            True,
            "zarr v3, incl. sharding",
        ),
        FormatInfo("n5", "tensorstore_source", "open_tensorstore", None, None, True, "n5, .n5"),
        FormatInfo(
            "precomputed",
            "tensorstore_source",
            "open_tensorstore",
            None,
            None,
            True,
            "neuroglancer precomputed, precomputed://... or a folder with 'info'",
        ),
        FormatInfo("hdf5", "hdf5", "open_hdf5", "h5py", "hdf5", True, "HDF5, .h5/.hdf5/.hdf"),
        FormatInfo(
            "tiff",
            "tiff",
            "open_tiff",
            "tifffile",
            "tiff",
            False,
            "TIFF, .tif/.tiff, or a folder of 2D slices with pattern='*.tif'",
        ),
        FormatInfo("mrc", "mrc", "open_mrc", "mrcfile", "mrc", False, "MRC, .mrc/.rec/.map"),
        FormatInfo(
            "nifti", "nifti", "open_nifti", "nibabel", "nifti", False, "NIfTI, .nii/.nii.gz"
        ),
        FormatInfo(
            "knossos",
            "knossos",
            "open_knossos",
            None,
            None,
            False,
            "KNOSSOS cubes, a folder of mag folders",
        ),
    )
}

EXTENSIONS: dict[str, str] = {
    ".zarr": "zarr",
    ".n5": "n5",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".mrc": "mrc",
    ".rec": "mrc",
    ".map": "mrc",
    ".nii": "nifti",
    ".nii.gz": "nifti",
}

CREATABLE = ("zarr", "zarr3", "n5", "precomputed", "hdf5")

_MODES = ("r", "r+", "a", "w")


def known_formats_text() -> str:
    return "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values())


def infer_format(path: str, pattern: str | None = None) -> str:
    """The format of ``path`` from its extension or, for a folder, from what it holds."""
    if path.startswith("precomputed://"):
        return "precomputed"
    lowered = path.rstrip("/").lower()  # extensions are matched case-insensitively
    for ext in sorted(EXTENSIONS, key=len, reverse=True):
        if lowered.endswith(ext):
            return EXTENSIONS[ext]
    folder = Path(path)
    if folder.is_dir():
        if (folder / "info").is_file():
            return "precomputed"
        if any((folder / name).exists() for name in (".zarray", ".zgroup", "zarr.json")):
            return "zarr"
        if (folder / "attributes.json").is_file():
            return "n5"
        if (folder / "knossos.conf").exists() or any(
            p.name.startswith("mag") for p in folder.iterdir() if p.is_dir()
        ):
            return "knossos"
        if pattern is not None or any(
            name.lower().endswith((".tif", ".tiff")) for name in os.listdir(path)
        ):
            return "tiff"
    elif not folder.exists() and "://" not in path:
        raise FileNotFoundError(f"no such file or folder: {path!r}")
    raise FormatNotSupportedError(
        f"cannot tell the format of {path!r} from its extension or content. Pass format= "
        f"with one of: {known_formats_text()}"
    )


def format_info(fmt: str) -> FormatInfo:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise FormatNotSupportedError(
            f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}"
        ) from None


def _backend(info: FormatInfo) -> Any:
    if info.requires is not None:
        try:
            importlib.import_module(info.requires)
        except ImportError:
            raise MissingDependencyError(
                info.requires, info.extra or "all", f"the {info.name} format"
            ) from None
    return importlib.import_module(f"{__package__}.{info.module}")


async def open_source(
    path: str | os.PathLike[str],
    internal_path: str | None = None,
    *,
    format: str | None = None,
    mode: str = "r",
    **kwargs: Any,
) -> Source:
    """Open an existing volume as a Source, inferring the format from the path.

    ``internal_path`` selects the array inside a container (HDF5 dataset, zarr/n5 group key,
    precomputed scale key). ``mode='r'`` opens read-only; 'r+'/'a'/'w' open writable formats for
    writing (creation is ``create_source``'s job).
    """
    path = os.fspath(path)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    fmt = format if format is not None else infer_format(path, kwargs.get("pattern"))
    info = format_info(fmt)
    if not info.writable:
        refuse_write_mode(fmt, mode)
    backend = _backend(info)
    opener: Callable[..., Awaitable[Source]] = getattr(backend, info.opener)
    if info.module == "tensorstore_source":
        return await opener(path, internal_path, format=fmt, mode=mode, **kwargs)
    return await opener(path, internal_path, mode=mode, **kwargs)


async def create_source(
    path: str | os.PathLike[str],
    *,
    shape: tuple[int, ...],
    dtype: Any,
    chunks: tuple[int, ...],
    format: str = "zarr",
    internal_path: str | None = None,
    compression: str | None = "default",
    shards: tuple[int, ...] | None = None,
    fill_value: Any = 0,
    exist_ok: bool = False,
) -> Source:
    """Create a new chunked array and open it writable.

    formats: "zarr" (v2), "zarr3" (v3, optional ``shards``), "n5", "precomputed", "hdf5".
    """
    path = os.fspath(path)
    if format not in CREATABLE:
        raise FormatNotSupportedError(
            f"cannot create format {format!r}; create_source writes one of {', '.join(CREATABLE)}"
        )
    shape = tuple(int(n) for n in shape)
    chunks = tuple(int(min(c, max(n, 1))) for c, n in zip(chunks, shape))
    if len(chunks) != len(shape) or any(c < 1 for c in chunks):
        raise ValueError(
            f"chunks {tuple(chunks)} must have one positive entry per axis of shape {shape}"
        )
    dtype = np.dtype(dtype)
    if shards is not None:
        shards = tuple(int(s) for s in shards)
    if format == "hdf5":
        backend = _backend(FORMATS["hdf5"])
        return await backend.create_hdf5(
            path,
            shape=shape,
            dtype=dtype,
            chunks=chunks,
            internal_path=internal_path,
            compression=compression,
            fill_value=fill_value,
            exist_ok=exist_ok,
        )
    from .tensorstore_source import create_tensorstore

    return await create_tensorstore(
        path,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        format=format,
        internal_path=internal_path,
        compression=compression,
        shards=shards,
        fill_value=fill_value,
        exist_ok=exist_ok,
    )


# ---- specs ------------------------------------------------------------------------------------
#: kind -> (module, class) whose ``from_params`` coroutine reopens a spec of that kind.
SPEC_KINDS: dict[str, tuple[str, str]] = {
    "tensorstore": ("tensorstore_source", "TensorStoreSource"),
    "view": ("view", "ViewSource"),
    "hdf5": ("hdf5", "Hdf5Source"),
    "tiff": ("tiff", "TiffSource"),
    "tiff_folder": ("tiff", "TiffFolderSource"),
    "mrc": ("mrc", "MrcSource"),
    "nifti": ("nifti", "NiftiSource"),
    "resized": ("wrappers", "ResizedSource"),
    "threshold": ("wrappers", "ThresholdSource"),
    "cloudvolume": ("cloudvolume", "CloudVolumeSource"),
    "webknossos": ("webknossos", "WebKnossosSource"),
    "knossos": ("knossos", "KnossosSource"),
}


async def from_spec(spec: SourceSpec | dict[str, Any]) -> Source:
    """Reopen a source from ``source.to_spec()`` or its JSON form."""
    if not isinstance(spec, SourceSpec):
        spec = SourceSpec.from_json(spec)
    if spec.kind == "numpy":
        raise FormatNotSupportedError(
            "an in-memory numpy source cannot be reopened from a spec; write it to a file first"
        )
    try:
        module, name = SPEC_KINDS[spec.kind]
    except KeyError:
        raise FormatNotSupportedError(
            f"unknown source spec kind {spec.kind!r}; known: {', '.join(SPEC_KINDS)}"
        ) from None
    info = next((f for f in FORMATS.values() if f.module == module), None)
    backend = (
        _backend(info) if info is not None else importlib.import_module(f"{__package__}.{module}")
    )
    return await getattr(backend, name).from_params(spec.params)


def as_source(obj: Any) -> Source:
    """Wrap an array-like object as a Source (idempotent on Sources).

    Accepts a Source, a numpy array, a ``tensorstore.TensorStore``, a zarr-python array (reopened
    through tensorstore for its I/O) or an h5py dataset. Paths are refused: use open_source.
    """
    if isinstance(obj, Source):
        return obj
    if isinstance(obj, (str, bytes, os.PathLike)):
        raise TypeError(
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
    raise TypeError(
        f"cannot use an object of type {type(obj).__name__} as a source; pass a numpy array, a "
        "tensorstore.TensorStore, a zarr array, an h5py dataset or a bioimage_async Source"
    )
