"""reduce_windows against slow, obviously correct references that loop over the windows."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest

from bioimage_async.kernels import reductions
from bioimage_async.kernels.reductions import reduce_windows

# ---- references ------------------------------------------------------------------------------


def windows(data: np.ndarray, factors: tuple[int, ...]):
    """(output index, window values as a flat array) for every window, clipped at the border."""
    out_shape = tuple(-(-n // f) for n, f in zip(data.shape, factors, strict=True))
    for index in np.ndindex(*out_shape):
        box = tuple(
            slice(i * f, min((i + 1) * f, n))
            for i, f, n in zip(index, factors, data.shape, strict=True)
        )
        yield index, data[box].reshape(-1)


def reference(
    data: np.ndarray, factors: tuple[int, ...], reduce: Callable[[np.ndarray], object], dtype
) -> np.ndarray:
    out_shape = tuple(-(-n // f) for n, f in zip(data.shape, factors, strict=True))
    out = np.empty(out_shape, dtype)
    for index, values in windows(data, factors):
        out[index] = reduce(values)
    return out


def ref_mode(values: np.ndarray) -> object:
    counts = Counter(values.tolist())  # Python ints: exact for uint64
    top = max(counts.values())
    return min(v for v, c in counts.items() if c == top)


def ref_int_mean(values: np.ndarray) -> int:
    return round(Fraction(sum(values.tolist()), values.size))  # round() of a Fraction: half to even


def ref_float_mean(values: np.ndarray) -> float:
    return float(np.mean(values.astype(np.float64)))


def mode_ref(data: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    return reference(data, factors, ref_mode, data.dtype)


def realistic_labels(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Large blobs (coarse random labels, nearest-upsampled by 5 with an offset so blob borders
    cut through windows) crossed by thin objects: 1-voxel lines along each axis and a diagonal."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 7, size=tuple(n // 5 + 2 for n in shape)).astype(np.uint32)
    labels = coarse
    for axis in range(len(shape)):
        labels = labels.repeat(5, axis=axis)
    labels = np.ascontiguousarray(labels[tuple(slice(2, 2 + n) for n in shape)])
    for line in range(6):
        axis = line % len(shape)
        index = [int(rng.integers(0, n)) for n in shape]
        index[axis] = slice(None)  # type: ignore[call-overload]
        labels[tuple(index)] = 100 + line
    diagonal = np.arange(min(shape))
    labels[(diagonal,) * len(shape)] = 200
    return labels


# ---- mode ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]
)
@pytest.mark.parametrize("factors", [(2, 2, 2), (1, 2, 2), (2, 3, 1), (1, 1, 4), (3, 3, 3)])
def test_mode_equals_counter_reference_on_random_labels_with_odd_shape(dtype, factors):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    data = rng.integers(max(info.min, -4), 5, size=(13, 17, 19)).astype(dtype)
    result = reduce_windows(data, factors, "mode")
    assert result.dtype == data.dtype
    np.testing.assert_array_equal(result, mode_ref(data, factors))


@pytest.mark.parametrize(
    "factors", [(2, 2, 2), (1, 2, 2), (2, 3, 1), (4, 4, 4), (1, 1, 4), (2, 2, 4), (3, 1, 2)]
)
def test_mode_equals_reference_on_blobs_with_thin_objects(factors):
    labels = realistic_labels((23, 30, 29))
    result = reduce_windows(labels, factors, "mode")
    np.testing.assert_array_equal(result, mode_ref(labels, factors))


def test_realistic_labels_exercise_uniform_and_mixed_windows():
    """Guards the test data: the fast path (uniform windows) and the general one must both run."""
    labels = realistic_labels((23, 30, 29))
    uniform = [len(set(v.tolist())) == 1 for _, v in windows(labels, (2, 2, 2))]
    assert 0.3 < np.mean(uniform) < 0.95


def test_mode_is_not_fooled_by_windows_whose_first_row_and_some_columns_agree():
    # the uniform-window shortcut compares along one axis at a time: each of these windows has
    # an all-3 first row and an all-3 column, yet 9 of its 16 voxels are 8
    zyx = np.full((2, 2, 4), 8, dtype=np.uint16)
    zyx[0, 0, :] = 3  # first row along x
    zyx[:, :, 0] = 3  # one (z, y) column
    assert reduce_windows(zyx, (2, 2, 4), "mode").item() == 8
    zy = np.full((4, 4, 1), 8, dtype=np.uint16)
    zy[0, :, 0] = 3  # first row along y
    zy[:, 2, 0] = 3  # one z column
    assert reduce_windows(zy, (4, 4, 1), "mode").item() == 8


def test_mode_tie_goes_to_the_smallest_value():
    window = np.array([5, 3, 5, 3, 3, 5, 5, 3], dtype=np.uint32).reshape(2, 2, 2)
    assert reduce_windows(window, (2, 2, 2), "mode").item() == 3
    distinct = np.array([9, 4, 7, 6, 8, 5, 11, 10], dtype=np.int16).reshape(2, 2, 2)
    assert reduce_windows(distinct, (2, 2, 2), "mode").item() == 4
    three_way = np.array([7, 7, 2, 2, 9, 9, 1, 4], dtype=np.uint8).reshape(2, 2, 2)
    assert reduce_windows(three_way, (2, 2, 2), "mode").item() == 2


def test_mode_picks_the_majority_not_the_smallest_value():
    window = np.array([1, 9, 9, 2, 9, 3, 9, 9], dtype=np.uint16).reshape(2, 2, 2)
    assert reduce_windows(window, (2, 2, 2), "mode").item() == 9


def test_mode_of_uint64_labels_above_2_53_is_exact():
    base = 2**60
    # float64 would see all of these as 2**60, a value that is not in the window at all
    window = np.array([base + 3, base + 1, base + 3, base + 2, base + 1, base + 3, base + 4,
                       base + 5], dtype=np.uint64).reshape(2, 2, 2)  # fmt: skip
    assert int(reduce_windows(window, (2, 2, 2), "mode").item()) == base + 3
    rng = np.random.default_rng(2)
    data = (np.uint64(base) + rng.integers(0, 4, size=(9, 12, 11)).astype(np.uint64)).astype(
        np.uint64
    )
    data[0, 0, 0] = np.iinfo(np.uint64).max
    np.testing.assert_array_equal(
        reduce_windows(data, (2, 2, 2), "mode"), mode_ref(data, (2, 2, 2))
    )


def test_mode_of_int64_extremes_is_exact():
    info = np.iinfo(np.int64)
    rng = np.random.default_rng(3)
    choices = np.array([info.min, info.min + 1, -1, 0, info.max - 1, info.max], dtype=np.int64)
    data = choices[rng.integers(0, choices.size, size=(8, 9, 10))]
    np.testing.assert_array_equal(
        reduce_windows(data, (2, 2, 2), "mode"), mode_ref(data, (2, 2, 2))
    )


def test_mode_of_int8_negative_values_ties_to_most_negative():
    window = np.array([-3, -128, -3, -128, 5, 5, -3, -128], dtype=np.int8).reshape(2, 2, 2)
    assert reduce_windows(window, (2, 2, 2), "mode").item() == -128
    rng = np.random.default_rng(4)
    data = rng.integers(-128, -120, size=(11, 10, 9)).astype(np.int8)
    np.testing.assert_array_equal(
        reduce_windows(data, (2, 2, 2), "mode"), mode_ref(data, (2, 2, 2))
    )


def test_mode_of_bool_is_the_majority_and_ties_go_to_false():
    rng = np.random.default_rng(5)
    data = rng.random((9, 10, 11)) < 0.5
    result = reduce_windows(data, (2, 2, 2), "mode")
    assert result.dtype == np.bool_
    np.testing.assert_array_equal(result, mode_ref(data, (2, 2, 2)))
    tie = np.array([True, False] * 4).reshape(2, 2, 2)
    assert not reduce_windows(tie, (2, 2, 2), "mode").item()


def test_mode_of_floats_counts_equal_values_and_keeps_signed_zeros_apart():
    rng = np.random.default_rng(6)
    data = rng.choice(np.array([-2.5, -1.0, 0.5, 3.25, 1e30], dtype=np.float32), size=(9, 8, 7))
    np.testing.assert_array_equal(
        reduce_windows(data, (2, 2, 2), "mode"), mode_ref(data, (2, 2, 2))
    )
    zeros = np.array([-0.0, -0.0, 0.0, 0.0, 0.0, 7.0, 7.0, 7.0]).reshape(2, 2, 2)
    result = reduce_windows(zeros, (2, 2, 2), "mode")
    assert result.item() == 0.0 and not np.signbit(result.item())
    nans = np.array([np.nan, 1.5, np.nan, 1.5, np.nan, 2.0, -np.inf, 2.0], dtype=np.float64)
    assert np.isnan(reduce_windows(nans.reshape(2, 2, 2), (2, 2, 2), "mode").item())


def test_clipped_border_windows_vote_only_with_their_own_voxels():
    # last window is [3, 7]: a tie that goes to 3; zero padding would give 0, edge padding 7
    data = np.array([5, 5, 5, 3, 7], dtype=np.uint8)
    np.testing.assert_array_equal(reduce_windows(data, (3,), "mode"), [5, 3])
    np.testing.assert_array_equal(reduce_windows(data, (3,), "mean"), [5, 5])
    np.testing.assert_array_equal(reduce_windows(data, (3,), "min"), [5, 3])
    np.testing.assert_array_equal(reduce_windows(data, (3,), "max"), [5, 7])


@pytest.mark.parametrize("shape", [(29,), (7, 9), (3, 5, 6, 7), (2, 3, 4, 5, 6)])
def test_every_method_equals_reference_for_1_to_5_axes(shape):
    rng = np.random.default_rng(7)
    data = rng.integers(0, 4, size=shape).astype(np.int32)
    factors = tuple(min(n, 2 + i % 2) for i, n in enumerate(shape))
    np.testing.assert_array_equal(reduce_windows(data, factors, "mode"), mode_ref(data, factors))
    np.testing.assert_array_equal(
        reduce_windows(data, factors, "mean"), reference(data, factors, ref_int_mean, np.int32)
    )
    np.testing.assert_array_equal(
        reduce_windows(data, factors, "min"), reference(data, factors, np.min, np.int32)
    )
    np.testing.assert_array_equal(
        reduce_windows(data, factors, "max"), reference(data, factors, np.max, np.int32)
    )


def test_mode_of_windows_above_the_network_size_uses_sort_and_is_exact():
    labels = realistic_labels((17, 18, 19), seed=3)
    factors = (5, 5, 5)  # 125 voxels per window; smaller ones at the borders
    assert math.prod(factors) > reductions._NETWORK_MAX
    np.testing.assert_array_equal(
        reduce_windows(labels, factors, "mode"), mode_ref(labels, factors)
    )
    rng = np.random.default_rng(8)
    data = rng.integers(0, 9, size=(17, 18, 19)).astype(np.uint16)
    np.testing.assert_array_equal(reduce_windows(data, factors, "mode"), mode_ref(data, factors))


def test_mode_sort_path_equals_network_path(monkeypatch):
    rng = np.random.default_rng(9)
    data = rng.integers(0, 5, size=(15, 16, 17)).astype(np.uint32)
    network = reduce_windows(data, (2, 3, 2), "mode")
    monkeypatch.setattr(reductions, "_NETWORK_MAX", 0)
    np.testing.assert_array_equal(reduce_windows(data, (2, 3, 2), "mode"), network)
    np.testing.assert_array_equal(network, mode_ref(data, (2, 3, 2)))


@pytest.mark.parametrize("n", range(1, 13))
def test_sorting_networks_sort_every_0_1_input(n):
    # 0-1 principle: a comparator network that sorts all 0/1 inputs sorts every input
    columns = np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.uint8).T.copy()
    rows = list(columns)
    for i, j in reductions._sorting_network(n):
        low, high = np.minimum(rows[i], rows[j]), np.maximum(rows[i], rows[j])
        rows[i], rows[j] = low, high
    assert np.all(np.diff(np.array(rows), axis=0) >= 0)


# ---- mean, min, max --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]
)
def test_integer_mean_is_exact_and_rounds_half_to_even(dtype):
    rng = np.random.default_rng(10)
    info = np.iinfo(dtype)
    # values at both ends of the range: a sum in the input dtype (or in float64) would be wrong
    near_max = dtype(info.max) - rng.integers(0, 3, size=(7, 9, 10)).astype(dtype)
    near_min = dtype(info.min) + rng.integers(0, 3, size=(7, 9, 10)).astype(dtype)
    data = np.where(rng.random((7, 9, 10)) < 0.7, near_max, near_min).astype(dtype)
    for factors in [(2, 2, 2), (1, 2, 2), (2, 3, 1)]:
        expected = reference(data, factors, ref_int_mean, dtype)
        np.testing.assert_array_equal(reduce_windows(data, factors, "mean"), expected)


def test_integer_mean_ties_round_to_even():
    data = np.array([1, 2, 2, 3, 3, 4, 0, 1, 2, 2], dtype=np.int16)  # means 1.5 2.5 3.5 0.5 2
    np.testing.assert_array_equal(reduce_windows(data, (2,), "mean"), [2, 2, 4, 0, 2])
    negative = np.array([-1, -2, -2, -3, -3, -4], dtype=np.int64)  # -1.5 -2.5 -3.5
    np.testing.assert_array_equal(reduce_windows(negative, (2,), "mean"), [-2, -2, -4])


def test_uint64_mean_above_2_53_is_exact():
    base = 2**60
    data = np.array([base + 1, base + 2, base + 2, base + 2], dtype=np.uint64)  # mean base+1.75
    assert int(reduce_windows(data, (4,), "mean").item()) == base + 2
    odd = np.array([base + 1, base + 2], dtype=np.uint64)  # base + 1.5 -> even: base + 2
    assert int(reduce_windows(odd, (2,), "mean").item()) == base + 2


def test_integer_mean_as_float_output_keeps_the_fraction():
    data = np.array([1, 2, 2, 2, 7], dtype=np.uint8)
    result = reduce_windows(data, (4,), "mean", out_dtype=np.dtype(np.float32))
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, np.array([1.75, 7.0], dtype=np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_mean_matches_float64_mean_and_propagates_nan(dtype):
    rng = np.random.default_rng(11)
    data = rng.normal(0, 1000, size=(11, 12, 13)).astype(dtype)
    data[3, 4, 5] = np.nan
    for factors in [(2, 2, 2), (1, 3, 2)]:
        result = reduce_windows(data, factors, "mean")
        assert result.dtype == dtype
        expected = reference(data, factors, ref_float_mean, np.float64).astype(dtype)
        rtol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(result, expected, rtol=rtol, atol=0, equal_nan=True)
        assert np.isnan(result).sum() == 1


def test_float_mean_to_integer_output_rounds_half_to_even():
    data = np.array([0.5, 0.5, 1.5, 1.5, 2.0, 3.0], dtype=np.float32)
    result = reduce_windows(data, (2,), "mean", out_dtype=np.dtype(np.uint8))
    np.testing.assert_array_equal(result, np.array([0, 2, 2], dtype=np.uint8))


def test_bool_mean_is_true_only_for_more_than_half_true():
    data = np.array([1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0], dtype=bool)  # 1/2, 3/4, 1/4
    result = reduce_windows(data, (4,), "mean")
    assert result.dtype == np.bool_
    np.testing.assert_array_equal(result, [False, True, False])
    np.testing.assert_array_equal(
        reduce_windows(data, (4,), "mean", out_dtype=np.dtype(np.float64)), [0.5, 0.75, 0.25]
    )


@pytest.mark.parametrize("method", ["min", "max"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int64, np.uint64, np.float32, bool])
def test_min_max_equal_numpy_per_window(method, dtype):
    rng = np.random.default_rng(12)
    data = rng.integers(-100, 100, size=(13, 17, 19)).astype(dtype)
    for factors in [(2, 2, 2), (1, 2, 2), (2, 3, 1), (3, 1, 4)]:
        expected = reference(data, factors, getattr(np, method), data.dtype)
        np.testing.assert_array_equal(reduce_windows(data, factors, method), expected)


@pytest.mark.parametrize("method", ["min", "max"])
def test_min_max_propagate_nan(method):
    data = np.array([1.0, np.nan, 3.0, 4.0, -1.0, 2.0], dtype=np.float64)
    result = reduce_windows(data, (2,), method)
    assert np.isnan(result[0]) and not np.isnan(result[1:]).any()


def test_min_max_of_uint64_above_2_53_are_exact():
    base = 2**62
    data = np.array([base + 3, base + 1, base + 2, base + 5], dtype=np.uint64)
    assert int(reduce_windows(data, (4,), "min").item()) == base + 1
    assert int(reduce_windows(data, (4,), "max").item()) == base + 5


# ---- shared behaviour ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["mode", "mean", "min", "max"])
def test_factors_of_one_are_the_identity(method):
    labels = realistic_labels((6, 7, 8))
    np.testing.assert_array_equal(reduce_windows(labels, (1, 1, 1), method), labels)


@pytest.mark.parametrize("method", ["mode", "mean", "min", "max"])
@pytest.mark.parametrize("factors", [(2, 2, 2), (1, 2, 2), (2, 3, 1), (3, 3, 3)])
def test_blockwise_reduction_equals_whole_array(method, factors):
    labels = realistic_labels((26, 31, 29), seed=1)
    data = labels if method == "mode" else labels.astype(np.float32) * 0.37
    whole = reduce_windows(data, factors, method)
    stitched = np.empty_like(whole)
    out_block = (4, 5, 3)  # output voxels per block; input blocks are that times the factors
    for index in np.ndindex(*(-(-n // b) for n, b in zip(whole.shape, out_block, strict=True))):
        out_box = tuple(slice(i * b, (i + 1) * b) for i, b in zip(index, out_block, strict=True))
        in_box = tuple(
            slice(s.start * f, s.stop * f) for s, f in zip(out_box, factors, strict=True)
        )
        stitched[out_box] = reduce_windows(data[in_box], factors, method)
    np.testing.assert_array_equal(stitched, whole)


@pytest.mark.parametrize("method", ["mode", "mean", "min", "max"])
def test_result_does_not_depend_on_the_slab_size(method, monkeypatch):
    rng = np.random.default_rng(13)
    labels = realistic_labels((21, 22, 23), seed=2)
    labels[rng.random(labels.shape) < 0.2] = 7  # mixed windows: some slabs go the dense way
    factors = (2, 3, 2)
    big = reduce_windows(labels, factors, method)
    for slab_bytes in (1, 200, 5000):
        monkeypatch.setattr(reductions, "_SLAB_BYTES", slab_bytes)
        np.testing.assert_array_equal(reduce_windows(labels, factors, method), big)
    if method == "mode":
        np.testing.assert_array_equal(big, mode_ref(labels, factors))


@pytest.mark.parametrize("method", ["mode", "mean", "min", "max"])
@pytest.mark.parametrize("shape", [(2, 2, 2), (4, 6, 5)])
def test_input_is_left_unchanged(method, shape):
    rng = np.random.default_rng(14)
    data = rng.integers(0, 9, size=shape).astype(np.uint16)  # mixed windows: the sorting path
    before = data.copy()
    reduce_windows(data, (2, 2, 2), method)
    np.testing.assert_array_equal(data, before)


@pytest.mark.parametrize("method", ["mode", "mean", "min", "max"])
def test_any_memory_layout_gives_the_same_c_ordered_result(method):
    labels = realistic_labels((14, 15, 16), seed=4)
    expected = reduce_windows(labels, (2, 2, 3), method)
    if method == "mode":
        np.testing.assert_array_equal(expected, mode_ref(labels, (2, 2, 3)))
    fortran = reduce_windows(np.asfortranarray(labels), (2, 2, 3), method)
    np.testing.assert_array_equal(fortran, expected)
    assert fortran.flags.c_contiguous
    wide = np.zeros((16, 15, 32), labels.dtype)
    wide[1:15, :, ::2] = labels
    box = wide[1:15, :, ::2]  # a strided box of a larger array, read in place
    np.testing.assert_array_equal(reduce_windows(box, (2, 2, 3), method), expected)
    flipped = np.ascontiguousarray(labels[::-1, :, ::-1])[::-1, :, ::-1]  # negative strides
    np.testing.assert_array_equal(reduce_windows(flipped, (2, 2, 3), method), expected)
    swapped = np.ascontiguousarray(labels.transpose(1, 0, 2)).transpose(1, 0, 2)  # neither C nor F
    np.testing.assert_array_equal(reduce_windows(swapped, (2, 2, 3), method), expected)


@pytest.mark.parametrize("dtype", [">f4", ">u4", ">i8"])
def test_big_endian_input_gives_the_native_result(dtype):
    rng = np.random.default_rng(15)
    native = rng.integers(-3, 4, size=(9, 10, 11)).astype(np.dtype(dtype).newbyteorder("="))
    swapped = native.astype(dtype)
    for method in ("mode", "mean", "min", "max"):
        np.testing.assert_array_equal(
            reduce_windows(swapped, (2, 2, 2), method), reduce_windows(native, (2, 2, 2), method)
        )
    np.testing.assert_array_equal(
        reduce_windows(swapped, (2, 2, 2), "mode"), mode_ref(native, (2, 2, 2))
    )


def test_out_dtype_casts_the_result():
    data = np.array([[1, 1], [1, 300]], dtype=np.uint16)
    result = reduce_windows(data, (2, 2), "mode", out_dtype=np.dtype(np.uint32))
    assert result.dtype == np.uint32 and result.item() == 1


@pytest.mark.parametrize(
    ("factors", "method", "dtype", "message"),
    [
        ((2, 2), "median", np.uint8, "mode"),
        ((2, 0), "mode", np.uint8, "positive integers"),
        ((2, -1), "mode", np.uint8, "positive integers"),
        ((2, 1.5), "mode", np.uint8, "positive integers"),
        ((2, True), "mode", np.uint8, "positive integers"),
        ((2,), "mode", np.uint8, "entries"),
        ((2, 2, 2), "mean", np.uint8, "entries"),
        ((2, 2), "mode", np.complex64, "complex64"),
        ((2, 2), "max", np.str_, "dtype"),
    ],
)
def test_invalid_arguments_raise_value_error(factors, method, dtype, message):
    data = np.zeros((4, 4), dtype=dtype)
    with pytest.raises(ValueError, match=message):
        reduce_windows(data, factors, method)


def test_zero_dimensional_data_raises_value_error():
    with pytest.raises(ValueError, match="at least one axis"):
        reduce_windows(np.zeros((), np.uint8), (), "mode")
