"""Per-process shared resources: one tensorstore Context and one bounded thread pool.

tensorstore starts a thread pool per Context sized to the machine's cores; N worker processes
each opening stores with a default Context would start N x cores threads. Every store opened by
bioimage_async therefore shares one Context per process, with bounded pools and a decoded-chunk
cache (halo reads cross chunk borders; without the cache each block re-decodes its neighbours).

Blocking libraries (h5py, tifffile, mrcfile, nibabel, cloud-volume) run in one bounded thread
pool so that the event loop is never blocked and the number of threads stays fixed.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

import tensorstore as ts

from .errors import InvalidArgumentError

T = TypeVar("T")


def _default_threads() -> int:
    return max(2, min(8, os.cpu_count() or 2))


@dataclass(frozen=True)
class ResourceOptions:
    """Sizes of the per-process shared resources.

    ``file_io_sync`` is off by default like zarr-python and dask (fsync per chunk costs 14-18%
    here); set it True where durability against an OS crash matters more than speed.
    ``storage_timeout`` bounds, in seconds, how long opening or probing an object-store URL
    waits before saying the endpoint is unreachable. ``storage_retries`` is how often
    tensorstore tries one object-store request (s3, gcs, http) before it fails, waiting 0.25 s
    doubling to at most 8 s in between: transient errors (5xx, dropped connections) are ridden
    out, a wrong endpoint fails in seconds (tensorstore's own default, 32 tries up to 32 s
    apart, takes a quarter of an hour).
    """

    data_copy_concurrency: int = _default_threads()
    file_io_concurrency: int = 2 * _default_threads()
    cache_bytes: int = 32 * 1024 * 1024
    file_io_sync: bool = False
    blocking_threads: int = _default_threads()
    storage_timeout: float = 30.0
    storage_retries: int = 6

    def __post_init__(self) -> None:
        if not (isinstance(self.storage_timeout, (int, float)) and self.storage_timeout > 0):
            raise InvalidArgumentError(
                f"storage_timeout must be a positive number of seconds, got "
                f"{self.storage_timeout!r}"
            )
        if (
            isinstance(self.storage_retries, bool)
            or not isinstance(self.storage_retries, int)
            or self.storage_retries < 1
        ):
            raise InvalidArgumentError(
                f"storage_retries must be an integer >= 1, got {self.storage_retries!r}"
            )

    def context_spec(self) -> dict[str, Any]:
        retries = {
            "max_retries": self.storage_retries,
            "initial_delay": "250ms",
            "max_delay": "8s",
        }
        return {
            "data_copy_concurrency": {"limit": self.data_copy_concurrency},
            "file_io_concurrency": {"limit": self.file_io_concurrency},
            "cache_pool": {"total_bytes_limit": self.cache_bytes},
            "file_io_sync": self.file_io_sync,
            "s3_request_retries": retries,
            "gcs_request_retries": retries,
            "http_request_retries": retries,
        }


_lock = threading.Lock()
_options = ResourceOptions()
_context: ts.Context | None = None
_executor: ThreadPoolExecutor | None = None
_pid = os.getpid()


def _reset_after_fork() -> None:
    """A forked child must not reuse the parent's pools (their threads do not exist there)."""
    global _context, _executor, _pid
    _context = None
    _executor = None
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def configure(**options: Any) -> ResourceOptions:
    """Change the resource sizes for stores opened from now on in this process.

    Keys: data_copy_concurrency, file_io_concurrency, cache_bytes, file_io_sync,
    blocking_threads, storage_timeout, storage_retries. Stores already open keep the Context
    they were opened with.
    """
    global _options, _context, _executor
    unknown = set(options) - set(asdict(_options))
    if unknown:
        raise InvalidArgumentError(
            f"configure() got unknown option(s) {sorted(unknown)}; "
            f"known: {sorted(asdict(_options))}"
        )
    with _lock:
        _options = replace(_options, **options)
        _context = None
        if "blocking_threads" in options and _executor is not None:
            _executor.shutdown(wait=False)
            _executor = None
    return _options


def resource_options() -> ResourceOptions:
    return _options


def tensorstore_context() -> ts.Context:
    """The process-wide tensorstore Context (created lazily with the current options)."""
    global _context
    with _lock:
        if _context is None:
            _context = ts.Context(_options.context_spec())
        return _context


def blocking_executor() -> ThreadPoolExecutor:
    """The bounded thread pool that runs blocking library calls off the event loop."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=_options.blocking_threads, thread_name_prefix="bioimage-async-io"
            )
        return _executor


async def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in the bounded thread pool and await its result."""
    loop = asyncio.get_running_loop()
    call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
    return await loop.run_in_executor(blocking_executor(), call)
