import json

import numpy as np
import pytest
import zarr

import bioimage_async as ba
from bioimage_async.kernels.reductions import reduce_windows


def read_ome_zarr_py(path):
    """Every node ome-zarr-py's reader (what napari uses) finds: (data per level, transforms)."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    return list(Reader(parse_url(str(path)))())


@pytest.mark.parametrize("version", ["0.5", "0.4"])
async def test_levels_equal_successive_downsamples_and_every_reader_agrees(
    tmp_path, volume, version
):
    path = tmp_path / "p.ome.zarr"
    levels = await ba.pyramid(
        volume,
        path,
        3,
        chunks=(16, 32, 32),
        method="smooth",
        ngff_version=version,
        voxel_size=(0.3, 0.1, 0.1),
        unit="um",
    )
    shapes = [(45, 70, 83), (23, 35, 42), (12, 18, 21)]
    assert [level.shape for level in levels] == shapes
    expected = await _successive(volume, 3)
    for level, want in zip(levels, expected):
        np.testing.assert_array_equal(await level.read(), want)
    # the spline path samples level-0 positions i * n0 / nk (corner aligned): that ratio is the scale
    scales = [[0.3 * 45 / s[0], 0.1 * 70 / s[1], 0.1 * 83 / s[2]] for s in shapes]
    group = zarr.open_group(str(path), mode="r")
    if version == "0.5":
        from ome_zarr_models.v05.image import Image

        multiscale = Image.from_zarr(group).ome_attributes.multiscales[0]
        assert json.loads((path / "0" / "zarr.json").read_text())["dimension_names"] == [
            "z",
            "y",
            "x",
        ]
    else:
        from ome_zarr_models.v04.image import Image

        multiscale = Image.from_zarr(group).attributes.multiscales[0]
    assert [d.path for d in multiscale.datasets] == ["0", "1", "2"]
    for dataset, scale in zip(multiscale.datasets, scales):
        np.testing.assert_allclose(dataset.coordinateTransformations[0].scale, scale)
    assert [a.unit for a in multiscale.axes] == ["micrometer"] * 3
    node = read_ome_zarr_py(path)[0]
    for data, want in zip(node.data, expected):
        np.testing.assert_array_equal(np.asarray(data), want)
    ngff_zarr = pytest.importorskip("ngff_zarr")
    multiscales = ngff_zarr.from_ngff_zarr(str(path))
    for image, want, scale in zip(multiscales.images, expected, scales):
        np.testing.assert_array_equal(np.asarray(image.data), want)
        np.testing.assert_allclose([image.scale[a] for a in "zyx"], scale)
        assert all(image.translation[a] == 0 for a in "zyx")


async def test_label_volumes_take_the_mode_with_centred_translations(tmp_path, rng):
    labels = rng.integers(0, 7, size=(40, 40, 40)).astype(np.uint32) * 11
    path = tmp_path / "l.ome.zarr"
    levels = await ba.pyramid(labels, path, 3, voxel_size=(40, 4, 4), unit="nm")
    expected = labels
    for level in levels:
        np.testing.assert_array_equal(await level.read(), expected)
        expected = reduce_windows(expected, (2, 2, 2), "mode")
    attrs = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]
    multiscale = attrs["multiscales"][0]
    assert multiscale["metadata"]["method"] == "mode" and multiscale["type"] == "mode"
    transforms = [d["coordinateTransformations"] for d in multiscale["datasets"]]
    assert transforms[2][0]["scale"] == [160.0, 16.0, 16.0]
    assert transforms[2][1]["translation"] == [60.0, 6.0, 6.0]  # (4 - 1) / 2 voxels of level 0
    ngff_zarr = pytest.importorskip("ngff_zarr")
    image = ngff_zarr.from_ngff_zarr(str(path)).images[1]
    assert image.scale == {"z": 80.0, "y": 8.0, "x": 8.0} and image.translation == {
        "z": 20.0,
        "y": 2.0,
        "x": 2.0,
    }


@pytest.mark.parametrize("method", ["mode", "mean"])
async def test_an_axis_one_voxel_wide_keeps_its_scale_and_position_at_every_level(
    tmp_path, rng, method
):
    """A single z plane stays at z = 0 with its own thickness: window reductions claimed a z
    scale of 80 and 160 nm and moved the plane by 0.5 and 1.5 planes."""
    labels = rng.integers(0, 3, size=(1, 64, 64)).astype(np.uint32)
    path = tmp_path / "thin.ome.zarr"
    await ba.pyramid(labels, path, 3, voxel_size=(40, 4, 4), unit="nm", method=method)
    multiscale = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]
    transforms = [d["coordinateTransformations"] for d in multiscale["multiscales"][0]["datasets"]]
    assert [t[0]["scale"] for t in transforms[1:]] == [[40.0, 8.0, 8.0], [40.0, 16.0, 16.0]]
    assert [t[1]["translation"] for t in transforms[1:]] == [[0.0, 2.0, 2.0], [0.0, 6.0, 6.0]]


async def test_nearest_levels_are_strides_of_level_zero_where_their_metadata_says(tmp_path):
    """Chained spline sampling at i * n_in / n_out drifted on odd shapes: at level 4 of 1001
    voxels samples stood up to 3.4 level-0 voxels from where the written scale put them, with
    steps of 9 and 16. Now level k's voxel i is level 0's i * 2**k, and the scale says so."""
    ramp = np.broadcast_to(np.arange(1001, dtype=np.uint16), (2, 3, 1001)).copy()
    path = tmp_path / "n.ome.zarr"
    levels = await ba.pyramid(
        ramp, path, 5, method="nearest", factor=(1, 1, 2), voxel_size=(1, 1, 3)
    )
    multiscale = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]
    datasets = multiscale["multiscales"][0]["datasets"]
    for k, (level, dataset) in enumerate(zip(levels, datasets)):
        np.testing.assert_array_equal(await level.read(), ramp[..., :: 2**k])
        transforms = dataset["coordinateTransformations"]
        assert transforms[0]["scale"] == [1.0, 1.0, 3.0 * 2**k]
        assert len(transforms) == 1 or transforms[1]["translation"] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="stride"):
        await ba.downsample(ramp, 2, method="median")
    np.testing.assert_array_equal(
        await ba.downsample(ramp, (1, 2, 3), method="stride"), ramp[:, ::2, ::3]
    )


async def test_a_label_pyramid_inside_an_image_pyramid_is_found_as_labels(tmp_path, volume, rng):
    path = tmp_path / "img.ome.zarr"
    await ba.pyramid(volume, path, 2, voxel_size=(0.3, 0.1, 0.1), unit="um")
    segmentation = (volume > 128).astype(np.uint16)
    levels = await ba.pyramid(segmentation, path, 2, labels=True, name="cells")
    assert [level.shape for level in levels] == [(45, 70, 83), (23, 35, 42)]
    assert (path / "labels" / "cells" / "0" / "zarr.json").exists()
    from ome_zarr.reader import Label

    nodes = read_ome_zarr_py(path)
    label_nodes = [n for n in nodes if n.load(Label)]
    assert label_nodes, [n.specs for n in nodes]
    np.testing.assert_array_equal(np.asarray(label_nodes[0].data[0]), segmentation)
    labels_attrs = json.loads((path / "labels" / "zarr.json").read_text())["attributes"]["ome"]
    assert labels_attrs["labels"] == ["cells"]
    cells = json.loads((path / "labels" / "cells" / "zarr.json").read_text())["attributes"]["ome"]
    scale = cells["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx([0.6, 0.2, 0.2])  # the image's voxel size, not 1
    assert cells["multiscales"][0]["axes"][0]["unit"] == "micrometer"
    # the returned levels say what the metadata says (they were made before it was written)
    assert levels[1].voxel_size == pytest.approx((0.6, 0.2, 0.2))
    assert levels[1].unit == "micrometer" and levels[1].translation is not None
    assert levels[1].writable
    from ome_zarr_models.v05.image_label import ImageLabel

    ImageLabel.from_zarr(zarr.open_group(str(path / "labels" / "cells"), mode="r"))


@pytest.mark.parametrize(
    "dtype,method",
    [
        ("uint8", "smooth"),
        ("uint16", "smooth"),
        ("float32", "smooth"),
        ("uint32", "mode"),
        ("int64", "mode"),
        ("bool", "mode"),
    ],
)
async def test_auto_picks_mode_for_label_like_dtypes_and_smooth_for_images(tmp_path, dtype, method):
    data = np.zeros((8, 8, 8), dtype)
    await ba.pyramid(data, tmp_path / "a.zarr", 2)
    multiscale = json.loads((tmp_path / "a.zarr" / "zarr.json").read_text())["attributes"]["ome"][
        "multiscales"
    ][0]
    assert multiscale["metadata"]["method"] == method


async def test_labels_true_forces_mode_and_refuses_smoothing(tmp_path):
    data = np.zeros((8, 8, 8), np.uint8)
    await ba.pyramid(data, tmp_path / "a.zarr", 2, labels=True)
    with pytest.raises(ba.InvalidArgumentError, match="invents values"):
        await ba.pyramid(data, tmp_path / "b.zarr", 2, labels=True, method="smooth")


async def test_levels_of_a_big_volume_are_sharded(tmp_path):
    data = np.zeros((256, 512, 512), np.uint8)
    levels = await ba.pyramid(data, tmp_path / "s.zarr", 2)
    assert levels[0].chunks == (64, 64, 64)
    shard = levels[0].shards
    assert shard is not None and 16 * 2**20 <= np.prod(shard) <= 64 * 2**20
    meta = json.loads((tmp_path / "s.zarr" / "0" / "zarr.json").read_text())
    assert meta["codecs"][0]["name"] == "sharding_indexed"


async def test_an_ome_zarr_root_opens_its_levels_with_their_voxel_size(tmp_path, volume):
    path = tmp_path / "p.ome.zarr"
    await ba.pyramid(volume, path, 3, voxel_size=(0.3, 0.1, 0.1), unit="um", method="mean")
    full = await ba.open_source(path)
    assert (
        full.shape == volume.shape
        and full.voxel_size == (0.3, 0.1, 0.1)
        and full.unit == "micrometer"
    )
    second = await ba.open_source(path, level=2)
    assert second.shape == (12, 18, 21) and second.voxel_size == (1.2, 0.4, 0.4)
    by_path = await ba.open_source(path, "1")
    assert by_path.shape == (23, 35, 42) and by_path.voxel_size == (0.6, 0.2, 0.2)
    with pytest.raises(ba.InvalidArgumentError, match="level=3 is out of range"):
        await ba.open_source(path, level=3)


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


async def test_a_pyramid_over_a_deeper_one_says_which_old_levels_stay(tmp_path, caplog):
    """exist_ok over a 3-level pyramid with 2 levels left level 2 (the old image) on disk,
    unlisted, without a word."""
    path = tmp_path / "p.ome.zarr"
    await ba.pyramid(np.full((16, 32, 32), 7, np.uint8), path, 3, method="mean")
    with caplog.at_level("WARNING", logger="bioimage_async"):
        await ba.pyramid(
            np.full((16, 32, 32), 200, np.uint8), path, 2, method="mean", exist_ok=True
        )
    assert "level(s) 2 of an earlier pyramid stay on disk beside this one's 2" in caplog.text
