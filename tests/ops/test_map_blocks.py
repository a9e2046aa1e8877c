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
    assert error.tmp_folder is not None and (tmp_path / error.tmp_folder / "manifest.json").exists()
    assert "bright block" in str(error) and "3 block(s) failed in 'map_blocks'" in str(error)
    for block_id in bright:  # each failed block's own error line, as distributed runs report
        assert f"block {block_id}: RuntimeError: bright block" in str(error)
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


def _box_mean(block):
    from scipy.ndimage import uniform_filter

    return uniform_filter(block.astype(np.float32), 5, mode="nearest")


async def test_a_halo_into_the_same_array_through_another_handle_or_a_view_is_refused(tmp_path):
    """Opened twice (r and r+) or viewed whole, the output is still the input: refused before
    anything is written, as when the same object is passed twice."""
    data = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    array = await ba.create_source(
        tmp_path / "a.zarr", shape=data.shape, dtype="float32", chunks=(16, 16)
    )
    await array.write(..., data)
    reader = await ba.open_source(tmp_path / "a.zarr", mode="r")
    writer = await ba.open_source(tmp_path / "a.zarr", mode="r+")
    for source, target, halo in [
        (array, array, 2),  # an int halo too (it raised TypeError before the check)
        (reader, writer, (2, 2)),
        (array.view(np.s_[:, :]), array, (2, 2)),
        (array.view(np.s_[8:40, :]), array.view(np.s_[32:64, :]), (2, 2)),  # overlapping rows
    ]:
        with pytest.raises(ba.InvalidArgumentError, match="own input"):
            await ba.map_blocks(_box_mean, source, target, halo=halo, block_shape=(16, 16))
    np.testing.assert_array_equal(await array.read(), data)  # nothing written
    # disjoint regions of one array are separate input and output
    await ba.map_blocks(
        _box_mean,
        array.view(np.s_[0:32, :]),
        array.view(np.s_[32:64, :]),
        halo=(2, 2),
        block_shape=(16, 16),
    )
    np.testing.assert_allclose(await array.read(np.s_[32:64, :]), _box_mean(data[0:32]), rtol=1e-6)


def _plus_one(block):
    return block + 1


async def test_a_shifted_view_of_the_input_as_output_is_refused_without_a_halo_too(tmp_path):
    """Without a halo, writing exactly the input region in place is safe (each block reads
    and writes only its own voxels); an overlapping but shifted region is not (a block reads
    rows another block already rewrote), so it is refused before anything is written."""
    data = np.arange(64 * 16, dtype=np.int32).reshape(64, 16)
    array = await ba.create_source(
        tmp_path / "a.zarr", shape=data.shape, dtype="int32", chunks=(8, 16)
    )
    await array.write(..., data)
    with pytest.raises(ba.InvalidArgumentError, match="a shifted view"):
        await ba.map_blocks(
            _plus_one, array.view(np.s_[0:56, :]), array.view(np.s_[8:64, :]), block_shape=(8, 16)
        )
    np.testing.assert_array_equal(await array.read(), data)
    writer = await ba.open_source(tmp_path / "a.zarr", mode="r+")
    await ba.map_blocks(_plus_one, array, writer, block_shape=(8, 16))  # same voxels: in place
    np.testing.assert_array_equal(await array.read(), data + 1)
    region = np.s_[8:40, :]
    await ba.map_blocks(_plus_one, array.view(region), writer.view(region), block_shape=(8, 16))
    expected = data + 1
    expected[region] += 1
    np.testing.assert_array_equal(await array.read(), expected)


def _aliases(array):
    """Inputs that are ``array``'s voxels at other positions, each with a numpy twin."""
    return [
        ("transpose()", array.transpose()),
        ("tensorstore().T", ba.as_source(array.tensorstore().T)),
        ("tensorstore()[::-1]", ba.as_source(array.tensorstore()[::-1])),
        ("ThresholdSource", ba.ThresholdSource(array, 100)),
    ]


async def test_in_place_work_through_a_transposed_reversed_or_wrapped_input_is_refused(tmp_path):
    """Wrappers and tensorstore handles hid their array: map_blocks(f, z.transpose(), z) and
    copy(ts[::-1], z) ran to the end with a quarter to a half of the voxels wrong."""
    data = np.arange(16 * 16, dtype=np.int32).reshape(16, 16)
    array = await ba.create_source(
        tmp_path / "a.zarr", shape=data.shape, dtype="int32", chunks=(4, 4)
    )
    await array.write(..., data)
    for name, alias in _aliases(array):
        with pytest.raises(ba.InvalidArgumentError, match="other positions|overlaps"):
            await ba.map_blocks(_plus_one, alias, array, block_shape=(4, 4))
        with pytest.raises(ba.InvalidArgumentError, match="overlaps"):
            await ba.copy(alias, array, block_shape=(4, 4))
        with pytest.raises(ba.InvalidArgumentError, match="halo"):
            await ba.map_blocks(_plus_one, alias, array, block_shape=(4, 4), halo=1)
        np.testing.assert_array_equal(await array.read(), data, err_msg=name)
    other = await ba.create_source(
        tmp_path / "b.zarr", shape=data.shape, dtype="int32", chunks=(4, 4)
    )
    await ba.copy(array.transpose(), other, block_shape=(4, 4))  # another array: fine
    np.testing.assert_array_equal(await other.read(), data.T)
    same = ba.as_source(array.tensorstore())  # the same voxels, the same order: in place is safe
    await ba.map_blocks(_plus_one, same, array, block_shape=(4, 4))
    np.testing.assert_array_equal(await array.read(), data + 1)


@pytest.mark.parametrize("alias", ["T", "reversed"])
async def test_in_place_work_through_a_numpy_view_in_another_order_is_refused(alias):
    """a.T and a[::-1] share a's memory: taken for the same voxels, they were written in
    place (64 and 96 of 256 voxels wrong)."""
    data = np.arange(16 * 16, dtype=np.int32).reshape(16, 16)
    array = data.copy()
    view = array.T if alias == "T" else array[::-1]
    with pytest.raises(ba.InvalidArgumentError, match="other positions"):
        await ba.map_blocks(_plus_one, view, array, block_shape=(4, 4))
    np.testing.assert_array_equal(array, data)
    await ba.map_blocks(_plus_one, array, array, block_shape=(4, 4))
    np.testing.assert_array_equal(array, data + 1)


@pytest.mark.parametrize("format", ["n5", "zarr3", "precomputed"])
async def test_in_place_work_through_two_handles_of_one_array_runs(tmp_path, format):
    """n5 and precomputed handles carry an axis-reversing transform: taken for a transpose,
    two handles of one array were refused as 'seen another way'."""
    data = np.arange(8 * 8 * 8, dtype=np.uint16).reshape(8, 8, 8)
    path = tmp_path / f"a.{format}"
    created = await ba.create_source(
        path, shape=data.shape, dtype="uint16", chunks=(4, 4, 4), format=format
    )
    await created.write(..., data)
    reader = await ba.open_source(path)
    writer = await ba.open_source(path, mode="r+")
    await ba.map_blocks(_plus_one, reader, writer, block_shape=(4, 4, 4))
    np.testing.assert_array_equal(await writer.read(), data + 1)


async def test_other_planes_of_one_store_are_told_apart_and_relative_paths_matched(
    tmp_path, monkeypatch
):
    """Plane 0 into plane 5 of one array through tensorstore handles, a relative-path handle
    of the same array, and in-memory arrays, each told apart from (or matched to) the rest."""
    import tensorstore as ts

    data = np.arange(6 * 6 * 6, dtype=np.int32).reshape(6, 6, 6)
    array = await ba.create_source(
        tmp_path / "a.zarr", shape=data.shape, dtype="int32", chunks=(6, 6, 1)
    )
    await array.write(..., data)
    store = array.tensorstore()
    await ba.copy(ba.as_source(store[:, :, 0]), ba.as_source(store[:, :, 5]))
    np.testing.assert_array_equal((await array.read())[:, :, 5], data[:, :, 0])
    monkeypatch.chdir(tmp_path)
    relative = await ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": "a.zarr/"}})
    with pytest.raises(ba.InvalidArgumentError, match="halo"):
        await ba.map_blocks(_plus_one, ba.as_source(relative), array, block_shape=(6, 6, 1), halo=1)
    ones, zeros = ts.array(np.ones((4, 4), np.int32)), ts.array(np.zeros((4, 4), np.int32))
    await ba.copy(ba.as_source(ones), ba.as_source(zeros))
    np.testing.assert_array_equal(zeros.read().result(), 1)
