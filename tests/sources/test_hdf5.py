"""HDF5 sources: real files written by h5py, compared voxel for voxel through our API."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.sources.hdf5 import Hdf5Source

H5PY_DATA = Path(h5py.__file__).parent / "tests" / "data_files"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 60000, size=(20, 33, 41), dtype=np.uint16)


@pytest.fixture
def h5_file(tmp_path: Path, volume: np.ndarray) -> Path:
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=volume, chunks=(5, 11, 16), compression="gzip")
        f.create_dataset("group/labels", data=(volume % 7).astype(np.uint64))  # contiguous
        f.create_dataset("big_endian", data=volume[:4].astype(">f4"), chunks=(2, 8, 8))
    return path


REGIONS = [
    (slice(None),),
    (slice(3, 17), slice(0, 33), slice(5, 40)),
    (4, slice(2, 9), slice(None)),
    (Ellipsis, 7),
    (slice(-5, None), slice(10, 11)),
]


@pytest.mark.parametrize("index", REGIONS, ids=str)
def test_reads_match_h5py_voxel_for_voxel(h5_file: Path, volume: np.ndarray, index) -> None:
    src = run(ba.open_source(h5_file, "raw"))
    np.testing.assert_array_equal(run(src.read(index)), volume[index])
    np.testing.assert_array_equal(src[index], volume[index])
    assert src.shape == volume.shape and src.dtype == volume.dtype


def test_chunks_come_from_the_dataset_and_are_none_when_contiguous(h5_file: Path) -> None:
    assert run(ba.open_source(h5_file, "raw")).chunks == (5, 11, 16)
    assert run(ba.open_source(h5_file, "group/labels")).chunks is None


def test_big_endian_dataset_reads_as_native_dtype(h5_file: Path, volume: np.ndarray) -> None:
    src = run(ba.open_source(h5_file, "/big_endian"))
    assert src.dtype == np.dtype("float32") and src.dtype.isnative
    data = src[1:3, 4:9]
    assert data.dtype.isnative
    np.testing.assert_array_equal(data, volume[1:3, 4:9].astype(np.float32))


def test_file_shipped_with_h5py_reads_big_and_little_endian_datasets() -> None:
    path = H5PY_DATA / "vlen_string_s390x.h5"
    with h5py.File(path, "r") as f:
        expected = {key: f[key][()] for key in ("DSBEfloat", "DSBEint", "DSLEfloat", "DSLEint")}
    for key, values in expected.items():
        src = run(ba.open_source(path, key))
        assert src.dtype.isnative
        np.testing.assert_array_equal(src[...], values)
        np.testing.assert_array_equal(run(src.read(slice(1, 4))), values[1:4])


def test_complex_datasets_shipped_with_h5py_read_voxel_for_voxel() -> None:
    path = H5PY_DATA / "compound-dtype-complex.h5"
    with h5py.File(path, "r") as f:
        expected = {key: f[key][()] for key in f}
    for key, values in expected.items():
        src = run(ba.open_source(path, key))
        np.testing.assert_array_equal(src[10:90], values[10:90])


def test_non_numeric_dataset_is_refused_with_the_fix() -> None:
    path = H5PY_DATA / "vlen_string_s390x.h5"
    with pytest.raises(ba.FormatNotSupportedError, match="not a numeric volume"):
        run(ba.open_source(path, "DSvariable"))


def test_single_dataset_file_opens_without_internal_path(tmp_path: Path) -> None:
    path = tmp_path / "one.h5"
    data = np.arange(60, dtype=np.int32).reshape(3, 4, 5)
    with h5py.File(path, "w") as f:
        f.create_dataset("deep/inside/vol", data=data)
    src = run(ba.open_source(path))
    assert src.key == "deep/inside/vol"
    np.testing.assert_array_equal(src[...], data)


def test_missing_internal_path_lists_existing_datasets(h5_file: Path) -> None:
    with pytest.raises(ba.InternalPathNotFoundError) as info:
        run(ba.open_source(h5_file, "nope"))
    message = str(info.value)
    assert "'nope'" in message and "'raw'" in message and "'group/labels'" in message
    assert isinstance(info.value, KeyError)
    assert set(info.value.available) == {"raw", "group/labels", "big_endian"}


def test_internal_path_of_a_group_is_not_an_array(h5_file: Path) -> None:
    with pytest.raises(ba.InternalPathNotFoundError, match="'group'.*'group/labels'"):
        run(ba.open_source(h5_file, "group"))


def test_no_internal_path_on_a_file_with_several_datasets_lists_them(h5_file: Path) -> None:
    with pytest.raises(ba.InternalPathNotFoundError, match="pass internal_path=.*'raw'"):
        run(ba.open_source(h5_file))


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        run(ba.open_source(tmp_path / "missing.h5", "raw"))


def test_a_file_that_is_not_hdf5_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "fake.h5"
    path.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(ba.SourceError, match="cannot open .*fake.h5.* as HDF5"):
        run(ba.open_source(path, "raw"))


def test_write_to_read_only_source_raises(h5_file: Path) -> None:
    src = run(ba.open_source(h5_file, "raw"))
    assert not src.writable
    with pytest.raises(ba.ReadOnlySourceError, match="read-only.*mode='r\\+'"):
        src[0, 0, 0] = 1
    with pytest.raises(ba.ReadOnlySourceError):
        run(src.write((slice(0, 2),), np.zeros((2, 33, 41), np.uint16)))


def test_writes_through_r_plus_are_read_back_by_h5py(h5_file: Path, volume: np.ndarray) -> None:
    src = run(ba.open_source(h5_file, "raw", mode="r+"))
    assert src.writable
    block = np.full((3, 5, 7), 12345, dtype=np.uint16)
    run(src.write((slice(2, 5), slice(10, 15), slice(0, 7)), block))
    src[19, :, 40] = 7  # blocking write, int index drops an axis
    src.close()
    expected = volume.copy()
    expected[2:5, 10:15, 0:7] = 12345
    expected[19, :, 40] = 7
    with h5py.File(h5_file, "r") as f:
        np.testing.assert_array_equal(f["raw"][...], expected)


@pytest.mark.parametrize("mode", ["a", "w"])
def test_writable_modes_never_truncate_the_file(
    h5_file: Path, volume: np.ndarray, mode: str
) -> None:
    src = run(ba.open_source(h5_file, "raw", mode=mode))
    assert src.writable
    np.testing.assert_array_equal(src[...], volume)
    assert src.to_spec().params["mode"] == "r+"


def test_write_casts_to_the_dataset_dtype(h5_file: Path) -> None:
    src = run(ba.open_source(h5_file, "raw", mode="r+"))
    src[0, 0, 0:3] = np.array([1.7, 2.2, 3.9])
    np.testing.assert_array_equal(src[0, 0, 0:3], [1, 2, 3])


def test_value_shape_mismatch_raises(h5_file: Path) -> None:
    src = run(ba.open_source(h5_file, "raw", mode="r+"))
    with pytest.raises(ValueError, match=r"shape \(2, 2\) into a region of shape \(3, 4\)"):
        src[0, 0:3, 0:4] = np.zeros((2, 2))


@pytest.mark.parametrize(
    "index",
    [(20,), (slice(0, 21),), (0, 0, -42), ([0, 1],), (np.array([True] * 20),), (slice(0, 4, 2),)],
    ids=["int-oob", "slice-oob", "neg-oob", "list", "bool-mask", "step"],
)
def test_out_of_bounds_and_fancy_indices_raise(h5_file: Path, index) -> None:
    src = run(ba.open_source(h5_file, "raw"))
    with pytest.raises(ba.InvalidIndexError):
        run(src.read(index))
    with pytest.raises(ba.InvalidIndexError):
        src[index]


def test_spec_round_trip(h5_file: Path, volume: np.ndarray) -> None:
    src = run(ba.open_source(h5_file, "group/labels"))
    spec = src.to_spec().to_json()
    assert spec == {
        "kind": "hdf5",
        "params": {"path": str(h5_file.resolve()), "key": "group/labels", "mode": "r"},
    }
    again = run(ba.from_spec(spec))
    assert isinstance(again, Hdf5Source) and not again.writable
    np.testing.assert_array_equal(again[...], volume % 7)
    src.close()
    again.close()
    writable = run(ba.from_spec(run(ba.open_source(h5_file, "raw", mode="r+")).to_spec()))
    assert writable.writable


def test_opening_for_writing_a_file_open_read_only_says_to_close_it(h5_file: Path) -> None:
    reader = run(ba.open_source(h5_file, "raw"))
    with pytest.raises(ba.SourceError, match=r"already has it open read-only.*source.close\(\)"):
        run(ba.open_source(h5_file, "raw", mode="r+"))
    reader.close()
    assert run(ba.open_source(h5_file, "raw", mode="r+")).writable


def test_relative_paths_are_recorded_absolute(
    h5_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(h5_file.parent)
    src = run(ba.open_source("data.h5", "raw"))
    assert src.to_spec().params["path"] == str(h5_file.resolve())


# ---- create ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("compression", "filter_name", "level"),
    [
        ("default", "gzip", 1),
        ("gzip", "gzip", 4),
        ("lzf", "lzf", None),
        ("none", None, None),
        (None, None, None),
    ],
)
def test_create_writes_a_dataset_h5py_reads_back(
    tmp_path: Path, compression, filter_name, level
) -> None:
    path = tmp_path / "new.h5"
    data = np.random.default_rng(1).random((12, 30, 17)).astype(np.float32)
    src = run(
        ba.create_source(
            path,
            shape=data.shape,
            dtype=data.dtype,
            chunks=(4, 16, 16),
            format="hdf5",
            internal_path="a/b/raw",
            compression=compression,
        )
    )
    assert isinstance(src, Hdf5Source) and src.writable and src.chunks == (4, 16, 16)
    run(src.write(..., data))
    src.close()
    with h5py.File(path, "r") as f:
        assert isinstance(f["a"], h5py.Group) and isinstance(f["a/b"], h5py.Group)
        ds = f["a/b/raw"]
        assert ds.chunks == (4, 16, 16)
        assert ds.compression == filter_name and ds.compression_opts == level
        np.testing.assert_array_equal(ds[...], data)


def test_create_default_key_is_data_and_fill_value_is_used(tmp_path: Path) -> None:
    path = tmp_path / "fill.h5"
    src = run(
        ba.create_source(
            path, shape=(5, 6), dtype="int16", chunks=(2, 3), format="hdf5", fill_value=-3
        )
    )
    assert src.key == "data"
    np.testing.assert_array_equal(src[...], np.full((5, 6), -3))


def test_create_unknown_compression_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ba.FormatNotSupportedError, match="'zstd'.*default, gzip, lzf, none"):
        run(
            ba.create_source(
                tmp_path / "x.h5",
                shape=(4,),
                dtype="u1",
                chunks=(2,),
                format="hdf5",
                compression="zstd",
            )
        )


def test_create_over_existing_requires_exist_ok(h5_file: Path, volume: np.ndarray) -> None:
    kwargs = dict(shape=volume.shape, dtype=volume.dtype, chunks=(5, 11, 16), format="hdf5")
    with pytest.raises(ba.SourceExistsError, match="exist_ok=True"):
        run(ba.create_source(h5_file, internal_path="raw", **kwargs))
    src = run(ba.create_source(h5_file, internal_path="raw", exist_ok=True, **kwargs))
    assert src.writable
    np.testing.assert_array_equal(src[0], volume[0])  # opened, not overwritten
    # a new dataset next to existing ones leaves them alone
    run(ba.create_source(h5_file, internal_path="more/raw2", **kwargs))
    with h5py.File(h5_file, "r") as f:
        assert set(f) == {"raw", "group", "big_endian", "more"}


def test_create_over_existing_with_other_shape_is_refused(h5_file: Path) -> None:
    with pytest.raises(ba.SourceExistsError, match=r"shape \(20, 33, 41\).*\(4, 4\)"):
        run(
            ba.create_source(
                h5_file,
                shape=(4, 4),
                dtype="uint16",
                chunks=(2, 2),
                format="hdf5",
                internal_path="raw",
                exist_ok=True,
            )
        )


def test_create_over_a_group_is_refused(h5_file: Path) -> None:
    with pytest.raises(ba.SourceExistsError, match="group at 'group'"):
        run(
            ba.create_source(
                h5_file,
                shape=(4,),
                dtype="u1",
                chunks=(2,),
                format="hdf5",
                internal_path="group",
                exist_ok=True,
            )
        )


def test_create_empty_volume(tmp_path: Path) -> None:
    src = run(
        ba.create_source(tmp_path / "e.h5", shape=(0, 5), dtype="u1", chunks=(1, 5), format="hdf5")
    )
    assert src.shape == (0, 5) and src[...].shape == (0, 5)


# ---- as_source ---------------------------------------------------------------------------------
def test_as_source_wraps_an_h5py_dataset_and_shares_its_handle(
    h5_file: Path, volume: np.ndarray
) -> None:
    with h5py.File(h5_file, "r+") as f:
        src = ba.as_source(f["raw"])
        assert isinstance(src, Hdf5Source) and src.writable
        np.testing.assert_array_equal(src[2:4, 5], volume[2:4, 5])
        src[0, 0, 0] = 42
        src.close()  # does not close the user's file
        assert f["raw"][0, 0, 0] == 42
        again = run(ba.from_spec(src.to_spec().to_json()))
        np.testing.assert_array_equal(again[1:3], volume[1:3])
        again.close()
    with h5py.File(h5_file, "r") as f:
        assert not ba.as_source(f["raw"]).writable


def test_in_memory_h5py_file_has_no_spec() -> None:
    with h5py.File("in-memory.h5", "w", driver="core", backing_store=False) as f:
        src = ba.as_source(f.create_dataset("x", data=np.arange(4)))
        np.testing.assert_array_equal(src[...], np.arange(4))
        with pytest.raises(ba.NotSerializableError, match="no file on disk"):
            src.to_spec()


# ---- concurrency -------------------------------------------------------------------------------
def test_concurrent_reads_and_writes_on_one_handle(tmp_path: Path) -> None:
    path = tmp_path / "c.h5"
    data = np.random.default_rng(2).integers(0, 255, (32, 64, 64), dtype=np.uint8)

    async def main() -> np.ndarray:
        src = await ba.create_source(
            path, shape=data.shape, dtype="uint8", chunks=(4, 64, 64), format="hdf5"
        )
        await asyncio.gather(
            *(src.write(slice(z, z + 4), data[z : z + 4]) for z in range(0, 32, 4))
        )
        parts = await asyncio.gather(*(src.read(slice(z, z + 2)) for z in range(0, 32, 2)))
        return np.concatenate(parts)

    np.testing.assert_array_equal(run(main()), data)


# ---- the optional dependency -------------------------------------------------------------------
def test_missing_h5py_raises_missing_dependency_naming_the_extra(
    h5_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {"kind": "hdf5", "params": {"path": str(h5_file), "key": "raw", "mode": "r"}}
    monkeypatch.setitem(sys.modules, "h5py", None)
    for call in (
        lambda: ba.open_source(h5_file, "raw"),
        lambda: ba.from_spec(spec),
        lambda: ba.create_source(
            os.fspath(h5_file) + "2", shape=(2,), dtype="u1", chunks=(1,), format="hdf5"
        ),
    ):
        with pytest.raises(ba.MissingDependencyError, match=r"'h5py'.*bioimage-async\[hdf5\]") as e:
            run(call())
        assert e.value.extra == "hdf5"


def test_axis_names_are_read_from_ilastik_axistags_and_dimension_labels(tmp_path):
    import json

    tags = [
        {"key": key, "typeFlags": flag, "resolution": 0, "description": ""}
        for key, flag in (("y", 2), ("x", 2), ("c", 1))
    ]
    with h5py.File(tmp_path / "ilastik.h5", "w") as f:
        f.create_dataset("exported_data", data=np.zeros((6, 8, 2), np.uint8))
        f["exported_data"].attrs["axistags"] = json.dumps({"axes": tags})
        labelled = f.create_dataset("labelled", data=np.zeros((2, 6, 8), np.uint8))
        for dim, label in zip(labelled.dims, "cyx"):
            dim.label = label
    assert run(ba.open_source(tmp_path / "ilastik.h5", "exported_data")).axes == "yxc"
    assert run(ba.open_source(tmp_path / "ilastik.h5", "labelled")).axes == "cyx"


def test_a_created_dataset_records_axistags_and_sizes_on_its_spatial_axes(tmp_path):
    """A 'zcyx' hyperstack's sizes in nm: z, y and x are converted to micrometres, the
    channel axis keeps 1.0, and ilastik reads the axis names from axistags."""
    import json

    out = run(
        ba.create_source(
            tmp_path / "o.h5",
            shape=(4, 2, 6, 8),
            dtype="uint8",
            chunks=(4, 1, 6, 8),
            dimension_names=("z", "c", "y", "x"),
            voxel_size=(400, 40, 40),
            unit="nm",
        )
    )
    assert out.axes == "zcyx" and out.voxel_size == pytest.approx((0.4, 1.0, 0.04, 0.04))
    out.close()
    with h5py.File(tmp_path / "o.h5", "r") as f:
        attrs = f["data"].attrs
        assert list(attrs["element_size_um"]) == pytest.approx([0.4, 1.0, 0.04, 0.04])
        keys = [axis["key"] for axis in json.loads(attrs["axistags"])["axes"]]
        flags = [axis["typeFlags"] for axis in json.loads(attrs["axistags"])["axes"]]
    assert keys == ["z", "c", "y", "x"] and flags == [2, 1, 2, 2]


def test_a_key_through_an_existing_dataset_is_refused_and_the_file_kept(tmp_path: Path) -> None:
    """h5py itself fails with a bare TypeError deep in require_group."""
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f["keep"] = np.arange(6)
    with pytest.raises(ba.SourceExistsError, match="'keep' is a dataset"):
        asyncio.run(
            ba.create_source(path, internal_path="keep/x", shape=(4, 4), dtype="u1", chunks=(2, 2))
        )
    with h5py.File(path, "r") as f:
        assert list(f) == ["keep"] and list(f["keep"][...]) == list(range(6))


async def test_three_element_sizes_on_a_4d_dataset_go_on_its_spatial_axes(tmp_path, caplog):
    """element_size_um (z, y, x) on a czyx dataset was dropped without a word."""
    path = tmp_path / "e.h5"
    tags = [{"key": k, "typeFlags": 1 if k == "c" else 2, "resolution": 0} for k in "czyx"]
    with h5py.File(path, "w") as f:
        spatial = f.create_dataset("spatial", data=np.zeros((2, 5, 6, 7), np.uint8))
        spatial.attrs["element_size_um"] = (0.5, 0.2, 0.1)
        spatial.attrs["axistags"] = json.dumps({"axes": tags})
        short = f.create_dataset("short", data=np.zeros((2, 5, 6, 7), np.uint8))
        short.attrs["element_size_um"] = (0.5, 0.2)
    src = await ba.open_source(path, "spatial")
    assert src.axes == "czyx" and src.voxel_size == (1.0, 0.5, 0.2, 0.1)
    with caplog.at_level("WARNING", logger="bioimage_async"):
        assert (await ba.open_source(path, "short")).voxel_size is None
    assert "has 2 sizes for 4 axes" in caplog.text
