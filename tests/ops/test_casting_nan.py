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


@pytest.mark.parametrize(
    ("source", "target", "big"), [("float64", "float32", 1e39), ("float32", "float16", 1e6)]
)
def test_a_nan_beside_a_value_too_big_for_the_float_output_does_not_hide_it(source, target, big):
    """A NaN made the check pass the block: [nan, 1e39] was written into float32 as [nan, inf]."""
    with pytest.raises(ba.CastingError, match="and NaN"):
        cast_checked(np.array([np.nan, big, 1.0], source), np.dtype(target))
    kept = cast_checked(np.array([np.nan, 1.0, -np.inf], source), np.dtype(target))
    np.testing.assert_array_equal(kept, np.array([np.nan, 1.0, -np.inf], target))
    assert np.isnan(cast_checked(np.full(3, np.nan, source), np.dtype(target))).all()


async def test_downsample_max_with_a_nan_into_a_narrower_float_output_is_refused(tmp_path):
    data = np.full((4, 4, 4), 1e39)
    data[0, 0, 0] = np.nan
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=(2, 2, 2), dtype="float32", chunks=(2,) * 3
    )
    with pytest.raises(ba.RunnerError) as failed:
        await ba.downsample(data, 2, out, method="max")
    assert "CastingError" in str(failed.value) or "do not fit" in str(failed.value)


def test_clip_into_a_narrower_float_keeps_inf_and_nan_and_clips_finite_values():
    values = np.array([np.inf, -np.inf, np.nan, 1e39, -1e39, 2.0])
    clipped = cast_checked(values, np.dtype("float32"), "clip")
    top = np.finfo(np.float32).max
    np.testing.assert_array_equal(
        clipped, np.array([np.inf, -np.inf, np.nan, top, -top, 2.0], "f4")
    )
