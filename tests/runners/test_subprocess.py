import asyncio
import logging
import os
import signal

import numpy as np
import pytest

import bioimage_async as ba

from .blockfns import bright_volume, fail_while_marker_exists, invert, sleepy

CHUNKS = (16, 32, 32)


async def make_input(tmp_path, data):
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype=data.dtype, chunks=CHUNKS
    )
    await src.write(..., data)
    out = await ba.create_source(
        tmp_path / "out.zarr", shape=data.shape, dtype=data.dtype, chunks=CHUNKS
    )
    return src, out


def config(tmp_path, **kw):
    return ba.RunnerConfig(tmp_root=str(tmp_path), poll_interval=0.1, **kw)


async def test_subprocess_copy_and_map_blocks_equal_local(tmp_path, volume):
    src, out = await make_input(tmp_path, volume)
    await ba.copy(src, out, job_type="subprocess", num_workers=2, job_config=config(tmp_path))
    np.testing.assert_array_equal(await out.read(), volume)
    await ba.map_blocks(
        invert,
        src,
        out,
        block_shape=CHUNKS,
        job_type="subprocess",
        num_workers=2,
        job_config=config(tmp_path),
    )
    np.testing.assert_array_equal(await out.read(), 255 - volume)
    assert not [p for p in os.listdir(tmp_path) if p.startswith("bioimage_async_")]  # cleaned up


async def test_subprocess_smooth_downsample_equals_the_whole_array(tmp_path, volume):
    """Workers read each block's input (halo included) into reused buffers, as local runs do."""
    src, _ = await make_input(tmp_path, volume)
    target = tuple((n + 1) // 2 for n in volume.shape)
    out = await ba.create_source(
        tmp_path / "small.zarr", shape=target, dtype=volume.dtype, chunks=(8, 16, 16)
    )
    await ba.downsample(
        src,
        2,
        out,
        order=1,
        anti_aliasing=True,
        block_shape=(8, 16, 16),
        job_type="subprocess",
        num_workers=2,
        job_config=config(tmp_path),
    )
    expected = await ba.downsample(volume, 2, order=1, anti_aliasing=True)
    np.testing.assert_array_equal(await out.read(), expected)


async def test_failed_blocks_are_exact_and_resume_from_completes(tmp_path):
    shape, bright = (48, 64, 96), [2, 9, 13]
    data = bright_volume(shape, CHUNKS, bright)
    src, out = await make_input(tmp_path, data)
    marker = tmp_path / "FAIL"
    marker.write_text("")
    fn = fail_while_marker_exists(str(marker))
    with pytest.raises(ba.RunnerError) as caught:
        await ba.map_blocks(
            fn,
            src,
            out,
            block_shape=CHUNKS,
            job_type="subprocess",
            num_workers=2,
            job_config=config(tmp_path),
        )
    error = caught.value
    assert error.failed_block_ids == bright
    assert error.tmp_folder and os.path.isdir(error.tmp_folder)
    assert "transient failure" in str(error)
    marker.unlink()
    await ba.map_blocks(
        fn,
        src,
        out,
        block_shape=CHUNKS,
        job_type="subprocess",
        num_workers=2,
        job_config=config(tmp_path),
        resume_from=error.tmp_folder,
    )
    np.testing.assert_array_equal(await out.read(), 255 - data)


async def test_worker_killed_mid_run_is_reported_and_resumed(tmp_path, volume):
    src, out = await make_input(tmp_path, volume)
    run = await ba.map_blocks(
        sleepy(0.3),
        src,
        out,
        block_shape=CHUNKS,
        job_type="subprocess",
        num_workers=2,
        job_config=config(tmp_path),
        wait=False,
    )
    assert isinstance(run, ba.Run)
    for _ in range(100):
        status = await run.status()
        if status.blocks_done >= 2:
            break
        await asyncio.sleep(0.1)
    victim = int(run.job_ids[0])
    os.killpg(victim, signal.SIGKILL)
    with pytest.raises(ba.RunnerError) as caught:
        await run.wait()
    error = caught.value
    grid = ba.BlockGrid(volume.shape, CHUNKS)
    assert 0 < len(error.failed_block_ids) < grid.num_blocks
    assert "SIGKILL" in str(error)
    written = await out.read()
    for block in grid:  # every block not reported missing is really written
        if block.id not in error.failed_block_ids:
            np.testing.assert_array_equal(written[block.roi], 255 - volume[block.roi])
    await ba.map_blocks(
        sleepy(0.3),  # the same function: a resume refuses one with other closure values
        src,
        out,
        block_shape=CHUNKS,
        job_type="subprocess",
        num_workers=2,
        job_config=config(tmp_path),
        resume_from=error.tmp_folder,
    )
    np.testing.assert_array_equal(await out.read(), 255 - volume)


async def test_cancelling_the_awaiting_task_kills_the_workers(tmp_path, volume):
    src, out = await make_input(tmp_path, volume)
    task = asyncio.create_task(
        ba.map_blocks(
            sleepy(1.0),
            src,
            out,
            block_shape=CHUNKS,
            job_type="subprocess",
            num_workers=2,
            job_config=config(tmp_path, keep_tmp=True),
        )
    )
    await asyncio.sleep(2.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    folders = [p for p in os.listdir(tmp_path) if p.startswith("bioimage_async_")]
    run = await ba.attach(str(tmp_path / folders[0]))
    assert not await run.alive()
    # recorded, so that status says "cancelled at", not that the workers were killed
    assert await run.folder.cancelled_at() is not None


async def test_distributed_runs_refuse_in_memory_and_hdf5_outputs(tmp_path, volume):
    src, _ = await make_input(tmp_path, volume)
    with pytest.raises(ValueError, match="cannot be reopened"):
        await ba.copy(
            volume,
            await ba.create_source(
                tmp_path / "x.zarr", shape=volume.shape, dtype="uint8", chunks=CHUNKS
            ),
            job_type="subprocess",
        )
    with pytest.raises(ValueError, match="cannot be reopened"):
        await ba.copy(src, np.zeros_like(volume), job_type="subprocess")
    pytest.importorskip("h5py")
    h5 = await ba.create_source(
        tmp_path / "o.h5",
        shape=volume.shape,
        dtype="uint8",
        chunks=CHUNKS,
        format="hdf5",
        internal_path="data",
    )
    with pytest.raises(ValueError, match="cannot be written by several processes"):
        await ba.copy(src, h5, job_type="subprocess")


async def test_a_view_of_an_hdf5_file_is_refused_as_a_distributed_output(tmp_path, volume):
    pytest.importorskip("h5py")
    src, _ = await make_input(tmp_path, volume)
    h5 = await ba.create_source(
        tmp_path / "o.h5",
        shape=volume.shape,
        dtype="uint8",
        chunks=CHUNKS,
        format="hdf5",
        internal_path="data",
    )
    region = np.s_[0:16, 0:32, 0:32]
    with pytest.raises(ValueError, match="cannot be written by several processes"):
        await ba.copy(src.view(region), h5.view(region), job_type="subprocess")


async def test_attach_from_the_folder_alone_waits_for_the_result(tmp_path, volume):
    src, out = await make_input(tmp_path, volume)
    run = await ba.copy(
        src, out, job_type="subprocess", num_workers=2, job_config=config(tmp_path), wait=False
    )
    again = await ba.attach(run.tmp_folder, config(tmp_path))
    result = await again.wait()
    np.testing.assert_array_equal(await result.read(), volume)


async def test_worker_refuses_a_payload_of_another_package_version(tmp_path):
    import json

    shape, bright = (48, 64, 96), [4]
    data = bright_volume(shape, CHUNKS, bright)
    src, out = await make_input(tmp_path, data)
    marker = tmp_path / "FAIL"
    marker.write_text("")
    fn = fail_while_marker_exists(str(marker))
    with pytest.raises(ba.RunnerError) as caught:
        await ba.map_blocks(
            fn,
            src,
            out,
            block_shape=CHUNKS,
            job_type="subprocess",
            num_workers=2,
            job_config=config(tmp_path),
        )
    folder = caught.value.tmp_folder
    manifest_path = os.path.join(folder, "manifest.json")
    manifest = json.load(open(manifest_path))
    manifest["package_version"] = "0.0.0-other"
    json.dump(manifest, open(manifest_path, "w"))
    marker.unlink()
    with pytest.raises(ba.RunnerError, match="payload was written by 0.0.0-other") as again:
        await ba.map_blocks(
            fn,
            src,
            out,
            block_shape=CHUNKS,
            job_type="subprocess",
            num_workers=2,
            job_config=config(tmp_path),
            resume_from=folder,
        )
    assert again.value.failed_block_ids == bright


async def test_progress_callable_sees_every_block(tmp_path, volume):
    src, out = await make_input(tmp_path, volume)
    seen = []
    await ba.copy(
        src, out, block_shape=CHUNKS, progress=lambda done, total: seen.append((done, total))
    )
    total = ba.BlockGrid(volume.shape, CHUNKS).num_blocks
    assert seen[-1] == (total, total) and len(seen) == total
    seen.clear()
    await ba.copy(
        src,
        out,
        block_shape=CHUNKS,
        job_type="subprocess",
        num_workers=2,
        job_config=config(tmp_path),
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen and seen[-1] == (total, total)


@pytest.mark.parametrize("job_type", ["local", "subprocess"])
async def test_a_progress_callable_that_raises_is_logged_and_the_run_finishes(
    tmp_path, volume, caplog, job_type
):
    src, out = await make_input(tmp_path, volume)
    calls = []

    def broken(done, total):
        calls.append(done)
        raise ValueError("display went away")

    with caplog.at_level(logging.ERROR, logger="bioimage_async"):
        await ba.copy(
            src,
            out,
            block_shape=CHUNKS,
            job_type=job_type,
            num_workers=2,
            job_config=config(tmp_path),
            progress=broken,
        )
    np.testing.assert_array_equal(await out.read(), volume)
    assert len(calls) == 1  # called no more after it raised
    assert any("progress callback" in r.getMessage() for r in caplog.records)


def test_cli_status_and_attach_of_a_detached_run(tmp_path, volume):
    import subprocess
    import sys

    src = ba.sync.create_source(
        tmp_path / "i.zarr", shape=volume.shape, dtype="uint8", chunks=CHUNKS
    )
    src[...] = volume
    out = ba.sync.create_source(
        tmp_path / "o.zarr", shape=volume.shape, dtype="uint8", chunks=CHUNKS
    )
    run = ba.sync.map_blocks(
        sleepy(0.2),
        src,
        out,
        block_shape=CHUNKS,
        job_type="subprocess",
        num_workers=2,
        job_config=config(tmp_path, keep_tmp=True),
        wait=False,
    )
    cli = [sys.executable, "-m", "bioimage_async.cli.main"]
    status = subprocess.run(
        [*cli, "status", run.tmp_folder], capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0 and "blocks done" in status.stdout, status.stderr
    attached = subprocess.run(
        [*cli, "attach", run.tmp_folder], capture_output=True, text=True, timeout=120
    )
    assert attached.returncode == 0 and "every block is written" in attached.stdout, attached.stderr
    np.testing.assert_array_equal(out[...], 255 - volume)


@pytest.mark.parametrize("job_type", ["local", "subprocess"])
async def test_a_block_whose_function_raises_a_cancelled_error_is_reported_failed(
    tmp_path, job_type
):
    # in a worker, the function runs through run_in_executor, which turns a user's
    # concurrent.futures.CancelledError into asyncio's: the block was dropped silently and the
    # task wrote its success sentinel, so the run reported success with the block unwritten
    from .blockfns import cancelled_inside_block

    data = np.ones((32, 64, 64), np.uint8)
    grid = ba.BlockGrid(data.shape, CHUNKS)
    data[grid.block(3).roi] = 7
    src, out = await make_input(tmp_path, data)
    with pytest.raises(ba.RunnerError) as caught:
        await ba.map_blocks(
            cancelled_inside_block(7),
            src,
            out,
            block_shape=CHUNKS,
            job_type=job_type,
            num_workers=2,
            job_config=config(tmp_path),
        )
    assert caught.value.failed_block_ids == [3]
    written = await out.read()
    for block_id in range(grid.num_blocks):
        roi = grid.block(block_id).roi
        expected = 0 if block_id == 3 else 2
        assert (written[roi] == expected).all(), block_id


async def test_a_cancel_between_two_worker_starts_leaves_no_worker_running(
    tmp_path, volume, monkeypatch
):
    """The workers started before the cancel are in no manifest yet: submit stops them."""
    from bioimage_async.runners import subprocess as launcher_module

    real_exec = asyncio.create_subprocess_exec
    started = []

    async def cancelled_on_the_second_start(*args, **kwargs):
        if started:
            raise asyncio.CancelledError  # a cancel arriving between two starts
        process = await real_exec(*args, **kwargs)
        started.append(process)
        return process

    monkeypatch.setattr(
        launcher_module.asyncio, "create_subprocess_exec", cancelled_on_the_second_start
    )
    src, out = await make_input(tmp_path, volume)
    with pytest.raises(asyncio.CancelledError):
        await ba.map_blocks(
            sleepy(1.0),
            src,
            out,
            block_shape=CHUNKS,
            job_type="subprocess",
            num_workers=2,
            job_config=config(tmp_path, keep_tmp=True),
        )
    assert len(started) == 1
    code = await asyncio.wait_for(started[0].wait(), 10)
    assert code == -signal.SIGKILL


async def test_a_distributed_run_logs_its_run_folder_before_any_block(tmp_path, volume, caplog):
    """A run killed with its driver (kill -9) is only finished with its folder's path: it is
    logged as the run starts, as local runs log their journal."""
    src, out = await make_input(tmp_path, volume)
    with caplog.at_level(logging.INFO, logger="bioimage_async"):
        run = await ba.copy(
            src, out, job_type="subprocess", num_workers=2, job_config=config(tmp_path), wait=False
        )
        logged = [
            r.getMessage() for r in caplog.records if "keeps its journal in" in r.getMessage()
        ]
        await run.wait()
    assert len(logged) == 1
    folder = logged[0].split("keeps its journal in ")[1].split(" ")[0]
    assert folder.startswith(os.path.join(str(tmp_path), "bioimage_async_"))
    assert f"resume_from={folder!r}" in logged[0]


async def test_a_cancel_is_recorded_in_the_run_folder_and_cleared_by_a_resume(tmp_path, volume):
    from bioimage_async.runners.files import LocalFiles
    from bioimage_async.runners.protocol import RunFolder

    src, out = await make_input(tmp_path, volume)
    cfg = config(tmp_path, keep_tmp=True)
    fn = sleepy(0.3)
    run = await ba.map_blocks(
        fn,
        src,
        out,
        block_shape=CHUNKS,
        job_type="subprocess",
        num_workers=1,
        job_config=cfg,
        wait=False,
    )
    await run.cancel()
    folder = await RunFolder.open(LocalFiles(), run.tmp_folder)
    assert await folder.cancelled_at() is not None
    with pytest.raises(ba.RunnerError, match="cancelled at") as stopped:  # not "GONE"
        await (await ba.attach(run.tmp_folder)).wait()
    assert "worker process ended" not in str(stopped.value)
    await ba.map_blocks(
        fn,
        src,
        out,
        block_shape=CHUNKS,
        job_type="subprocess",
        num_workers=2,
        job_config=cfg,
        resume_from=run.tmp_folder,
    )
    assert await folder.cancelled_at() is None  # running again: no longer a cancelled run
