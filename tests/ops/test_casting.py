"""Checked casting: a value the output dtype cannot hold is an error, never a wrapped voxel."""

import numpy as np
import pytest

import bioimage_async as ba

from ..runners.blockfns import times_hundred_int64


@pytest.mark.parametrize("value", [300.0, -5, np.nan, np.inf, 256])
async def test_writing_a_value_uint8_cannot_hold_is_refused_naming_the_range(tmp_path, value):
    out = await ba.create_source(tmp_path / "o.zarr", shape=(4, 4), dtype="uint8", chunks=(2, 2))
    with pytest.raises(
        ba.CastingError, match=r"region \[0:2, 0:2\].*uint8 \(0\.\.255\).*casting='clip'"
    ):
        await out.write(np.s_[0:2, 0:2], np.full((2, 2), value))
    assert not (await out.read()).any()  # nothing was written


async def test_clip_and_unsafe_are_explicit_opt_ins(tmp_path):
    out = await ba.create_source(tmp_path / "o.zarr", shape=(4,), dtype="uint8", chunks=(4,))
    values = np.array([300.0, -5.0, np.nan, 7.9])
    await out.write(..., values, casting="clip")
    np.testing.assert_array_equal(await out.read(), [255, 0, 0, 7])
    await out.write(..., np.array([300, -5, 7, 1]), casting="unsafe")
    np.testing.assert_array_equal(await out.read(), np.array([300, -5, 7, 1]).astype(np.uint8))
    with pytest.raises(ba.InvalidArgumentError, match="casting must be one of"):
        await out.write(..., values, casting="wrap")


def test_the_blocking_setter_is_checked_too(tmp_path):
    out = ba.sync.create_source(tmp_path / "o.zarr", shape=(4,), dtype="int8", chunks=(4,))
    with pytest.raises(ba.CastingError):
        out[...] = np.array([1, 2, 3, 200])
    out[...] = np.array([1, 2, 3, 100])  # fits: written
    np.testing.assert_array_equal(out[...], [1, 2, 3, 100])


async def test_safe_widening_and_in_range_narrowing_need_no_opt_in(tmp_path):
    out = await ba.create_source(tmp_path / "o.zarr", shape=(3,), dtype="uint16", chunks=(3,))
    await out.write(..., np.array([0, 255, 7], np.uint8))
    await out.write(..., np.array([0.0, 65535.0, 12.0]))
    np.testing.assert_array_equal(await out.read(), [0, 65535, 12])


@pytest.mark.parametrize("job_type", ["local", "subprocess"])
async def test_copy_float64_into_uint8_fails_exactly_the_blocks_out_of_range(tmp_path, job_type):
    data = np.full((32, 32), 10.0)
    data[20, 20] = 300.0  # only block 3 of the 16x16 grid holds a value uint8 cannot hold
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype="float64", chunks=(16, 16)
    )
    await src.write(..., data)
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=data.shape, dtype="uint8", chunks=(16, 16)
    )
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    with pytest.raises(
        ba.RunnerError, match=r"block 3 \(region \[16:32, 16:32\]\).*300\.0"
    ) as failed:
        await ba.copy(
            src, out, block_shape=(16, 16), job_type=job_type, job_config=config, num_workers=2
        )
    assert failed.value.failed_block_ids == [3]
    written = await out.read()
    assert (written[:16] == 10).all() and (written[16:, :16] == 10).all()  # the rest is kept
    assert not written[16:, 16:].any()
    await ba.copy(
        src,
        out,
        block_shape=(16, 16),
        job_type=job_type,
        job_config=config,
        casting="clip",
        block_ids=[3],
    )
    assert (await out.read(np.s_[20, 20])) == 255


@pytest.mark.parametrize("job_type", ["local", "subprocess"])
async def test_map_blocks_results_are_checked_against_the_output_dtype(tmp_path, job_type):
    data = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32) % 4
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype="uint8", chunks=(16, 16)
    )
    await src.write(..., data)
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=data.shape, dtype="uint8", chunks=(16, 16)
    )
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    with pytest.raises(ba.RunnerError, match="do not fit the output dtype uint8") as failed:
        await ba.map_blocks(
            times_hundred_int64,
            src,
            out,
            block_shape=(16, 16),
            job_type=job_type,
            job_config=config,
            num_workers=2,
        )
    assert failed.value.failed_block_ids == [0, 1, 2, 3]  # 3 * 100 = 300 in every block
    await ba.map_blocks(
        times_hundred_int64,
        src,
        out,
        block_shape=(16, 16),
        job_type=job_type,
        job_config=config,
        casting="unsafe",
    )
    np.testing.assert_array_equal(await out.read(), (data.astype(np.int64) * 100).astype(np.uint8))


async def test_tensorstore_to_tensorstore_copy_of_a_narrowing_dtype_is_checked(tmp_path):
    """The chunk-to-chunk fast path (tensorstore's own cast) is taken only for lossless casts."""
    src = await ba.create_source(tmp_path / "in.zarr", shape=(8,), dtype="int16", chunks=(8,))
    await src.write(..., np.array([0, 1, 2, 3, 4, 5, 6, -1]))
    out = await ba.create_source(tmp_path / "o.zarr", shape=(8,), dtype="uint8", chunks=(8,))
    with pytest.raises(ba.RunnerError, match="values from -1 to 6"):
        await ba.copy(src, out)
    wide = await ba.create_source(tmp_path / "w.zarr", shape=(8,), dtype="int32", chunks=(8,))
    await ba.copy(src, wide)
    np.testing.assert_array_equal(await wide.read(), [0, 1, 2, 3, 4, 5, 6, -1])


@pytest.mark.parametrize(
    ("float_dtype", "int_dtype"),
    [("float32", "int32"), ("float32", "uint32"), ("float32", "int64"), ("float64", "int64")],
)
async def test_a_float_that_rounds_onto_the_integer_maximum_is_refused(
    tmp_path, float_dtype, int_dtype
):
    # float32 2**31 compared with the bound 2147483647.0 in float32 looked in range and was
    # stored into int32 as -2**31
    top = float(np.iinfo(int_dtype).max) + 1  # 2**31, 2**32 or 2**63: a float holds it exactly
    largest_below = np.nextafter(np.array(top, float_dtype), np.array(0, float_dtype))
    out = await ba.create_source(tmp_path / "o.zarr", shape=(2,), dtype=int_dtype, chunks=(2,))
    with pytest.raises(ba.CastingError, match="do not fit"):
        await out.write(..., np.array([0, top], float_dtype))
    await out.write(..., np.array([0, largest_below], float_dtype))
    assert (await out.read())[1] == int(largest_below) > 0


async def test_clip_from_float32_reaches_the_integer_ends_exactly(tmp_path):
    out = await ba.create_source(tmp_path / "o.zarr", shape=(4,), dtype="int32", chunks=(4,))
    await out.write(..., np.array([np.inf, 3e9, -3e9, np.nan], np.float32), casting="clip")
    np.testing.assert_array_equal(await out.read(), [2**31 - 1, 2**31 - 1, -(2**31), 0])


async def test_integers_that_overflow_float16_are_refused_not_stored_as_inf(tmp_path):
    out = await ba.create_source(tmp_path / "o.zarr", shape=(3,), dtype="float16", chunks=(3,))
    with pytest.raises(ba.CastingError, match="float16"):
        await out.write(..., np.array([1, 65504, 65535], np.uint16))
    with pytest.raises(ba.CastingError, match="rounds"):  # 65519 would be stored as 65504
        await out.write(..., np.array([1, 65504, 65519], np.uint16))
    await out.write(..., np.array([1, 65504, 2049], np.uint16), casting="clip")  # accepted
    np.testing.assert_array_equal(await out.read(), np.array([1, 65504, 2048], np.float16))
    await out.write(..., np.array([1, 65535, 70000], np.int32), casting="clip")
    np.testing.assert_array_equal(await out.read(), np.array([1, 65504, 65504], np.float16))


@pytest.mark.parametrize(
    ("int_dtype", "float_dtype", "exact", "rounded"),
    [
        ("int64", "float64", [2**53, -(2**60), 2**62], 2**53 + 1),
        ("uint64", "float64", [2**63, 2**64 - 2**11], 2**64 - 1),
        ("uint32", "float32", [2**24, 2**31], 2**24 + 1),
        ("int32", "float32", [-(2**31), 2**30], 2**31 - 1),
    ],
)
async def test_integers_a_float_would_round_are_refused_and_exact_ones_pass(
    tmp_path, int_dtype, float_dtype, exact, rounded
):
    """int64 into float64 is "safe" to numpy, yet 2**53 + 1 becomes 2**53: a label would turn
    into its neighbour. Integers the float holds exactly are written, whatever their size."""
    src = await ba.create_source(tmp_path / "in.zarr", shape=(4,), dtype=int_dtype, chunks=(2,))
    values = np.array([*exact, 7][:3] + [rounded], dtype=int_dtype)
    await src.write(..., values)
    out = await ba.create_source(tmp_path / "o.zarr", shape=(4,), dtype=float_dtype, chunks=(2,))
    with pytest.raises(ba.RunnerError, match="rounds") as error:
        await ba.copy(src, out, block_shape=(2,))
    assert error.value.failed_block_ids == [1]  # the block of the rounded value, alone
    await ba.copy(src, out, block_shape=(2,), casting="unsafe")  # the opt-in: numpy's rounding
    np.testing.assert_array_equal(await out.read(), values.astype(float_dtype))
    exact_values = np.array([*exact, 0, 0][:4], dtype=int_dtype)
    await src.write(..., exact_values)
    await ba.copy(src, out, block_shape=(2,))
    assert [int(v) for v in await out.read()] == [int(v) for v in exact_values]


async def test_real_values_into_complex_are_checked_as_into_the_real_part(tmp_path):
    """int64 2**53 + 1 into complex128 became 2**53, uint32 2**24 + 1 into complex64 2**24, and
    float64 1e39 into complex64 inf: a complex output's real part is a float like any other."""
    from bioimage_async.kernels.casting import cast_checked

    with pytest.raises(ba.CastingError, match="rounds"):
        cast_checked(np.array([2**53 + 1], np.int64), np.dtype("complex128"))
    with pytest.raises(ba.CastingError, match="rounds"):
        cast_checked(np.array([2**24 + 1], np.uint32), np.dtype("complex64"))
    with pytest.raises(ba.CastingError, match="do not fit"):
        cast_checked(np.array([1e39]), np.dtype("complex64"))
    held = cast_checked(np.array([2**53, -7], np.int64), np.dtype("complex128"))
    assert held.tolist() == [complex(2**53), complex(-7)]


@pytest.mark.parametrize(
    "values, dtype",
    [
        ([np.inf, 1e39], "float32"),
        ([-np.inf, -1e39], "float32"),
        ([-np.inf, 1e39, np.inf], "float32"),
        ([-np.inf, 1e5, np.inf], "float16"),
    ],
)
async def test_an_infinite_end_does_not_hide_finite_values_beyond_a_narrower_float(
    tmp_path, values, dtype
):
    """Only the finite end of the range was checked: [inf, 1e39] went into float32 as
    [inf, inf] under checked casting."""
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=(len(values),), dtype=dtype, chunks=(4,)
    )
    with pytest.raises(ba.RunnerError, match="do not fit"):
        await ba.copy(np.array(values), out)
    held = await ba.create_source(tmp_path / "p.zarr", shape=(4,), dtype=dtype, chunks=(4,))
    await ba.copy(np.array([np.inf, -np.inf, 1.5, np.nan]), held)  # inf and NaN themselves fit
    assert np.array_equal(
        await held.read(), np.array([np.inf, -np.inf, 1.5, np.nan], dtype), equal_nan=True
    )


async def test_complex_into_a_narrower_complex_is_checked_part_by_part():
    """complex128 into complex64 was never checked: 1e300+0j was stored as inf+0j."""
    from bioimage_async.kernels.casting import cast_checked

    for value in (1e300 + 0j, 1 + 1e300j):
        with pytest.raises(ba.CastingError, match="do not fit"):
            cast_checked(np.array([value]), np.dtype("complex64"))
    kept = cast_checked(np.array([1.5 - 2j, complex(np.inf, np.nan)]), np.dtype("complex64"))
    assert kept[0] == np.complex64(1.5 - 2j) and np.isinf(kept[1].real)
