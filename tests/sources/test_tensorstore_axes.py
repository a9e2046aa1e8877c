"""Axis names that other tools record on zarr and n5 arrays are read as ``axes``, written back
where the format has a place for them, and never stop a copy between differently named arrays.
Inputs are written by zarr-python (v3 ``dimension_names``; v2 xarray's ``_ARRAY_DIMENSIONS``)
and z5py; outputs are read back by them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

import bioimage_async as ba

DATA = (np.arange(3 * 8 * 12) % 251).astype(np.uint8).reshape(3, 8, 12)


def zarr3_named(path, names):
    array = zarr.create_array(
        str(path), shape=DATA.shape, chunks=(1, 8, 8), dtype="uint8", dimension_names=names
    )
    array[:] = DATA
    return path


def zarr2_named(path, names):
    array = zarr.create_array(
        str(path), shape=DATA.shape, chunks=(1, 8, 8), dtype="uint8", zarr_format=2
    )
    array[:] = DATA
    array.attrs["_ARRAY_DIMENSIONS"] = list(names)  # as xarray writes them
    return path


@pytest.mark.parametrize("write", [zarr3_named, zarr2_named])
async def test_recorded_axis_names_are_the_sources_axes(tmp_path, write):
    src = await ba.open_source(write(tmp_path / "a.zarr", ("c", "y", "x")))
    assert src.axes == "cyx"
    np.testing.assert_array_equal(await src.read(), DATA)
    again = await ba.from_spec(src.to_spec().to_json())
    assert again.axes == "cyx"


@pytest.mark.parametrize("names", [("a", "b", "x"), ("c", "y", None), ("y", "y", "x")])
async def test_names_that_are_not_tczyx_letters_give_no_axes(tmp_path, names):
    path = tmp_path / "a.zarr"
    if None in names:
        zarr3_named(path, names)
    else:
        zarr2_named(path, names)
    assert (await ba.open_source(path)).axes is None


async def test_n5_axes_are_read_fastest_first_as_tensorstore_writes_them(tmp_path):
    z5py = pytest.importorskip("z5py")
    f = z5py.File(str(tmp_path / "a.n5"), "w")
    dataset = f.create_dataset("raw", data=DATA, chunks=(1, 8, 8))
    dataset.attrs["axes"] = ["x", "y", "c"]  # n5 lists the fastest axis first
    src = await ba.open_source(tmp_path / "a.n5", "raw")
    assert src.shape == DATA.shape and src.axes == "cyx"


async def test_a_labelled_array_copies_into_one_named_otherwise(tmp_path):
    """tensorstore aligned the labels: a copy from ("a", "b", "x") into ("z", "y", "x") failed
    with "Error aligning dimensions"."""
    src = await ba.open_source(zarr3_named(tmp_path / "in.zarr", ("a", "b", "x")))
    out = await ba.create_source(
        tmp_path / "out.zarr",
        format="zarr3",
        shape=DATA.shape,
        dtype="uint8",
        chunks=(1, 8, 8),
        dimension_names=("z", "y", "x"),
    )
    await ba.copy(src, out, progress=False)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[:], DATA)


@pytest.mark.parametrize("format", ["zarr", "zarr3", "n5"])
async def test_create_source_records_dimension_names_where_each_format_keeps_them(tmp_path, format):
    path = tmp_path / f"out.{'n5' if format == 'n5' else 'zarr'}"
    out = await ba.create_source(
        path,
        format=format,
        shape=DATA.shape,
        dtype="uint8",
        chunks=(1, 8, 8),
        internal_path="raw",
        dimension_names=("c", "y", "x"),
    )
    assert out.axes == "cyx"
    await out.write(..., DATA)
    if format == "zarr":
        assert zarr.open_array(str(path / "raw")).attrs["_ARRAY_DIMENSIONS"] == ["c", "y", "x"]
    elif format == "zarr3":
        assert zarr.open_array(str(path / "raw")).metadata.dimension_names == ("c", "y", "x")
    else:
        attributes = json.loads((path / "raw" / "attributes.json").read_text())
        assert attributes["axes"] == ["x", "y", "c"]
    reopened = await ba.open_source(path, "raw")
    assert reopened.axes == "cyx"
    np.testing.assert_array_equal(await reopened.read(), DATA)
