"""Float reductions give the same voxels whichever path computes them.

tensorstore's downsample driver serves tensorstore-backed inputs chunk to chunk, our kernel
serves the rest (numpy inputs, masked runs, small mode windows). For floats the two disagree:
the driver's mode merges -0.0 with 0.0 and skips NaN, its min/max skip NaN and its mean
accumulates in the input dtype. These inputs must never reach it.
"""

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.kernels.reductions import reduce_windows


def float_volume(rng: np.random.Generator, dtype: str, method: str) -> np.ndarray:
    """Few values (ties, -0.0 beside 0.0, NaN) for the order statistics; spread-out values
    for the mean, whose rounding differs with the accumulation."""
    if method == "mean":
        data = (rng.standard_normal((12, 12, 12)) * 1000).astype(dtype)
        data[rng.random(data.shape) < 0.01] = np.nan
        return data
    values = np.array([0.0, -0.0, np.nan, 1.0], dtype)
    return rng.choice(values, size=(12, 12, 12), p=[0.3, 0.3, 0.2, 0.2])


@pytest.mark.parametrize("method", ["mode", "min", "max", "mean"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
async def test_float_reductions_of_large_windows_from_zarr_equal_the_kernel_bit_for_bit(
    tmp_path, rng, method, dtype
):
    """3x3x3 windows are too large for the compiled mode kernel: before the fix a zarr input
    took tensorstore's driver there and a numpy input our kernel."""
    data = float_volume(rng, dtype, method)
    expected = reduce_windows(data, (3, 3, 3), method)
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype=dtype, chunks=(6, 6, 6)
    )
    await src.write(..., data)
    from_zarr = await ba.downsample(src, 3, method=method, block_shape=(2, 2, 2))
    from_numpy = await ba.downsample(data, 3, method=method, block_shape=(2, 2, 2))
    bits = np.dtype(f"u{np.dtype(dtype).itemsize}")
    np.testing.assert_array_equal(from_zarr.view(bits), expected.view(bits))
    np.testing.assert_array_equal(from_numpy.view(bits), expected.view(bits))


async def test_float_mode_keeps_negative_zero_and_nan_apart_from_zero_and_numbers(tmp_path):
    """The documented mode of floats compares bit patterns: four 1.0 outvote three -0.0 and two
    0.0, and three NaN outvote two 1.0 (the driver answered 0.0 and 1.0)."""
    data = np.array(
        [
            [-0.0, -0.0, -0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0],
            [np.nan, np.nan, np.nan, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        ],
        np.float32,
    ).reshape(2, 1, 9)
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype="float32", chunks=(2, 1, 9)
    )
    await src.write(..., data)
    result = (await ba.downsample(src, (1, 1, 9), method="mode")).ravel()
    assert result[0] == 1.0
    assert np.isnan(result[1])


async def test_float32_mean_from_zarr_keeps_a_value_that_float32_accumulation_loses(tmp_path):
    """1e8 + 1 is 1e8 in float32: the driver's float32 sum of this window is 0, its exact mean
    0.125 (our sum runs in float64)."""
    data = np.array([1e8, 1.0, -1e8, 0, 0, 0, 0, 0], np.float32).reshape(1, 1, 8)
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype="float32", chunks=(1, 1, 8)
    )
    await src.write(..., data)
    assert (await ba.downsample(src, (1, 1, 8), method="mean")).item() == 0.125


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
async def test_complex_mean_is_one_answer_from_zarr_numpy_and_masked_runs(tmp_path, rng, dtype):
    """Complex mean was accepted on zarr (through the driver, summing complex64 in complex64)
    and refused on numpy input or with a mask. Now every path sums in complex128; the float32
    window that loses 1 in a float32 sum keeps it in both parts."""
    data = (rng.standard_normal((8, 8, 8)) + 1j * rng.standard_normal((8, 8, 8))) * 1000
    data = data.astype(dtype)
    data[:2, :2] = 0
    data[0, 0, :8] = np.array([1e8, 1, -1e8, 0, 0, 0, 0, 0]) * (1 + 1j)
    reference = data.astype(np.complex128).reshape(4, 2, 4, 2, 1, 8).mean(axis=(1, 3, 5))
    zarr = pytest.importorskip("zarr")  # our writers refuse complex; zarr-python writes it
    written = zarr.open(
        tmp_path / "in.zarr", mode="w", shape=data.shape, chunks=(4,) * 3, dtype=dtype
    )
    written[...] = data
    src = await ba.open_source(tmp_path / "in.zarr")
    assert src.tensorstore() is not None  # the path that took tensorstore's driver
    mask = np.ones((4, 4, 1), bool)
    from_zarr = await ba.downsample(src, (2, 2, 8), method="mean", block_shape=(2, 2, 1))
    from_numpy = await ba.downsample(data, (2, 2, 8), method="mean", block_shape=(2, 2, 1))
    masked = await ba.downsample(src, (2, 2, 8), method="mean", mask=mask, block_shape=(2, 2, 1))
    assert from_zarr.dtype == np.dtype(dtype)
    assert from_zarr[0, 0, 0] == (1 + 1j) / 32
    np.testing.assert_allclose(from_zarr, reference.astype(dtype), rtol=1e-6)
    np.testing.assert_array_equal(from_numpy, from_zarr)
    np.testing.assert_array_equal(masked, from_zarr)


@pytest.mark.parametrize("anti_aliasing", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_linear_sampling_of_nan_and_inf_is_the_same_on_every_block_shape(anti_aliasing, bad):
    """An output sampled exactly at a voxel gave its neighbour's NaN zero weight, and 0 * NaN
    is NaN: whether it did depended on the block (a block whose positions all fall on voxels
    took one tap). Odd shapes mix exact and fractional positions."""
    rng = np.random.default_rng(5)
    data = rng.random((13, 40, 37)).astype(np.float32)
    data[rng.random(data.shape) < 0.002] = bad
    data[1, 0, 0] = bad  # beside output z=0, which samples input z=0 exactly (scale 13/7)
    whole = ba.sync.downsample(data, 2, order=1, anti_aliasing=anti_aliasing, progress=False)
    for block_shape in [(1, 2, 2), (1, 4, 4), (3, 5, 7)]:
        blocks = ba.sync.downsample(
            data, 2, order=1, anti_aliasing=anti_aliasing, block_shape=block_shape, progress=False
        )
        np.testing.assert_array_equal(blocks, whole)  # NaN at the same places
    if not anti_aliasing:  # nothing spreads it: the exact sample is the voxel itself
        assert whole[0, 0, 0] == data[0, 0, 0]
