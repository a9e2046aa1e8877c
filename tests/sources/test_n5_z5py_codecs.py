"""n5 written by z5py: its blosc metadata (with ``nthreads``, which tensorstore's parser
refuses) reads voxel for voxel, and its lz4 codec, which tensorstore cannot decode, is refused
with the cause and what to do."""

import numpy as np
import pytest

import bioimage_async as ba

z5py = pytest.importorskip("z5py")


def z5py_array(path, name, data, compression):
    f = z5py.File(str(path), "w")
    ds = f.create_dataset(
        name, shape=data.shape, chunks=(7, 11, 13), dtype=data.dtype, compression=compression
    )
    ds[...] = data
    return z5py.File(str(path), "r")[name][...]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int32", "float64", "uint64"])
async def test_z5py_blosc_reads_what_z5py_reads(tmp_path, rng, dtype):
    data = rng.integers(0, 120, size=(20, 30, 40)).astype(dtype)
    expected = z5py_array(tmp_path / "a.n5", "raw", data, "blosc")
    src = await ba.open_source(tmp_path / "a.n5", "raw")
    got = await src.read()
    assert got.dtype == expected.dtype and src.chunks == (7, 11, 13)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, data)


async def test_z5py_blosc_written_through_us_reads_back_in_z5py(tmp_path, rng):
    data = rng.integers(0, 60000, size=(20, 30, 40), dtype=np.uint16)
    z5py_array(tmp_path / "a.n5", "raw", np.zeros_like(data), "blosc")
    out = await ba.open_source(tmp_path / "a.n5", "raw", mode="r+")
    await out.write(np.s_[...], data)
    np.testing.assert_array_equal(z5py.File(str(tmp_path / "a.n5"), "r")["raw"][...], data)


async def test_z5py_lz4_is_refused_naming_the_codec_and_the_way_out(tmp_path, rng):
    data = rng.integers(0, 60000, size=(20, 30, 40), dtype=np.uint16)
    z5py_array(tmp_path / "a.n5", "raw", data, "lz4")
    with pytest.raises(ba.FormatNotSupportedError) as caught:
        await ba.open_source(tmp_path / "a.n5", "raw")
    message = str(caught.value)
    assert "'lz4'" in message and "z5py" in message and "tensorstore" in message
    assert "gzip" in message and "raw" in message


async def test_z5py_blosc_is_reopened_from_its_spec_in_worker_processes(tmp_path, rng):
    """A worker reopens the input from its spec: without assume_metadata there, tensorstore
    refused z5py's 'nthreads' again and every block failed."""
    data = rng.integers(0, 250, size=(20, 30, 40)).astype(np.uint8)
    z5py_array(tmp_path / "a.n5", "raw", data, "blosc")
    src = await ba.open_source(tmp_path / "a.n5", "raw")
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=data.shape, dtype="uint8", chunks=(10, 15, 20)
    )
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "runs"), poll_interval=0.05)
    await ba.copy(src, out, job_type="subprocess", num_workers=1, job_config=config)
    np.testing.assert_array_equal(await out.read(), data)
