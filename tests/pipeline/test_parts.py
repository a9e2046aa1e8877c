"""A large block computed in parts on several threads equals the block computed whole."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.pipeline import parts


@pytest.mark.parametrize(
    "kwargs",
    [
        {"order": 1, "anti_aliasing": True},
        {"order": 0},
        {"method": "mode"},
        {"method": "mean"},
    ],
)
@pytest.mark.parametrize("shape", [(37, 50, 41), (9, 64, 64)])
def test_parts_equal_the_whole_block(monkeypatch, kwargs, shape):
    rng = np.random.default_rng(3)
    volume = rng.integers(0, 7, size=shape).astype(np.uint16) * 1000
    used: list[int] = []
    pool = parts._pool

    def counting_pool():
        used.append(1)
        return pool()

    monkeypatch.setattr(parts, "_pool", counting_pool)
    whole = ba.sync.downsample(volume, 2, block_shape=(64, 64, 64), **kwargs)
    assert not used  # blocks of a few KiB: whole
    monkeypatch.setattr(parts, "SPLIT_BYTES", 64)  # every block in parts
    split = ba.sync.downsample(volume, 2, block_shape=(64, 64, 64), **kwargs)
    assert used, "no block was computed in parts"
    assert split.tobytes() == whole.tobytes()


def test_a_block_is_split_along_its_first_long_axis_on_the_parts_pool(monkeypatch):
    monkeypatch.setattr(parts, "SPLIT_BYTES", 64)
    monkeypatch.setattr(parts.os, "cpu_count", lambda: 3)
    calls: list[tuple[tuple[slice, ...], str]] = []

    def compute(roi, data):
        calls.append((roi, threading.current_thread().name))
        assert data.shape == tuple(s.stop - s.start for s in roi)
        return data * 2

    data = np.arange(1 * 9 * 4).reshape(1, 9, 4)
    roi = (slice(0, 1), slice(10, 19), slice(0, 4))
    result = parts.compute_in_parts(roi, data, 8, lambda r: r, compute)
    assert np.array_equal(result, data * 2)
    assert sorted(c[0][1].start for c in calls) == [10, 13, 16]  # three slabs along axis 1
    assert all(name.startswith("bioimage-parts") for _, name in calls)
