"""Crash-safe local runs: a journal under tmp_root, resume_from after kill -9, locks, and
compute workers that die with their parent. Real processes, real SIGKILL, outputs checked."""

from __future__ import annotations

import asyncio
import glob
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import bioimage_async as ba

from .blockfns import (
    bright_volume,
    counting_invert,
    exit_on_bright_while_marker_exists,
    fail_first_time,
    fail_while_marker_exists,
    sleepy,
)
from .slow_source import SlowCountingSource, read_counts

ROOT = Path(__file__).resolve().parents[2]
SHAPE, BLOCK = (32, 64, 64), (8, 16, 16)  # 64 blocks


async def make_data(tmp_path, rng):
    data = rng.integers(0, 256, size=SHAPE, dtype=np.uint8)
    src = await ba.create_source(tmp_path / "in.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    await src.write(..., data)
    await ba.create_source(tmp_path / "out.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    return data


def start_script(tmp_path, body: str) -> subprocess.Popen:
    script = tmp_path / "run.py"
    script.write_text(
        "import asyncio, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import bioimage_async as ba\n"
        "from tests.runners.slow_source import SlowCountingSource\n"
        "from tests.runners.blockfns import counting_invert, sleepy\n" + textwrap.dedent(body)
    )
    return subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "script.err", "wb"),
    )


def wait_for(predicate, timeout=60.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)


def run_folder(tmp_path, name):
    found = glob.glob(str(tmp_path / "tmp" / f"bioimage_async_{name}_*"))
    assert len(found) == 1, found
    return found[0]


async def copy_killed_halfway(tmp_path, out_path, counts: str) -> str:
    """A copy of in.zarr into ``out_path`` by another process, SIGKILLed once half the blocks
    were read; returns its run folder."""
    process = start_script(
        tmp_path,
        f"""
        async def main():
            src = SlowCountingSource(await ba.open_source({str(tmp_path / "in.zarr")!r}), {counts!r}, 0.05)
            out = await ba.open_source({str(out_path)!r}, mode="r+")
            config = ba.RunnerConfig(tmp_root={str(tmp_path / "tmp")!r})
            await ba.copy(src, out, block_shape={BLOCK}, num_workers=2, job_config=config)
        asyncio.run(main())
    """,
    )
    wait_for(lambda: sum(read_counts(counts).values()) >= 32)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return run_folder(tmp_path, "copy")


async def test_a_local_copy_killed_halfway_resumes_and_reads_each_block_at_most_once_more(
    tmp_path, rng
):
    data = await make_data(tmp_path, rng)
    counts = str(tmp_path / "reads.txt")
    folder = await copy_killed_halfway(tmp_path, tmp_path / "out.zarr", counts)
    assert 0 < len(await ba.missing_blocks(folder)) < 64
    before = read_counts(counts)
    src = SlowCountingSource(await ba.open_source(tmp_path / "in.zarr"), counts, 0.05)  # same spec
    out = await ba.open_source(tmp_path / "out.zarr", mode="r+")
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"))
    await ba.copy(src, out, block_shape=BLOCK, num_workers=2, job_config=config, resume_from=folder)
    np.testing.assert_array_equal(await out.read(), data)
    after = read_counts(counts)
    assert len(after) == 64 and all(n >= 1 for n in after.values())
    in_flight = 8  # the local runner's bound for copies with 2 workers
    again = [block for block, n in after.items() if n > 1]
    assert len(again) <= in_flight, again  # only blocks that were in flight at the kill
    assert all(after[block] == before[block] + 1 for block in again)
    assert not os.path.exists(folder)  # removed after success


async def test_a_copy_into_hdf5_killed_halfway_resumes_exactly(tmp_path, rng):
    """HDF5 kept written chunks in its own cache until a flush: blocks journaled as done were
    lost with the killed process, and the resume reported success with them missing (a new
    file killed that way could not even be opened)."""
    data = await make_data(tmp_path, rng)
    counts = str(tmp_path / "reads.txt")
    out_path = tmp_path / "out.h5"
    made = await ba.create_source(out_path, shape=SHAPE, dtype="uint8", chunks=BLOCK)
    made.close()  # HDF5 locks a file open for writing: the script opens it next
    folder = await copy_killed_halfway(tmp_path, out_path, counts)
    assert 0 < len(await ba.missing_blocks(folder)) < 64
    src = SlowCountingSource(await ba.open_source(tmp_path / "in.zarr"), counts, 0.05)
    out = await ba.open_source(out_path, mode="r+")
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"))
    await ba.copy(src, out, block_shape=BLOCK, num_workers=2, job_config=config, resume_from=folder)
    np.testing.assert_array_equal(await out.read(), data)


async def test_a_local_map_blocks_killed_halfway_resumes_exactly(tmp_path, rng):
    data = await make_data(tmp_path, rng)
    counts = str(tmp_path / "calls.txt")
    process = start_script(
        tmp_path,
        f"""
        async def main():
            src = await ba.open_source({str(tmp_path / "in.zarr")!r})
            out = await ba.open_source({str(tmp_path / "out.zarr")!r}, mode="r+")
            config = ba.RunnerConfig(tmp_root={str(tmp_path / "tmp")!r})
            fn = counting_invert({counts!r}, 0.1)
            await ba.map_blocks(fn, src, out, block_shape={BLOCK}, num_workers=2, job_config=config)
        asyncio.run(main())
    """,
    )
    wait_for(lambda: os.path.exists(counts) and len(Path(counts).read_text().split()) >= 24)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    calls_before = len(Path(counts).read_text().split())
    folder = run_folder(tmp_path, "map_blocks")
    missing = await ba.missing_blocks(folder)
    src = await ba.open_source(tmp_path / "in.zarr")
    out = await ba.open_source(tmp_path / "out.zarr", mode="r+")
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"))
    await ba.map_blocks(
        counting_invert(counts, 0.1),  # the same function (a resume refuses another delay)
        src,
        out,
        block_shape=BLOCK,
        num_workers=2,
        job_config=config,
        resume_from=folder,
    )
    np.testing.assert_array_equal(await out.read(), 255 - data)
    calls = len(Path(counts).read_text().split())
    assert calls - calls_before == len(missing)  # only the blocks without a record ran
    assert calls <= 64 + 5  # at most the in-flight blocks (2 * workers + 1) ran twice


def test_compute_workers_die_with_a_killed_parent(tmp_path, rng):
    data = rng.integers(0, 256, size=SHAPE, dtype=np.uint8)
    np.save(tmp_path / "data.npy", data)
    process = start_script(
        tmp_path,
        f"""
        import numpy as np
        data = np.load({str(tmp_path / "data.npy")!r})
        ba.sync.map_blocks(sleepy(3600), data, block_shape={BLOCK}, num_workers=2)
    """,
    )
    parent = psutil.Process(process.pid)
    wait_for(lambda: len(parent.children(recursive=True)) >= 2)
    workers = parent.children(recursive=True)
    time.sleep(1.0)  # the workers are inside their hour-long block
    os.kill(process.pid, signal.SIGKILL)  # the script alone, not its process group
    process.wait()
    gone, alive = psutil.wait_procs(workers, timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert "BrokenPipeError" not in (tmp_path / "script.err").read_text()


async def test_two_concurrent_resumes_of_one_run_folder_run_each_block_once(tmp_path, rng):
    data = await make_data(tmp_path, rng)
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    src = await ba.open_source(tmp_path / "in.zarr")
    out = await ba.open_source(tmp_path / "out.zarr", mode="r+")
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    counts = str(tmp_path / "calls.txt")
    fn = fail_first_time(str(marker_dir), counts)
    with pytest.raises(ba.RunnerError) as failed:
        await ba.map_blocks(
            fn, src, out, block_shape=BLOCK, job_type="subprocess", num_workers=2, job_config=config
        )
    folder = failed.value.tmp_folder
    assert failed.value.failed_block_ids == list(range(64))

    async def resume():
        return await ba.map_blocks(
            fn,
            src,
            out,
            block_shape=BLOCK,
            job_type="subprocess",
            num_workers=2,
            job_config=config,
            resume_from=folder,
        )

    results = await asyncio.gather(resume(), resume(), return_exceptions=True)
    refused = [r for r in results if isinstance(r, ba.RunLockedError)]
    assert len(refused) == 1 and f"pid {os.getpid()}" in str(refused[0])
    np.testing.assert_array_equal(await out.read(), 255 - data)
    assert len(Path(counts).read_text().split()) == 64  # every block once in total


async def test_a_second_run_into_an_output_being_written_is_refused(tmp_path, rng):
    await make_data(tmp_path, rng)
    slow = SlowCountingSource(
        await ba.open_source(tmp_path / "in.zarr"), str(tmp_path / "c.txt"), 0.05
    )
    out = await ba.open_source(tmp_path / "out.zarr", mode="r+")
    first = asyncio.create_task(ba.copy(slow, out, block_shape=BLOCK))
    await asyncio.sleep(0.3)
    other = np.zeros(SHAPE, np.uint8)
    with pytest.raises(ba.RunLockedError, match=r"is being written by .*pid"):
        await ba.copy(other, out, block_shape=BLOCK)
    await first
    await ba.copy(other, out, block_shape=BLOCK)  # free again once the first run ended
    assert not (await out.read()).any()


async def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, rng):
    data = await make_data(tmp_path, rng)
    counts = str(tmp_path / "reads.txt")
    process = start_script(
        tmp_path,
        f"""
        async def main():
            src = SlowCountingSource(await ba.open_source({str(tmp_path / "in.zarr")!r}), {counts!r}, 0.1)
            out = await ba.open_source({str(tmp_path / "out.zarr")!r}, mode="r+")
            await ba.copy(src, out, block_shape={BLOCK}, job_config=ba.RunnerConfig(tmp_root={str(tmp_path / "tmp")!r}))
        asyncio.run(main())
    """,
    )
    wait_for(lambda: sum(read_counts(counts).values()) >= 4)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    out = await ba.open_source(tmp_path / "out.zarr", mode="r+")
    await ba.copy(data, out, block_shape=BLOCK)  # the dead holder's output lock is broken
    np.testing.assert_array_equal(await out.read(), data)


async def test_retries_rerun_a_transient_failure_and_block_timeout_stops_a_hung_block(
    tmp_path, rng
):
    data = rng.integers(0, 256, size=(16, 32, 32), dtype=np.uint8)
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    out = await ba.map_blocks(
        fail_first_time(str(marker_dir)), data, block_shape=(8, 16, 16), num_workers=2, retries=1
    )
    np.testing.assert_array_equal(out, 255 - data)
    with pytest.raises(ba.RunnerError, match="block_timeout=1") as hung:
        await ba.map_blocks(
            sleepy(3600), data, block_shape=(8, 16, 16), num_workers=2, block_timeout=1.0
        )
    assert hung.value.failed_block_ids == list(range(8))


async def test_subprocess_runs_fill_run_stats(tmp_path, rng):
    data = await make_data(tmp_path, rng)
    src = await ba.open_source(tmp_path / "in.zarr")
    out = await ba.open_source(tmp_path / "out.zarr", mode="r+")
    stats = ba.RunStats()
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    await ba.copy(
        src,
        out,
        block_shape=BLOCK,
        job_type="subprocess",
        num_workers=2,
        job_config=config,
        stats=stats,
    )
    np.testing.assert_array_equal(await out.read(), data)
    assert stats.blocks_total == stats.blocks_done == 64
    assert stats.wall_s > 0 and stats.write_s > 0


@pytest.mark.parametrize("failure", ["raise", "exit"])
async def test_subprocess_run_stats_count_this_calls_blocks_failures_and_resume(tmp_path, failure):
    """A failed run counts its missing blocks as failed (also those of a worker that died and
    left no sentinel); its resume counts only the blocks it ran, as a local resume does."""
    data = bright_volume(SHAPE, BLOCK, [2, 5])
    src = await ba.create_source(tmp_path / "in.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    await src.write(..., data)
    out = await ba.create_source(tmp_path / "out.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    marker = tmp_path / "failing"
    marker.write_text("")
    make = fail_while_marker_exists if failure == "raise" else exit_on_bright_while_marker_exists
    fn = make(str(marker))
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    kwargs = dict(block_shape=BLOCK, job_type="subprocess", num_workers=2, job_config=config)
    failed = ba.RunStats()
    with pytest.raises(ba.RunnerError) as error:
        await ba.map_blocks(fn, src, out, stats=failed, **kwargs)
    missing = error.value.failed_block_ids
    assert {2, 5} <= set(missing) and (failure == "exit" or missing == [2, 5])
    assert (failed.blocks_done, failed.blocks_failed, failed.blocks_total) == (
        64 - len(missing),
        len(missing),
        64,
    )
    marker.unlink()
    resumed = ba.RunStats()
    await ba.map_blocks(fn, src, out, stats=resumed, resume_from=error.value.tmp_folder, **kwargs)
    assert (resumed.blocks_done, resumed.blocks_failed, resumed.blocks_total) == (
        len(missing),
        0,
        len(missing),
    )
    np.testing.assert_array_equal(await out.read(), 255 - data)


async def test_block_timeout_counts_compute_only_not_the_wait_for_a_worker(rng):
    data = rng.integers(0, 256, size=(24, 16, 16), dtype=np.uint8)
    # three blocks of 1 s each on one worker: 3 s in all, but each block computes for 1 s only
    out = await ba.map_blocks(
        sleepy(1.0), data, block_shape=(8, 16, 16), num_workers=1, block_timeout=2.5
    )
    np.testing.assert_array_equal(out, 255 - data)


async def test_distributed_runs_honour_retries_and_block_timeout(tmp_path, rng):
    data = await make_data(tmp_path, rng)
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    src = await ba.open_source(tmp_path / "in.zarr")
    out = await ba.open_source(tmp_path / "out.zarr", mode="r+")
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    stats = ba.RunStats()
    await ba.map_blocks(
        fail_first_time(str(marker_dir)),
        src,
        out,
        block_shape=BLOCK,
        job_type="subprocess",
        num_workers=2,
        job_config=config,
        retries=1,
        stats=stats,
    )
    np.testing.assert_array_equal(await out.read(), 255 - data)
    # each first failure left a marker and was retried once (the count was never filled)
    assert stats.extra["retries"] == len(list(marker_dir.iterdir())) > 0
    assert (stats.blocks_done, stats.blocks_failed) == (64, 0)
    with pytest.raises(ba.RunnerError, match="block_timeout=1") as hung:
        await ba.map_blocks(
            sleepy(3600),
            src,
            out,
            block_shape=BLOCK,
            block_ids=[0, 1],
            job_type="subprocess",
            num_workers=2,
            job_config=config,
            block_timeout=1.0,
        )
    assert hung.value.failed_block_ids == [0, 1]


def test_progress_records_torn_or_zeroed_by_a_crash_are_skipped_never_misread():
    from bioimage_async.runners.protocol import parse_progress, progress_line

    whole = progress_line(4) + progress_line(12)
    assert parse_progress(whole).tolist() == [4, 12]
    assert parse_progress(whole + b"0000000").tolist() == [4, 12]  # torn last record
    assert parse_progress(whole + b"\0" * 26).tolist() == [4, 12]  # a power cut's zeros
    # a torn record that a later append continued: neither record is trusted (both redone);
    # cutting at multiples of 13 bytes read this as blocks 0 and 0 (never written)
    merged = whole + b"0000000" + progress_line(5) + progress_line(6)
    assert parse_progress(merged).tolist() == [4, 12, 6]


def test_a_requeued_task_appends_after_its_torn_record_on_a_new_line(tmp_path):
    from bioimage_async.runners.protocol import progress_line
    from bioimage_async.runners.worker import _already_done, _open_progress_log

    log = tmp_path / "2.log"
    log.write_bytes(progress_line(4) + b"0000000")  # the first attempt died mid-append
    assert _already_done(str(log)) == {4}
    fd = _open_progress_log(str(log))
    os.write(fd, progress_line(5))
    os.close(fd)
    assert _already_done(str(log)) == {4, 5}


async def unreadable_journal(self):
    raise OSError("the journal is unreadable")


async def test_a_resume_past_a_zero_filled_journal_redoes_only_the_lost_blocks(
    tmp_path, monkeypatch
):
    from bioimage_async.runners.protocol import RunFolder

    data = bright_volume(SHAPE, BLOCK, [3, 10])
    src = await ba.create_source(tmp_path / "in.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    await src.write(..., data)
    out = await ba.create_source(tmp_path / "out.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    marker = tmp_path / "marker"
    marker.touch()
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"))
    with pytest.raises(ba.RunnerError) as caught:
        await ba.map_blocks(
            fail_while_marker_exists(str(marker)), src, out, block_shape=BLOCK, job_config=config
        )
    assert caught.value.failed_block_ids == [3, 10]
    folder = Path(caught.value.tmp_folder)
    (log,) = (folder / "progress").glob("*.log")
    with open(log, "ab") as handle:
        handle.write(b"\0" * 40)  # what a power cut can leave past the last record
    fn = fail_while_marker_exists(str(marker))
    with monkeypatch.context() as patch:  # the journal cannot be read once: a resume that
        # fails there must not keep the folder locked (the next resume was RunLockedError)
        patch.setattr(RunFolder, "missing_blocks", unreadable_journal)
        with pytest.raises(OSError, match="unreadable"):
            await ba.map_blocks(fn, src, out, block_shape=BLOCK, resume_from=str(folder))
    marker.unlink()
    await ba.map_blocks(fn, src, out, block_shape=BLOCK, resume_from=str(folder))
    np.testing.assert_array_equal(await out.read(), 255 - data)


async def test_resume_refuses_another_function_of_the_same_name(tmp_path):
    """Two closures of one factory, or a function edited between attempts, share a qualname;
    resuming with the other one would leave an output made of two computations."""
    data = bright_volume(SHAPE, BLOCK, [3, 10])
    src = await ba.create_source(tmp_path / "in.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    await src.write(..., data)
    out = await ba.create_source(tmp_path / "out.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    marker = tmp_path / "marker"
    marker.touch()
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"))
    first = fail_while_marker_exists(str(marker))
    with pytest.raises(ba.RunnerError) as caught:
        await ba.map_blocks(first, src, out, block_shape=BLOCK, job_config=config)
    folder = caught.value.tmp_folder
    marker.unlink()
    edited: dict = {}
    exec("def fn(block):\n    return 254 - block\n", edited)  # same name, other body
    edited["fn"].__qualname__ = first.__qualname__
    for other in (fail_while_marker_exists(str(tmp_path / "other")), edited["fn"]):
        assert other.__qualname__ == first.__qualname__
        with pytest.raises(ba.PayloadMismatchError, match="another function"):
            await ba.map_blocks(other, src, out, block_shape=BLOCK, resume_from=folder)
    same = fail_while_marker_exists(str(marker))  # equal code and closure: the same function
    await ba.map_blocks(same, src, out, block_shape=BLOCK, resume_from=folder)
    np.testing.assert_array_equal(await out.read(), 255 - data)


async def test_tasks_queued_behind_a_dead_worker_are_said_never_to_have_started(tmp_path):
    """One subprocess worker runs its tasks in turn: when it dies in one, the later ones were
    reported 'FAILED, exit code 3' as if each had crashed."""
    data = bright_volume(SHAPE, BLOCK, [2])
    src = await ba.create_source(tmp_path / "in.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    await src.write(..., data)
    out = await ba.create_source(tmp_path / "out.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    marker = tmp_path / "failing"
    marker.write_text("")
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    with pytest.raises(ba.RunnerError) as error:
        await ba.map_blocks(
            exit_on_bright_while_marker_exists(str(marker)),
            src,
            out,
            block_shape=BLOCK,
            job_type="subprocess",
            num_workers=1,
            job_config=config,
        )
    text = str(error.value)
    assert "task 0: FAILED, exit code 3" in text
    assert "task 1: FAILED, reason never started: its worker process" in text
    assert "ended in task 0 first" in text
