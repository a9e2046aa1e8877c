"""The format registry: format from prefix/extension/content, create follows the extension."""

import json

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.sources.formats import unregister_format

from .toy_format import NpyFormat


async def test_create_source_takes_the_format_from_the_extension(tmp_path):
    h5py = pytest.importorskip("h5py")
    data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    h5 = await ba.create_source(
        tmp_path / "out.h5",
        shape=data.shape,
        dtype=data.dtype,
        chunks=(1, 3, 4),
        internal_path="data",
    )
    await h5.write(..., data)
    h5.close()
    with h5py.File(tmp_path / "out.h5", "r") as f:
        np.testing.assert_array_equal(f["data"][:], data)
    n5 = await ba.create_source(
        tmp_path / "plain.n5", shape=data.shape, dtype=data.dtype, chunks=(1, 3, 4)
    )
    await n5.write(..., data)
    assert "dimensions" in json.loads((tmp_path / "plain.n5" / "attributes.json").read_text())
    for path in ("out.h5", "plain.n5"):
        np.testing.assert_array_equal(
            await (
                await ba.open_source(tmp_path / path, "data" if path.endswith("h5") else None)
            ).read(),
            data,
        )


async def test_an_unknown_extension_without_format_is_refused_listing_the_formats(tmp_path):
    with pytest.raises(ba.FormatNotSupportedError, match="zarr.*n5.*hdf5"):
        await ba.create_source(tmp_path / "out.xyz", shape=(4, 4), dtype="uint8", chunks=(2, 2))
    assert not (tmp_path / "out.xyz").exists()
    out = await ba.create_source(
        tmp_path / "out.xyz", shape=(4, 4), dtype="uint8", chunks=(2, 2), format="zarr"
    )
    assert (tmp_path / "out.xyz" / ".zarray").exists() and out.shape == (4, 4)


@pytest.mark.parametrize(
    "path,fmt", [("out.h5", "zarr"), ("plain.n5", "zarr3"), ("a.zarr", "hdf5"), ("b.zarr", "n5")]
)
async def test_a_format_that_contradicts_the_extension_is_refused(tmp_path, path, fmt):
    with pytest.raises(ba.FormatNotSupportedError, match="contradicts"):
        await ba.create_source(
            tmp_path / path, shape=(4, 4), dtype="uint8", chunks=(2, 2), format=fmt
        )
    assert not (tmp_path / path).exists()


async def test_zarr3_is_compatible_with_the_zarr_extension(tmp_path):
    out = await ba.create_source(
        tmp_path / "a.zarr", shape=(4, 4), dtype="uint8", chunks=(2, 2), format="zarr3"
    )
    assert (tmp_path / "a.zarr" / "zarr.json").exists() and out.shape == (4, 4)


async def test_prefixed_urls_name_the_format(tmp_path):
    await ba.create_source(f"zarr3://{tmp_path / 'v3'}", shape=(4, 4), dtype="uint8", chunks=(2, 2))
    assert json.loads((tmp_path / "v3" / "zarr.json").read_text())["zarr_format"] == 3
    src = await ba.open_source(f"zarr://{tmp_path / 'v3'}")
    assert src.shape == (4, 4)
    await ba.create_source(
        f"n5://file://{tmp_path / 'n'}", shape=(4, 6), dtype="uint8", chunks=(2, 2)
    )
    assert json.loads((tmp_path / "n" / "attributes.json").read_text())["dimensions"] == [6, 4]


async def test_a_new_format_is_one_module_plus_one_registration_line(tmp_path):
    ba.register_format(NpyFormat())
    try:
        assert "toy_npy" in [f.name for f in ba.formats()]
        out = await ba.create_source(tmp_path / "a.npy", shape=(6, 8), dtype="int16", chunks=(3, 4))
        data = np.arange(48, dtype=np.int16).reshape(6, 8)
        await ba.copy(data, out, num_workers=2)
        src = await ba.open_source(tmp_path / "a.npy")
        np.testing.assert_array_equal(await src.read(), data)
        again = await ba.from_spec(src.to_spec().to_json())
        np.testing.assert_array_equal(await again.read(np.s_[2]), data[2])
    finally:
        unregister_format("toy_npy")


# ---- fill values: what every unwritten voxel reads as ----------------------------------------
@pytest.mark.parametrize("fmt, name", [("zarr", "a.zarr"), ("zarr3", "a.zarr"), ("hdf5", "a.h5")])
@pytest.mark.parametrize(
    "dtype, fill, stored_as",
    [("uint8", 300, "44"), ("uint8", -1, "255"), ("uint8", float("nan"), "0"), ("int16", 1.5, "1")],
)
async def test_a_fill_value_the_dtype_cannot_hold_is_refused(
    tmp_path, fmt, name, dtype, fill, stored_as
):
    if fmt == "hdf5":
        pytest.importorskip("h5py")
    with pytest.raises(ba.InvalidArgumentError, match=f"fill_value .*stored as {stored_as}"):
        await ba.create_source(
            tmp_path / name, shape=(4, 4), dtype=dtype, chunks=(2, 2), format=fmt, fill_value=fill
        )
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("fmt, name", [("n5", "a.n5"), ("precomputed", "pre")])
async def test_formats_without_a_fill_value_refuse_a_non_zero_one(tmp_path, fmt, name):
    shape = (4, 4, 4)
    with pytest.raises(ba.FormatNotSupportedError, match="no fill value.*fill_value=0"):
        await ba.create_source(
            tmp_path / name, shape=shape, dtype="uint8", chunks=(2, 2, 2), format=fmt, fill_value=7
        )
    created = await ba.create_source(
        tmp_path / name, shape=shape, dtype="uint8", chunks=(2, 2, 2), format=fmt, fill_value=0
    )
    np.testing.assert_array_equal(await created.read(), np.zeros(shape, np.uint8))


@pytest.mark.parametrize("fmt", ["zarr", "zarr3"])
async def test_a_kept_fill_value_reads_back_here_and_in_zarr_python(tmp_path, fmt):
    zarr = pytest.importorskip("zarr")
    created = await ba.create_source(
        tmp_path / "f.zarr",
        shape=(4, 4),
        dtype="float32",
        chunks=(2, 2),
        format=fmt,
        fill_value=float("nan"),
    )
    await created.write(np.s_[:2, :2], np.ones((2, 2), np.float32))
    expected = np.full((4, 4), np.nan, np.float32)
    expected[:2, :2] = 1
    np.testing.assert_array_equal(await created.read(), expected)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "f.zarr", mode="r")[:], expected)
