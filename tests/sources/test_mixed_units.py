"""Axes that each carry their own unit (OME-Zarr axes, tensorstore's n5 ``units``) open in one
spatial unit, x's, with sizes and translations converted; units that cannot be converted leave
the voxel size unknown instead of mixing them. Files are written by tensorstore, ngff-zarr and
ome-zarr-py; pyramids are read back by ngff-zarr."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import bioimage_async as ba

ngff_zarr = pytest.importorskip("ngff_zarr")
ome_writer = pytest.importorskip("ome_zarr.writer")
ts = pytest.importorskip("tensorstore")

DATA = (np.arange(8 * 16 * 16) % 200).astype(np.uint8).reshape(8, 16, 16)


def tensorstore_n5(path, units, labels=None, shape=(16, 16, 8)):
    """An n5 dataset tensorstore creates with ``dimension_units`` (x first, as n5 stores)."""
    schema = {"dimension_units": units}
    if labels is not None:
        schema["domain"] = {"labels": labels}
    ts.open(
        {
            "driver": "n5",
            "kvstore": {"driver": "file", "path": str(path)},
            "schema": schema,
            "metadata": {
                "dimensions": list(shape),
                "blockSize": list(shape),
                "dataType": "uint8",
                "compression": {"type": "raw"},
            },
            "create": True,
        }
    ).result()


def ngff_zarr_image(path, units, version="0.4"):
    """A two-level OME-Zarr image ngff-zarr writes with z, y, x in ``units``."""
    image = ngff_zarr.to_ngff_image(
        DATA,
        dims=["z", "y", "x"],
        scale={"z": 0.5, "y": 100.0, "x": 100.0},
        translation={"z": 1.0, "y": 200.0, "x": 300.0},
        axes_units=dict(zip("zyx", units)),
    )
    multiscales = ngff_zarr.to_multiscales(image, scale_factors=[2])
    ngff_zarr.to_ngff_zarr(str(path), multiscales, version=version)


async def test_tensorstore_n5_units_per_axis_are_converted_to_x_unit(tmp_path):
    """tensorstore stores 0.04 um for z beside x's and y's nm: z was read as 0.04 nm."""
    tensorstore_n5(tmp_path / "a.n5", ["4nm", "5nm", "0.04um"])
    src = await ba.open_source(tmp_path / "a.n5")
    assert src.unit == "nanometer"
    assert src.voxel_size == pytest.approx((40.0, 5.0, 4.0))
    # tensorstore's own reading of the file, in nm, C order
    units = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(tmp_path / "a.n5")}})
    scale = {"nm": 1.0, "um": 1000.0}
    in_nm = [u.multiplier * scale[u.base_unit] for u in units.result().dimension_units]
    assert src.voxel_size == pytest.approx(tuple(reversed(in_nm)))


async def test_tensorstore_n5_time_axis_keeps_its_seconds(tmp_path):
    tensorstore_n5(
        tmp_path / "t.n5", ["4nm", "5nm", "0.04um", "2s"], ["x", "y", "z", "t"], (8, 8, 4, 2)
    )
    src = await ba.open_source(tmp_path / "t.n5")
    assert src.axes == "tzyx" and src.unit == "nanometer"
    assert src.voxel_size == pytest.approx((2.0, 40.0, 5.0, 4.0))


@pytest.mark.parametrize("version", ["0.4", "0.5"])
async def test_ome_zarr_axes_in_different_units_open_in_x_unit(tmp_path, version):
    """z in um, y and x in nm: every value was read as um, y and x 1000x too large; each
    level's own translation is converted too."""
    ngff_zarr_image(tmp_path / "a.ome.zarr", ["micrometer", "nanometer", "nanometer"], version)
    level0 = await ba.open_source(tmp_path / "a.ome.zarr")
    assert level0.unit == "nanometer"
    assert level0.voxel_size == pytest.approx((500.0, 100.0, 100.0))
    assert level0.translation == pytest.approx((1000.0, 200.0, 300.0))
    level1 = await ba.open_source(tmp_path / "a.ome.zarr", level=1)
    assert level1.unit == "nanometer"
    assert level1.voxel_size == pytest.approx((1000.0, 200.0, 200.0))
    assert level1.translation == pytest.approx((1250.0, 250.0, 350.0))  # ngff-zarr's, in nm


async def test_ome_zarr_time_axis_in_seconds_is_not_converted(tmp_path):
    ome_writer.write_image(
        np.zeros((2, 1, 8, 16, 16), np.uint8),
        str(tmp_path / "t.ome.zarr"),
        scale_factors=(2,),
        axes="tczyx",
        scale={"t": 5.0, "c": 1.0, "z": 0.5, "y": 100.0, "x": 100.0},
        axes_units={"t": "second", "z": "micrometer", "y": "nanometer", "x": "nanometer"},
    )
    src = await ba.open_source(tmp_path / "t.ome.zarr")
    assert src.axes == "tczyx" and src.unit == "nanometer"
    assert src.voxel_size == pytest.approx((5.0, 1.0, 500.0, 100.0, 100.0))
    level1 = await ba.open_source(tmp_path / "t.ome.zarr", level=1)
    assert level1.voxel_size == pytest.approx((5.0, 1.0, 500.0, 200.0, 200.0))
    assert level1.translation == pytest.approx((0.0, 0.0, 0.0, 50.0, 50.0))


async def test_pyramid_of_mixed_units_writes_one_unit_and_right_scales(tmp_path):
    """The pyramid wrote y and x at 100 um (the nm values labelled um)."""
    ngff_zarr_image(tmp_path / "a.ome.zarr", ["micrometer", "nanometer", "nanometer"])
    src = await ba.open_source(tmp_path / "a.ome.zarr")
    out = tmp_path / "out.ome.zarr"
    await ba.pyramid(src, out, 3, method="mean")
    back = ngff_zarr.from_ngff_zarr(str(out))
    for level, image in enumerate(back.images):
        assert image.axes_units == {"z": "nanometer", "y": "nanometer", "x": "nanometer"}
        factor = 2**level
        expected = {"z": 500.0 * factor, "y": 100.0 * factor, "x": 100.0 * factor}
        assert image.scale == pytest.approx(expected)
        # a mean of 2**level voxels is centred between them (as ngff-zarr places it)
        origin = {"z": 1000.0, "y": 200.0, "x": 300.0}
        base = {"z": 500.0, "y": 100.0, "x": 100.0}
        expected_shift = {a: origin[a] + (expected[a] - base[a]) / 2 for a in "zyx"}
        assert image.translation == pytest.approx(expected_shift)


@pytest.mark.parametrize("strange", ["second", "parsec"])
async def test_spatial_units_that_cannot_be_converted_leave_the_size_unknown(
    tmp_path, caplog, strange
):
    """A non-length ('second') or unknown ('parsec') unit beside nm is not mixed in: voxel
    size, translation and unit are None, with a warning naming the axes and the fix."""
    ngff_zarr_image(tmp_path / "a.ome.zarr", [strange, "nanometer", "nanometer"])
    with caplog.at_level(logging.WARNING, logger="bioimage_async"):
        src = await ba.open_source(tmp_path / "a.ome.zarr")
    assert (src.voxel_size, src.translation, src.unit) == (None, None, None)
    message = caplog.text
    assert f"z: '{strange}'" in message and "y: 'nanometer'" in message
    assert "voxel_size=" in message
    # the size given by hand is what a pyramid then writes
    await ba.pyramid(src, tmp_path / "out.ome.zarr", 2, voxel_size=(500, 100, 100), unit="nm")
    back = ngff_zarr.from_ngff_zarr(str(tmp_path / "out.ome.zarr"))
    assert back.images[0].scale == pytest.approx({"z": 500.0, "y": 100.0, "x": 100.0})
    assert back.images[0].axes_units == {"z": "nanometer", "y": "nanometer", "x": "nanometer"}


async def test_tensorstore_n5_unit_that_cannot_be_converted_leaves_the_size_unknown(
    tmp_path, caplog
):
    tensorstore_n5(tmp_path / "a.n5", ["4nm", "4nm", "40parsec"])
    with caplog.at_level(logging.WARNING, logger="bioimage_async"):
        src = await ba.open_source(tmp_path / "a.n5")
    assert (src.voxel_size, src.unit) == (None, None)
    assert "'parsec'" in caplog.text


async def test_one_unit_on_every_axis_is_kept_as_written(tmp_path, caplog):
    """Nothing to convert: the unit and values stay as the file has them, without a warning."""
    ngff_zarr_image(tmp_path / "a.ome.zarr", ["micrometer"] * 3)
    with caplog.at_level(logging.WARNING, logger="bioimage_async"):
        src = await ba.open_source(tmp_path / "a.ome.zarr")
    assert src.unit == "micrometer"
    assert src.voxel_size == pytest.approx((0.5, 100.0, 100.0))
    assert src.translation == pytest.approx((1.0, 200.0, 300.0))
    assert not caplog.records
