import asyncio

import numpy as np
import pytest

import bioimage_async as ba


def test_sync_twins_work_without_a_loop(tmp_path, volume):
    src = ba.sync.create_source(tmp_path / "a.zarr", shape=volume.shape, dtype="uint8", chunks=(16, 32, 32))
    src[...] = volume
    reopened = ba.sync.open_source(tmp_path / "a.zarr")
    np.testing.assert_array_equal(reopened[5:9, :, 3], volume[5:9, :, 3])
    np.testing.assert_array_equal(ba.sync.copy(reopened), volume)
    np.testing.assert_array_equal(ba.sync.downsample(reopened, 2), asyncio.run(ba.downsample(volume, 2)))
    same = ba.sync.from_spec(reopened.to_spec().to_json())
    assert same.shape == volume.shape


def test_sync_iter_blocks_is_a_plain_iterator_with_halo(volume):
    seen = 0
    for block, data in ba.sync.iter_blocks(volume, (16, 32, 32), halo=2):
        np.testing.assert_array_equal(data, volume[block.outer_roi])
        seen += 1
    assert seen == ba.BlockGrid(volume.shape, (16, 32, 32)).num_blocks


def test_sync_api_works_inside_a_running_event_loop(volume):
    async def notebook_cell():
        # like Jupyter: a loop is running in this thread and the user calls the sync API
        return ba.sync.copy(volume)

    np.testing.assert_array_equal(asyncio.run(notebook_cell()), volume)


async def test_iter_blocks_bounds_read_ahead(volume):
    grid = ba.BlockGrid(volume.shape, (16, 32, 32))
    ids = []
    async for block, data in ba.iter_blocks(volume, (16, 32, 32), prefetch=2):
        np.testing.assert_array_equal(data, volume[block.roi])
        ids.append(block.id)
        if len(ids) == 3:
            break
    assert ids == [0, 1, 2] and grid.num_blocks > 3


def test_sync_copy_of_a_zarr_python_array(tmp_path):
    """as_source of a zarr-python array must not run the background loop from inside it."""
    zarr = pytest.importorskip("zarr")
    array = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=(20, 30), chunks=(10, 10), dtype="uint8", zarr_format=2)
    array[:] = np.arange(600, dtype=np.uint16).reshape(20, 30) % 251
    np.testing.assert_array_equal(ba.sync.copy(array), array[:])


async def test_as_source_of_a_zarr_python_array_opens_nothing_until_the_first_read(tmp_path):
    zarr = pytest.importorskip("zarr")
    array = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=(20, 30), chunks=(10, 10), dtype="uint8", zarr_format=2)
    array[:] = 7
    src = ba.as_source(array)
    assert src.tensorstore() is None  # nothing opened inside the caller's loop
    assert src.shape == (20, 30) and src.chunks == (10, 10)
    np.testing.assert_array_equal(await src.read(np.s_[0:2]), np.full((2, 30), 7, np.uint8))
    assert src.tensorstore() is not None
    reopened = await ba.from_spec(src.to_spec().to_json())
    np.testing.assert_array_equal(await reopened.read(), array[:])
