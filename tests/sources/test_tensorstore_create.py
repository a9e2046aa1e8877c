"""create_source never puts an array where a group (or another array) is: the new array would
hide the group's arrays from every reader. Groups are written by zarr-python, ome-zarr-py and
z5py, and read back by them afterwards."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import zarr

import bioimage_async as ba


def zarr_python_group(path, zarr_format):
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.create_array("raw", shape=(4, 6), chunks=(4, 6), dtype="uint8")[:] = 7
    return path


def listing(path):
    return sorted(
        os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs
    )


@pytest.mark.parametrize("exist_ok", [False, True])
@pytest.mark.parametrize(
    ("zarr_format", "format"), [(2, "zarr"), (3, "zarr3"), (3, "zarr"), (2, "zarr3")]
)
async def test_an_array_is_not_created_over_a_zarr_group(tmp_path, zarr_format, format, exist_ok):
    path = zarr_python_group(tmp_path / "g.zarr", zarr_format)
    before = listing(path)
    with pytest.raises(ba.SourceExistsError) as refused:
        await ba.create_source(
            path, format=format, shape=(4, 6), dtype="uint8", chunks=(4, 6), exist_ok=exist_ok
        )
    message = str(refused.value)
    assert str(path) in message and "group" in message and "internal_path" in message
    assert "exist_ok" in message
    assert listing(path) == before
    assert zarr.open_group(str(path), mode="r")["raw"][:].tolist() == [[7] * 6] * 4


async def test_an_array_inside_the_group_is_still_created(tmp_path):
    path = zarr_python_group(tmp_path / "g.zarr", 3)
    out = await ba.create_source(
        path, format="zarr3", internal_path="new", shape=(4, 6), dtype="uint8", chunks=(4, 6)
    )
    await out.write(..., np.ones((4, 6), np.uint8))
    group = zarr.open_group(str(path), mode="r")
    assert sorted(group.array_keys()) == ["new", "raw"]


async def test_an_array_is_not_created_inside_an_array(tmp_path):
    zarr.create_array(str(tmp_path / "a.zarr"), shape=(4, 6), chunks=(4, 6), dtype="uint8")
    with pytest.raises(
        ba.SourceExistsError, match=r"is a zarr v3 array, which cannot hold 'inner/raw'"
    ):
        await ba.create_source(
            tmp_path / "a.zarr",
            format="zarr3",
            internal_path="inner/raw",
            shape=(4, 6),
            dtype="uint8",
            chunks=(4, 6),
        )
    assert sorted(os.listdir(tmp_path / "a.zarr")) == ["zarr.json"]


async def test_an_n5_container_root_is_not_turned_into_an_array(tmp_path):
    z5py = pytest.importorskip("z5py")
    f = z5py.File(str(tmp_path / "c.n5"), "w")
    f.create_dataset("raw", data=np.ones((4, 6), np.uint8), chunks=(4, 6))
    with pytest.raises(ba.SourceExistsError, match="group"):
        await ba.create_source(
            tmp_path / "c.n5", shape=(4, 6), dtype="uint8", chunks=(4, 6), exist_ok=True
        )
    assert z5py.File(str(tmp_path / "c.n5"), "r")["raw"][:].sum() == 24


@pytest.mark.parametrize("overwrite", [False, True])
def test_convert_refuses_to_write_over_an_ome_zarr_image(tmp_path, overwrite):
    pytest.importorskip("ome_zarr")
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    image = tmp_path / "img.ome.zarr"
    group = zarr.open_group(str(image), mode="w", zarr_format=2)
    write_image(
        np.full((8, 16, 16), 3, np.uint8), group, axes="zyx", scale_factors=(2,), fmt=FormatV04()
    )
    before = listing(image)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=(8, 16, 16), dtype="uint8")
    args = [sys.executable, "-m", "bioimage_async.cli.main", "convert"]
    args += [str(tmp_path / "in.zarr"), str(image), "--no-progress"]
    result = subprocess.run(
        args + (["--overwrite"] if overwrite else []), capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    assert "group" in result.stderr and "--out-key" in result.stderr, result.stderr
    assert listing(image) == before
    inside = subprocess.run(
        args + ["--out-key", "raw"], capture_output=True, text=True, timeout=300
    )
    assert inside.returncode == 0, inside.stderr
    assert zarr.open_group(str(image), mode="r")["s0"][:].max() == 3
