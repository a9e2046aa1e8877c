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


def reference_mean(data, factors):
    """Each output voxel: the rounded mean of its window (the arrays divide evenly)."""
    shape = [n // f for n, f in zip(data.shape, factors)]
    windows = data.reshape([v for n, f in zip(shape, factors) for v in (n, f)])
    return np.round(windows.mean(axis=tuple(range(1, 2 * data.ndim, 2)))).astype(data.dtype)


@pytest.mark.parametrize(
    ("names", "factors"), [(("z", "y", "x"), (2, 2, 2)), (("c", "y", "x"), (1, 2, 2))]
)
async def test_a_zarr3_input_with_dimension_names_makes_a_pyramid(tmp_path, names, factors):
    """zarr-python's dimension_names became tensorstore labels, and copying the labelled input
    into level 0 failed ("Error aligning dimensions"); the names are the input's axes."""
    import zarr

    data = np.random.default_rng(3).integers(0, 200, (4, 16, 16), dtype=np.uint16)
    array = zarr.create_array(
        str(tmp_path / "in.zarr"),
        shape=data.shape,
        chunks=(2, 8, 8),
        dtype="uint16",
        dimension_names=names,
    )
    array[:] = data
    src = await ba.open_source(tmp_path / "in.zarr")
    assert src.axes == "".join(names)
    assert ba.as_source(array).axes == "".join(names)  # the zarr-python handle, wrapped
    await ba.pyramid(src, tmp_path / "out.ome.zarr", 2, method="mean", progress=False)
    back = ngff_zarr.from_ngff_zarr(str(tmp_path / "out.ome.zarr"))
    assert back.images[0].dims == names
    level1 = np.asarray(back.images[1].data)
    np.testing.assert_array_equal(level1, reference_mean(data.astype(np.float64), factors))
    np.testing.assert_array_equal(np.asarray(back.images[0].data), data)
