import numpy as np
import pytest
import zarr

import bioimage_async as ba

from .counting import CountingSource


@pytest.mark.parametrize("block_shape", [(16, 32, 32), (32, 64, 32), (48, 96, 96)])
async def test_copy_equals_input_for_chunk_aligned_block_shapes(
    tmp_path, zarr_volume, volume, block_shape
):
    out = await ba.create_source(
        tmp_path / "out.zarr", shape=volume.shape, dtype="uint8", chunks=(16, 32, 32)
    )
    result = await ba.copy(zarr_volume, out, block_shape=block_shape, num_workers=2)
    assert result is out
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[:], volume)


async def test_copy_without_output_returns_a_numpy_array(zarr_volume, volume):
    result = await ba.copy(zarr_volume)
    assert isinstance(result, np.ndarray)
    np.testing.assert_array_equal(result, volume)


async def test_output_dtype_governs_with_a_cast(tmp_path, rng):
    data = rng.normal(100, 50, size=(20, 30, 40)).astype(np.float32)
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=data.shape, dtype="int16", chunks=(10, 10, 10)
    )
    await ba.copy(data, out)
    np.testing.assert_array_equal(await out.read(), data.astype(np.int16))


async def test_mask_keeps_old_output_values_and_skips_empty_blocks_without_reading(
    tmp_path, volume
):
    mask = np.zeros(volume.shape, dtype=bool)
    mask[:16, :32, :32] = True  # exactly block 0
    mask[20, 40, 50] = True  # one voxel in one other block
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=volume.shape, dtype="uint8", chunks=(16, 32, 32), fill_value=7
    )
    counted = CountingSource(ba.as_source(volume))
    stats = ba.RunStats()
    await ba.copy(counted, out, mask=mask, block_shape=(16, 32, 32), stats=stats)
    expected = np.where(mask, volume, 7)
    np.testing.assert_array_equal(await out.read(), expected)
    assert len(counted.reads) == 2
    assert stats.blocks_skipped == stats.blocks_total - 2


async def test_a_subprocess_run_counts_empty_mask_blocks_as_skipped_not_done(
    tmp_path, zarr_volume, volume
):
    mask = np.zeros(volume.shape, dtype=bool)
    mask[:16, :32, :32] = True  # exactly block 0
    mask[20, 40, 50] = True  # one voxel in one other block
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=volume.shape, dtype="uint8", chunks=(16, 32, 32), fill_value=7
    )
    stored_mask = await ba.create_source(
        tmp_path / "m.zarr", shape=volume.shape, dtype="bool", chunks=(16, 32, 32)
    )
    await ba.copy(mask, stored_mask)
    stats = ba.RunStats()
    await ba.copy(
        zarr_volume, out, mask=stored_mask,
        block_shape=(16, 32, 32), stats=stats, job_type="subprocess", num_workers=2,
        job_config=ba.RunnerConfig(tmp_root=str(tmp_path)),
    )  # fmt: skip
    np.testing.assert_array_equal(await out.read(), np.where(mask, volume, 7))
    assert (stats.blocks_done, stats.blocks_skipped) == (2, stats.blocks_total - 2)


async def test_block_ids_rerun_only_those_blocks(tmp_path, zarr_volume, volume):
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=volume.shape, dtype="uint8", chunks=(16, 32, 32)
    )
    grid = ba.BlockGrid(volume.shape, (16, 32, 32))
    await ba.copy(zarr_volume, out, block_shape=(16, 32, 32), block_ids=[0, 5])
    written = await out.read()
    for block in grid:
        region = written[block.roi]
        if block.id in (0, 5):
            np.testing.assert_array_equal(region, volume[block.roi])
        else:
            assert not region.any()


async def test_copy_into_itself_is_refused(zarr_volume):
    with pytest.raises(ValueError, match="needs 'output' to differ from 'input'"):
        await ba.copy(zarr_volume, zarr_volume)


async def test_copy_into_an_overlapping_shifted_region_of_the_input_is_refused(tmp_path):
    """A copy that shifts rows within one array (opened twice, or two views) would read rows
    other blocks already overwrote: refused, nothing written; disjoint regions still copy."""
    data = np.arange(64 * 16, dtype=np.int32).reshape(64, 16)
    array = await ba.create_source(
        tmp_path / "a.zarr", shape=data.shape, dtype="int32", chunks=(8, 16)
    )
    await array.write(..., data)
    reader = await ba.open_source(tmp_path / "a.zarr", mode="r")
    for source, target in [
        (reader.view(np.s_[0:56, :]), array.view(np.s_[8:64, :])),
        (array.view(np.s_[8:64, :]), array.view(np.s_[0:56, :])),
    ]:
        with pytest.raises(ba.InvalidArgumentError, match="overlaps its input"):
            await ba.copy(source, target, block_shape=(8, 16))
    with pytest.raises(ba.InvalidArgumentError, match="differ"):
        await ba.copy(reader, array, block_shape=(8, 16))
    np.testing.assert_array_equal(await array.read(), data)
    await ba.copy(array.view(np.s_[0:32, :]), array.view(np.s_[32:64, :]), block_shape=(8, 16))
    np.testing.assert_array_equal(await array.read(np.s_[32:64, :]), data[0:32])


async def test_out_of_range_block_ids_fail_before_any_work(tmp_path, zarr_volume, volume):
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=volume.shape, dtype="uint8", chunks=(16, 32, 32)
    )
    with pytest.raises(ValueError, match="out of range"):
        await ba.copy(zarr_volume, out, block_shape=(16, 32, 32), block_ids=[10_000])
    assert not (await out.read()).any()


async def test_unsafe_block_shape_is_refused_with_a_proposal(tmp_path, zarr_volume, volume):
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=volume.shape, dtype="uint8", chunks=(16, 32, 32)
    )
    with pytest.raises(
        ba.UnsafeBlockShapeError, match=r"chunk multiple, e\.g\. block_shape=\(16, 32, 32\)"
    ):
        await ba.copy(zarr_volume, out, block_shape=(20, 30, 30), num_workers=2)


async def test_sharded_output_with_chunk_sized_blocks_is_written_correctly(
    tmp_path, zarr_volume, volume
):
    out = await ba.create_source(
        tmp_path / "o.zarr",
        shape=volume.shape,
        dtype="uint8",
        chunks=(8, 16, 16),
        shards=(16, 32, 32),
        format="zarr3",
    )
    await ba.copy(zarr_volume, out, block_shape=(8, 16, 16), num_workers=2)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "o.zarr"))[:], volume)


async def test_sharded_zarr_python_array_in_memory_loses_no_chunk_of_a_shard(volume):
    # a store tensorstore cannot reopen: zarr-python writes each block as a read-modify-write
    # of its shard, so blocks sharing a shard must go to one writer (a third of the voxels
    # were lost when the source did not report its shards)
    out = zarr.create_array(
        store=zarr.storage.MemoryStore(),
        shape=volume.shape,
        dtype="uint8",
        chunks=(8, 16, 16),
        shards=(16, 32, 32),
    )
    assert ba.as_source(out).write_granularity == (16, 32, 32)
    for _ in range(2):
        out[...] = 0
        await ba.copy(volume, out, block_shape=(8, 16, 16), num_workers=2)
        np.testing.assert_array_equal(out[...], volume)


async def test_resume_from_a_folder_that_is_no_run_says_so(tmp_path, zarr_volume):
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=zarr_volume.shape, dtype="uint8", chunks=(16, 32, 32)
    )
    with pytest.raises(ba.RunFolderNotFoundError, match="is not a bioimage_async run folder"):
        await ba.copy(zarr_volume, out, resume_from=str(tmp_path))
    with pytest.raises(ba.InvalidArgumentError, match="lives in memory"):
        await ba.copy(zarr_volume, resume_from=str(tmp_path))  # a numpy output has no journal


async def test_resume_from_and_block_ids_together_are_refused(zarr_volume):
    with pytest.raises(ValueError, match="Pass either 'resume_from' or 'block_ids', not both."):
        await ba.copy(zarr_volume, job_type="subprocess", resume_from="/tmp/x", block_ids=[1])


async def test_distributed_run_without_output_is_refused(zarr_volume):
    with pytest.raises(ValueError, match="'output' is required for distributed execution"):
        await ba.copy(zarr_volume, job_type="subprocess")


async def test_threshold_wrapper_is_materialised_by_copy(tmp_path, zarr_volume, volume):
    out = await ba.create_source(
        tmp_path / "m.zarr", shape=volume.shape, dtype=bool, chunks=(16, 32, 32)
    )
    await ba.copy(ba.ThresholdSource(zarr_volume, 128), out)
    np.testing.assert_array_equal(await out.read(), volume > 128)


async def test_copy_of_a_view_writes_only_the_region(tmp_path, zarr_volume, volume):
    region = np.s_[16:32, 32:64, :]
    out = await ba.create_source(
        tmp_path / "v.zarr", shape=(16, 32, volume.shape[2]), dtype="uint8", chunks=(16, 32, 32)
    )
    await ba.copy(zarr_volume.view(region), out)
    np.testing.assert_array_equal(await out.read(), volume[region])


async def test_default_copy_blocks_are_copy_sized_and_hold_whole_output_chunks(tmp_path):
    """A copy computes nothing: its default blocks are ~16 MiB (per-block costs fall), not the
    2 MiB of computing operations, and always whole output chunks."""
    from bioimage_async.blocking.defaults import COPY_BLOCK_BYTES

    data = np.arange(64 * 256 * 1024, dtype=np.uint16).reshape(64, 256, 1024)  # 32 MiB
    counted = CountingSource(ba.as_source(data))
    out = await ba.create_source(
        tmp_path / "out.zarr", shape=data.shape, dtype=data.dtype, chunks=(16, 64, 64)
    )
    stats = ba.RunStats()
    await ba.copy(counted, out, num_workers=2, stats=stats)
    np.testing.assert_array_equal(await out.read(...), data)
    sizes = {int(np.prod([s.stop - s.start for s in roi])) * 2 for roi in counted.reads}
    assert stats.blocks_total == len(counted.reads) == 2
    assert sizes == {COPY_BLOCK_BYTES}
    assert all(s.start % c == 0 for roi in counted.reads for s, c in zip(roi, (16, 64, 64)))


async def test_copying_one_field_of_a_structured_zarr_array_decodes_instead_of_raw_copying(
    tmp_path,
):
    """A chunk file of a structured dtype holds every field: copying whole files from field
    'a' into field 'b' of another array overwrote its field 'a' too."""
    import tensorstore as ts

    dtype = [["a", "<u2", []], ["b", "<u2", []]]

    def spec(name, field, create):
        opened = {
            "driver": "zarr",
            "kvstore": {"driver": "file", "path": str(tmp_path / name)},
            "field": field,
        }
        if create:
            opened["metadata"] = {
                "shape": [32, 32],
                "chunks": [16, 16],
                "dtype": dtype,
                "compressor": None,
                "fill_value": None,
            }
        return opened

    in_a = await ts.open(spec("in.zarr", "a", True), create=True)
    await in_a.write(np.full((32, 32), 1, np.uint16))
    await (await ts.open(spec("in.zarr", "b", False))).write(np.full((32, 32), 2, np.uint16))
    out_b = await ts.open(spec("out.zarr", "b", True), create=True)
    out_a = await ts.open(spec("out.zarr", "a", False))
    await out_a.write(np.full((32, 32), 9, np.uint16))
    await out_b.write(np.full((32, 32), 9, np.uint16))
    target = ba.as_source(out_b)
    await ba.copy(ba.as_source(in_a), target, block_shape=(16, 16))
    assert target.raw_chunk_files == 0
    np.testing.assert_array_equal(await out_b.read(), np.full((32, 32), 1, np.uint16))
    np.testing.assert_array_equal(await out_a.read(), np.full((32, 32), 9, np.uint16))


@pytest.mark.parametrize("format", ["zarr", "n5", "hdf5"])
async def test_an_output_that_is_the_input_through_a_symlink_is_refused_and_locked(
    tmp_path, format
):
    """A symlink to the input was another array: map_blocks with a halo ran into it and read
    neighbours other blocks had overwritten (a third of the voxels wrong), and an HDF5 file
    reached through a link took another lock."""
    import os

    ext = {"zarr": ".zarr", "n5": ".n5", "hdf5": ".h5"}[format]
    data = np.random.default_rng(1).random((12, 20, 33)).astype(np.float32)
    made = await ba.create_source(
        tmp_path / f"a{ext}", shape=data.shape, dtype="float32", chunks=(6, 10, 11)
    )
    await made.write(..., data)
    os.symlink(tmp_path / f"a{ext}", tmp_path / f"link{ext}")
    src = await ba.open_source(tmp_path / f"a{ext}")
    through_link = await ba.open_source(tmp_path / f"link{ext}", mode="r+")
    with pytest.raises(ba.InvalidArgumentError, match="its own input"):
        await ba.map_blocks(
            lambda block: block * 2, src, through_link, block_shape=(6, 10, 11), halo=(1, 1, 1)
        )
    with pytest.raises(ba.InvalidArgumentError, match="differ from 'input'"):
        await ba.copy(src, through_link)
    # the same path in another mode is the same array too (an HDF5 spec names its mode)
    same_path = await ba.open_source(tmp_path / f"a{ext}", mode="r+")
    with pytest.raises(ba.InvalidArgumentError, match="its own input"):
        await ba.map_blocks(
            lambda block: block * 2, src, same_path, block_shape=(6, 10, 11), halo=(1, 1, 1)
        )
    assert src.writer_lock_path() is not None
    assert os.path.realpath(through_link.writer_lock_path()) == os.path.realpath(
        made.writer_lock_path()
    )
    np.testing.assert_array_equal(await src.read(), data)
