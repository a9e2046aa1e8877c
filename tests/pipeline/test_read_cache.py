"""Blocks with halos read their input through a cache that holds the chunks neighbours share."""

from __future__ import annotations

import numpy as np
import pytest
import tensorstore as ts

import bioimage_async as ba
from bioimage_async.blocking.grid import BlockGrid
from bioimage_async.kernels.resample import Resampling
from bioimage_async.ops.downsample import ResampleKernel
from bioimage_async.pipeline import read_cache
from bioimage_async.pipeline.task import BlockKernel, BlockTask
from bioimage_async.runners import local

SHAPE = (32, 256, 128)
CHUNKS = (16, 16, 16)


@pytest.fixture
async def volume(tmp_path):
    data = np.random.default_rng(5).integers(0, 256, size=SHAPE, dtype=np.uint8)
    src = await ba.create_source(tmp_path / "in.zarr", shape=SHAPE, dtype="uint8", chunks=CHUNKS)
    await src.write(..., data)
    return src, data


def smooth_task(src, block_shape=(16, 32, 16)) -> BlockTask:
    target = tuple(n // 2 for n in src.shape)
    resampling = Resampling(src.shape, target, 1, True, src.dtype.str)
    return BlockTask("d", src, src, BlockGrid(target, block_shape), ResampleKernel(resampling))


async def test_blocks_with_a_halo_share_chunks_and_the_cache_holds_a_row_of_them(volume):
    src, _ = volume
    task = smooth_task(src)
    chunk = 16**3
    # a 4 x 4 grid of output blocks (16, 32, 16), each reading (32, 64, 32) and a halo of 3
    # (chunks of 16), from the middle block (id 10) on, with 1 block in flight:
    # - the row window, blocks 10-14: blocks 10-11 read y 125:195 (chunks 7-12) x 61:128 (3-7),
    #   blocks 12-14 read y 189:256 (11-15) x 0:99 (0-6): 4*5 + 2*8 + 3*7 = 57 chunks per z
    # - the x window, blocks 10-11: y chunks 7-12, x 3-7: 30 per z; z chunks 0-1 for all
    assert read_cache.shared_read_cache_bytes(task, 1, 1 << 30) == 2 * 57 * chunk
    assert read_cache.shared_read_cache_bytes(task, 1, 2 * 57 * chunk - 1) == 2 * 30 * chunk
    assert read_cache.shared_read_cache_bytes(task, 1, 2 * 30 * chunk - 1) == 0


async def test_blocks_without_a_halo_need_no_cache(volume):
    src, _ = volume
    copy = BlockTask("c", src, src, BlockGrid(SHAPE, (16, 32, 32)), BlockKernel())
    assert read_cache.shared_read_cache_bytes(copy, 3, 1 << 30) == 0

    class Double(BlockKernel):
        compute_cost = "light"

        def compute(self, block, data):
            return data * 2

    aligned = BlockTask("m", src, src, BlockGrid(SHAPE, (16, 32, 32)), Double())
    assert read_cache.shared_read_cache_bytes(aligned, 3, 1 << 30) == 0


async def test_with_read_cache_reopens_read_only_with_the_same_data(volume):
    src, data = volume
    cached = await src.with_read_cache(64 << 20)
    assert cached is not src and not cached.writable
    np.testing.assert_array_equal(await cached.read(), data)
    memory = ts.open(
        {"driver": "array", "array": data, "dtype": "uint8"}, context=ts.Context()
    ).result()
    in_memory = ba.as_source(memory)
    assert await in_memory.with_read_cache(64 << 20) is in_memory  # would reopen empty
    numpy_source = ba.as_source(data)
    assert await numpy_source.with_read_cache(64 << 20) is numpy_source


async def test_a_smooth_downsample_through_the_cache_equals_the_plain_run(
    tmp_path, volume, monkeypatch
):
    src, data = volume
    expected = await ba.downsample(data, 2, order=1, anti_aliasing=True)
    monkeypatch.setattr(local, "shared_read_cache_bytes", lambda *args: 0)
    plain_stats = ba.RunStats()
    plain = await ba.downsample(
        src, 2, order=1, anti_aliasing=True, block_shape=(16, 32, 16), stats=plain_stats
    )
    assert "read_cache_bytes" not in plain_stats.extra
    monkeypatch.undo()
    monkeypatch.setattr(local, "resource_options", lambda: type("O", (), {"cache_bytes": 0}))
    stats = ba.RunStats()
    out = await ba.create_source(
        tmp_path / "out.zarr", shape=expected.shape, dtype="uint8", chunks=CHUNKS
    )
    await ba.downsample(
        src, 2, out, order=1, anti_aliasing=True, block_shape=(16, 32, 16), stats=stats
    )
    assert stats.extra["read_cache_bytes"] > 0
    np.testing.assert_array_equal(plain, expected)
    np.testing.assert_array_equal(await out.read(), expected)


async def test_windows_of_very_many_chunks_are_bounded_by_their_bounding_box(volume, monkeypatch):
    """Listing every chunk would cost too much for huge blocks over small chunks."""
    src, _ = volume
    task = smooth_task(src)
    exact = read_cache.shared_read_cache_bytes(task, 1, 1 << 30)
    monkeypatch.setattr(read_cache, "EXACT_UNION_CHUNKS", 10)
    # the row window's bounding box: y chunks 7-15, x chunks 0-7, z chunks 0-1
    assert read_cache.shared_read_cache_bytes(task, 1, 1 << 30) == 2 * 9 * 8 * 16**3 > exact


def _z5py_n5(path) -> np.ndarray:
    """An n5 written by z5py (its axis order is the reverse of tensorstore's own)."""
    z5py = pytest.importorskip("z5py")
    data = np.random.default_rng(9).integers(0, 60000, size=(20, 35, 50)).astype(np.uint16)
    z5py.File(str(path), "w").create_dataset("raw", data=data, chunks=(8, 16, 16))
    return z5py.File(str(path), "r")["raw"][:]


def _zarr_python_sparse(path) -> np.ndarray:
    """A zarr written by zarr-python with chunks left unwritten (read as its fill value, 7)."""
    zarr = pytest.importorskip("zarr")
    array = zarr.create_array(
        str(path),
        shape=(20, 35, 50),
        chunks=(8, 16, 16),
        dtype="int16",
        fill_value=7,
        zarr_format=2,
    )
    array[2:9, 3:20, 10:45] = np.arange(7 * 17 * 35, dtype=np.int16).reshape(7, 17, 35) - 300
    return zarr.open_array(str(path), mode="r")[:]


@pytest.mark.parametrize(
    ("name", "key", "write"),
    [("z5py.n5", "raw", _z5py_n5), ("sparse.zarr", None, _zarr_python_sparse)],
)
async def test_the_reopened_cache_and_reads_into_buffers_equal_the_writing_tools_own_read(
    tmp_path, name, key, write
):
    """The two new read paths against files other tools wrote: the axis order of z5py's n5 and
    the fill value of zarr-python's unwritten chunks must come through both unchanged."""
    expected = write(tmp_path / name)
    src = await ba.open_source(tmp_path / name, key)
    cached = await src.with_read_cache(64 << 20)
    assert cached is not src and cached.shape == expected.shape
    np.testing.assert_array_equal(await cached.read(), expected)
    for roi in [
        (slice(0, 20), slice(0, 35), slice(0, 50)),
        (slice(5, 13), slice(30, 35), slice(1, 49)),
    ]:
        out = np.zeros(tuple(s.stop - s.start for s in roi), expected.dtype)
        await cached.read_roi_into(roi, out)
        np.testing.assert_array_equal(out, expected[roi])
    result = await ba.downsample(src, 2, order=1, anti_aliasing=True, block_shape=(4, 8, 8))
    np.testing.assert_array_equal(
        result, await ba.downsample(expected, 2, order=1, anti_aliasing=True)
    )
