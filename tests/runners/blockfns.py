"""Block functions for distributed tests (importable by workers, and cloudpickled by value)."""

from __future__ import annotations

import os
import time

import numpy as np


def invert(block: np.ndarray) -> np.ndarray:
    return 255 - block


def fail_while_marker_exists(marker: str):
    """A function that fails on bright blocks while ``marker`` exists (a transient failure)."""

    def fn(block: np.ndarray) -> np.ndarray:
        if os.path.exists(marker) and block.mean() > 200:
            raise RuntimeError("transient failure on a bright block")
        return 255 - block

    return fn


def sleepy(seconds: float):
    def fn(block: np.ndarray) -> np.ndarray:
        time.sleep(seconds)
        return 255 - block

    return fn


def bright_volume(shape, block_shape, bright_ids, seed=0) -> np.ndarray:
    """Values < 100 everywhere except the listed blocks (> 200): failures are predictable."""
    from bioimage_async import BlockGrid

    data = np.random.default_rng(seed).integers(0, 100, size=shape, dtype=np.uint8)
    grid = BlockGrid(shape, block_shape)
    for block_id in bright_ids:
        data[grid.block(block_id).roi] += 155
    return data


def times_hundred_int64(block):
    """Returns int64 (as many user functions do), values up to 300 for inputs up to 3."""
    return block.astype("int64") * 100
