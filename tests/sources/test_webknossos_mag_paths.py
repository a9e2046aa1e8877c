"""open_source on the folders of a webknossos dataset (its mag and layer folders), checked
against webknossos' own reads.

The webknossos library stores zarr layers as (c, x, y, z) arrays (zarr v2: Fortran order and no
axis names), so a mag folder opened as a plain zarr array looked like an unnamed (c, z, y, x)
volume, and a pyramid of it swapped x and z.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import zarr

import bioimage_async as ba
from bioimage_async.sources.formats import register_format, unregister_format

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # webknossos warns about optional image readers at import
    wk = pytest.importorskip("webknossos")

# webknossos' own advice while writing the fixtures (small chunks).
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:webknossos")

TOPLEFT = (4, 2, 2)  # Mag(1) XYZ, a multiple of every mag below
SIZE = (38, 22, 14)  # Mag(1) XYZ: x, y and z all differ, none a multiple of a chunk
VOXEL_SIZE = (11.0, 12.0, 25.0)  # Mag(1) XYZ, nm
FORMATS = ["zarr", "zarr3", "wkw"]


def _layer(dataset, name, data_format, rng, *, num_channels=1):
    layer = dataset.add_layer(
        name,
        "color",
        dtype=np.uint16,
        num_channels=num_channels,
        data_format=data_format,
        bounding_box=wk.BoundingBox(TOPLEFT, SIZE),
    )
    # zarr v2 has no shards; the others are sharded
    layout = {"chunk_shape": 8, "shard_shape": 8 if data_format == "zarr" else 16}
    shape = SIZE if num_channels == 1 else (num_channels, *SIZE)
    layer.add_mag(1, **layout).write(
        rng.integers(0, 60_000, shape, dtype=np.uint16), absolute_offset=TOPLEFT
    )
    for mag in ("2-2-1", 2):  # written, not downsampled: the content only has to differ
        view = layer.add_mag(mag, **layout)
        size_at_mag = tuple(-(-s // m) for s, m in zip(SIZE, wk.Mag(mag).to_list()))
        if num_channels > 1:
            size_at_mag = (num_channels, *size_at_mag)
        view.write(rng.integers(0, 60_000, size_at_mag, dtype=np.uint16), absolute_offset=TOPLEFT)
    return layer


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    """A dataset written by webknossos: one layer per data format, mags 1, 2-2-1 and 2."""
    path = tmp_path_factory.mktemp("wk_paths") / "dataset"
    dataset = wk.Dataset(path, voxel_size=VOXEL_SIZE)
    rng = np.random.default_rng(3)
    for data_format in FORMATS:
        _layer(dataset, f"color_{data_format}", data_format, rng)
    _layer(dataset, "rgb", "zarr", rng, num_channels=3)
    return path


def _wk_mag(path, layer, mag):
    """webknossos' own read of a mag (its bounding box), as (c, x, y, z), and the axis order
    its properties record for the stored array."""
    mag_view = wk.Dataset.open(path).get_layer(layer).get_mag(mag)
    return mag_view.read(), mag_view.bounding_box.axes


def _wk_zyx(path, layer, mag):
    data, axes = _wk_mag(path, layer, mag)
    assert tuple(axes) == ("x", "y", "z") and data.shape[0] == 1
    return data[0].transpose(2, 1, 0)


def _zyx_voxel_size(mag):
    return tuple(s * m for s, m in zip(VOXEL_SIZE, wk.Mag(mag).to_list()))[::-1]


# ---- mag folders -----------------------------------------------------------------------------
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("mag", [1, "2-2-1", 2])
async def test_a_mag_folder_reads_as_webknossos_does_in_zyx_with_its_voxel_size(
    dataset_path, data_format, mag
):
    layer = f"color_{data_format}"
    source = await ba.open_source(dataset_path / layer / wk.Mag(mag).to_layer_name())
    expected = _wk_zyx(dataset_path, layer, mag)
    assert source.shape == expected.shape
    assert source.axes == "zyx"
    assert source.voxel_size == pytest.approx(_zyx_voxel_size(mag))
    assert source.unit == "nanometer"
    assert not source.writable
    np.testing.assert_array_equal(await source.read(...), expected)
    reopened = await ba.from_spec(json.loads(json.dumps(source.to_spec().to_json())))
    np.testing.assert_array_equal(await reopened.read(np.s_[1:5, :, 3:]), expected[1:5, :, 3:])


def test_the_sync_twin_opens_a_zarr_mag_folder_in_zyx_not_as_the_stored_cxyz(dataset_path):
    folder = dataset_path / "color_zarr" / "1"
    stored = json.loads((folder / ".zarray").read_text())
    assert stored["order"] == "F" and len(stored["shape"]) == 4  # (c, x, y, z), unnamed
    source = ba.sync.open_source(str(folder))
    assert (source.shape, source.axes) == (SIZE[::-1], "zyx")
    np.testing.assert_array_equal(source[...], _wk_zyx(dataset_path, "color_zarr", 1))


# ---- layer and dataset folders ----------------------------------------------------------------
@pytest.mark.parametrize("data_format", FORMATS)
async def test_a_layer_folder_opens_its_first_mag_and_level_picks_another(
    dataset_path, data_format
):
    layer = f"color_{data_format}"
    first = await ba.open_source(dataset_path / layer)
    assert first.axes == "zyx"
    np.testing.assert_array_equal(await first.read(...), _wk_zyx(dataset_path, layer, 1))
    listed = list(wk.Dataset.open(dataset_path).get_layer(layer).mags)
    second = await ba.open_source(dataset_path / layer, level=1)
    assert second.voxel_size == pytest.approx(_zyx_voxel_size(listed[1]))
    np.testing.assert_array_equal(await second.read(...), _wk_zyx(dataset_path, layer, listed[1]))
    with pytest.raises(ba.InvalidArgumentError, match="level=3 is not a mag of"):
        await ba.open_source(dataset_path / layer, level=3)
    with pytest.raises(ba.InvalidArgumentError, match="is the mag 2-2-1 already"):
        await ba.open_source(dataset_path / layer / "2-2-1", level=0)


async def test_internal_paths_inside_the_dataset_or_layer_folder_name_the_same_mag(dataset_path):
    expected = _wk_zyx(dataset_path, "color_zarr", "2-2-1")
    for path, key in [(dataset_path, "color_zarr/2-2-1"), (dataset_path / "color_zarr", "2-2-1")]:
        source = await ba.open_source(path, key)
        assert source.axes == "zyx", (path, key)
        np.testing.assert_array_equal(await source.read(...), expected)
    layer = await ba.open_source(dataset_path, "color_zarr")
    np.testing.assert_array_equal(await layer.read(...), _wk_zyx(dataset_path, "color_zarr", 1))
    with pytest.raises(ba.InternalPathNotFoundError, match="'color_wkw/2-2-1'"):
        await ba.open_source(dataset_path)  # four layers: which one?


# ---- what is refused -------------------------------------------------------------------------
async def test_writing_modes_are_refused_and_format_zarr_opens_the_stored_array(dataset_path):
    folder = dataset_path / "color_zarr" / "1"
    with pytest.raises(ba.ReadOnlySourceError, match="format='zarr'"):
        await ba.open_source(folder, mode="r+")
    stored = await ba.open_source(folder, format="zarr")  # as stored, on request
    data, axes = _wk_mag(dataset_path, "color_zarr", 1)
    assert tuple(axes) == ("x", "y", "z") and stored.shape[0] == 1
    x, y, z = TOPLEFT
    np.testing.assert_array_equal(
        await stored.read(np.s_[:, x : x + SIZE[0], y : y + SIZE[1], z : z + SIZE[2]]), data
    )


async def test_a_multi_channel_layer_is_refused_not_opened_unnamed(dataset_path):
    with pytest.raises(ba.FormatNotSupportedError, match="3 channels"):
        await ba.open_source(dataset_path / "rgb" / "1")


async def test_unknown_options_are_refused_naming_the_folder(dataset_path):
    with pytest.raises(ba.InvalidArgumentError, match=r"webknossos folder .*\['pattern'\]"):
        await ba.open_source(dataset_path / "color_zarr" / "1", pattern="*.tif")


async def test_the_backend_opens_by_name_once_registered(dataset_path):
    from bioimage_async.sources.webknossos import WebKnossosFormat

    register_format(WebKnossosFormat(), replace=True)
    try:
        source = await ba.open_source(dataset_path, "color_zarr3/2", format="webknossos")
        np.testing.assert_array_equal(
            await source.read(...), _wk_zyx(dataset_path, "color_zarr3", 2)
        )
        with pytest.raises(ba.SourceNotFoundError, match="no local webknossos dataset"):
            await ba.open_source(dataset_path.parent, format="webknossos")
    finally:
        unregister_format("webknossos")


# ---- downstream: a pyramid of a mag folder ---------------------------------------------------
@pytest.mark.parametrize("data_format", FORMATS)
def test_a_pyramid_of_a_mag_folder_lands_in_zyx_with_the_dataset_scale(
    dataset_path, tmp_path, data_format
):
    layer = f"color_{data_format}"
    source = ba.sync.open_source(str(dataset_path / layer / "1"))
    out = tmp_path / "pyramid.ome.zarr"
    ba.sync.pyramid(source, str(out), 2, method="mean", progress=False)
    multiscale = zarr.open_group(str(out), mode="r").attrs.asdict()["ome"]["multiscales"][0]
    assert [axis["name"] for axis in multiscale["axes"]] == ["z", "y", "x"]
    level0 = multiscale["datasets"][0]
    scale = next(t for t in level0["coordinateTransformations"] if t["type"] == "scale")
    assert scale["scale"] == pytest.approx(VOXEL_SIZE[::-1])
    written = zarr.open_array(str(out / level0["path"]), mode="r")[...]
    np.testing.assert_array_equal(written, _wk_zyx(dataset_path, layer, 1))


async def test_a_damaged_properties_file_above_an_unrelated_array_does_not_stop_it(tmp_path):
    """A damaged datasource-properties.json one level up made open_source of any array below
    it fail; only the dataset folder itself is refused over it."""
    (tmp_path / "datasource-properties.json").write_text('{"dataLayers": [')
    array = await ba.create_source(
        tmp_path / "out.zarr", shape=(8, 8), dtype="uint8", chunks=(4, 4)
    )
    await array.write(..., np.full((8, 8), 3, np.uint8))
    reopened = await ba.open_source(tmp_path / "out.zarr")
    assert (await reopened.read() == 3).all()
    with pytest.raises(ba.SourceError, match="datasource-properties"):
        await ba.open_source(tmp_path)
