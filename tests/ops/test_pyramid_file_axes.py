"""Pyramids of files that name their own axes (ImageJ hyperstacks, RGB TIFFs, NIfTI time
series): never average channels or colours, and a transposed view brings them into OME order.
Inputs are written by tifffile (imagej=True) and nibabel; outputs are read back by ngff-zarr."""

from __future__ import annotations

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.errors import InvalidArgumentError

tifffile = pytest.importorskip("tifffile")
ngff_zarr = pytest.importorskip("ngff_zarr")


def hyperstack(path, z=8, c=2, yx=16):
    """An ImageJ ZCYX hyperstack whose two channels hold 100 and 5000 everywhere."""
    data = np.zeros((z, c, yx, yx), np.uint16)
    data[:, 0], data[:, 1] = 100, 5000
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "ZCYX", "spacing": 1.5, "unit": "um"},
    )
    return data


async def test_an_imagej_hyperstack_is_refused_with_the_transpose_that_fixes_it(tmp_path):
    hyperstack(tmp_path / "h.tif")
    src = await ba.open_source(tmp_path / "h.tif")
    assert src.axes == "zcyx"
    assert src.voxel_size == (1.5, 1.0, 0.2, 0.2)
    with pytest.raises(InvalidArgumentError, match=r"'zcyx'.*transpose\(1, 0, 2, 3\)"):
        await ba.pyramid(src, tmp_path / "out.ome.zarr", 2, method="mean")
    assert not (tmp_path / "out.ome.zarr").exists()


@pytest.mark.parametrize("job_type", ["local", "subprocess"])
async def test_a_transposed_hyperstack_keeps_its_channels_apart(tmp_path, job_type):
    data = hyperstack(tmp_path / "h.tif")
    src = (await ba.open_source(tmp_path / "h.tif")).transpose(1, 0, 2, 3)
    assert src.axes == "czyx" and src.shape == (2, 8, 16, 16)
    assert src.voxel_size == (1.0, 1.5, 0.2, 0.2)
    np.testing.assert_array_equal(await src.read(), data.transpose(1, 0, 2, 3))
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"))
    out = tmp_path / "out.ome.zarr"
    await ba.pyramid(src, out, 2, method="mean", job_type=job_type, job_config=config)
    back = ngff_zarr.from_ngff_zarr(str(out))
    assert back.images[0].dims == ("c", "z", "y", "x")
    assert back.images[0].scale == {"c": 1.0, "z": 1.5, "y": 0.2, "x": 0.2}
    level1 = np.asarray(back.images[1].data)
    assert level1.shape == (2, 4, 8, 8)
    assert set(np.unique(level1[0])) == {100} and set(np.unique(level1[1])) == {5000}


async def test_an_rgb_tiff_pyramid_keeps_its_colours_apart(tmp_path):
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 10, 50
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    src = await ba.open_source(tmp_path / "rgb.tif")
    assert src.axes == "yxc"
    with pytest.raises(InvalidArgumentError, match=r"transpose\(2, 0, 1\)"):
        await ba.pyramid(src, tmp_path / "refused.ome.zarr", 2, method="mean")
    await ba.pyramid(src.transpose(2, 0, 1), tmp_path / "out.ome.zarr", 2, method="mean")
    level1 = np.asarray(ngff_zarr.from_ngff_zarr(str(tmp_path / "out.ome.zarr")).images[1].data)
    assert level1.shape == (3, 16, 16)
    assert [set(np.unique(level1[i])) for i in range(3)] == [{200}, {10}, {50}]


async def test_a_stack_without_axis_names_keeps_the_default_axes(tmp_path):
    tifffile.imwrite(
        tmp_path / "plain.tif", np.zeros((4, 16, 16), np.uint8), photometric="minisblack"
    )
    src = await ba.open_source(tmp_path / "plain.tif")
    assert src.axes is None  # 'QYX': the default 'zyx' applies, as before


async def test_a_nifti_time_series_is_labelled_t_not_c(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    data = np.arange(3 * 8 * 8 * 4, dtype=np.int16).reshape(8, 8, 4, 3)  # x, y, z, t
    image = nibabel.Nifti1Image(data, np.eye(4))
    image.header.set_zooms((0.5, 0.5, 2.0, 3.0))
    image.header.set_xyzt_units("mm", "sec")
    nibabel.save(image, tmp_path / "series.nii")
    src = await ba.open_source(tmp_path / "series.nii")
    assert src.axes == "tzyx"
    await ba.pyramid(src, tmp_path / "out.ome.zarr", 2, method="mean")
    back = ngff_zarr.from_ngff_zarr(str(tmp_path / "out.ome.zarr"))
    assert back.images[0].dims == ("t", "z", "y", "x")
    assert back.images[1].data.shape == (3, 2, 4, 4)
