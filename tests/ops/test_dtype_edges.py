"""dtype edge cases of the ops: no voxel silently changed on the way to the output.

Labels above 2**53 (a float64 round trip changes them) through every window reduction and a
pyramid, ties of the mode on every path, and a narrow float input into a wider float output
(the result must not be rounded to the input dtype first).
"""

from __future__ import annotations

import itertools
import warnings
from fractions import Fraction

import numpy as np
import pytest

import bioimage_async as ba

U64_IDS = np.array([2**63 + 5, 2**64 - 1, 2**64 - 2, 2**53 + 1, 2**53, 0], np.uint64)
I64_IDS = np.array([-(2**63), -(2**63) + 1, 2**63 - 1, 2**63 - 2, 2**53 + 1, -1], np.int64)


def windows(data: np.ndarray, factors: tuple[int, ...]):
    """(output index, window values as Python numbers) of every window, clipped at the border."""
    out_shape = tuple(-(-n // f) for n, f in zip(data.shape, factors))
    for index in itertools.product(*(range(n) for n in out_shape)):
        box = tuple(slice(i * f, (i + 1) * f) for i, f in zip(index, factors))
        yield index, data[box].ravel().tolist()


def exact_reduce(data: np.ndarray, factors: tuple[int, ...], method: str) -> np.ndarray:
    """The reductions in Python integers: mode (ties to the smallest), min, max, stride, and
    the mean rounded to nearest, ties to even."""
    out_shape = tuple(-(-n // f) for n, f in zip(data.shape, factors))
    out = np.empty(out_shape, data.dtype)
    for index, values in windows(data, factors):
        if method == "mode":
            counts: dict[int, int] = {}
            for v in values:
                counts[v] = counts.get(v, 0) + 1
            best = max(counts.values())
            out[index] = min(v for v, c in counts.items() if c == best)
        elif method == "min":
            out[index] = min(values)
        elif method == "max":
            out[index] = max(values)
        elif method == "stride":
            out[index] = values[0]
        else:
            out[index] = round(Fraction(sum(values), len(values)))
    return out


async def as_zarr(tmp_path, name: str, data: np.ndarray) -> ba.Source:
    src = await ba.create_source(
        tmp_path / name, shape=data.shape, dtype=data.dtype, chunks=(3, 4, 5)
    )
    await src.write(..., data)
    return src


@pytest.mark.parametrize("ids", [U64_IDS, I64_IDS], ids=["uint64", "int64"])
@pytest.mark.parametrize("method", ["mode", "min", "max", "stride", "mean"])
@pytest.mark.parametrize("factors", [(2, 2, 2), (3, 3, 3)])  # the compiled kernel, and not
async def test_64_bit_labels_above_2_53_are_exact_on_every_path(
    tmp_path, rng, ids, method, factors
):
    """Pins the exact paths: numpy and zarr inputs (tensorstore's driver for the 27-voxel
    windows), masked runs (always our kernel), threads and several workers."""
    data = rng.choice(ids, size=(7, 9, 10))
    expected = exact_reduce(data, factors, method)
    out_shape = expected.shape
    mask = np.ones(out_shape, bool)
    mask.flat[::3] = False
    src = await as_zarr(tmp_path, "in.zarr", data)
    for n, (input, masked, workers) in enumerate(
        itertools.product([data, src], [False, True], [1, 2])
    ):
        out = await ba.create_source(
            tmp_path / f"out{n}.zarr", shape=out_shape, dtype=data.dtype, chunks=(2, 3, 2)
        )
        await ba.downsample(
            input,
            factors,
            out,
            method=method,
            mask=mask if masked else None,
            num_workers=workers,
            block_shape=(2, 3, 2),
        )
        want = np.where(mask, expected, 0) if masked else expected
        np.testing.assert_array_equal(await out.read(...), want)


@pytest.mark.parametrize("ids", [U64_IDS, I64_IDS], ids=["uint64", "int64"])
async def test_label_pyramid_of_64_bit_ids_is_exact(tmp_path, rng, ids):
    data = rng.choice(ids[:3], size=(9, 10, 11))
    src = await as_zarr(tmp_path, "in.zarr", data)
    levels = await ba.pyramid(
        src, tmp_path / "seg.ome.zarr", 3, labels=True, num_workers=2, chunks=(4, 4, 4)
    )
    expected = data
    for level in levels:
        np.testing.assert_array_equal(await level.read(...), expected)
        expected = exact_reduce(expected, (2, 2, 2), "mode")


async def test_mode_ties_go_to_the_smallest_label_on_every_path(tmp_path):
    """Every window is a 2-2-2-2 (or 4-4) tie; the smallest value wins, for signed values
    too (-2**63 beats 2**63 - 1), with the compiled kernel, numpy's and tensorstore's."""
    top, bottom = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    pattern = np.array([top, bottom, 2**53 + 1, 2**53], np.int64)
    data = np.resize(pattern, (4, 4, 16)).reshape(4, 4, 16)
    src = await as_zarr(tmp_path, "in.zarr", data)
    for factors in [(2, 2, 2), (1, 1, 16), (4, 4, 4)]:
        expected = exact_reduce(data, factors, "mode")
        for input in (data, src):
            result = await ba.downsample(input, factors, method="mode", num_workers=2)
            np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize(
    "src_dtype,out_dtype", [("float16", "float64"), ("float16", "float32"), ("float32", "float64")]
)
async def test_a_float_mean_into_a_wider_float_is_not_rounded_to_the_input_dtype(
    tmp_path, src_dtype, out_dtype
):
    """The float16 window [65504, 65504, 3, 0, 0, 0, 3, 0] averages to 16376.75, which float32
    and float64 hold; it was rounded to float16 (16376.0) before reaching the output."""
    data = np.zeros((2, 2, 4), src_dtype)
    data[0, 0, :2] = 65504 if src_dtype == "float16" else 1e8
    data[0, 1, :2] = 3
    data[1, 1, 2:] = np.asarray(1 / 3, src_dtype)
    expected = np.array(
        [sum(float(v) for v in values) / len(values) for _, values in windows(data, (2, 2, 2))]
    ).reshape(1, 1, 2)
    src = await as_zarr(tmp_path, "in.zarr", data)
    for input in (data, src):
        out = np.zeros((1, 1, 2), out_dtype)
        await ba.downsample(input, 2, out, method="mean")
        np.testing.assert_array_equal(out, expected.astype(out_dtype))


@pytest.mark.parametrize(
    "order,anti_aliasing,shape",
    [
        (1, False, (9, 11, 13)),  # fractional positions: interpolated
        (3, False, (9, 11, 13)),
        (1, True, (8, 10, 12)),  # whole factors: the plane kernels
        (0, True, (8, 10, 12)),
        (1, True, (9, 11, 13)),
    ],
)
async def test_float16_resampling_into_float32_is_not_rounded_to_float16(
    order, anti_aliasing, shape
):
    """Interpolated and smoothed float16 values are computed in float32 (float64 for splines);
    written into a float32 output they were rounded to float16 first (errors of 0.06 on
    values near 100, where float16's step is 0.0625)."""
    rng = np.random.default_rng(3)
    data = (rng.random(shape) * 100 + 100).astype(np.float16)
    out_shape = tuple(-(-n // f) for n, f in zip(shape, (2, 2, 3)))
    into_f32 = await ba.downsample(
        data, (2, 2, 3), np.zeros(out_shape, np.float32), order=order, anti_aliasing=anti_aliasing
    )
    from_f32 = await ba.downsample(
        data.astype(np.float32),
        (2, 2, 3),
        np.zeros(out_shape, np.float32),
        order=order,
        anti_aliasing=anti_aliasing,
    )
    np.testing.assert_allclose(into_f32, from_f32, rtol=1e-6)
    on_float16_grid = into_f32 == into_f32.astype(np.float16).astype(np.float32)
    assert not on_float16_grid.all()


def test_checking_float16_into_an_integer_dtype_warns_of_nothing():
    """float_bounds_in held int32's bounds as float16 (-inf, inf) with an overflow warning."""
    from bioimage_async.kernels.casting import cast_checked

    values = np.array([-3.5, 65504.0], np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = cast_checked(values, np.dtype(np.int32))
    np.testing.assert_array_equal(result, [-3, 65504])
