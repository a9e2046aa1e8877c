"""Shared fixtures: real files written with the real libraries, in a per-test folder."""

from __future__ import annotations

import os

import numpy as np
import pytest

import bioimage_async as ba

os.environ.setdefault("BIOIMAGE_ASYNC_NO_CONFIG", "1")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


@pytest.fixture
def volume(rng: np.random.Generator) -> np.ndarray:
    """An odd-shaped uint8 volume (no axis a multiple of the chunk shape)."""
    return rng.integers(0, 256, size=(45, 70, 83), dtype=np.uint8)


@pytest.fixture
async def zarr_volume(tmp_path, volume: np.ndarray) -> ba.Source:
    """``volume`` written through tensorstore as zarr v2 with 16x32x32 chunks."""
    src = await ba.create_source(
        tmp_path / "input.zarr", shape=volume.shape, dtype=volume.dtype, chunks=(16, 32, 32)
    )
    await src.write(..., volume)
    return src
