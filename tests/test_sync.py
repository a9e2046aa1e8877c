import asyncio

import numpy as np
import pytest

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


class GatedSource(ba.Source):
    """Block 0's region reads at once; every other read waits until released (or cancelled)."""

    def __init__(self, shape):
        self._shape = shape
        self.started: list[int] = []
        self.cancelled = 0
        self.release = asyncio.Event()

    @property
    def shape(self):
        return self._shape

    @property
    def dtype(self):
        return np.dtype("uint8")

    async def _read(self, roi):
        self.started.append(roi[0].start)
        if roi[0].start:
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return np.zeros(tuple(s.stop - s.start for s in roi), np.uint8)


async def test_iter_blocks_bounds_read_ahead():
    src = GatedSource((40, 4, 4))
    seen = []
    async for block, _ in ba.iter_blocks(src, (4, 4, 4), prefetch=3):
        seen.append(block.id)
        await asyncio.sleep(0.05)  # let any unbounded read-ahead start
        assert len(src.started) <= len(seen) + 3  # the consumed block plus prefetch
        src.release.set()
    assert seen == list(range(10))


async def test_breaking_out_cancels_pending_reads_even_with_a_kept_reference():
    src = GatedSource((40, 4, 4))
    stream = ba.iter_blocks(src, (4, 4, 4), prefetch=3)
    async for block, _ in stream:
        assert block.id == 0
        break
    for _ in range(20):
        await asyncio.sleep(0.01)
        if src.cancelled:
            break
    assert stream is not None and src.cancelled == 3  # blocks 1-3 were pending


def test_breaking_out_of_the_sync_iterator_cancels_pending_reads_with_a_kept_reference():
    import time

    src = GatedSource((40, 4, 4))
    iterator = ba.sync.iter_blocks(src, (4, 4, 4), prefetch=3)
    first = next(iter(iterator))[0]  # one step, then the pass is dropped (like a break)
    assert first.id == 0
    for _ in range(50):
        if src.cancelled:
            break
        time.sleep(0.01)
    assert iterator is not None and src.cancelled == 3


def test_sync_twins_have_the_signatures_of_their_async_originals():
    import inspect

    for name in (
        "open_source",
        "create_source",
        "from_spec",
        "copy",
        "downsample",
        "map_blocks",
        "pyramid",
        "attach",
    ):
        assert inspect.signature(getattr(ba.sync, name)) == inspect.signature(getattr(ba, name)), (
            name
        )


def test_sync_copy_of_a_zarr_python_array(tmp_path):
    """as_source of a zarr-python array must not run the background loop from inside it."""
    zarr = pytest.importorskip("zarr")
    array = zarr.open_array(
        str(tmp_path / "a.zarr"),
        mode="w",
        shape=(20, 30),
        chunks=(10, 10),
        dtype="uint8",
        zarr_format=2,
    )
    array[:] = np.arange(600, dtype=np.uint16).reshape(20, 30) % 251
    np.testing.assert_array_equal(ba.sync.copy(array), array[:])


async def test_as_source_of_a_zarr_python_array_opens_nothing_until_the_first_read(tmp_path):
    zarr = pytest.importorskip("zarr")
    array = zarr.open_array(
        str(tmp_path / "a.zarr"),
        mode="w",
        shape=(20, 30),
        chunks=(10, 10),
        dtype="uint8",
        zarr_format=2,
    )
    array[:] = 7
    src = ba.as_source(array)
    assert src.tensorstore() is None  # nothing opened inside the caller's loop
    assert src.shape == (20, 30) and src.chunks == (10, 10)
    np.testing.assert_array_equal(await src.read(np.s_[0:2]), np.full((2, 30), 7, np.uint8))
    assert src.tensorstore() is not None
    reopened = await ba.from_spec(src.to_spec().to_json())
    np.testing.assert_array_equal(await reopened.read(), array[:])


def test_sync_cancel_takes_the_timeout_of_run_cancel(tmp_path):
    """ba.sync.cancel(run) could not pass run.cancel's timeout (60 s, too short for a busy
    scheduler); it now can, and waits until the tasks are gone."""
    from .runners.blockfns import sleepy

    data = np.zeros((8, 16, 16), np.uint8)
    src = ba.sync.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype="uint8", chunks=(1, 16, 16)
    )
    out = ba.sync.create_source(
        tmp_path / "out.zarr", shape=data.shape, dtype="uint8", chunks=(1, 16, 16)
    )
    run = ba.sync.map_blocks(
        sleepy(5.0),
        src,
        out,
        block_shape=(1, 16, 16),
        job_type="subprocess",
        num_workers=2,
        job_config=ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05),
        wait=False,
    )
    ba.sync.cancel(run, timeout=120.0)
    status = ba.sync.status(run)
    assert status.running == status.pending == 0
    assert status.blocks_done < status.blocks_total  # stopped, not run to the end
