"""What every optional backend checks the same way: its library, and read-only modes."""

from __future__ import annotations

import importlib
import os
from typing import Any

from ..errors import (
    FormatNotSupportedError,
    InternalPathNotFoundError,
    MissingDependencyError,
    SourceNotFoundError,
)


def import_optional(module: str, package: str, extra: str, what: str) -> Any:
    """``module``, or MissingDependencyError naming the extra (also for specs reopened elsewhere)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(package, extra, what) from None


#: The one internal path of a one-array file (bioimage-py's key for it); accepted and ignored.
SINGLE_ARRAY_KEY = "data"


def single_array_file(
    path: str | os.PathLike[str], internal_path: str | None, default_key: str, what: str
) -> str:
    """The absolute path of a one-array file (MRC, NIfTI), checking the key and the file."""
    path = os.path.abspath(os.fspath(path))
    if internal_path not in (None, "", default_key):
        raise InternalPathNotFoundError(path, internal_path, [default_key])
    if not os.path.isfile(path):
        raise SourceNotFoundError(f"no such {what} file: {path!r}")
    return path


def refuse_write_mode(fmt: str, mode: str) -> None:
    """Read-only formats accept only mode='r'; say what to do instead."""
    if mode != "r":
        raise FormatNotSupportedError(
            f"the {fmt} format is read-only here, so mode={mode!r} is not possible; open it with "
            "mode='r' and copy it into a writable format (zarr, zarr3, n5, precomputed, hdf5)"
        )
