"""Blocking twins of the coroutine API, run on one background event-loop thread.

They work where an event loop is already running in the calling thread (Jupyter), and a
KeyboardInterrupt cancels the underlying run (finished blocks stay written).
"""

from __future__ import annotations

from typing import Any

from ._loop import run_sync
from .sources import registry
from .sources.base import Source


def open_source(path: Any, internal_path: str | None = None, **kwargs: Any) -> Source:
    """Blocking ``ba.open_source``."""
    return run_sync(registry.open_source(path, internal_path, **kwargs))


def create_source(path: Any, **kwargs: Any) -> Source:
    """Blocking ``ba.create_source``."""
    return run_sync(registry.create_source(path, **kwargs))


def from_spec(spec: Any) -> Source:
    """Blocking ``ba.from_spec``."""
    return run_sync(registry.from_spec(spec))
