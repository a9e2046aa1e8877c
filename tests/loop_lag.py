"""Measure how long the event loop is blocked: a 5 ms heartbeat that records how late it wakes.

The machine may be shared (2 cores, other jobs): a heartbeat is also late when the OS left the
loop's thread waiting for a free core. Linux counts that wait per thread
(``/proc/self/task/<tid>/schedstat``, field 2: time spent waiting on a runqueue), so ``blocked``
is the lateness minus that wait: the time the loop was busy or waiting for the GIL, which is
what library code controls. Where schedstat is unavailable ``blocked`` is the raw lateness.

While a heartbeat runs, the objects alive before it are frozen out of the garbage collector
(``gc.freeze``). A full collection walks every tracked object. In a test process that has run
hundreds of tests (~250k objects) it takes 150-180 ms here, in whichever thread allocates at that
moment, holding the GIL: the size of the test run's heap, not library code. The library's own
garbage is still collected, and a collection it causes is still measured.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Callable


def runqueue_wait_reader() -> Callable[[], float | None]:
    """A function returning this thread's total runqueue wait in seconds, or None if unknown."""
    path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
    if not os.path.exists(path):
        return lambda: None

    def read() -> float:
        with open(path) as handle:
            return int(handle.read().split()[1]) / 1e9

    return read


class Heartbeat:
    """``async with Heartbeat() as beat: ...``; then ``beat.worst`` (seconds blocked)."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.lags: list[float] = []
        self.blocked: list[float] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def worst(self) -> float:
        return max(self.blocked, default=0.0)

    @property
    def worst_raw(self) -> float:
        return max(self.lags, default=0.0)

    async def _beat(self) -> None:
        runqueue_wait = runqueue_wait_reader()  # created in the loop's thread
        while True:
            before, waited_before = time.perf_counter(), runqueue_wait()
            await asyncio.sleep(self.period)
            lag = time.perf_counter() - before - self.period
            waited_after = runqueue_wait()
            waited = (
                0.0
                if waited_before is None or waited_after is None
                else waited_after - waited_before
            )
            self.lags.append(lag)
            self.blocked.append(max(0.0, lag - waited))

    async def __aenter__(self) -> Heartbeat:
        gc.collect()
        gc.freeze()
        self._task = asyncio.create_task(self._beat())
        await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        finally:
            gc.unfreeze()
