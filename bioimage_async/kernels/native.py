"""The compiled kernels (``_smooth.c``, ``_mode.c``), loaded through ctypes where they were built.

They are optional: ``pip install`` builds them where a C compiler is (setup.py), and each has a
numpy twin that gives the same result, slower. ``BIOIMAGE_ASYNC_NO_NATIVE=1`` switches them off.
ctypes.CDLL (not PyDLL) releases the GIL around each call, so blocks run in parallel threads.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os

__all__ = ["load_library"]


def load_library(name: str) -> ctypes.CDLL | None:
    """The extension module ``bioimage_async.kernels.<name>`` as a C library, or None."""
    if os.environ.get("BIOIMAGE_ASYNC_NO_NATIVE", "") not in ("", "0"):
        return None
    spec = importlib.util.find_spec(f"{__package__}.{name}")
    if spec is None or spec.origin is None or not spec.origin.endswith((".so", ".pyd")):
        return None
    try:
        return ctypes.CDLL(spec.origin)
    except OSError:
        return None
