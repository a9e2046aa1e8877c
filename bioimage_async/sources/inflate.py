"""The zlib-stream decoder for TIFF deflate segments and HDF5 gzip chunks: libdeflate if installed.

libdeflate decodes about twice as fast as zlib (which tifffile and h5py use) and, like zlib,
releases the GIL. It comes with the ``deflate`` package or with imagecodecs (the tiff extra);
``pick_inflate`` takes the first of them that is installed.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable
from typing import Any, cast

__all__ = [
    "Inflate",
    "InflateErrors",
    "InflateInto",
    "pick_inflate",
    "pick_inflate_into",
    "inflate_or_zlib",
]

#: inflate(zlib stream, size of the decoded data) -> decoded bytes
Inflate = Callable[[Any, int], Any]
#: inflate_into(zlib stream, writable contiguous uint8 buffer) -> how many bytes it decoded
InflateInto = Callable[[Any, Any], int]


class _InflateError(RuntimeError):
    """A stream libdeflate could not decode (its callers catch it and fall back)."""


#: what an ``Inflate`` raises on a corrupt stream or a size other than the one given
#: (imagecodecs' DeflateError is a RuntimeError; the deflate package's becomes one)
InflateErrors = (RuntimeError,)


def pick_inflate(libraries: tuple[str, ...] = ("deflate", "imagecodecs")) -> Inflate | None:
    """libdeflate's zlib decoder from the first of ``libraries`` installed, or None."""
    for name in libraries:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if name == "deflate":
            return _deflate_package(module)
        if getattr(getattr(module, "DEFLATE", None), "available", False):
            decode = module.deflate_decode
            return lambda raw, nbytes: decode(raw, out=nbytes)
    return None


def pick_inflate_into() -> InflateInto | None:
    """libdeflate's zlib decoder writing into a given buffer (imagecodecs), or None.

    Decoding straight into a block's array spares a segment-sized allocation (fresh pages
    to fault in) and a copy per segment. A stream that decodes to fewer bytes than the
    buffer reports the shorter length; one that needs more raises (InflateErrors).
    """
    try:
        module = importlib.import_module("imagecodecs")
    except ImportError:
        return None
    if not getattr(getattr(module, "DEFLATE", None), "available", False):
        return None
    decode = module.deflate_decode

    def inflate_into(raw: Any, out: Any) -> int:
        return len(decode(raw, out=out))

    return inflate_into


def inflate_or_zlib(fast: Inflate | None) -> Inflate:
    """``fast`` where it decodes, zlib where it does not (no libdeflate, an unexpected size)."""
    if fast is None:
        return lambda raw, nbytes: zlib.decompress(raw)

    def inflate(raw: Any, nbytes: int) -> Any:
        try:
            return fast(raw, max(nbytes, 1))
        except InflateErrors:
            return zlib.decompress(raw)

    return inflate


def _deflate_package(module: Any) -> Inflate:
    def inflate(raw: Any, nbytes: int) -> bytes:
        try:
            return cast(bytes, module.zlib_decompress(raw, nbytes))
        except module.DeflateError as error:
            raise _InflateError(str(error)) from error

    return inflate
