import numpy as np
import pytest
import zarr

import bioimage_async as ba


async def test_levels_equal_successive_downsamples_and_metadata_validates(tmp_path, volume):
    levels = await ba.pyramid(volume, tmp_path / "p.zarr", 3, chunks=(16, 32, 32), method="smooth")
    assert [level.shape for level in levels] == [(45, 70, 83), (23, 35, 42), (12, 18, 21)]
    expected = volume
    for level in levels:
        np.testing.assert_array_equal(await level.read(), expected)
        expected = await ba.downsample(expected, 2, order=1, anti_aliasing=True)
    models = pytest.importorskip("ome_zarr_models.v04.image")
    image = models.Image.from_zarr(zarr.open_group(str(tmp_path / "p.zarr"), mode="r"))
    datasets = image.attributes.multiscales[0].datasets
    assert [d.path for d in datasets] == ["0", "1", "2"]
    assert datasets[2].coordinateTransformations[0].scale == [4.0, 4.0, 4.0]


async def test_auto_method_keeps_label_volumes_label_safe(tmp_path, rng):
    labels = rng.integers(0, 7, size=(40, 40, 40)).astype(np.uint32) * 11
    levels = await ba.pyramid(labels, tmp_path / "l.zarr", 3)
    for level in levels:
        assert set(np.unique(await level.read())) <= set(np.unique(labels))
    attrs = zarr.open_group(str(tmp_path / "l.zarr"), mode="r").attrs.asdict()
    assert attrs["multiscales"][0]["metadata"]["method"] == "nearest"


async def _successive(volume, n):
    expected = [volume]
    for _ in range(n - 1):
        expected.append(await ba.downsample(expected[-1], 2, order=1, anti_aliasing=True))
    return expected


async def test_a_distributed_pyramid_builds_each_level_from_a_complete_level_above(
    tmp_path, volume
):
    """Level 1 used to be downsampled from a level 0 not yet written (all zeros)."""
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=volume.shape, dtype="uint8", chunks=(16, 32, 32)
    )
    await src.write(..., volume)
    levels = await ba.pyramid(
        src,
        tmp_path / "p.zarr",
        3,
        chunks=(16, 32, 32),
        method="smooth",
        job_type="subprocess",
        num_workers=2,
        job_config=config,
    )
    for level, expected in zip(levels, await _successive(volume, 3)):
        np.testing.assert_array_equal(await level.read(), expected)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"wait": False, "job_type": "subprocess"}, "wait=False"),
        ({"block_ids": [0]}, "block_ids name the blocks of one level"),
        ({"job_type": "subprocess"}, "lives in this process's memory"),
    ],
)
async def test_pyramid_refuses_options_that_name_one_run_before_creating_anything(
    tmp_path, volume, kwargs, match
):
    with pytest.raises(ba.InvalidArgumentError, match=match):
        await ba.pyramid(volume, tmp_path / "p.zarr", 2, **kwargs)
    assert not (tmp_path / "p.zarr").exists()


async def test_degenerate_levels_are_refused_before_anything_is_created(tmp_path):
    data = np.zeros((64, 256, 256), np.uint8)
    with pytest.raises(ba.InvalidArgumentError, match="at most 9 levels"):
        await ba.pyramid(data, tmp_path / "p.zarr", 10)
    assert not (tmp_path / "p.zarr").exists()


async def test_resume_from_finishes_the_failed_level_then_builds_the_rest(tmp_path, volume):
    src = await ba.create_source(
        tmp_path / "in.zarr",
        shape=volume.shape,
        dtype="uint8",
        chunks=(16, 32, 32),
        compression="gzip",
    )
    await src.write(..., volume)
    chunk = tmp_path / "in.zarr" / "1.1.1"
    good = chunk.read_bytes()
    chunk.write_bytes(b"not gzip at all")
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    with pytest.raises(ba.RunnerError) as failed:
        await ba.pyramid(
            src,
            tmp_path / "p.zarr",
            3,
            chunks=(16, 32, 32),
            method="smooth",
            job_type="subprocess",
            job_config=config,
        )
    assert failed.value.tmp_folder is not None and failed.value.failed_block_ids
    chunk.write_bytes(good)
    levels = await ba.pyramid(
        src,
        tmp_path / "p.zarr",
        3,
        chunks=(16, 32, 32),
        method="smooth",
        job_type="subprocess",
        job_config=config,
        resume_from=failed.value.tmp_folder,
    )
    for level, expected in zip(levels, await _successive(volume, 3)):
        np.testing.assert_array_equal(await level.read(), expected)
