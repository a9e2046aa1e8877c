"""Messages that leave no guessing: where a run is kept, what is missing, in a few lines."""

import asyncio
import contextlib
import logging
import os
import subprocess

import numpy as np
import pytest

import bioimage_async as ba

from .blockfns import sleepy


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (root only): a full disk for tmp_root."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)  # fill it to the last block
    try:
        while True:
            os.write(fd, b"x" * 512)
    except OSError:
        pass
    finally:
        os.close(fd)
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("job_type", ["local", "subprocess"])
async def test_a_full_tmp_root_is_named_with_the_fix(tmp_path, tiny_disk, job_type):
    src = await ba.create_source(tmp_path / "in.zarr", shape=(8, 8), dtype="uint8", chunks=(4, 4))
    out = await ba.create_source(tmp_path / "out.zarr", shape=(8, 8), dtype="uint8", chunks=(4, 4))
    config = ba.RunnerConfig(tmp_root=str(tiny_disk / "runs"))
    with pytest.raises(
        ba.ConfigError,
        match=r"tmp_root=.*tiny.*No space left on device.*Set RunnerConfig\(tmp_root=",
    ) as caught:
        await ba.copy(src, out, job_type=job_type, job_config=config)
    assert len(str(caught.value)) < 400


async def blocks_finished(tmp_root, at_least: int, timeout: float = 60.0) -> None:
    """Wait until the one run folder under ``tmp_root`` has journaled ``at_least`` blocks."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        folders = list(tmp_root.iterdir()) if tmp_root.exists() else []
        if folders:
            with contextlib.suppress(Exception):  # the folder is still being set up
                missing = await ba.missing_blocks(str(folders[0]))
                if 64 - len(missing) >= at_least:
                    return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {at_least} blocks finished within {timeout} s")


async def test_a_cancelled_local_run_says_where_it_is_kept_and_lists_every_missing_block(
    tmp_path, caplog, rng
):
    data = rng.integers(0, 255, (64, 16, 16), dtype=np.uint8)
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype="uint8", chunks=(1, 16, 16)
    )
    await src.write(..., data)
    out = await ba.create_source(
        tmp_path / "out.zarr", shape=data.shape, dtype="uint8", chunks=(1, 16, 16)
    )
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"))
    task = asyncio.create_task(
        ba.map_blocks(
            sleepy(0.5), src, out, block_shape=(1, 16, 16), num_workers=2, job_config=config
        )
    )
    await blocks_finished(tmp_path / "tmp", at_least=2)  # not a fixed sleep: pools start slowly
    with caplog.at_level(logging.WARNING, logger="bioimage_async"):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    message = " ".join(r.getMessage() for r in caplog.records)
    folder = next(str(p) for p in (tmp_path / "tmp").iterdir())
    assert f"resume_from={folder!r}" in message and "missing_blocks" in message
    missing = await ba.missing_blocks(folder)
    assert 10 < len(missing) < 64  # the whole list, not the first ten
    await ba.map_blocks(
        sleepy(0.5),
        src,
        out,
        block_shape=(1, 16, 16),
        num_workers=2,
        job_config=config,
        resume_from=folder,
    )
    np.testing.assert_array_equal(await out.read(), 255 - data)


async def test_a_cancelled_in_memory_run_names_the_exact_missing_block_ids(caplog, rng):
    """No journal (numpy in, numpy out): the log lists the ids a block_ids= re-run needs."""
    from bioimage_async.cli.parser import id_list

    data = rng.integers(0, 255, (64, 16, 16), dtype=np.uint8)
    out = np.zeros_like(data)
    task = asyncio.create_task(
        ba.map_blocks(sleepy(0.3), data, out, block_shape=(1, 16, 16), num_workers=2)
    )
    await asyncio.sleep(2.5)
    with caplog.at_level(logging.WARNING, logger="bioimage_async"):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    (message,) = [r.getMessage() for r in caplog.records if "cancelled" in r.getMessage()]
    listed = message.split("the missing ids, ")[1].rstrip(".")
    missing = id_list(listed.replace(" ", ""))
    written = [z for z in range(64) if (out[z] == 255 - data[z]).all()]
    assert 0 < len(missing) < 64 and sorted(set(missing) | set(written)) == list(range(64))
    # a block whose write finished as the cancel came may be listed too (re-run, harmless)
    assert len(set(missing) & set(written)) <= 4
    await ba.map_blocks(
        sleepy(0.0), data, out, block_shape=(1, 16, 16), num_workers=2, block_ids=missing
    )
    np.testing.assert_array_equal(out, 255 - data)


async def test_a_cancelled_subprocess_run_says_where_it_is_kept(tmp_path, caplog, volume):
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=volume.shape, dtype="uint8", chunks=(16, 32, 32)
    )
    await src.write(..., volume)
    out = await ba.create_source(
        tmp_path / "out.zarr", shape=volume.shape, dtype="uint8", chunks=(16, 32, 32)
    )
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    task = asyncio.create_task(
        ba.map_blocks(sleepy(30), src, out, job_type="subprocess", num_workers=2, job_config=config)
    )
    await blocks_finished(tmp_path / "tmp", at_least=2)  # not a fixed sleep: pools start slowly
    with caplog.at_level(logging.WARNING, logger="bioimage_async"):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    folder = next(str(p) for p in (tmp_path / "tmp").iterdir())
    assert any(f"resume_from={folder!r}" in r.getMessage() for r in caplog.records)


async def test_failed_creation_is_a_short_message_without_a_spec_dump(tmp_path):
    with pytest.raises(ba.SourceError) as caught:
        await ba.create_source("/proc/not-writable.zarr", shape=(4,), dtype="uint8", chunks=(2,))
    assert "tensorstore_spec" not in str(caught.value) and len(str(caught.value)) < 300
    assert "/proc/not-writable.zarr/.zarray" in str(caught.value)


def test_an_array_index_is_described_not_printed():
    src = ba.as_source(np.zeros((100, 100)))
    with pytest.raises(
        ba.InvalidIndexError, match=r"<a bool array of shape \(100, 100\)>"
    ) as caught:
        src[np.zeros((100, 100), bool)]
    assert len(str(caught.value)) < 250


async def test_complex_data_in_zarr_is_refused_with_the_alternative(tmp_path):
    with pytest.raises(ba.FormatNotSupportedError, match="real and imaginary parts"):
        await ba.create_source(tmp_path / "c.zarr", shape=(4,), dtype="complex128", chunks=(2,))
    assert not (tmp_path / "c.zarr").exists()
