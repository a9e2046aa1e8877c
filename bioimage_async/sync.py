"""Blocking twins of the coroutine API, run on one background event-loop thread.

They work where an event loop is already running in the calling thread (Jupyter), and a
KeyboardInterrupt cancels the underlying run (finished blocks stay written).
"""

from __future__ import annotations

from collections.abc import Iterator
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


def copy(input: Any, output: Any = None, **kwargs: Any) -> Any:
    """Blocking ``ba.copy``; Ctrl-C cancels the run (finished blocks stay written)."""
    from .ops import copy as copy_op

    return run_sync(copy_op(input, output, **kwargs))


def downsample(input: Any, scale_factor: Any, output: Any = None, **kwargs: Any) -> Any:
    """Blocking ``ba.downsample``."""
    from .ops import downsample as downsample_op

    return run_sync(downsample_op(input, scale_factor, output, **kwargs))


def map_blocks(fn: Any, input: Any, output: Any = None, **kwargs: Any) -> Any:
    """Blocking ``ba.map_blocks``."""
    from .ops import map_blocks as map_blocks_op

    return run_sync(map_blocks_op(fn, input, output, **kwargs))


def iter_blocks(source: Any, block_shape: Any = None, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """A plain iterator over ``ba.iter_blocks``: each step runs on the background loop."""
    from .ops import iter_blocks as iter_blocks_op

    agen: Any = iter_blocks_op(source, block_shape, **kwargs)
    try:
        while True:
            try:
                yield run_sync(agen.__anext__())
            except StopAsyncIteration:
                return
    finally:
        run_sync(agen.aclose())


def attach(tmp_folder: str, job_config: Any = None, **kwargs: Any) -> Any:
    """Blocking ``ba.attach``: the Run of a temp folder."""
    from .runners.attach import attach as attach_coro

    return run_sync(attach_coro(tmp_folder, job_config, **kwargs))


def wait(run: Any, progress: Any = None) -> Any:
    """Blocking ``await run.wait()``."""
    return run_sync(run.wait(progress))


def status(run: Any) -> Any:
    """Blocking ``await run.status()``."""
    return run_sync(run.status())


def cancel(run: Any) -> None:
    """Blocking ``await run.cancel()``."""
    run_sync(run.cancel())


def pyramid(input: Any, output_path: Any, levels: int, **kwargs: Any) -> Any:
    """Blocking ``ba.pyramid``."""
    from .ops import pyramid as pyramid_op

    return run_sync(pyramid_op(input, output_path, levels, **kwargs))
