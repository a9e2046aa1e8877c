"""HDF5 data kept outside the file: virtual datasets, external links and external raw files.

HDF5 reads the part of a virtual dataset whose source is missing as the fill value, and a short
external raw file as zeros, without an error. Each test writes real files with h5py, checks that
the complete data reads and copies exactly as h5py reads it, then removes a piece and checks that
opening refuses, naming the missing file or dataset, before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import bioimage_async as ba

PART = (2, 10, 12)
VDS_SHAPE = (4, *PART[1:])
CHUNKS = (2, 5, 6)


def part(seed: int) -> np.ndarray:
    """Values that are never 0 (the fill value), so a filled part cannot pass for data."""
    return np.random.default_rng(seed).integers(1, 60000, size=PART, dtype=np.uint16)


def write_source(path: Path, data: np.ndarray, key: str = "d") -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=data, chunks=(1, 5, 6), compression="gzip")


def h5py_read(path: Path, key: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[key][...]


def copy_to_zarr(path: Path, key: str, out_path: Path, expected: np.ndarray) -> None:
    """Open ``path`` as a user would, check it reads as h5py does, and copy it to a zarr."""
    src = ba.sync.open_source(path, key)
    np.testing.assert_array_equal(src[...], expected)
    out = ba.sync.create_source(out_path, shape=src.shape, dtype=src.dtype, chunks=CHUNKS)
    ba.sync.copy(src, out, block_shape=CHUNKS, progress=False)
    np.testing.assert_array_equal(ba.sync.open_source(out_path)[...], expected)
    src.close()


def chunk_files(out_path: Path) -> list[str]:
    """Files in a zarr output other than its metadata."""
    metadata = {".zarray", ".zattrs", ".zgroup", "zarr.json"}
    return [p.name for p in out_path.rglob("*") if p.is_file() and p.name not in metadata]


def refused(path: Path, key: str, out_path: Path, error: type[Exception]) -> str:
    """The message of the error that opening ``path`` raises; the output, created first,
    receives no chunk."""
    shape = h5py_read(path, key).shape
    out = ba.sync.create_source(out_path, shape=shape, dtype=np.uint16, chunks=CHUNKS)
    with pytest.raises(error) as info:
        ba.sync.copy(ba.sync.open_source(path, key), out, block_shape=CHUNKS, progress=False)
    assert chunk_files(out_path) == []
    return str(info.value)


@pytest.fixture
def vds_path(tmp_path: Path) -> Path:
    """vds.h5: 'vds' over a.h5 (relative name) and b.h5 (absolute name); 'self' over the
    dataset 'plain' of its own file ('.')."""
    folder = tmp_path / "data"
    folder.mkdir()
    write_source(folder / "a.h5", part(1))
    write_source(folder / "b.h5", part(2))
    layout = h5py.VirtualLayout(shape=VDS_SHAPE, dtype=np.uint16)
    layout[:2] = h5py.VirtualSource("a.h5", "d", shape=PART)
    layout[2:] = h5py.VirtualSource(str(folder / "b.h5"), "/d", shape=PART)
    own = h5py.VirtualLayout(shape=PART, dtype=np.uint16)
    own[...] = h5py.VirtualSource(".", "plain", shape=PART)
    with h5py.File(folder / "vds.h5", "w") as f:
        f.create_virtual_dataset("vds", layout, fillvalue=0)
        f.create_dataset("plain", data=part(3))
        f.create_virtual_dataset("self", own, fillvalue=0)
    return folder / "vds.h5"


@pytest.mark.parametrize("missing", ["a.h5", "b.h5"], ids=["relative", "absolute"])
def test_virtual_dataset_with_a_missing_source_file_is_refused_at_open(
    vds_path: Path, tmp_path: Path, missing: str
) -> None:
    expected = np.concatenate([part(1), part(2)])
    np.testing.assert_array_equal(h5py_read(vds_path, "vds"), expected)
    copy_to_zarr(vds_path, "vds", tmp_path / "complete.zarr", expected)

    (vds_path.parent / missing).unlink()
    assert not h5py_read(vds_path, "vds").all()  # what HDF5 alone does: fill, no error
    message = refused(vds_path, "vds", tmp_path / "partial.zarr", ba.SourceNotFoundError)
    assert missing in message and "vds.h5" in message and "Restore the file" in message


def test_virtual_dataset_over_its_own_file_refuses_a_missing_dataset(
    vds_path: Path, tmp_path: Path
) -> None:
    np.testing.assert_array_equal(h5py_read(vds_path, "self"), part(3))
    copy_to_zarr(vds_path, "self", tmp_path / "complete.zarr", part(3))

    with h5py.File(vds_path, "a") as f:
        del f["plain"]
    message = refused(vds_path, "self", tmp_path / "partial.zarr", ba.SourceNotFoundError)
    assert "'plain'" in message and "its own file" in message


def test_virtual_dataset_refuses_a_source_file_without_its_dataset(
    vds_path: Path, tmp_path: Path
) -> None:
    write_source(vds_path.parent / "a.h5", part(1), key="other")
    message = refused(vds_path, "vds", tmp_path / "out.zarr", ba.SourceNotFoundError)
    assert "a.h5" in message and "no such dataset" in message


def test_virtual_dataset_over_a_virtual_dataset_checks_the_inner_sources(
    vds_path: Path, tmp_path: Path
) -> None:
    outer = vds_path.parent / "outer.h5"
    layout = h5py.VirtualLayout(shape=VDS_SHAPE, dtype=np.uint16)
    layout[...] = h5py.VirtualSource("vds.h5", "vds", shape=VDS_SHAPE)
    with h5py.File(outer, "w") as f:
        f.create_virtual_dataset("outer", layout, fillvalue=0)
    copy_to_zarr(outer, "outer", tmp_path / "complete.zarr", np.concatenate([part(1), part(2)]))

    (vds_path.parent / "b.h5").unlink()
    message = refused(outer, "outer", tmp_path / "partial.zarr", ba.SourceNotFoundError)
    assert "b.h5" in message


def test_virtual_dataset_source_found_through_hdf5_vds_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative source name resolves under HDF5_VDS_PREFIX's folders, as HDF5 does."""
    (tmp_path / "sources").mkdir()
    write_source(tmp_path / "sources" / "a.h5", part(1))
    layout = h5py.VirtualLayout(shape=PART, dtype=np.uint16)
    layout[...] = h5py.VirtualSource("a.h5", "d", shape=PART)
    with h5py.File(tmp_path / "vds.h5", "w") as f:
        f.create_virtual_dataset("vds", layout, fillvalue=0)

    monkeypatch.setenv("HDF5_VDS_PREFIX", f"{tmp_path / 'elsewhere'}:{tmp_path / 'sources'}")
    np.testing.assert_array_equal(h5py_read(tmp_path / "vds.h5", "vds"), part(1))
    copy_to_zarr(tmp_path / "vds.h5", "vds", tmp_path / "complete.zarr", part(1))

    monkeypatch.delenv("HDF5_VDS_PREFIX")
    with pytest.raises(ba.SourceNotFoundError, match="a.h5"):
        ba.sync.open_source(tmp_path / "vds.h5", "vds")


def test_external_link_to_a_missing_file_says_so(tmp_path: Path) -> None:
    write_source(tmp_path / "target.h5", part(1))
    with h5py.File(tmp_path / "links.h5", "w") as f:
        f["ext"] = h5py.ExternalLink("target.h5", "/d")
        f["ext_missing"] = h5py.ExternalLink("missing.h5", "/d")
    copy_to_zarr(tmp_path / "links.h5", "ext", tmp_path / "complete.zarr", part(1))

    with pytest.raises(ba.SourceNotFoundError) as info:
        ba.sync.open_source(tmp_path / "links.h5", "ext_missing")
    message = str(info.value)
    assert "'ext_missing' is an external link" in message and "'missing.h5'" in message
    assert "does not exist" in message and "arrays found" not in message


def test_external_link_to_a_missing_object_names_the_target(tmp_path: Path) -> None:
    write_source(tmp_path / "target.h5", part(1))
    with h5py.File(tmp_path / "links.h5", "w") as f:
        f["group/ext"] = h5py.ExternalLink("target.h5", "/nothing")
    with pytest.raises(ba.SourceNotFoundError, match="holds nothing at '/nothing'"):
        ba.sync.open_source(tmp_path / "links.h5", "group/ext")


def write_external(path: Path, raw_name: str, data: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=data, external=[(raw_name, 0, data.nbytes)])


@pytest.mark.parametrize("absolute", [True, False], ids=["absolute", "relative"])
def test_external_raw_file_missing_is_refused_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, absolute: bool
) -> None:
    """A relative raw file name resolves against the working directory, as HDF5 does."""
    monkeypatch.chdir(tmp_path)
    name = str(tmp_path / "voxels.raw") if absolute else "voxels.raw"
    write_external(tmp_path / "ext.h5", name, part(1))
    copy_to_zarr(tmp_path / "ext.h5", "raw", tmp_path / "complete.zarr", part(1))

    os.remove(tmp_path / "voxels.raw")
    with pytest.raises(ba.SourceNotFoundError, match="voxels.raw.*does not exist"):
        ba.sync.open_source(tmp_path / "ext.h5", "raw")


def test_short_external_raw_file_is_refused_at_open(tmp_path: Path) -> None:
    raw = tmp_path / "voxels.raw"
    write_external(tmp_path / "ext.h5", str(raw), part(1))
    raw.write_bytes(raw.read_bytes()[:-10])
    assert h5py_read(tmp_path / "ext.h5", "raw").flat[-1] == 0  # HDF5 alone: zeros, no error
    with pytest.raises(ba.SourceError, match="voxels.raw.*holds 470 bytes"):
        ba.sync.open_source(tmp_path / "ext.h5", "raw")
