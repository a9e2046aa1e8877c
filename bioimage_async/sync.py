"""Blocking twins of the coroutine API, run on one background event-loop thread.

They work where an event loop is already running in the calling thread (Jupyter), and a
KeyboardInterrupt cancels the underlying run (finished blocks stay written). Each twin is made
from its async original by ``blocking()``, so it has exactly the original's signature and return
type (editors and mypy see them) and the two can never drift apart.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar

import numpy as np

from . import ops
from ._loop import run_sync
from .blocking.grid import Block
from .ops.iter_blocks import BlockStream
from .runners.attach import attach as _attach
from .runners.attach import missing_blocks as _missing_blocks
from .runners.run import Run, RunStatus
from .sources import registry

P = ParamSpec("P")
T = TypeVar("T")


def blocking(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """The blocking twin of coroutine function ``fn`` (same signature, same result)."""

    @functools.wraps(fn)
    def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(fn(*args, **kwargs))

    twin.__doc__ = f"Blocking ``ba.{fn.__name__}`` (Ctrl-C cancels it).\n\n{fn.__doc__ or ''}"
    return twin


open_source = blocking(registry.open_source)
create_source = blocking(registry.create_source)
from_spec = blocking(registry.from_spec)
copy = blocking(ops.copy)
downsample = blocking(ops.downsample)
map_blocks = blocking(ops.map_blocks)
pyramid = blocking(ops.pyramid)
attach = blocking(_attach)
missing_blocks = blocking(_missing_blocks)


class BlockIterator:
    """A plain iterator over ``ba.iter_blocks``: each step runs on the background loop.

    Breaking out of a ``for`` loop releases the inner generator, which closes it and cancels
    the pending reads, even when the caller keeps a reference to this object.
    """

    def __init__(self, stream: BlockStream) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[tuple[Block, np.ndarray]]:
        return _drive(self._stream.__aiter__())


def _drive(agen: AsyncIterator[tuple[Block, np.ndarray]]) -> Iterator[tuple[Block, np.ndarray]]:
    try:
        while True:
            try:
                yield run_sync(agen.__anext__())
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            run_sync(aclose())


def iterating(fn: Callable[P, BlockStream]) -> Callable[P, BlockIterator]:
    """The blocking twin of a function returning a block stream (same signature)."""

    @functools.wraps(fn)
    def twin(*args: P.args, **kwargs: P.kwargs) -> BlockIterator:
        return BlockIterator(fn(*args, **kwargs))

    twin.__doc__ = f"Blocking ``ba.{fn.__name__}``: a plain iterator.\n\n{fn.__doc__ or ''}"
    return twin


iter_blocks = iterating(ops.iter_blocks)


def wait(run: Run, progress: Any = None) -> Any:
    """Blocking ``await run.wait()``."""
    return run_sync(run.wait(progress))


def status(run: Run) -> RunStatus:
    """Blocking ``await run.status()``."""
    return run_sync(run.status())


def cancel(run: Run, timeout: float = 60.0) -> None:
    """Blocking ``await run.cancel(timeout)``: waits up to ``timeout`` s for the tasks to go."""
    run_sync(run.cancel(timeout))
