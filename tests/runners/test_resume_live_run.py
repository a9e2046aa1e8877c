"""resume_from with job_type='local' on the folder of a subprocess run: refused while the run's
workers still compute (they would run every block twice with it), accepted once they are gone.
Real worker processes, held at a gate so that "still alive" never depends on timing."""

from __future__ import annotations

import numpy as np
import pytest

import bioimage_async as ba

from .gated import calls, gated_setup, while_gated


@pytest.fixture
async def gated(tmp_path):
    """The data, the output, a closed gate, the call count file and a map_blocks caller."""
    return await gated_setup(tmp_path)


async def test_a_local_resume_of_a_subprocess_run_with_live_workers_is_refused(gated):
    data, out, gate, counts, run = gated
    live = await run("subprocess", wait=False)
    async with while_gated(live, gate):
        assert await live.alive()
        with pytest.raises(ba.RunLockedError, match="still run") as refused:
            await run("local", resume_from=live.tmp_folder)
        assert "ba.attach" in str(refused.value)
    await live.wait()
    assert calls(counts) == 16  # each block once: the refused resume computed none
    np.testing.assert_array_equal(await out.read(), 255 - data)


async def test_a_local_resume_of_a_local_run_that_subprocess_workers_resume_is_refused(
    gated, tmp_path
):
    """The manifest of a local run says 'local' after a subprocess resume: only that backend
    was asked, so a local resume ran beside the live workers (blocks twice), removed the
    folder under them, and their run then reported every block failed."""
    data, out, gate, counts, run = gated
    (tmp_path / "fail_locally").write_text("")
    with pytest.raises(ba.RunnerError) as failed:
        await run("local")
    (tmp_path / "fail_locally").unlink()
    folder = failed.value.tmp_folder
    assert len(failed.value.failed_block_ids) == 16
    live = await run("subprocess", resume_from=folder, wait=False)
    async with while_gated(live, gate):
        assert await live.alive()
        with pytest.raises(ba.RunLockedError, match="subprocess run whose tasks still run"):
            await run("local", resume_from=folder)
    await live.wait()
    assert calls(counts) == 16  # each block once: the refused resume computed none
    np.testing.assert_array_equal(await out.read(), 255 - data)


async def test_a_local_resume_of_a_subprocess_run_whose_workers_are_gone_finishes_it(gated):
    data, out, gate, counts, run = gated
    dead = await run("subprocess", wait=False)
    await dead.cancel()  # returns once no worker is alive
    gate.unlink()
    await run("local", resume_from=dead.tmp_folder)
    np.testing.assert_array_equal(await out.read(), 255 - data)
    assert calls(counts) == 16
