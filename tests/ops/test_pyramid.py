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
