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


def exit_on_bright_while_marker_exists(marker: str):
    """A function whose worker process dies (``os._exit``) on bright blocks while ``marker``
    exists: its task leaves no sentinel, its later blocks never run."""

    def fn(block: np.ndarray) -> np.ndarray:
        if os.path.exists(marker) and block.mean() > 200:
            os._exit(3)
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


def append_line(path: str, line: str) -> None:
    """One O_APPEND write: lines from concurrent worker processes never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def counting_invert(counts: str, delay: float):
    """255 - block, appending the block's origin to ``counts`` (one line per call) first."""

    def fn(block: np.ndarray) -> np.ndarray:
        time.sleep(delay)
        append_line(counts, f"{int(block.sum())}\n")
        return 255 - block

    return fn


def fail_first_time(marker_dir: str, counts: str | None = None):
    """Fails the first call for each block (keyed by its sum), then succeeds: a transient error.
    Each successful call appends a line to ``counts`` when given."""

    def fn(block: np.ndarray) -> np.ndarray:
        marker = os.path.join(marker_dir, f"seen-{int(block.sum())}-{block.size}")
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("transient failure (first try)")
        if counts is not None:
            append_line(counts, "1\n")
        return 255 - block

    return fn


def cancelled_inside_block(marker_value: int):
    """Raises concurrent.futures.CancelledError (a helper future of the user's that was
    cancelled) for blocks whose first voxel is ``marker_value``: asyncio sees it as a
    CancelledError once it crosses run_in_executor."""
    import concurrent.futures

    def fn(block: np.ndarray) -> np.ndarray:
        if block.flat[0] == marker_value:
            raise concurrent.futures.CancelledError("helper future cancelled")
        return block + 1

    return fn
