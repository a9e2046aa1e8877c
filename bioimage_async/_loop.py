"""One background event-loop thread that runs coroutines for blocking callers.

Why a dedicated thread rather than ``asyncio.run``: the sync API must also work where an event
loop is already running in the calling thread (Jupyter, an async web app calling a helper), and
repeated ``asyncio.run`` calls would tear down pools and stores between calls. As in
zarr-python's ``core/sync.py``, the thread is created lazily, stopped at exit, and reset in a
forked child.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Awaitable
from concurrent.futures import Future
from typing import TypeVar

from .errors import SyncCallError

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _reset_after_fork() -> None:
    global _loop, _thread
    _loop = None
    _thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def background_loop() -> asyncio.AbstractEventLoop:
    """The background loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="bioimage-async-loop", daemon=True
            )
            thread.start()
            _loop, _thread = loop, thread
        return _loop


def _stop() -> None:
    loop = _loop
    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
        if _thread is not None:
            _thread.join(timeout=5)


atexit.register(_stop)


def run_sync(coro: Awaitable[T]) -> T:
    """Run ``coro`` on the background loop and block until it is done.

    A KeyboardInterrupt while waiting cancels the coroutine, waits for its clean-up (so worker
    processes are shut down and finished blocks stay written) and then re-raises.
    """
    loop = background_loop()
    if threading.current_thread() is _thread:
        close = getattr(coro, "close", None)
        if close is not None:
            close()
        raise SyncCallError(
            "a bioimage_async blocking call was made from inside its own background loop; "
            "inside async code, await the coroutine API (e.g. await source.read(...)) instead"
        )
    finished = threading.Event()

    async def tracked() -> T:
        try:
            return await coro
        finally:
            finished.set()

    future: Future[T] = asyncio.run_coroutine_threadsafe(tracked(), loop)
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        finished.wait(timeout=60)
        raise
