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


async def test_a_precomputed_translation_is_its_voxel_offset_as_cloudvolume_reads_it(tmp_path):
    cloudvolume = pytest.importorskip("cloudvolume")
    data = np.random.default_rng(7).integers(0, 255, (12, 20, 28), dtype=np.uint8)
    layer = await ba.create_source(
        f"precomputed://{tmp_path / 'layer'}", shape=data.shape, dtype="uint8",
        chunks=(8, 8, 8), voxel_size=(40, 4, 4), unit="nm", translation=(400, -40, 8),
    )  # fmt: skip
    await ba.copy(data, layer)
    assert layer.translation == (400.0, -40.0, 8.0)
    assert (await ba.open_source(f"precomputed://{tmp_path / 'layer'}")).translation == (
        400.0, -40.0, 8.0,
    )  # fmt: skip
    volume = cloudvolume.CloudVolume(f"file://{tmp_path / 'layer'}", progress=False)
    assert list(volume.voxel_offset) == [2, -10, 10]  # x, y, z
    cutout = np.asarray(volume[2:30, -10:10, 10:22])[..., 0].transpose(2, 1, 0)
    np.testing.assert_array_equal(cutout, data)
    # exist_ok opens it where it sits, and refuses a call that places it elsewhere
    again = await ba.create_source(
        f"precomputed://{tmp_path / 'layer'}", shape=data.shape, dtype="uint8",
        chunks=(8, 8, 8), exist_ok=True,
    )  # fmt: skip
    assert again.translation == (400.0, -40.0, 8.0)
    with pytest.raises(ba.SourceExistsError, match="voxel_offset"):
        await ba.create_source(
            f"precomputed://{tmp_path / 'layer'}", shape=data.shape, dtype="uint8",
            chunks=(8, 8, 8), voxel_size=(40, 4, 4), translation=(0, 0, 0), exist_ok=True,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("where", "kwargs", "message"),
    [
        ("precomputed://p1", {"voxel_size": (40, 4, 4), "translation": (1, 2, 3)}, "whole number"),
        ("precomputed://p2", {"translation": (40, 4, 4)}, "needs voxel_size"),
        ("a.zarr", {"translation": (1, 2, 3)}, "no place for a translation"),
        ("b.n5", {"translation": (0, 0, 1)}, "no place for a translation"),
        ("c.zarr", {"translation": (1, 2)}, "one finite number per axis"),
    ],
)
async def test_a_translation_that_cannot_be_recorded_is_refused(tmp_path, where, kwargs, message):
    scheme, _, name = where.rpartition("://")
    path = f"{scheme}://{tmp_path / name}" if scheme else str(tmp_path / name)
    with pytest.raises(ba.BioimageAsyncError, match=message):
        await ba.create_source(path, shape=(8, 8, 8), dtype="uint8", chunks=(8, 8, 8), **kwargs)
    assert not os.path.exists(tmp_path / name)


async def test_a_translation_of_zero_is_accepted_by_every_format(tmp_path):
    made = await ba.create_source(
        tmp_path / "z.zarr", shape=(8, 8, 8), dtype="uint8", chunks=(8, 8, 8),
        translation=(0, 0, 0),
    )  # fmt: skip
    assert made.translation is None


@pytest.mark.parametrize(
    ("name", "format"), [("a.zarr", "zarr"), ("b.zarr", "zarr3"), ("c.h5", "hdf5")]
)
async def test_exist_ok_refuses_another_fill_value_and_keeps_its_own(
    tmp_path, caplog, name, format
):
    path = str(tmp_path / name)
    await ba.create_source(path, format=format, shape=(8, 8), dtype="uint8", chunks=(4, 4),
                           fill_value=7)  # fmt: skip
    with pytest.raises(ba.SourceExistsError, match="fill value 7, not the requested 9"):
        await ba.create_source(path, format=format, shape=(8, 8), dtype="uint8", chunks=(4, 4),
                               fill_value=9, exist_ok=True)  # fmt: skip
    same = await ba.create_source(path, format=format, shape=(8, 8), dtype="uint8",
                                  chunks=(4, 4), fill_value=7, exist_ok=True)  # fmt: skip
    assert (await same.read(np.s_[0, 0])) == 7
    with caplog.at_level("WARNING", logger="bioimage_async"):
        default = await ba.create_source(path, format=format, shape=(8, 8), dtype="uint8",
                                         chunks=(4, 4), exist_ok=True)  # fmt: skip
    assert (await default.read(np.s_[0, 0])) == 7
    assert "keeps its fill value 7" in caplog.text


async def test_exist_ok_on_a_layer_refuses_another_voxel_size_and_reports_its_own(tmp_path):
    where = f"precomputed://{tmp_path / 'layer'}"
    await ba.create_source(where, shape=(8, 8, 8), dtype="uint8", chunks=(4, 4, 4),
                           voxel_size=(40, 4, 4), unit="nm")  # fmt: skip
    with pytest.raises(ba.SourceExistsError, match="voxel size"):
        await ba.create_source(where, shape=(8, 8, 8), dtype="uint8", chunks=(4, 4, 4),
                               voxel_size=(1, 1, 1), unit="um", exist_ok=True)  # fmt: skip
    same = await ba.create_source(where, shape=(8, 8, 8), dtype="uint8", chunks=(4, 4, 4),
                                  voxel_size=(0.04, 0.004, 0.004), unit="um", exist_ok=True)  # fmt: skip
    assert same.voxel_size == (0.04, 0.004, 0.004) and same.unit == "micrometer"
    unsaid = await ba.create_source(where, shape=(8, 8, 8), dtype="uint8", chunks=(4, 4, 4),
                                    exist_ok=True)  # fmt: skip
    assert unsaid.voxel_size == (40.0, 4.0, 4.0) and unsaid.unit == "nanometer"


async def test_a_layer_without_voxel_size_says_it_records_1_nm_and_a_new_scale_needs_one(
    tmp_path, caplog
):
    where = f"precomputed://{tmp_path / 'layer'}"
    with caplog.at_level("WARNING", logger="bioimage_async"):
        await ba.create_source(where, shape=(8, 16, 16), dtype="uint8", chunks=(8, 8, 8))
    assert "resolution of 1 nm" in caplog.text
    with pytest.raises(ba.InvalidArgumentError, match="needs voxel_size"):
        await ba.create_source(where, shape=(4, 8, 8), dtype="uint8", chunks=(4, 8, 8),
                               internal_path="2_2_2")  # fmt: skip
    added = await ba.create_source(where, shape=(4, 8, 8), dtype="uint8", chunks=(4, 8, 8),
                                   internal_path="2_2_2", voxel_size=(2, 2, 2), unit="nm")  # fmt: skip
    assert added.voxel_size == (2.0, 2.0, 2.0)


async def test_a_scale_added_with_a_translation_reads_back_there(tmp_path):
    """A coarser scale's translation is where its voxel centres sit (half a first-scale voxel
    further on per doubling): written as offset * size, it read back 20 nm elsewhere, and
    exist_ok then refused the translation it had read."""
    where = f"precomputed://{tmp_path / 'layer'}"
    await ba.create_source(where, shape=(8, 32, 32), dtype="uint8", chunks=(8, 16, 16),
                           voxel_size=(40, 4, 4), unit="nm", translation=(400, 40, 40))  # fmt: skip
    coarse = await ba.create_source(
        where, shape=(4, 16, 16), dtype="uint8", chunks=(4, 16, 16), internal_path="80_8_8",
        voxel_size=(80, 8, 8), unit="nm", translation=(420, 42, 42),
    )  # fmt: skip
    reopened = await ba.open_source(where, level=1)
    assert coarse.translation == reopened.translation == (420.0, 42.0, 42.0)
    again = await ba.create_source(
        where,
        shape=(4, 16, 16),
        dtype="uint8",
        chunks=(4, 16, 16),
        internal_path="80_8_8",
        translation=reopened.translation,
        unit="nm",
        exist_ok=True,
    )  # fmt: skip  (no voxel_size: the scale's own resolution places it)
    assert again.translation == (420.0, 42.0, 42.0)
    with pytest.raises(ba.InvalidArgumentError, match="whole number of voxels"):
        await ba.create_source(
            where, shape=(4, 16, 16), dtype="uint8", chunks=(4, 16, 16), internal_path="x",
            voxel_size=(80, 8, 8), unit="nm", translation=(400, 40, 40),
        )  # fmt: skip


@pytest.mark.parametrize(
    "format, shards, other, kept",
    [
        ("zarr", None, "gzip", "blosc-lz4"),
        ("zarr3", (8, 8, 8), "zstd", "blosc-lz4"),
        ("n5", None, "gzip", "blosc-lz4"),
        ("precomputed", None, "jpeg", "raw"),
    ],
)
async def test_exist_ok_says_when_it_keeps_another_compression(
    tmp_path, caplog, format, shards, other, kept
):
    """create_source(compression=..., exist_ok=True) on an array of another codec kept it
    without a word (the voxels are right; the codec is not the one asked for)."""
    path = tmp_path / ("layer" if format == "precomputed" else f"a.{format}")
    kwargs = dict(shape=(8, 8, 8), dtype="uint8", chunks=(8, 8, 8), format=format)
    kwargs.update(voxel_size=(1, 1, 1), unit="nm")
    if shards is not None:
        kwargs["shards"] = shards
    await ba.create_source(path, **kwargs)
    with caplog.at_level("WARNING", logger="bioimage_async"):
        await ba.create_source(path, exist_ok=True, **kwargs)  # the default: nothing to say
        assert "keeps its compression" not in caplog.text
        await ba.create_source(path, exist_ok=True, compression=other, **kwargs)
    assert f"keeps its compression {kept}, not the requested" in caplog.text


@pytest.mark.parametrize("format", ["zarr", "zarr3", "n5"])
async def test_a_big_endian_dtype_reopens_with_exist_ok(tmp_path, format):
    """tensorstore presents '>u2' as uint16: the same call with exist_ok=True was refused
    ('dtype uint16, not the requested >u2')."""
    path = tmp_path / f"a.{format}"
    values = np.arange(8 * 8 * 8, dtype=">u2").reshape(8, 8, 8) * 100
    kwargs = dict(shape=values.shape, dtype=values.dtype, chunks=(8, 8, 8), format=format)
    await ba.create_source(path, **kwargs)
    again = await ba.create_source(path, exist_ok=True, **kwargs)
    await again.write(..., values)
    np.testing.assert_array_equal(await (await ba.open_source(path)).read(), values)
    with pytest.raises(ba.SourceExistsError, match="dtype"):
        await ba.create_source(path, exist_ok=True, **{**kwargs, "dtype": ">i2"})


async def test_exist_ok_says_when_it_keeps_other_shards(tmp_path, caplog):
    """Other chunks or codecs were said; other shards were kept without a word."""
    path = tmp_path / "a.zarr"
    kwargs = dict(shape=(32, 32, 32), dtype="uint8", chunks=(8, 8, 8), format="zarr3")
    await ba.create_source(path, shards=(32, 32, 32), **kwargs)
    with caplog.at_level("WARNING", logger="bioimage_async"):
        await ba.create_source(path, exist_ok=True, **kwargs)  # shards not named: nothing
        assert "shards" not in caplog.text
        kept = await ba.create_source(path, shards=(16, 16, 16), exist_ok=True, **kwargs)
    assert "keeps its shards (32, 32, 32), not the requested shards (16, 16, 16)" in caplog.text
    assert kept.shards == (32, 32, 32)


@pytest.mark.parametrize("format", ["zarr", "zarr3", "n5"])
async def test_exist_ok_refuses_other_axis_names_or_voxel_size_and_keeps_its_own(tmp_path, format):
    """The request's axis names and voxel size were written over the array's own."""
    path = tmp_path / f"a.{format}"
    kwargs = dict(shape=(4, 8, 8), dtype="uint8", chunks=(4, 8, 8), format=format)
    named = dict(dimension_names=("z", "y", "x"), voxel_size=(40, 4, 4), unit="nm")
    await ba.create_source(path, **kwargs, **named)
    with pytest.raises(ba.SourceExistsError, match="names its axes 'zyx', not the requested"):
        await ba.create_source(path, exist_ok=True, **kwargs, dimension_names=("c", "y", "x"))
    with pytest.raises(ba.SourceExistsError, match=r"voxel size of \(40, 4, 4\) nanometer"):
        await ba.create_source(path, exist_ok=True, **kwargs, voxel_size=(8, 8, 8), unit="nm")
    # the same ones, in another unit, and none at all are accepted
    await ba.create_source(
        path, exist_ok=True, **kwargs, voxel_size=(0.04, 0.004, 0.004), unit="um"
    )
    await ba.create_source(path, exist_ok=True, **kwargs)
    kept = await ba.open_source(path)
    assert kept.axes == "zyx" and kept.voxel_size == pytest.approx((40, 4, 4))
    assert kept.unit == "nanometer"
