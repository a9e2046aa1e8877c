"""Arrays other tools write that our readers cannot take are refused with our own error
classes, naming the cause and the way out (never a bare builtin or a cut-off message)."""

import warnings

import numcodecs
import numpy as np
import pytest

import bioimage_async as ba

zarr = pytest.importorskip("zarr")


def test_zarr_v2_array_with_a_numcodecs_filter_names_the_zarr_python_way(tmp_path):
    """tensorstore refuses filters: the error said "filters are not supported" only."""
    path = tmp_path / "delta.zarr"
    array = zarr.create_array(
        path,
        shape=(6, 8),
        chunks=(3, 4),
        dtype="i4",
        zarr_format=2,
        filters=[numcodecs.Delta(dtype="i4")],
    )
    array[...] = np.arange(48, dtype="i4").reshape(6, 8)
    with pytest.raises(ba.FormatNotSupportedError) as caught:
        ba.sync.open_source(path)
    message = str(caught.value)
    assert "filters are not supported" in message
    assert "ba.as_source(zarr.open_array(" in message
    # and the way it names works, voxel for voxel
    via_zarr = ba.as_source(zarr.open_array(path, mode="r"))
    np.testing.assert_array_equal(via_zarr[...], array[...])


def test_zarr3_shard_followed_by_a_whole_shard_codec_says_why_it_is_refused(tmp_path):
    """zarr-python adds its default zstd after a sharding serializer; tensorstore's reason was
    cut before its JSON, leaving "...: Sharding codec" and nothing else."""
    path = tmp_path / "shard.zarr"
    array = zarr.create_array(
        path,
        shape=(8, 8),
        chunks=(4, 4),
        dtype="u2",
        serializer=zarr.codecs.ShardingCodec(chunk_shape=(2, 2)),
    )
    array[...] = 3
    with pytest.raises(ba.FormatNotSupportedError, match="not compatible with subsequent"):
        ba.sync.open_source(path)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_string_array_is_refused_as_not_numeric(tmp_path, zarr_format):
    path = tmp_path / "strings.zarr"
    with warnings.catch_warnings():  # zarr-python: string dtypes are not in the v3 spec yet
        warnings.simplefilter("ignore")
        zarr.create_array(path, shape=(2, 2), chunks=(2, 2), dtype=str, zarr_format=zarr_format)
    with pytest.raises(ba.FormatNotSupportedError, match="numeric volumes only"):
        ba.sync.open_source(path)


def _tiff(path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(path, np.zeros((2, 4, 4), "u1"))


def _hdf5(path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as file:
        file["data"] = np.zeros((2, 4, 4), "u1")


def _mrc(path):
    mrcfile = pytest.importorskip("mrcfile")
    with mrcfile.new(path) as file:
        file.set_data(np.zeros((2, 4, 4), "i1"))


def _nifti(path):
    nibabel = pytest.importorskip("nibabel")
    nibabel.save(nibabel.Nifti1Image(np.zeros((2, 4, 4), "u1"), np.eye(4)), path)


@pytest.mark.parametrize(
    ("name", "write"),
    [("a.ome.tif", _tiff), ("a.h5", _hdf5), ("a.mrc", _mrc), ("a.nii.gz", _nifti)],
    ids=["tiff", "hdf5", "mrc", "nifti"],
)
def test_level_on_a_format_without_levels_is_our_error(tmp_path, name, write):
    """open_source(level=...) on these leaked "open_tiff() got an unexpected keyword argument
    'level'" as a bare TypeError (the CLI's --level too)."""
    path = tmp_path / name
    write(path)
    key = "data" if name.endswith(".h5") else None
    with pytest.raises(ba.InvalidArgumentError, match="has no levels|have no levels"):
        ba.sync.open_source(path, key, level=1)
    with pytest.raises(ba.InvalidArgumentError, match="does not take: colour="):
        ba.sync.open_source(path, key, colour=1)
