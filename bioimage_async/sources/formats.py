"""The format seam: one registered ``FormatBackend`` object per format.

A backend holds everything about its format in one place: its name, extensions and URL
prefixes, how its content is recognised, how it opens and creates arrays, what it can do
(write, create, live in object storage) and which optional package it needs. ``open_source``,
``create_source``, the CLI's ``--format`` choices and the error messages are all derived from the
registry, so a new format is one new module plus one registration line::

    class ToyFormat(FormatBackend):
        name = "toy"; extensions = (".toy",); description = "toy files"
        async def open(self, location, internal_path, *, mode, **options): ...

    ba.register_format(ToyFormat())

The built-in backends are registered lazily (first use) from ``BUILTIN_MODULES``: each of those
modules exposes ``FORMAT_BACKENDS``, and none imports its optional library at import time.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._registry import Registry
from ..errors import (
    FormatNotSupportedError,
    InvalidArgumentError,
    MissingDependencyError,
    SourceExistsError,
)

if TYPE_CHECKING:
    from .base import Source
    from .location import Location

logger = logging.getLogger("bioimage_async")

#: Modules (in ``bioimage_async.sources``) whose ``FORMAT_BACKENDS`` are the built-in formats,
#: in detection order: a folder holding several formats' metadata is the first one's.
BUILTIN_MODULES = ("tensorstore_formats", "hdf5", "tiff", "mrc", "nifti", "knossos")


@dataclass(frozen=True, kw_only=True)
class CreateRequest:
    """What ``create_source`` asks a backend to create (validated and normalised)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    internal_path: str | None = None
    compression: str | None = "default"
    shards: tuple[int, ...] | None = None
    fill_value: Any = 0
    exist_ok: bool = False
    voxel_size: tuple[float, ...] | None = None
    unit: str | None = None
    dimension_names: tuple[str, ...] | None = None
    #: where voxel 0 sits, in the unit of ``voxel_size``, per axis (0 on non-spatial axes)
    translation: tuple[float, ...] | None = None
    #: zarr v2 chunk keys: None (zarr's default '.') or '/' (what OME-NGFF requires)
    dimension_separator: str | None = None


def check_kept_fill(where: str, existing: Any, requested: Any) -> None:
    """exist_ok keeps the existing array's fill value (what its unwritten voxels read as):
    one asked for that differs is refused, not dropped (unwritten voxels would read the old
    one); the default 0 over another one is only noted."""
    kept = 0 if existing is None else np.asarray(existing).item()
    asked = 0 if requested is None else requested
    if kept == asked or (kept != kept and asked != asked):  # NaN == NaN here
        return
    if asked == 0:
        logger.warning(
            "%s exists: writing into it keeps its fill value %r (what unwritten voxels read)",
            where,
            kept,
        )
        return
    raise SourceExistsError(
        f"the existing array at {where} has fill value {kept!r}, not the requested "
        f"{asked!r}: its unwritten voxels would read {kept!r}. Write into it without "
        "fill_value=, or remove it first"
    )


class FormatBackend:
    """One format: identity, detection, open, create and capabilities."""

    #: The format's name (``format=`` and the CLI's ``--format``).
    name: str = ""
    #: One line for listings and error messages.
    description: str = ""
    #: Lower-case file or folder extensions that name this format (".nii.gz" style allowed).
    extensions: tuple[str, ...] = ()
    #: Neuroglancer-style URL prefixes that name this format ("zarr3://", ...).
    url_prefixes: tuple[str, ...] = ()
    #: Whether existing arrays can be opened for writing (mode 'r+').
    writable: bool = False
    #: Whether ``create_source`` can create arrays of this format.
    creatable: bool = False
    #: Whether the format works on object-storage URLs (s3://, gs://, http(s)://).
    remote: bool = False
    #: Whether created arrays record ``voxel_size``/``unit`` (else create_source refuses them).
    records_voxel_size: bool = False
    #: Whether created arrays record ``dimension_names`` (else create_source refuses them).
    records_axis_names: bool = False
    #: Whether created arrays record a ``translation`` (else create_source refuses one).
    records_translation: bool = False
    #: The importable package the backend needs, and the pip extra that installs it.
    requires: str | None = None
    extra: str | None = None

    def check_installed(self) -> None:
        """Raise MissingDependencyError (naming the extra) when the backend's library is absent."""
        if self.requires is None:
            return
        try:
            importlib.import_module(self.requires)
        except ImportError:
            raise MissingDependencyError(
                self.requires, self.extra or "all", f"the {self.name} format"
            ) from None

    async def detect(self, location: Location) -> bool:
        """Whether the folder or URL (with no telling extension) holds this format."""
        return False

    async def open(
        self, location: Location, internal_path: str | None, *, mode: str, **options: Any
    ) -> Source:
        raise FormatNotSupportedError(f"the {self.name} format cannot be opened here")

    async def create(self, location: Location, request: CreateRequest) -> Source:
        raise FormatNotSupportedError(
            f"cannot create format {self.name!r}; create_source writes one of "
            f"{', '.join(creatable_formats())}"
        )

    def __repr__(self) -> str:
        return f"<FormatBackend {self.name!r}>"


class LocalFileFormat(FormatBackend):
    """A format read from local files by a blocking library: ``opener(path, key, mode=...)``."""

    #: The per-format keywords ``open_source`` passes on to ``open_local`` (``pattern=``, ...);
    #: any other is refused before the file is touched.
    open_options: tuple[str, ...] = ()

    async def open(
        self, location: Location, internal_path: str | None, *, mode: str, **options: Any
    ) -> Source:
        self.check_open_options(options)
        return await self.open_local(str(location.local_path), internal_path, mode=mode, **options)

    def check_open_options(self, options: dict[str, Any]) -> None:
        """Refuse keywords this format does not take: they reached the opener and failed as a
        bare ``TypeError`` ("open_tiff() got an unexpected keyword argument 'level'")."""
        unknown = sorted(set(options) - set(self.open_options))
        if not unknown:
            return
        takes = ", ".join(f"{name}=" for name in self.open_options) or "no extra keywords"
        hint = ""
        if "level" in unknown:
            hint = (
                f"; level= selects a level of an OME-Zarr multiscale, a precomputed layer or a "
                f"webknossos layer, and {self.name} files have no levels here (pick an "
                f"array with internal_path=, or convert the level you need first)"
            )
        raise InvalidArgumentError(
            f"open_source got keyword(s) the {self.name} format does not take: "
            f"{', '.join(f'{name}=' for name in unknown)}; it takes {takes}{hint}"
        )

    async def open_local(
        self, path: str, internal_path: str | None, *, mode: str, **options: Any
    ) -> Source:
        raise NotImplementedError


_FORMATS: Registry[FormatBackend] = Registry(
    "format backend", __package__ or "bioimage_async.sources", BUILTIN_MODULES, "FORMAT_BACKENDS"
)


def register_format(backend: FormatBackend, *, replace: bool = False) -> FormatBackend:
    """Add a format to the registry (``replace=True`` swaps out one of the same name)."""
    return _FORMATS.register(backend, replace=replace)


def unregister_format(name: str) -> None:
    _FORMATS.unregister(name)


async def load_format_backends() -> None:
    """Load the built-in formats in a thread (a first open must not stall its event loop)."""
    await _FORMATS.load_off_loop()


def formats() -> list[FormatBackend]:
    """Every registered format, in detection order."""
    return _FORMATS.all()


def format_backend(name: str) -> FormatBackend:
    backend = _FORMATS.get(name)
    if backend is None:
        raise FormatNotSupportedError(
            f"unknown format {name!r}; known formats: {', '.join(_FORMATS.names())}"
        )
    return backend


def format_names() -> list[str]:
    return [b.name for b in formats()]


def creatable_formats() -> list[str]:
    return [b.name for b in formats() if b.creatable]


def known_formats_text() -> str:
    return "; ".join(f"{b.name}: {b.description}" for b in formats())


def format_for_extension(path: str) -> FormatBackend | None:
    """The format whose extension ends ``path`` (longest match, any case), if any."""
    lowered = path.rstrip("/").lower()
    best: tuple[int, FormatBackend] | None = None
    for backend in formats():
        for ext in backend.extensions:
            if lowered.endswith(ext) and (best is None or len(ext) > best[0]):
                best = (len(ext), backend)
    return None if best is None else best[1]


def format_for_prefix(prefix: str) -> FormatBackend | None:
    """The format a URL prefix such as 'zarr3://' names, if any."""
    for backend in formats():
        if prefix in backend.url_prefixes:
            return backend
    return None
