import os

import numpy as np
import pytest
import scipy.ndimage as ndi

import bioimage_async as ba

from .counting import fail_on_bright_blocks, invert


@pytest.mark.parametrize("block_shape", [(16, 32, 32), (32, 64, 64)])
async def test_halo_makes_a_filter_identical_to_the_whole_array(
    tmp_path, zarr_volume, volume, block_shape
):
    sigma = 1.5
    halo = int(4 * sigma + 0.5)

    def smooth(block):  # a closure defined in the test: shipped to the workers by value
        return ndi.gaussian_filter(block.astype(np.float32), sigma)

    out = await ba.create_source(
        tmp_path / "o.zarr", shape=volume.shape, dtype="float32", chunks=(16, 32, 32)
    )
    await ba.map_blocks(smooth, zarr_volume, out, block_shape=block_shape, halo=halo, num_workers=2)
    np.testing.assert_allclose(
        await out.read(),
        ndi.gaussian_filter(volume.astype(np.float32), sigma),
        rtol=1e-6,
        atol=1e-4,
    )


async def test_function_from_a_user_module_runs_in_workers(zarr_volume, volume):
    result = await ba.map_blocks(invert, zarr_volume, num_workers=2, block_shape=(16, 32, 32))
    np.testing.assert_array_equal(result, 255 - volume)


async def test_failing_blocks_are_reported_exactly_and_a_block_ids_rerun_completes(tmp_path, rng):
    data = rng.integers(0, 100, size=(32, 32, 32), dtype=np.uint8)
    grid = ba.BlockGrid(data.shape, (8, 16, 16))
    bright = [3, 10, 11]
    for block_id in bright:
        data[grid.block(block_id).roi] += 155
    src = await ba.create_source(
        tmp_path / "i.zarr", shape=data.shape, dtype="uint8", chunks=(8, 16, 16)
    )
    await src.write(..., data)
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=data.shape, dtype="uint8", chunks=(8, 16, 16)
    )
    with pytest.raises(ba.RunnerError) as caught:
        await ba.map_blocks(fail_on_bright_blocks, src, out, block_shape=(8, 16, 16), num_workers=2)
    error = caught.value
    assert error.failed_block_ids == bright
    assert error.tmp_folder is None
    assert "bright block" in str(error) and "3 block(s) failed in 'map_blocks'" in str(error)
    written = await out.read()
    for block in grid:
        if block.id not in bright:
            np.testing.assert_array_equal(written[block.roi], data[block.roi])
    await ba.map_blocks(invert, src, out, block_shape=(8, 16, 16), block_ids=error.failed_block_ids)
    written = await out.read()
    for block_id in bright:
        roi = grid.block(block_id).roi
        np.testing.assert_array_equal(written[roi], 255 - data[roi])


async def test_function_returning_the_wrong_shape_is_a_block_failure(volume):
    with pytest.raises(ba.RunnerError, match="same shape back"):
        await ba.map_blocks(lambda b: b[:1], volume, block_shape=(45, 70, 83))


async def test_worker_that_prints_does_not_break_the_protocol(volume):
    def noisy(block):
        print("hello from", os.getpid())
        return block + 1

    result = await ba.map_blocks(noisy, volume, block_shape=(16, 32, 32), num_workers=2)
    np.testing.assert_array_equal(result, volume + 1)
