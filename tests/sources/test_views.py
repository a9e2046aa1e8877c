"""Lazy sub-region views (``source.view(index)``) of numpy and zarr sources."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytest_asyncio

import bioimage_async as ba
from bioimage_async.sources.view import ViewSource

SHAPE = (20, 30, 40)
CHUNKS = (5, 10, 10)


def _volume() -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=np.uint16).reshape(SHAPE)


@pytest.fixture
def numpy_source():
    return ba.as_source(_volume())


@pytest_asyncio.fixture
async def zarr_source(tmp_path):
    source = await ba.create_source(
        tmp_path / "volume.zarr", shape=SHAPE, dtype="uint16", chunks=CHUNKS
    )
    await source.write(..., _volume())
    return source


# ---- reading ---------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_view_reads_its_region_with_local_indices(numpy_source):
    expected = _volume()[2:15, 5:25, 10:40]
    view = numpy_source.view(np.s_[2:15, 5:25, 10:])
    assert isinstance(view, ViewSource)
    assert view.shape == expected.shape and view.dtype == np.uint16
    np.testing.assert_array_equal(await view.read(...), expected)
    for index in [np.s_[1:4, 0:20, -5:], np.s_[0, 3, :], np.s_[..., 7], np.s_[-1, -1, -1]]:
        np.testing.assert_array_equal(await view.read(index), expected[index])
    np.testing.assert_array_equal(view[3:5, 2, 1:9], expected[3:5, 2, 1:9])


@pytest.mark.asyncio
async def test_int_indexed_axes_are_dropped(numpy_source):
    view = numpy_source.view(np.s_[4, 5:25, -3])
    assert view.shape == (20,) and view.ndim == 1
    np.testing.assert_array_equal(await view.read(...), _volume()[4, 5:25, -3])
    np.testing.assert_array_equal(await view.read(np.s_[2:6]), _volume()[4, 7:11, -3])
    assert int(await view.read(0)) == _volume()[4, 5, 37]
    plane = numpy_source.view(np.s_[..., 11])
    assert plane.shape == (20, 30)
    np.testing.assert_array_equal(await plane.read(...), _volume()[..., 11])


@pytest.mark.asyncio
async def test_views_of_views_compose(numpy_source):
    outer = numpy_source.view(np.s_[2:18, 5:25, 10:30])
    inner = outer.view(np.s_[3, 4:10, 5:])
    assert inner.shape == (6, 15)
    np.testing.assert_array_equal(await inner.read(...), _volume()[5, 9:15, 15:30])


# ---- writing ---------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_writes_stay_inside_the_view(numpy_source):
    view = numpy_source.view(np.s_[2:15, 5:25, 10:])
    await view.write(..., 0)
    await view.write(np.s_[1:3, 4, -2:], np.full((2, 2), 7))
    expected = _volume()
    expected[2:15, 5:25, 10:] = 0
    expected[3:5, 9, 38:40] = 7
    np.testing.assert_array_equal(await numpy_source.read(...), expected)


@pytest.mark.asyncio
async def test_writes_into_a_view_with_dropped_axes(numpy_source):
    view = numpy_source.view(np.s_[4, 5:25, -3])
    await view.write(np.s_[2:6], np.array([1, 2, 3, 4]))
    view[0] = 9
    expected = _volume()
    expected[4, 7:11, 37] = [1, 2, 3, 4]
    expected[4, 5, 37] = 9
    np.testing.assert_array_equal(await numpy_source.read(...), expected)
    with pytest.raises(ValueError, match="shape"):
        await view.write(np.s_[0:4], np.zeros((4, 1)))


@pytest.mark.asyncio
async def test_out_of_bounds_is_an_invalid_index(numpy_source):
    view = numpy_source.view(np.s_[2:15, 5:25, 10:])
    with pytest.raises(ba.InvalidIndexError):
        await view.read(np.s_[0:14])
    with pytest.raises(ba.InvalidIndexError):
        await view.read(np.s_[:, 20])
    with pytest.raises(ba.InvalidIndexError):
        await view.write(np.s_[:, :, 25:31], 0)
    with pytest.raises(ba.InvalidIndexError):
        await view.read(np.s_[[0, 1]])  # fancy indexing
    with pytest.raises(ba.InvalidIndexError):
        numpy_source.view(np.s_[0:21])
    with pytest.raises(ba.InvalidIndexError):
        numpy_source.view(np.s_[::2])
    np.testing.assert_array_equal(await numpy_source.read(...), _volume())  # nothing written


@pytest.mark.asyncio
async def test_a_view_of_a_read_only_source_is_read_only(zarr_source, tmp_path):
    read_only = await ba.open_source(tmp_path / "volume.zarr")
    view = read_only.view(np.s_[0:5])
    assert not view.writable
    with pytest.raises(ba.ReadOnlySourceError):
        await view.write(..., 0)
    frozen = _volume()
    frozen.flags.writeable = False
    with pytest.raises(ba.ReadOnlySourceError):
        await ba.as_source(frozen).view(np.s_[1]).write(..., 0)


# ---- zarr sources and specs ------------------------------------------------------------------
@pytest.mark.asyncio
async def test_zarr_view_chunks_drop_int_indexed_axes(zarr_source):
    assert zarr_source.view(np.s_[3:17, 4, 10:35]).chunks == (5, 10)
    assert zarr_source.view(np.s_[1:3]).chunks == CHUNKS


@pytest.mark.asyncio
async def test_zarr_view_spec_round_trips_through_json_and_writes_land_in_place(
    zarr_source, tmp_path
):
    view = zarr_source.view(np.s_[3:17, 4, 10:35])
    spec = json.loads(json.dumps(view.to_spec().to_json()))
    assert spec["kind"] == "view"
    reopened = await ba.from_spec(spec)
    assert reopened.shape == view.shape == (14, 25)
    np.testing.assert_array_equal(await reopened.read(...), _volume()[3:17, 4, 10:35])
    await reopened.write(np.s_[0:2, 5:8], np.full((2, 3), 1234))
    expected = _volume()
    expected[3:5, 4, 15:18] = 1234
    reread = await ba.open_source(tmp_path / "volume.zarr")
    np.testing.assert_array_equal(await reread.read(...), expected)


@pytest.mark.asyncio
async def test_views_of_zarr_python_arrays_read_and_write(tmp_path):
    zarr = pytest.importorskip("zarr")
    array = zarr.open_array(
        tmp_path / "zp.zarr", mode="w", shape=SHAPE, dtype="uint16", chunks=CHUNKS, zarr_format=2
    )
    array[...] = _volume()
    view = ba.as_source(array).view(np.s_[5:10, :, 2])
    np.testing.assert_array_equal(await view.read(...), _volume()[5:10, :, 2])
    await view.write(np.s_[0, 0:3], np.array([7, 8, 9]))
    np.testing.assert_array_equal(array[5, 0:3, 2], [7, 8, 9])
    reopened = await ba.from_spec(view.to_spec().to_json())
    np.testing.assert_array_equal(await reopened.read(np.s_[0, 0:3]), [7, 8, 9])


def test_a_view_of_an_in_memory_array_has_no_spec(numpy_source):
    view = numpy_source.view(np.s_[1:3])
    assert not view.reopenable
    with pytest.raises(ba.NotSerializableError):
        view.to_spec()


@pytest.mark.asyncio
async def test_view_grid_offset_is_where_the_parent_chunk_grid_starts(zarr_source):
    view = zarr_source.view(np.s_[3:17, 4:30, 10:35])
    # Parent chunk borders at z = 5, 10, ... are local 2, 7, ...; y = 10 is local 6; x = 10 is 0.
    assert view.grid_offset == (2, 6, 0)
