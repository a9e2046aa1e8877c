"""On the real single-node slurm cluster and sshd set up by tests/slurm_testbed/setup.sh."""

import asyncio
import json
import os
import subprocess

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.runners.ssh import SshError

from .blockfns import bright_volume, fail_while_marker_exists, invert, sleepy
from .slurm_helpers import CHUNKS, local_config, make_io, squeue_alive, ssh_config

pytestmark = pytest.mark.slurm


async def test_copy_over_ssh_equals_the_input(testbed, shared, volume):
    src, out = await make_io(shared, volume)
    await ba.copy(src, out, job_type="slurm", num_workers=4, job_config=ssh_config(testbed, shared))
    np.testing.assert_array_equal(await out.read(), volume)


async def test_downsample_with_local_sbatch_equals_a_local_run(shared, volume):
    target = (23, 35, 42)
    src, out = await make_io(shared, volume, "s1.zarr", target, (8, 16, 16))
    await ba.downsample(
        src,
        2,
        out,
        order=1,
        anti_aliasing=True,
        job_type="slurm",
        num_workers=4,
        job_config=local_config(shared),
    )
    np.testing.assert_array_equal(
        await out.read(), await ba.downsample(volume, 2, order=1, anti_aliasing=True)
    )


async def test_downsample_over_ssh_equals_a_local_run(testbed, shared, volume):
    target = (23, 35, 42)
    src, out = await make_io(shared, volume, "s1.zarr", target, (8, 16, 16))
    await ba.downsample(
        src, 2, out, job_type="slurm", num_workers=4, job_config=ssh_config(testbed, shared)
    )
    np.testing.assert_array_equal(await out.read(), await ba.downsample(volume, 2))


async def test_failed_tasks_give_exact_block_ids_and_resume_from_completes(testbed, shared):
    shape, bright = (48, 64, 96), [1, 7, 16]
    data = bright_volume(shape, CHUNKS, bright)
    src, out = await make_io(shared, data)
    marker = os.path.join(shared, "FAIL")
    open(marker, "w").close()
    fn = fail_while_marker_exists(marker)
    config = ssh_config(testbed, shared)
    with pytest.raises(ba.RunnerError) as caught:
        await ba.map_blocks(
            fn, src, out, block_shape=CHUNKS, job_type="slurm", num_workers=4, job_config=config
        )
    error = caught.value
    assert error.failed_block_ids == bright
    assert "transient failure on a bright block" in str(error)
    os.unlink(marker)
    await ba.map_blocks(
        fn,
        src,
        out,
        block_shape=CHUNKS,
        job_type="slurm",
        num_workers=4,
        job_config=config,
        resume_from=error.tmp_folder,
    )
    np.testing.assert_array_equal(await out.read(), 255 - data)


async def test_unknown_host_key_is_refused_before_anything_is_submitted(testbed, shared, volume):
    src, out = await make_io(shared, volume)
    for known_hosts in (
        testbed["SLURM_TESTBED_BAD_KNOWN_HOSTS"],
        testbed.get("SLURM_TESTBED_EMPTY_KNOWN_HOSTS"),
    ):
        if known_hosts is None:
            continue
        with pytest.raises(SshError, match="not trusted"):
            await ba.copy(
                src,
                out,
                job_type="slurm",
                job_config=ssh_config(testbed, shared, known_hosts=known_hosts),
            )
    assert not [p for p in os.listdir(shared) if p.startswith("bioimage_async_")]
    with pytest.raises(ba.ConfigError, match="does not exist"):
        await ba.copy(
            src,
            out,
            job_type="slurm",
            job_config=ssh_config(testbed, shared, known_hosts=os.path.join(shared, "nope")),
        )


async def test_run_is_split_across_arrays_beyond_max_array_size(shared, volume):
    src, out = await make_io(shared, volume)
    config = local_config(shared, max_array_size=3, blocks_per_task=3, keep_tmp=True)
    run = await ba.map_blocks(
        invert,
        src,
        out,
        block_shape=CHUNKS,
        job_type="slurm",
        num_workers=4,
        job_config=config,
        wait=False,
    )
    grid = ba.BlockGrid(volume.shape, CHUNKS)
    n_tasks = -(-grid.num_blocks // 3)
    assert len(run.job_ids) == -(-n_tasks // 3) > 1
    await run.wait()
    np.testing.assert_array_equal(await out.read(), 255 - volume)


async def test_a_refused_later_array_cancels_the_arrays_submitted_before_it(
    shared, volume, monkeypatch
):
    """Split across arrays, the second sbatch is refused (a real refusal: an invalid --array);
    the first, already accepted, must not run on unrecorded and unwatched."""
    from bioimage_async.runners import slurm

    scripts = slurm.sbatch_script
    accepted: list[str] = []

    def second_is_invalid(config, folder, python, name, size, offset, throttle):
        script = scripts(config, folder, python, name, size, offset, throttle)
        return script.replace("--array=0-", "--array=bad-") if offset else script

    monkeypatch.setattr(slurm, "sbatch_script", second_is_invalid)
    run_sbatch = slurm.LocalShell.run

    async def noting_job_ids(self, argv, *args, **kwargs):
        result = await run_sbatch(self, argv, *args, **kwargs)
        if argv[0] == "sbatch" and not result.returncode:
            accepted.append(result.stdout.strip().split(";")[0])
        return result

    monkeypatch.setattr(slurm.LocalShell, "run", noting_job_ids)
    src, out = await make_io(shared, volume)
    config = local_config(shared, max_array_size=3, blocks_per_task=3, keep_tmp=True)
    with pytest.raises(ba.ConfigError) as refused:
        await ba.map_blocks(
            sleepy(30), src, out, block_shape=CHUNKS, job_type="slurm", job_config=config
        )
    assert len(accepted) == 1
    assert not squeue_alive(accepted)  # scancel has returned: no task is pending or running
    assert f"the arrays submitted before it, {accepted}, are cancelled" in str(refused.value)


async def test_cancelling_the_awaiting_task_cancels_the_job(shared, volume):
    src, out = await make_io(shared, volume)
    config = local_config(shared, keep_tmp=True)
    task = asyncio.create_task(
        ba.map_blocks(
            sleepy(30),
            src,
            out,
            block_shape=CHUNKS,
            job_type="slurm",
            num_workers=2,
            job_config=config,
        )
    )
    run = None
    for _ in range(150):  # wait for the job's state, not for files: RUNNING in the scheduler
        await asyncio.sleep(0.2)
        folders = [p for p in os.listdir(shared) if p.startswith("bioimage_async_")]
        if not folders:
            continue
        folder = os.path.join(shared, folders[0])
        manifest = json.loads(open(os.path.join(folder, "manifest.json")).read())
        if not manifest.get("attempts"):
            continue
        run = await ba.attach(folder, config)
        if "RUNNING" in (await run.status()).task_states.values():
            break
    assert run is not None and "RUNNING" in (await run.status()).task_states.values()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(40):
        if not squeue_alive(run.job_ids):
            break
        await asyncio.sleep(0.5)
    assert not squeue_alive(run.job_ids)


async def test_scancelled_task_is_reported_with_its_state(shared, volume):
    src, out = await make_io(shared, volume)
    config = local_config(shared, blocks_per_task=1)
    run = await ba.map_blocks(
        sleepy(4.0),
        src,
        out,
        block_shape=CHUNKS,
        block_ids=[0, 1, 2, 3],
        job_type="slurm",
        num_workers=2,
        job_config=config,
        wait=False,
    )
    for _ in range(100):
        if (await run.status()).task_states.get(0) == "RUNNING":
            break
        await asyncio.sleep(0.2)
    subprocess.run(["scancel", f"{run.job_ids[0]}_0"], check=True)
    with pytest.raises(ba.RunnerError) as caught:
        await run.wait()
    assert caught.value.failed_block_ids == [0]
    assert "task 0: CANCELLED" in str(caught.value)


@pytest.mark.slow  # slurm enforces time limits on a ~30 s tick: this takes 60-90 s
async def test_task_killed_by_its_time_limit_is_reported_as_timeout(shared, volume):
    src, out = await make_io(shared, volume)
    config = local_config(shared, time="1", blocks_per_task=100)
    with pytest.raises(ba.RunnerError) as caught:
        await ba.map_blocks(
            sleepy(20),
            src,
            out,
            block_shape=CHUNKS,
            job_type="slurm",
            num_workers=1,
            job_config=config,
        )
    assert "TIMEOUT" in str(caught.value)
    assert caught.value.failed_block_ids  # the blocks that never finished


async def test_a_refused_submission_leaves_no_run_folder(shared, volume):
    src, out = await make_io(shared, volume)
    config = local_config(shared, partition="no-such-partition")
    before = {p for p in os.listdir(shared) if p.startswith("bioimage_async_")}
    with pytest.raises(ba.ConfigError, match="sbatch refused the job"):
        await ba.copy(src, out, block_shape=CHUNKS, job_type="slurm", job_config=config)
    after = {p for p in os.listdir(shared) if p.startswith("bioimage_async_")}
    assert after == before
