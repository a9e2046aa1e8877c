"""Writes that would land on voxels other blocks still read, and compute-pool start-up
counted as a block's compute: found by review, each refused or fixed."""

from __future__ import annotations

import numpy as np
import pytest

import bioimage_async as ba

from .review_fns import plus_one_after_slow_load


@pytest.mark.parametrize("region", [(slice(32, 64),) * 3, (slice(0, 32),) * 3])
async def test_downsample_into_a_region_of_its_own_input_is_refused(tmp_path, region) -> None:
    """Blocks read input voxels that other blocks overwrite: the result depended on the block
    order (the back corner came out wrong while the run reported success)."""
    data = (np.arange(64**3, dtype=np.int32) % 1000).reshape(64, 64, 64)
    src = await ba.create_source(
        tmp_path / "a.zarr", shape=data.shape, dtype=data.dtype, chunks=(8, 8, 8)
    )
    await src.write(..., data)
    with pytest.raises(ba.InvalidArgumentError, match="holds voxels of its input"):
        await ba.downsample(
            src, 2, src.view(region), block_shape=(8, 8, 8), num_workers=2, progress=False
        )
    assert np.array_equal(await src.read(...), data)  # nothing was written


async def test_downsample_into_a_numpy_view_of_its_input_is_refused() -> None:
    data = (np.arange(32**3, dtype=np.int32) % 1000).reshape(32, 32, 32)
    with pytest.raises(ba.InvalidArgumentError, match="holds voxels of its input"):
        await ba.downsample(data, 2, data[16:, 16:, 16:], block_shape=(4, 4, 4), progress=False)


async def test_block_timeout_does_not_count_the_compute_workers_start_up() -> None:
    """A worker that takes 1.5 s to load the function used to spend it inside its first
    block's block_timeout=1: that block timed out, its worker was killed, the replacement
    loaded as slowly, and every block of the run failed though each computes in microseconds."""
    data = np.zeros((16, 16, 32), np.int32)
    fn = plus_one_after_slow_load(1.5)
    result = await ba.map_blocks(
        fn, data, block_shape=(8, 16, 16), num_workers=2, block_timeout=1, progress=False
    )
    assert np.array_equal(result, data + 1)


async def test_resume_names_the_in_memory_mask(tmp_path) -> None:
    shape = (16, 16, 16)
    src = await ba.create_source(tmp_path / "in.zarr", shape=shape, dtype="uint8", chunks=(8,) * 3)
    out = await ba.create_source(tmp_path / "out.zarr", shape=shape, dtype="uint8", chunks=(8,) * 3)
    with pytest.raises(ba.InvalidArgumentError, match="call's mask lives in memory"):
        await ba.copy(
            src, out, mask=np.ones(shape, bool), resume_from=str(tmp_path), progress=False
        )
