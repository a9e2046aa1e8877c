"""Block functions for the review tests (importable by compute workers)."""

from __future__ import annotations

import time

import numpy as np


def _sleep_then(value: float) -> float:
    time.sleep(value)
    return value


class SlowToLoad:
    """An object whose unpickling takes ``seconds`` (a function closing over a big model, a
    heavy import): a compute worker spends that long before it can take its first block."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __reduce__(self):
        return (_rebuild_slow, (self.seconds,))


def _rebuild_slow(seconds: float) -> SlowToLoad:
    time.sleep(seconds)
    return SlowToLoad(seconds)


def plus_one_after_slow_load(seconds: float):
    """``block + 1``, closing over an object that takes ``seconds`` to load in the worker."""
    slow = SlowToLoad(seconds)

    def fn(block: np.ndarray) -> np.ndarray:
        assert slow.seconds == seconds
        return block + 1

    return fn
