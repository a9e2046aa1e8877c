"""A block's ``block_timeout`` as a deadline that waiting on other blocks does not use up.

A block that waits for its turn on a chunk it shares with a neighbour (``chunk_guard``) is not
slow: that wait must not count against its own time, or healthy blocks of a busy region would
time out. The engine runs each block inside ``deadline``; code that waits on another block does it inside
``not_charged``, which stops the block's clock meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

_current: ContextVar[asyncio.Timeout | None] = ContextVar("block_deadline", default=None)


@asynccontextmanager
async def deadline(seconds: float) -> AsyncIterator[None]:
    """Raise TimeoutError in the body once it has run ``seconds`` (less the time not charged)."""
    async with asyncio.timeout(seconds) as timeout:
        token = _current.set(timeout)
        try:
            yield
        finally:
            _current.reset(token)


@contextmanager
def not_charged() -> Iterator[None]:
    """Stop the current block's clock (if any) while the body waits on other blocks."""
    timeout = _current.get()
    when = timeout.when() if timeout is not None and not timeout.expired() else None
    if timeout is None or when is None:
        yield
        return
    loop = asyncio.get_running_loop()
    remaining = when - loop.time()
    timeout.reschedule(None)
    try:
        yield
    finally:
        if not timeout.expired():
            timeout.reschedule(loop.time() + max(remaining, 0.0))
