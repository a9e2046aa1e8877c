import asyncio

import numpy as np

import bioimage_async as ba


def test_sync_twins_work_without_a_loop(tmp_path, volume):
    src = ba.sync.create_source(
        tmp_path / "a.zarr", shape=volume.shape, dtype="uint8", chunks=(16, 32, 32)
    )
    src[...] = volume
    reopened = ba.sync.open_source(tmp_path / "a.zarr")
    np.testing.assert_array_equal(reopened[5:9, :, 3], volume[5:9, :, 3])
    np.testing.assert_array_equal(ba.sync.copy(reopened), volume)
    np.testing.assert_array_equal(
        ba.sync.downsample(reopened, 2), asyncio.run(ba.downsample(volume, 2))
    )
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
