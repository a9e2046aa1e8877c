"""Workstation-grade remote runs on the real slurm + sshd test bed: detach, attach, survive drops."""

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import bioimage_async as ba

from .blockfns import sleepy
from .slurm_helpers import CHUNKS, make_io, squeue_alive, ssh_config

pytestmark = pytest.mark.slurm


async def test_detached_run_is_waited_on_from_a_second_process(testbed, shared, volume, tmp_path):
    src, out = await make_io(shared, volume)
    config = ssh_config(testbed, shared)
    run = await ba.map_blocks(
        sleepy(0.2),
        src,
        out,
        block_shape=CHUNKS,
        job_type="slurm",
        num_workers=4,
        job_config=config,
        wait=False,
    )
    assert run.job_ids and os.path.isdir(run.tmp_folder)
    script = tmp_path / "attach.py"
    fields = {
        k: v
        for k, v in config.__dict__.items()
        if k
        in ("tmp_root", "host", "port", "username", "client_keys", "known_hosts", "remote_python")
    }
    script.write_text(
        textwrap.dedent(f"""
        import json, bioimage_async as ba
        config = ba.SlurmConfig(poll_interval=0.25, **json.loads({json.dumps(json.dumps(fields))}))
        run = ba.sync.attach({run.tmp_folder!r}, config)
        result = ba.sync.wait(run)
        print("DONE", result.to_json()["kind"])
    """)
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "DONE tensorstore" in result.stdout
    np.testing.assert_array_equal(await out.read(), 255 - volume)
    await run.close()


async def test_run_survives_sshd_restart_mid_run(testbed, shared, volume):
    src, out = await make_io(shared, volume)
    config = ssh_config(testbed, shared, reconnect_backoff=0.2)
    run = await ba.map_blocks(
        sleepy(0.3),
        src,
        out,
        block_shape=CHUNKS,
        job_type="slurm",
        num_workers=4,
        job_config=config,
        wait=False,
    )
    for _ in range(100):
        if (await run.status()).blocks_done >= 2:
            break
        await asyncio.sleep(0.2)
    subprocess.run(["bash", testbed["SLURM_TESTBED_RESTART_SSHD"], "1"], check=True, timeout=60)
    started = time.monotonic()
    await run.wait()
    session = run.launcher.shell
    assert session.reconnects >= 1
    assert session.last_reconnect_seconds is not None and time.monotonic() - started < 120
    print(f"reconnected after {session.last_reconnect_seconds:.2f} s")
    np.testing.assert_array_equal(await out.read(), 255 - volume)
    await run.close()


async def test_resume_from_a_live_run_attaches_instead_of_resubmitting(testbed, shared, volume):
    src, out = await make_io(shared, volume)
    config = ssh_config(testbed, shared, keep_tmp=True)
    fn = sleepy(0.3)
    run = await ba.map_blocks(
        fn,
        src,
        out,
        block_shape=CHUNKS,
        job_type="slurm",
        num_workers=2,
        job_config=config,
        wait=False,
    )
    await asyncio.sleep(1.0)
    await ba.map_blocks(
        fn,
        src,
        out,
        block_shape=CHUNKS,
        job_type="slurm",
        num_workers=2,
        job_config=config,
        resume_from=run.tmp_folder,
    )
    manifest = json.load(open(os.path.join(run.tmp_folder, "manifest.json")))
    assert len(manifest["attempts"]) == 1  # nothing was resubmitted
    jobs = subprocess.run(
        ["squeue", "-h", "-t", "all", "-n", "ba-map_blocks", "-o", "%A"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert run.job_ids[0] in jobs
    np.testing.assert_array_equal(await out.read(), 255 - volume)
    await run.close()


async def test_cancel_through_the_handle_leaves_no_task_running(testbed, shared, volume):
    src, out = await make_io(shared, volume)
    config = ssh_config(testbed, shared, keep_tmp=True)
    run = await ba.map_blocks(
        sleepy(20),
        src,
        out,
        block_shape=CHUNKS,
        job_type="slurm",
        num_workers=2,
        job_config=config,
        wait=False,
    )
    for _ in range(50):
        if (await run.status()).running:
            break
        await asyncio.sleep(0.2)
    await run.cancel()
    assert not squeue_alive(run.job_ids)
    status = await run.status()
    assert status.running == 0 and status.pending == 0
    await run.close()


async def test_detach_on_cancel_leaves_the_job_running(testbed, shared, volume, caplog):
    src, out = await make_io(shared, volume)
    config = ssh_config(testbed, shared, keep_tmp=True)
    task = asyncio.create_task(
        ba.map_blocks(
            sleepy(0.5),
            src,
            out,
            block_shape=CHUNKS,
            job_type="slurm",
            num_workers=2,
            job_config=config,
            detach_on_cancel=True,
        )
    )
    folders = []
    for _ in range(100):
        await asyncio.sleep(0.2)
        folders = [p for p in os.listdir(shared) if p.startswith("bioimage_async_")]
        if folders and os.path.exists(os.path.join(shared, folders[0], "submit-0-0.sh")):
            break
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "ba.attach(" in caplog.text
    run = await ba.attach(os.path.join(shared, folders[0]), config)
    assert await run.alive()
    await run.wait()
    np.testing.assert_array_equal(await out.read(), 255 - volume)
    await run.close()
