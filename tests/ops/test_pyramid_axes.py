"""Pyramids of OME-Zarr inputs keep the input's axes, units and origin, and never downsample
channels. Inputs are written by ome-zarr-py and ngff-zarr; outputs are read back by them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

import bioimage_async as ba

ngff_zarr = pytest.importorskip("ngff_zarr")
ome_writer = pytest.importorskip("ome_zarr.writer")
ome_format = pytest.importorskip("ome_zarr.format")


def multiscale(path) -> dict:
    root = json.loads((path / "zarr.json").read_text()) if (path / "zarr.json").exists() else None
    if root is not None:
        return root["attributes"]["ome"]["multiscales"][0]
    return json.loads((path / ".zattrs").read_text())["multiscales"][0]


async def test_the_unit_of_a_time_axis_is_not_the_spatial_unit(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (2, 1, 8, 16, 16), dtype=np.uint8)
    ome_writer.write_image(
        data,
        str(tmp_path / "in.ome.zarr"),
        scale_factors=None,
        axes="tczyx",
        scale={"t": 5.0, "c": 1.0, "z": 0.5, "y": 0.2, "x": 0.2},
        axes_units={"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"},
    )
    src = await ba.open_source(tmp_path / "in.ome.zarr")
    assert src.unit == "micrometer" and src.axes == "tczyx"
    await ba.pyramid(src, tmp_path / "out.ome.zarr", 2, method="mean")
    back = ngff_zarr.from_ngff_zarr(str(tmp_path / "out.ome.zarr"))
    assert back.images[0].axes_units == {
        "t": None,
        "c": None,
        "z": "micrometer",
        "y": "micrometer",
        "x": "micrometer",
    }
    assert back.images[1].data.shape == (2, 1, 4, 8, 8)  # an integer factor: space only


@pytest.mark.parametrize(("axes", "shape"), [("cyx", (3, 32, 32)), ("tzyx", (4, 8, 32, 32))])
async def test_the_input_axes_are_kept_and_only_space_is_downsampled(tmp_path, axes, shape):
    data = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    ome_writer.write_image(
        data,
        str(tmp_path / "in.ome.zarr"),
        scale_factors=None,
        axes=axes,
        fmt=ome_format.FormatV04(),
    )
    src = await ba.open_source(tmp_path / "in.ome.zarr")
    levels = await ba.pyramid(src, tmp_path / "out.ome.zarr", 2, method="mean", ngff_version="0.4")
    written = multiscale(tmp_path / "out.ome.zarr")
    assert "".join(a["name"] for a in written["axes"]) == axes
    expected = tuple(n if a in "tc" else (n + 1) // 2 for a, n in zip(axes, shape))
    assert levels[1].shape == expected
    level1 = zarr.open_array(str(tmp_path / "out.ome.zarr" / "1"), mode="r")[...]
    if axes == "cyx":  # each channel averaged on its own
        for channel in range(3):
            np.testing.assert_array_equal(
                level1[channel],
                await ba.downsample(data[channel], 2, method="mean"),
            )


async def test_a_numpy_input_with_channels_keeps_them_apart(tmp_path):
    data = np.zeros((2, 8, 16, 16), np.uint8)
    data[0], data[1] = 10, 200
    levels = await ba.pyramid(data, tmp_path / "c.ome.zarr", 2, method="mean")
    assert levels[1].shape == (2, 4, 8, 8)
    np.testing.assert_array_equal(np.unique(await levels[1].read(np.s_[0])), [10])
    np.testing.assert_array_equal(np.unique(await levels[1].read(np.s_[1])), [200])
    with pytest.raises(ba.InvalidArgumentError, match="channel axis c"):
        await ba.pyramid(data, tmp_path / "d.ome.zarr", 2, factor=(2, 2, 2, 2))


async def test_axes_out_of_tczyx_order_are_refused(tmp_path):
    data = np.zeros((8, 16, 16, 2), np.uint8)
    with pytest.raises(ba.InvalidArgumentError, match="in that order"):
        await ba.pyramid(data, tmp_path / "o.ome.zarr", 2, axes="zyxc")
    assert not (tmp_path / "o.ome.zarr").exists()


@pytest.mark.parametrize("version", ["0.4", "0.5"])
async def test_the_input_translation_is_kept_and_labels_inside_share_it(tmp_path, version):
    data = np.random.default_rng(2).integers(0, 255, (16, 32, 32), dtype=np.uint8)
    image = ngff_zarr.to_ngff_image(
        data,
        dims=["z", "y", "x"],
        scale={"z": 2.0, "y": 0.5, "x": 0.5},
        translation={"z": 100.0, "y": 50.0, "x": 25.0},
        axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
    )
    source = tmp_path / "in.ome.zarr"
    ngff_zarr.to_ngff_zarr(
        str(source), ngff_zarr.to_multiscales(image, scale_factors=[2]), version=version
    )
    src = await ba.open_source(source)
    assert src.translation == (100.0, 50.0, 25.0)
    out = tmp_path / "out.ome.zarr"
    await ba.pyramid(src, out, 2, method="mean", ngff_version=version)
    back = ngff_zarr.from_ngff_zarr(str(out))
    assert back.images[0].translation == {"z": 100.0, "y": 50.0, "x": 25.0}
    assert back.images[1].translation == {"z": 101.0, "y": 50.25, "x": 25.25}
    # labels drawn on ngff-zarr's image: same origin, and zarr-python still finds them
    labels = (data > 128).astype(np.uint8)
    await ba.pyramid(labels, source, 2, labels=True, name="cells")
    label_levels = multiscale(source / "labels" / "cells")["datasets"]
    assert label_levels[0]["coordinateTransformations"][1]["translation"] == [100.0, 50.0, 25.0]
    group = zarr.open_group(str(source), mode="r")
    np.testing.assert_array_equal(group["labels"]["cells"]["0"][...], labels)
    # the image's voxel size passed (as docs/pyramids.md advised): the same space, the same
    # origin (the translation was dropped: labels sat 100 um off the image)
    await ba.pyramid(
        labels, source, 2, labels=True, name="given", voxel_size=(2.0, 0.5, 0.5), unit="um"
    )
    given = multiscale(source / "labels" / "given")["datasets"][0]["coordinateTransformations"]
    assert given == [
        {"type": "scale", "scale": [2.0, 0.5, 0.5]},
        {"type": "translation", "translation": [100.0, 50.0, 25.0]},
    ]
    # unit= converts the image's sizes and origin (they were relabelled: 1000x off)
    await ba.pyramid(labels, source, 2, labels=True, name="in_nm", unit="nm")
    in_nm = multiscale(source / "labels" / "in_nm")
    assert in_nm["axes"][0]["unit"] == "nanometer"
    scale, shift = in_nm["datasets"][0]["coordinateTransformations"]
    assert scale["scale"] == pytest.approx([2000.0, 500.0, 500.0])
    assert shift["translation"] == pytest.approx([100000.0, 50000.0, 25000.0])


async def test_a_crop_of_an_ome_zarr_input_keeps_its_axes_and_moves_its_origin(tmp_path):
    data = np.random.default_rng(3).integers(0, 255, (2, 16, 32, 32), dtype=np.uint8)
    image = ngff_zarr.to_ngff_image(
        data,
        dims=["c", "z", "y", "x"],
        scale={"c": 1.0, "z": 2.0, "y": 0.5, "x": 0.5},
        translation={"c": 0.0, "z": 100.0, "y": 50.0, "x": 25.0},
    )
    ngff_zarr.to_ngff_zarr(str(tmp_path / "in.ome.zarr"), ngff_zarr.to_multiscales(image))
    src = await ba.open_source(tmp_path / "in.ome.zarr")
    crop = src.view(np.s_[:, 4:12, 8:24, :])
    assert crop.axes == "czyx"
    assert crop.translation == (0.0, 108.0, 54.0, 25.0)
    levels = await ba.pyramid(crop, tmp_path / "crop.ome.zarr", 2, method="mean")
    assert levels[1].shape == (2, 4, 8, 16)  # channels kept apart
    back = ngff_zarr.from_ngff_zarr(str(tmp_path / "crop.ome.zarr"))
    assert back.images[0].translation == {"c": 0.0, "z": 108.0, "y": 54.0, "x": 25.0}


async def test_a_crop_of_an_input_without_a_translation_starts_where_it_was_cut(tmp_path):
    """ba.pyramid writes no translation for level 0: a crop of its output read as starting at
    the origin, so the crop's pyramid was drawn over the wrong part of the image."""
    data = (np.arange(16 * 32 * 32) % 200).astype("uint8").reshape(16, 32, 32)
    full = tmp_path / "full.ome.zarr"
    await ba.pyramid(data, full, 2, voxel_size=(2.0, 0.5, 0.5), unit="um", method="mean")
    src = await ba.open_source(full)
    assert src.translation is None
    assert src.view(np.s_[:4]).translation is None  # nothing moved: nothing to record
    crop = src.view(np.s_[4:12, 8:24, 16:32])
    assert crop.translation == (8.0, 4.0, 8.0)
    await ba.pyramid(crop, tmp_path / "crop.ome.zarr", 1)
    back = ngff_zarr.from_ngff_zarr(str(tmp_path / "crop.ome.zarr"))
    assert back.images[0].translation == {"z": 8.0, "y": 4.0, "x": 8.0}


async def test_an_ngff_0_4_pyramid_keys_its_chunks_with_slashes(tmp_path):
    """OME-NGFF 0.4 allows only '/' as the chunk key separator; the levels used zarr's '.'."""
    data = np.random.default_rng(4).integers(0, 255, (16, 32, 32), dtype=np.uint8)
    out = tmp_path / "old.ome.zarr"
    await ba.pyramid(data, out, 2, ngff_version="0.4", chunks=(8, 16, 16), method="mean")
    for level in ("0", "1"):
        assert json.loads((out / level / ".zarray").read_text())["dimension_separator"] == "/"
    assert (out / "0" / "1" / "1" / "1").is_file()  # a nested chunk key, not "1.1.1"
    back = ngff_zarr.from_ngff_zarr(str(out))
    np.testing.assert_array_equal(np.asarray(back.images[0].data), data)
    np.testing.assert_array_equal(zarr.open_array(str(out / "0"), mode="r")[...], data)


async def test_dimension_separator_is_a_zarr_v2_setting(tmp_path):
    with pytest.raises(ba.InvalidArgumentError, match="zarr v2 setting"):
        await ba.create_source(
            tmp_path / "a.zarr",
            shape=(4,),
            dtype="u1",
            chunks=(2,),
            format="zarr3",
            dimension_separator="/",
        )
    with pytest.raises(ba.InvalidArgumentError, match="'.' or '/'"):
        await ba.create_source(
            tmp_path / "b.zarr", shape=(4,), dtype="u1", chunks=(2,), dimension_separator="_"
        )
