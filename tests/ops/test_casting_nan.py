"""NaN meets bool and integer outputs: never a True or a wrapped integer that nothing chose."""

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.kernels.casting import cast_checked


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "complex64"])
def test_clip_into_bool_maps_nan_to_false_like_zero(dtype):
    values = np.array([np.nan, 0.0, -0.0, 2.5, -1.0, np.inf], dtype)
    clipped = cast_checked(values, np.dtype(bool), "clip")
    np.testing.assert_array_equal(clipped, [False, False, False, True, True, True])


def test_clip_into_bool_maps_complex_with_a_nan_part_to_false():
    values = np.array([complex(0, np.nan), complex(np.nan, 1), 1j, 0j])
    np.testing.assert_array_equal(cast_checked(values, np.dtype(bool), "clip"), [0, 0, 1, 0])


async def test_copy_of_floats_with_nan_into_a_bool_zarr_with_clip_writes_false(tmp_path):
    data = np.array([[np.nan, 1.0], [0.0, np.nan]], np.float32)
    src = await ba.create_source(tmp_path / "in.zarr", shape=(2, 2), dtype="float32", chunks=(2, 2))
    await src.write(..., data)
    out = await ba.create_source(tmp_path / "o.zarr", shape=(2, 2), dtype=bool, chunks=(2, 2))
    await ba.copy(src, out, casting="clip")
    np.testing.assert_array_equal(await out.read(), [[False, True], [False, False]])


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int32", "int64", "uint64"])
def test_a_checked_cast_of_nan_into_bool_or_integers_is_refused(dtype):
    with pytest.raises(ba.CastingError, match="NaN values"):
        cast_checked(np.array([1.0, np.nan], np.float32), np.dtype(dtype))


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int64"])
async def test_writing_nan_into_a_bool_or_integer_zarr_is_refused_and_writes_nothing(
    tmp_path, dtype
):
    out = await ba.create_source(tmp_path / "o.zarr", shape=(3,), dtype=dtype, chunks=(3,))
    with pytest.raises(ba.CastingError, match="NaN values"):
        await out.write(..., np.array([0.0, np.nan, 1.0]))
    assert not (await out.read()).any()
