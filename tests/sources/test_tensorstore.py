"""zarr v2/v3 (incl. sharding), n5 and precomputed through tensorstore: files written by the
format's own library read through our API voxel for voxel, and ours read back by that library."""

import json

import numpy as np
import pytest
import tensorstore as ts
import zarr

import bioimage_async as ba


@pytest.fixture
def data(rng):
    return rng.integers(0, 60000, size=(37, 51, 66), dtype=np.uint16)


async def test_zarr_v2_written_by_zarr_python_at_root_and_in_a_group(tmp_path, data):
    zarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=data.shape,
        chunks=(16, 16, 16),
        dtype=data.dtype,
        zarr_format=2,
    )[:] = data
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=2)
    group.create_array("raw/s0", shape=data.shape, chunks=(10, 20, 30), dtype=data.dtype)[:] = data
    root = await ba.open_source(tmp_path / "a.zarr")
    nested = await ba.open_source(tmp_path / "g.zarr", "raw/s0")
    assert (root.chunks, nested.chunks) == ((16, 16, 16), (10, 20, 30))
    np.testing.assert_array_equal(await root.read(), data)
    np.testing.assert_array_equal(await nested.read(np.s_[3:30, -20:, 5]), data[3:30, -20:, 5])


async def test_zarr_v3_sharded_written_by_zarr_python(tmp_path, data):
    array = zarr.create_array(
        str(tmp_path / "s.zarr"),
        shape=data.shape,
        chunks=(8, 8, 8),
        shards=(16, 16, 32),
        dtype=data.dtype,
        zarr_format=3,
    )
    array[:] = data
    src = await ba.open_source(tmp_path / "s.zarr")
    assert (src.chunks, src.shards, src.format) == ((8, 8, 8), (16, 16, 32), "zarr3")
    np.testing.assert_array_equal(await src.read(), data)


@pytest.mark.parametrize(
    "fmt,extra", [("zarr", {}), ("zarr3", {}), ("zarr3", {"shards": (16, 32, 32)})]
)
async def test_written_through_our_api_then_read_by_zarr_python(tmp_path, data, fmt, extra):
    out = await ba.create_source(
        tmp_path / "o.zarr",
        shape=data.shape,
        dtype=data.dtype,
        chunks=(8, 16, 16),
        format=fmt,
        internal_path="level/0",
        **extra,
    )
    await ba.copy(data, out, num_workers=2)
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "o.zarr" / "level" / "0"), mode="r")[:], data
    )
    assert isinstance(zarr.open_group(str(tmp_path / "o.zarr"), mode="r"), zarr.Group)


async def test_n5_written_by_z5py_reads_in_its_axis_order_in_the_bigdataviewer_layout(
    tmp_path, data
):
    """z5py, BigDataViewer and Fiji show dimensions [X, Y, Z] as a C-order (Z, Y, X) array."""
    z5py = pytest.importorskip("z5py")
    assert data.shape[0] != data.shape[2]
    f = z5py.File(str(tmp_path / "bdv.n5"), "w")
    f.create_dataset("setup0/timepoint0/s0", data=data, chunks=(8, 16, 32), compression="gzip")
    src = await ba.open_source(tmp_path / "bdv.n5", "setup0/timepoint0/s0")
    assert src.shape == data.shape and src.chunks == (8, 16, 32)
    np.testing.assert_array_equal(await src.read(), data)
    np.testing.assert_array_equal(await src.read(np.s_[3, 5:9, :]), data[3, 5:9, :])


async def test_n5_we_write_is_read_by_z5py_with_our_shape(tmp_path, data):
    z5py = pytest.importorskip("z5py")
    ours = await ba.create_source(
        tmp_path / "o.n5",
        shape=data.shape,
        dtype=data.dtype,
        chunks=(8, 16, 32),
        internal_path="s0",
    )
    await ba.copy(data, ours, num_workers=2)
    dataset = z5py.File(str(tmp_path / "o.n5"), "r")["s0"]
    assert dataset.shape == data.shape and dataset.chunks == (8, 16, 32)
    np.testing.assert_array_equal(dataset[:], data)
    attributes = json.loads((tmp_path / "o.n5" / "s0" / "attributes.json").read_text())
    assert attributes["dimensions"] == list(reversed(data.shape))  # fastest axis first
    # tensorstore used directly shows the metadata order, i.e. our array transposed
    raw = await ts.open(
        {
            "driver": "n5",
            "kvstore": {"driver": "file", "path": str(tmp_path / "o.n5")},
            "path": "s0",
        }
    )
    np.testing.assert_array_equal(await raw.read(), data.transpose())
    reopened = await ba.from_spec(ours.to_spec().to_json())
    np.testing.assert_array_equal(await reopened.read(np.s_[1]), data[1])


async def test_precomputed_written_by_cloudvolume_is_read_in_zyx(tmp_path, data):
    cloudvolume = pytest.importorskip("cloudvolume")
    info = cloudvolume.CloudVolume.create_new_info(
        num_channels=1,
        layer_type="image",
        data_type="uint16",
        encoding="raw",
        resolution=[4, 4, 40],
        voxel_offset=[10, 20, 5],
        chunk_size=[32, 32, 16],
        volume_size=list(reversed(data.shape)),
    )
    path = f"file://{tmp_path / 'layer'}"
    volume = cloudvolume.CloudVolume(path, info=info, compress=False, progress=False)
    volume.commit_info()
    volume[:, :, :] = np.transpose(data)[..., None]
    src = await ba.open_source(f"precomputed://{tmp_path / 'layer'}")
    assert src.shape == data.shape and src.chunks == (16, 32, 32)
    np.testing.assert_array_equal(await src.read(), data)
    same = await ba.open_source(tmp_path / "layer")  # a folder holding an info file
    np.testing.assert_array_equal(await same.read(np.s_[5]), data[5])


async def test_precomputed_written_by_us_round_trips(tmp_path, data):
    out = await ba.create_source(
        tmp_path / "pc",
        shape=data.shape,
        dtype=data.dtype,
        chunks=(16, 32, 32),
        format="precomputed",
    )
    await out.write(..., data)
    info = json.loads((tmp_path / "pc" / "info").read_text())
    assert info["scales"][0]["size"] == list(reversed(data.shape))
    np.testing.assert_array_equal(await (await ba.open_source(tmp_path / "pc")).read(), data)


async def test_spec_round_trip_through_json_reopens_the_same_array(tmp_path, data):
    src = await ba.create_source(
        tmp_path / "a.zarr", shape=data.shape, dtype=data.dtype, chunks=(16, 16, 16)
    )
    await src.write(..., data)
    spec = json.loads(json.dumps(src.to_spec().to_json()))
    for form in (spec, ba.SourceSpec.from_json(spec)):
        again = await ba.from_spec(form)
        assert again.writable
        np.testing.assert_array_equal(await again.read(np.s_[1:4]), data[1:4])


async def test_as_source_of_tensorstore_and_zarr_python_arrays(tmp_path, data):
    array = zarr.create_array(
        str(tmp_path / "z.zarr"),
        shape=data.shape,
        chunks=(16, 16, 16),
        dtype=data.dtype,
        zarr_format=2,
    )
    array[:] = data
    wrapped = ba.as_source(array)
    np.testing.assert_array_equal(await wrapped.read(), data)
    assert wrapped.tensorstore() is not None  # reopened through tensorstore for its I/O
    store = await ts.open(
        {"driver": "zarr", "kvstore": {"driver": "file", "path": str(tmp_path / "z.zarr")}}
    )
    np.testing.assert_array_equal(await ba.as_source(store).read(np.s_[0]), data[0])
    assert ba.as_source(wrapped) is wrapped


# ---- the errors, each naming the value and the fix -----------------------------------------
async def test_a_tensorstore_view_starting_inside_a_chunk_reports_where_its_chunks_lie(
    tmp_path,
):
    store = await ts.open(
        {"driver": "zarr", "kvstore": {"driver": "file", "path": str(tmp_path / "a.zarr")}},
        create=True,
        dtype=ts.uint8,
        shape=[40, 64, 64],
        chunk_layout=ts.ChunkLayout(chunk_shape=[8, 16, 16]),
    )
    inside = ba.as_source(store[5:37, 3:, :])
    assert inside.grid_offset == (3, 13, 0)  # chunk borders at 8 and 16 of the array
    assert ba.as_source(store[8:, 16:, :]).grid_offset == (0, 0, 0)
    data = np.random.default_rng(1).integers(1, 255, inside.shape, dtype=np.uint8)
    stats = ba.RunStats()  # locally, blocks take turns on the chunks they share
    await ba.copy(data, inside, block_shape=(8, 16, 16), num_workers=2, stats=stats)
    np.testing.assert_array_equal(await inside.read(), data)
    assert "shared_chunk_waits" in stats.extra


async def test_missing_file_unknown_extension_and_missing_key(tmp_path, data):
    with pytest.raises(FileNotFoundError, match="no such"):
        await ba.open_source(tmp_path / "missing.zarr")
    (tmp_path / "file.xyz").write_text("x")
    with pytest.raises(ba.FormatNotSupportedError, match="zarr.*n5.*hdf5"):
        await ba.open_source(tmp_path / "file.xyz")
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=2)
    group.create_array("a", shape=(4, 4), dtype="u1")
    group.create_array("b/c", shape=(4, 4), dtype="u1")
    with pytest.raises(ba.InternalPathNotFoundError, match="'a', 'b/c'") as caught:
        await ba.open_source(tmp_path / "g.zarr", "nope")
    assert isinstance(caught.value, KeyError)
    with pytest.raises(ba.InternalPathNotFoundError, match="pass internal_path="):
        await ba.open_source(tmp_path / "g.zarr")


async def test_index_errors(tmp_path, data):
    src = await ba.create_source(
        tmp_path / "a.zarr", shape=data.shape, dtype=data.dtype, chunks=(16, 16, 16)
    )
    with pytest.raises(ba.InvalidIndexError, match="out of bounds for axis 0 with size 37"):
        await src.read(np.s_[0:38])
    with pytest.raises(ba.InvalidIndexError, match="out of bounds"):
        await src.read(40)
    with pytest.raises(ba.InvalidIndexError, match="fancy"):
        await src.read([1, 2])
    with pytest.raises(ba.InvalidIndexError, match="step"):
        await src.read(np.s_[::2])
    with pytest.raises(IndexError):  # the builtin still catches it
        src[..., 100]


async def test_write_errors_leave_data_as_it_was(tmp_path, data):
    src = await ba.create_source(
        tmp_path / "a.zarr", shape=data.shape, dtype=data.dtype, chunks=(16, 16, 16)
    )
    await src.write(..., data)
    with pytest.raises(ValueError, match=r"value of shape \(3, 3\).*region of shape \(2, 51, 66\)"):
        await src.write(np.s_[0:2], np.ones((3, 3)))
    read_only = await ba.open_source(tmp_path / "a.zarr")
    with pytest.raises(ba.ReadOnlySourceError, match="mode='r\\+'"):
        await read_only.write(np.s_[0], 0)
    np.testing.assert_array_equal(await src.read(), data)
    with pytest.raises(ba.FormatNotSupportedError, match="read-only"):
        await ba.open_source(tmp_path / "a.zarr", format="tiff", mode="r+")


async def test_create_over_an_existing_array_needs_exist_ok(tmp_path, data):
    await ba.create_source(
        tmp_path / "a.zarr", shape=data.shape, dtype=data.dtype, chunks=(16, 16, 16)
    )
    with pytest.raises(ba.SourceExistsError, match="exist_ok=True"):
        await ba.create_source(
            tmp_path / "a.zarr", shape=data.shape, dtype=data.dtype, chunks=(16, 16, 16)
        )
    again = await ba.create_source(
        tmp_path / "a.zarr", shape=data.shape, dtype=data.dtype, chunks=(16, 16, 16), exist_ok=True
    )
    assert again.writable
    with pytest.raises(ba.SourceExistsError, match="has shape"):
        await ba.create_source(
            tmp_path / "a.zarr", shape=(5, 5, 5), dtype=data.dtype, chunks=(5, 5, 5), exist_ok=True
        )


def test_as_source_refuses_paths_and_numpy_has_no_spec(tmp_path, data):
    with pytest.raises(TypeError, match="open_source"):
        ba.as_source(str(tmp_path / "a.zarr"))
    with pytest.raises(TypeError, match="open_source"):
        ba.as_source(tmp_path / "a.zarr")
    with pytest.raises(ba.NotSerializableError, match="create_source"):
        ba.as_source(data).to_spec()


async def test_configure_bounds_the_shared_context(tmp_path, data):
    from bioimage_async.context import resource_options, tensorstore_context

    previous = resource_options()
    ba.configure(data_copy_concurrency=2, file_io_concurrency=4, cache_bytes=8 << 20)
    try:
        limits = tensorstore_context().spec.to_json()
        assert limits["data_copy_concurrency"] == {"limit": 2}
        src = await ba.create_source(
            tmp_path / "a.zarr", shape=data.shape, dtype=data.dtype, chunks=(16, 16, 16)
        )
        await src.write(..., data)
        np.testing.assert_array_equal(await src.read(), data)
        with pytest.raises(TypeError, match="unknown option"):
            ba.configure(threads=3)
    finally:
        ba.configure(
            **{
                k: getattr(previous, k)
                for k in ("data_copy_concurrency", "file_io_concurrency", "cache_bytes")
            }
        )
