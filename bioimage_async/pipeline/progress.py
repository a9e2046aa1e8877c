"""Progress reporting: a tqdm bar on a terminal, a user callback, or nothing."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("bioimage_async")

ProgressArg = bool | Callable[[int, int], Any] | None


class Progress:
    """Reports (blocks done, blocks total); ``None`` shows a bar only when stderr is a TTY."""

    def __init__(self, progress: ProgressArg, total: int, name: str) -> None:
        self.total = total
        self.done = 0
        self._callback: Callable[[int, int], Any] | None = None
        self._bar: Any = None
        if callable(progress) and not isinstance(progress, bool):
            self._callback = progress
        elif progress is True or (progress is None and sys.stderr.isatty()):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=name, unit="block", leave=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        if self._callback is not None:
            try:
                self._callback(self.done, self.total)
            except Exception:  # noqa: BLE001 - a progress display must not stop the run
                # raised inside the engine, it ended the run with a bare ExceptionGroup and
                # left blocks unwritten; the run goes on and the callback is called no more
                logger.exception(
                    "the progress callback %r raised at %d of %d blocks; the run goes on "
                    "without it",
                    self._callback,
                    self.done,
                    self.total,
                )
                self._callback = None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
