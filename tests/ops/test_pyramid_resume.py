"""A pyramid whose level fails: the levels below are never built from it, the error names the
level, and a resume finishes exactly that pyramid (or refuses when its finished levels are gone)."""

import shutil

import numpy as np
import pytest

import bioimage_async as ba


async def _input(tmp_path, rng):
    volume = rng.integers(0, 256, size=(64, 128, 128), dtype=np.uint8)
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=volume.shape, dtype="uint8", chunks=(16, 32, 32)
    )
    await src.write(..., volume)
    return src


def _kwargs(tmp_path):
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "runs"), poll_interval=0.05)
    return dict(chunks=(16, 32, 32), method="mean", ngff_version="0.4", job_config=config)


async def _fail_at(tmp_path, src, level):
    """Run a 3-level pyramid whose ``level`` cannot be written (a folder where its first
    chunk goes); returns the RunnerError."""
    blocker = tmp_path / "p.zarr" / str(level) / "0" / "0" / "0"
    blocker.mkdir(parents=True)
    with pytest.raises(ba.RunnerError) as failed:
        await ba.pyramid(src, tmp_path / "p.zarr", 3, **_kwargs(tmp_path))
    shutil.rmtree(blocker)
    return failed.value


async def test_a_failed_level_is_named_and_a_resume_finishes_the_pyramid(tmp_path, rng):
    src = await _input(tmp_path, rng)
    expected = await ba.pyramid(src, tmp_path / "ref.zarr", 3, **_kwargs(tmp_path))
    error = await _fail_at(tmp_path, src, 1)
    assert error.failed_block_ids == [0] and error.tmp_folder is not None
    text = str(error)
    assert "level 1 of 3" in text and "level 2 was not built" in text
    assert f"resume_from={error.tmp_folder!r}" in text
    # level 2 was never written from level 1's missing voxels
    assert not list((tmp_path / "p.zarr" / "2").glob("0/**/*"))
    stats = ba.RunStats()
    levels = await ba.pyramid(
        src, tmp_path / "p.zarr", 3, resume_from=error.tmp_folder, stats=stats, **_kwargs(tmp_path)
    )
    assert stats.blocks_done == 2  # level 1's missing block, then level 2's only block
    for level, want in zip(levels, expected):
        np.testing.assert_array_equal(await level.read(), await want.read())


@pytest.mark.parametrize("removed", ["1", ""])
async def test_resume_refuses_when_a_finished_level_was_removed(tmp_path, rng, removed):
    """Level 1 (or the whole output) removed after level 2 failed: re-created empty, it
    read as zeros and level 2 was resumed from them, silently."""
    src = await _input(tmp_path, rng)
    error = await _fail_at(tmp_path, src, 2)
    shutil.rmtree(tmp_path / "p.zarr" / removed)
    with pytest.raises(ba.PayloadMismatchError, match="no longer there") as refused:
        await ba.pyramid(
            src, tmp_path / "p.zarr", 3, resume_from=error.tmp_folder, **_kwargs(tmp_path)
        )
    assert refused.value.tmp_folder == error.tmp_folder
    # nothing was created in the output by the refused call: a second resume is refused too
    assert not (tmp_path / "p.zarr" / "1").exists()


async def test_resume_with_another_factor_names_the_mismatch(tmp_path, rng):
    """The failed run's levels have other shapes than this call's: the resume is refused as a
    resume of another pyramid (with its run folder), not with advice to remove the output."""
    src = await _input(tmp_path, rng)
    error = await _fail_at(tmp_path, src, 1)
    kwargs = _kwargs(tmp_path)
    with pytest.raises(ba.PayloadMismatchError) as refused:
        await ba.pyramid(
            src, tmp_path / "p.zarr", 3, factor=4, resume_from=error.tmp_folder, **kwargs
        )
    assert refused.value.tmp_folder == error.tmp_folder
    assert "same arguments" in str(refused.value)
