"""The fast anti-aliased plane kernels (compiled and numpy) equal the original one bit for bit,
block by block. Every test here runs once per kernel (conftest.py)."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from bioimage_async.kernels import resample_planes
from bioimage_async.kernels.resample import Resampling, downscale_shape
from bioimage_async.kernels.resample_planes import mirror_index, regular_runs

from .reference_planes import reference_compute

#: dtypes float32 holds exactly: the plane kernel serves these; wider ones take the float64 path
DTYPES = ["uint8", "uint16", "int16", "float32", "bool"]
WIDE_DTYPES = ["int32", "uint32", "int64", "uint64", "float64"]
FACTORS = [(2, 2, 2), (1, 2, 2), (2, 2, 1), (3, 3, 3), (2, 3, 1), (4, 2, 2), (1, 1, 1)]


def random_volume(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    kind = np.dtype(dtype).kind
    if kind == "b":
        return rng.random(shape) > 0.5
    if kind in "iu":
        info = np.iinfo(dtype)
        low, high = max(int(info.min), -(2**40)), min(int(info.max), 2**40)
        return rng.integers(low, high, size=shape, endpoint=True).astype(dtype)
    return (rng.standard_normal(shape) * 100).astype(dtype)


def random_roi(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[slice, ...]:
    starts = [int(rng.integers(0, n)) for n in shape]
    return tuple(slice(a, int(rng.integers(a + 1, n + 1))) for a, n in zip(starts, shape))


def assert_bit_identical(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("factors", FACTORS)
def test_random_blocks_are_bit_identical_to_the_original_kernel(dtype, factors):
    rng = np.random.default_rng(abs(hash((dtype, factors))) % 2**32)
    for _ in range(6):
        out_shape = tuple(int(rng.integers(1, 12)) for _ in factors)
        in_shape = tuple(n * f for n, f in zip(out_shape, factors))
        volume = random_volume(rng, in_shape, dtype)
        resampling = Resampling(in_shape, out_shape, 1, True, np.dtype(dtype).str)
        for _ in range(4):
            roi = random_roi(rng, out_shape)
            data = volume[resampling.input_roi(roi)]
            assert_bit_identical(
                resampling.compute(roi, data), reference_compute(resampling, roi, data)
            )


@pytest.mark.parametrize("group_bytes", [64, 4096, 60_000])
def test_small_work_budgets_cut_groups_and_row_tiles_without_changing_a_bit(
    monkeypatch, group_bytes
):
    """Tiny budgets force one plane per group and tiles of rows: same values."""
    monkeypatch.setattr(resample_planes, "GROUP_BYTES", group_bytes)
    rng = np.random.default_rng(group_bytes)
    for factors in [(2, 2, 2), (1, 2, 2), (3, 2, 3)]:
        in_shape = tuple(int(rng.integers(9, 40)) * f for f in factors)
        out_shape = downscale_shape(in_shape, factors)
        volume = random_volume(rng, in_shape, "uint8")
        resampling = Resampling(in_shape, out_shape, 1, True, "|u1")
        for _ in range(3):
            roi = random_roi(rng, out_shape)
            data = volume[resampling.input_roi(roi)]
            assert_bit_identical(
                resampling.compute(roi, data), reference_compute(resampling, roi, data)
            )


def test_nan_and_infinities_propagate_exactly_as_in_the_original_kernel():
    rng = np.random.default_rng(7)
    volume = random_volume(rng, (18, 22, 26), "float32")
    volume[3, 4, 5], volume[10, 0, 25], volume[17, 21, 0] = np.nan, np.inf, -np.inf
    volume[0, 11, :] = np.inf  # +inf and -inf meet in the same windows
    volume[1, 11, :] = -np.inf
    resampling = Resampling(volume.shape, (9, 11, 13), 1, True, "<f4")
    for roi in [np.s_[0:9, 0:11, 0:13], np.s_[1:5, 2:9, 3:13], np.s_[8:9, 10:11, 0:1]]:
        data = volume[resampling.input_roi(roi)]
        with np.errstate(invalid="ignore"):
            expected = reference_compute(resampling, roi, data)
        assert_bit_identical(resampling.compute(roi, data), expected)


@pytest.mark.parametrize("factors", [(2, 2, 2), (1, 2, 2), (3, 3, 3)])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_blockwise_equals_whole_array(factors, dtype):
    """Blocks of any shape, including ones cut at the volume border, tile the whole result."""
    rng = np.random.default_rng(3)
    in_shape = (27 * factors[0], 22 * factors[1], 31 * factors[2])
    out_shape = downscale_shape(in_shape, factors)
    volume = random_volume(rng, in_shape, dtype)
    resampling = Resampling(in_shape, out_shape, 1, True, np.dtype(dtype).str)
    whole_roi = tuple(slice(0, n) for n in out_shape)
    whole = resampling.compute(whole_roi, volume[resampling.input_roi(whole_roi)])
    for block in [(7, 5, 11), (27, 1, 4), (3, 22, 31)]:
        blocked = np.empty_like(whole)
        starts = itertools.product(*(range(0, n, b) for n, b in zip(out_shape, block)))
        for start in starts:
            roi = tuple(slice(s, min(s + b, n)) for s, b, n in zip(start, block, out_shape))
            blocked[roi] = resampling.compute(roi, volume[resampling.input_roi(roi)])
        assert_bit_identical(blocked, whole)


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_mirror_index_mirrors_about_the_edge_voxels_even_beyond_a_tiny_axis(size):
    """scipy's 'mirror' (numpy's 'reflect'): position -1 is voxel 1, position size is size-2."""
    margin = 9
    padded = np.pad(np.arange(size), margin, mode="reflect")  # position g at g + margin
    ranges = [(-2, size + 2), (-4, size)]
    if size >= 3:  # data covering part of the axis, as blocks inside the volume get
        ranges += [(-2, 3), (1, size + 1)]
    for start, stop in ranges:
        expected = padded[start + margin : stop + margin]
        have = (max(start, 0), min(stop, size))
        local = mirror_index(have, (start, stop), size)
        np.testing.assert_array_equal(local + have[0], expected)


@pytest.mark.parametrize(
    "index", [[3, 4, 5, 6], [2, 1, 0, 1, 2, 3], [5, 6, 7, 6, 5], [0, 0, 0], [1, 0, 1, 0], [4]]
)
def test_regular_runs_copy_back_to_the_index(index):
    source = np.arange(10) * 10
    rebuilt = np.empty(len(index), int)
    for start, stop, run in regular_runs(np.array(index)):
        rebuilt[start:stop] = source[run]
    np.testing.assert_array_equal(rebuilt, source[index])


def test_work_memory_stays_within_a_few_group_budgets():
    """A (16, 256, 256) output block of uint8 needs ~5 MiB of float32 work, not its whole
    float32 input (33 MiB), and a mirrored border block makes no copy of its input."""
    rng = np.random.default_rng(0)
    in_shape = (32, 512, 512)
    volume = rng.integers(0, 256, size=in_shape, dtype=np.uint8)
    resampling = Resampling(in_shape, downscale_shape(in_shape, (2, 2, 2)), 1, True, "|u1")
    roi = np.s_[0:16, 0:256, 0:256]  # at the border on every axis: mirrored on all sides
    data = volume[resampling.input_roi(roi)]
    tracemalloc.start()
    try:
        resampling.compute(roi, data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    output = 16 * 256 * 256
    assert peak < output + 3 * resample_planes.GROUP_BYTES, peak / 2**20


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int8", "int16"])
def test_values_at_the_ends_of_the_integer_range_round_as_in_the_original_kernel(dtype):
    """Small integers skip the clip (it cannot change a value): constant extremes and
    alternating extremes, the worst cases for rounding past the range, stay identical."""
    info = np.iinfo(dtype)
    shape = (10, 12, 14)
    alternating = np.where(np.indices(shape).sum(axis=0) % 2 == 0, info.min, info.max)
    resampling = Resampling(shape, (5, 6, 7), 1, True, np.dtype(dtype).str)
    roi = np.s_[0:5, 0:6, 0:7]
    for volume in [np.full(shape, info.max), np.full(shape, info.min), alternating]:
        data = volume.astype(dtype)[resampling.input_roi(roi)]
        result = resampling.compute(roi, data)
        assert_bit_identical(result, reference_compute(resampling, roi, data))
    assert resampling.compute(roi, np.full(shape, info.max, dtype)).min() == info.max


def scipy_smooth_sample(volume: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """The documented definition in float64: a Gaussian of sigma (f - 1) / 2 with mirrored
    borders (scipy, truncate 4), sampled at every f-th voxel, rounded and clipped."""
    from scipy.ndimage import gaussian_filter

    sigmas = [(f - 1) / 2 for f in factors]
    smooth = gaussian_filter(volume.astype(np.float64), sigmas, mode="mirror", truncate=4.0)
    sampled = smooth[tuple(slice(None, None, f) for f in factors)]
    if volume.dtype.kind in "iu":
        info = np.iinfo(volume.dtype)
        return np.clip(np.rint(sampled), float(info.min), float(info.max))
    return sampled


@pytest.mark.parametrize("dtype", WIDE_DTYPES)
def test_wide_dtypes_at_their_extremes_neither_wrap_nor_round_to_float32(dtype):
    """32/64-bit integers and float64 on exact factors once went through the float32 plane
    kernel: uint32 2**32 - 1 came out as 0, int32's maximum as its minimum, 2**24 + 1 as
    2**24; and 64-bit integers clipped at float(2**63 - 1) = 2**63 wrapped to the minimum."""
    shape = (12, 14, 16)
    kind = np.dtype(dtype).kind
    values = [np.iinfo(dtype).max, np.iinfo(dtype).min, 2**24 + 1] if kind in "iu" else [1e9 + 0.5]
    resampling = Resampling(shape, (6, 7, 8), 1, True, np.dtype(dtype).str)
    roi = np.s_[0:6, 0:7, 0:8]
    for value in values:
        volume = np.full(shape, value, dtype)
        result = resampling.compute(roi, volume[resampling.input_roi(roi)])
        assert result.dtype == np.dtype(dtype)
        if np.dtype(dtype).itemsize == 8 and kind in "iu":  # float64 holds 53 bits
            error = np.abs(result.astype(object) - int(value)).max()
            assert error <= abs(int(value)) * 2**-52, (value, result.ravel()[0])
        else:
            assert (result == volume[roi]).all(), (value, result.ravel()[0])


@pytest.mark.parametrize("dtype", ["int32", "uint32", "float64"])
def test_wide_dtypes_on_exact_factors_follow_the_float64_definition(dtype):
    rng = np.random.default_rng(7)
    shape, factors = (12, 14, 16), (2, 2, 2)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    volume = (
        rng.integers(int(info.min), int(info.max), size=shape, endpoint=True).astype(dtype)
        if info is not None
        else rng.standard_normal(shape) * 1e9
    )
    resampling = Resampling(shape, (6, 7, 8), 1, True, np.dtype(dtype).str)
    roi = np.s_[0:6, 0:7, 0:8]
    result = resampling.compute(roi, volume[resampling.input_roi(roi)])
    expected = scipy_smooth_sample(volume, factors)
    if info is not None:
        assert np.abs(result.astype(np.float64) - expected).max() <= 1
    else:
        np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-3)
