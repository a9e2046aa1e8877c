"""webknossos datasets through open_webknossos, checked against webknossos' own reads."""

from __future__ import annotations

import asyncio
import json
import warnings

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.sources.webknossos import WebKnossosSource, open_webknossos

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # webknossos warns about optional image readers at import
    wk = pytest.importorskip("webknossos")
cluster_tools = pytest.importorskip("cluster_tools")

# webknossos' own advice while writing the fixtures (small chunks, numba for downsampling).
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:webknossos")

TOPLEFT = (8, 4, 4)  # Mag(1) XYZ, a multiple of every mag below
SIZE = (37, 29, 21)  # Mag(1) XYZ, not a multiple of the chunk shape or of any mag


def _write_layer(dataset, name, data, *, data_format="zarr3", num_channels=1):
    layer = dataset.add_layer(
        name,
        "color",
        dtype=data.dtype,
        num_channels=num_channels,
        data_format=data_format,
        bounding_box=wk.BoundingBox(TOPLEFT, SIZE),
    )
    mag1 = layer.add_mag(1, chunk_shape=(8, 8, 8), shard_shape=(16, 16, 16))
    mag1.write(data, absolute_offset=TOPLEFT)
    return layer


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    """A dataset written and downsampled by webknossos: zarr3 and wkw layers, mags 1, 2, 4."""
    path = tmp_path_factory.mktemp("wk") / "dataset"
    dataset = wk.Dataset(path, voxel_size=(11.2, 11.2, 25.0))
    rng = np.random.default_rng(7)
    with cluster_tools.get_executor("sequential") as executor:
        for name, data_format in (("color", "zarr3"), ("color_wkw", "wkw")):
            data = rng.integers(0, 60_000, SIZE, dtype=np.uint16)
            layer = _write_layer(dataset, name, data, data_format=data_format)
            layer.downsample(coarsest_mag=wk.Mag(4), sampling_mode="isotropic", executor=executor)
    aniso = _write_layer(dataset, "aniso", rng.integers(0, 255, SIZE, dtype=np.uint8))
    coarse = aniso.add_mag("2-2-1", chunk_shape=(8, 8, 8), shard_shape=(16, 16, 16))
    coarse.write(rng.integers(0, 255, (19, 15, 21), dtype=np.uint8), absolute_offset=TOPLEFT)
    rgb = rng.integers(0, 255, (3, *SIZE), dtype=np.uint8)
    _write_layer(dataset, "rgb", rgb, num_channels=3)
    return path


@pytest.fixture(scope="module")
def single_layer_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("wk1") / "single"
    dataset = wk.Dataset(path, voxel_size=(1, 1, 1))
    _write_layer(dataset, "only", np.arange(np.prod(SIZE), dtype=np.uint32).reshape(SIZE))
    return path


def _wk_read_zyx(path, layer, mag, topleft=None, size=None):
    """What webknossos itself reads, as (z, y, x)."""
    mag_view = wk.Dataset.open(path).layers[layer].get_mag(mag)
    if topleft is None:
        data = mag_view.read()
    else:
        data = mag_view.read(absolute_bounding_box=wk.BoundingBox(topleft, size))
    return data[0].transpose(2, 1, 0)


# ---- reading ---------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("layer", ["color", "color_wkw"])
@pytest.mark.parametrize("mag", [1, 2, 4])
async def test_every_mag_reads_voxel_for_voxel_as_webknossos(dataset_path, layer, mag):
    source = open_webknossos(dataset_path, layer_name=layer, mag=mag)
    expected = _wk_read_zyx(dataset_path, layer, mag)
    # The mag's bounding box in Mag(1), divided by the mag (rounded up), in (z, y, x).
    assert source.shape == tuple(-(-s // mag) for s in SIZE)[::-1] == expected.shape
    assert source.dtype == np.uint16
    assert not source.writable
    np.testing.assert_array_equal(await source.read(...), expected)


@pytest.mark.asyncio
async def test_offset_and_size_are_mag1_xyz_and_the_shape_is_at_the_mag(dataset_path):
    offset, size = (12, 8, 4), (20, 10, 9)
    source = open_webknossos(dataset_path, layer_name="color", mag=2, offset=offset, size=size)
    assert source.shape == (5, 5, 10)  # ceil((9, 10, 20) / 2)
    expected = _wk_read_zyx(dataset_path, "color", 2, offset, (20, 10, 10))
    np.testing.assert_array_equal(await source.read(...), expected)
    for index in [np.s_[1:4, 2:5, 3:9], np.s_[2, :, 7], np.s_[..., -1]]:
        np.testing.assert_array_equal(await source.read(index), expected[index])


@pytest.mark.asyncio
async def test_anisotropic_mags_scale_each_axis(dataset_path):
    source = open_webknossos(dataset_path, layer_name="aniso", mag="2-2-1")
    assert source.mag == (2, 2, 1)
    assert source.shape == (21, 15, 19)
    np.testing.assert_array_equal(
        await source.read(...), _wk_read_zyx(dataset_path, "aniso", "2-2-1")
    )
    same = open_webknossos(dataset_path, layer_name="aniso", mag=(2, 2, 1))
    np.testing.assert_array_equal(await same.read(np.s_[3:9]), await source.read(np.s_[3:9]))


@pytest.mark.asyncio
async def test_a_single_layer_dataset_needs_no_layer_name(single_layer_path):
    source = open_webknossos(str(single_layer_path))
    assert source.to_spec().params["layer_name"] == "only"
    expected = np.arange(np.prod(SIZE), dtype=np.uint32).reshape(SIZE).transpose(2, 1, 0)
    np.testing.assert_array_equal(await source.read(...), expected)


@pytest.mark.asyncio
async def test_local_datasets_open_offline_by_relative_path_or_file_url(dataset_path, monkeypatch):
    monkeypatch.chdir(dataset_path.parent)
    by_relative = open_webknossos(dataset_path.name, layer_name="color")
    assert by_relative.to_spec().params["dataset_name_or_url"] == str(dataset_path)
    by_url = open_webknossos(f"file://{dataset_path}", layer_name="color")
    np.testing.assert_array_equal(await by_relative.read(...), await by_url.read(...))


@pytest.mark.asyncio
async def test_spec_round_trips_through_json(dataset_path):
    source = open_webknossos(
        dataset_path, layer_name="color_wkw", mag=2, offset=(10, 6, 6), size=(30, 20, 14)
    )
    spec = json.loads(json.dumps(source.to_spec().to_json()))
    assert spec["kind"] == "webknossos"
    reopened = await ba.from_spec(spec)
    assert isinstance(reopened, WebKnossosSource)
    assert (reopened.shape, reopened.dtype, reopened.chunks) == (
        source.shape,
        source.dtype,
        source.chunks,
    )
    np.testing.assert_array_equal(await reopened.read(...), await source.read(...))


@pytest.mark.asyncio
async def test_concurrent_reads_match_webknossos(dataset_path):
    source = open_webknossos(dataset_path, layer_name="color", mag=1)
    expected = _wk_read_zyx(dataset_path, "color", 1)
    blocks = [
        (slice(z, z + 8), slice(y, y + 8), slice(x, x + 8))
        for z in range(0, 16, 8)
        for y in range(0, 24, 8)
        for x in range(0, 32, 8)
    ]
    results = await asyncio.gather(*(source.read(b) for b in blocks))
    for block, data in zip(blocks, results):
        np.testing.assert_array_equal(data, expected[block])


def test_chunks_and_the_grid_offset_come_from_the_mag(dataset_path):
    source = open_webknossos(dataset_path, layer_name="color", mag=1)
    assert source.chunks == (8, 8, 8)
    assert source.shards == (16, 16, 16)
    # Shards start at Mag(1) 0: the box starting at (8, 4, 4) meets the next border 8 / 12 in.
    assert source.grid_offset == (12, 12, 8)


# ---- errors ----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_writes_are_refused_as_read_only(dataset_path):
    source = open_webknossos(dataset_path, layer_name="color")
    with pytest.raises(ba.ReadOnlySourceError):
        await source.write(np.s_[0:2, 0:2, 0:2], 1)
    with pytest.raises(ba.ReadOnlySourceError):
        source[0, 0, 0] = 1


def test_multi_channel_layers_are_refused_with_the_channel_count(dataset_path):
    with pytest.raises(ba.FormatNotSupportedError, match="3 channels"):
        open_webknossos(dataset_path, layer_name="rgb")


def test_an_offset_off_the_mag_grid_is_refused(dataset_path):
    with pytest.raises(ValueError, match="not a multiple of the mag"):
        open_webknossos(dataset_path, layer_name="color", mag=4, offset=(8, 6, 4), size=(8, 8, 8))


@pytest.mark.asyncio
async def test_out_of_bounds_indices_are_invalid(dataset_path):
    source = open_webknossos(dataset_path, layer_name="color", mag=2)
    with pytest.raises(ba.InvalidIndexError):
        await source.read(np.s_[:, :, 0:20])


def test_layer_and_mag_lookup_errors_name_what_exists(dataset_path):
    with pytest.raises(ba.SourceError, match="pass layer_name=") as several:
        open_webknossos(dataset_path)
    assert "'color_wkw'" in str(several.value)
    with pytest.raises(ba.InternalPathNotFoundError, match="'color'"):
        open_webknossos(dataset_path, layer_name="colour")
    with pytest.raises(ba.InternalPathNotFoundError, match="color/4"):
        open_webknossos(dataset_path, layer_name="color", mag=8)


def test_a_missing_local_dataset_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no webknossos dataset"):
        open_webknossos(tmp_path / "nothing")


@pytest.mark.parametrize(("layer", "mag"), [("color", 1), ("color_wkw", 2), ("aniso", "2-2-1")])
async def test_the_voxel_size_and_origin_come_from_the_dataset(dataset_path, layer, mag):
    """They were not reported: a pyramid of a webknossos layer had scale 1 and no unit."""
    source = open_webknossos(dataset_path, layer_name=layer, mag=mag)
    dataset = wk.Dataset.open(dataset_path)
    x, y, z = dataset.voxel_size  # Mag(1), nm
    mx, my, mz = source.mag
    assert source.unit == "nanometer"
    assert source.voxel_size == pytest.approx((z * mz, y * my, x * mx))
    centre = [(o + (m - 1) / 2) * s for o, m, s in zip(TOPLEFT, source.mag, (x, y, z))]
    assert source.translation == pytest.approx(tuple(reversed(centre)))
