"""Numerics review: downsample results must not depend on how the work is cut into blocks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import affine_transform, gaussian_filter

import bioimage_async as ba


def test_spline_order5_uint16_equals_the_whole_array_spline_on_tiny_blocks():
    """Orders 2..5 prefilter with an IIR filter over the whole axis; a block reads a halo so
    that the prefilter equals the whole array's there. With too short a halo (12 voxels) order 5
    differed by ~2e-8 of the range at block borders, and uint16 voxels near a .5 tie rounded the
    other way on some block shapes (8 voxels of this volume off by 1)."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 65536, (5, 121, 119)).astype(np.uint16)
    out_shape = (3, 41, 60)
    scales = [n / o for n, o in zip(data.shape, out_shape)]
    whole = affine_transform(data.astype(np.float64), scales, output_shape=out_shape, order=5)
    expected = np.clip(np.rint(whole), 0, 65535).astype(np.uint16)
    got = ba.sync.downsample(
        data, (2, 3, 2), order=5, block_shape=(3, 2, 3), num_workers=2, progress=False
    )
    assert got.dtype == np.uint16
    assert np.count_nonzero(got != expected) == 0


def _footprint_reference(
    data: np.ndarray, out_shape: tuple[int, ...], order: int, smoothing_radius: int
) -> np.ndarray:
    """Outputs whose nearest input voxel has a NaN within the Gaussian's radius plus the
    spline's half-support."""
    from scipy.ndimage import maximum_filter

    reach = smoothing_radius + (order + 2) // 2
    near = maximum_filter(np.isnan(data), size=2 * reach + 1, mode="constant", cval=False)
    index = [
        np.minimum(np.floor(np.arange(o) * (n / o) + 0.5), n - 1).astype(np.intp)
        for n, o in zip(data.shape, out_shape)
    ]
    return near[np.ix_(*index)]


@pytest.mark.parametrize(("order", "anti_aliasing"), [(3, False), (5, True)])
def test_spline_nan_footprint_does_not_depend_on_the_block_shape(
    order: int, anti_aliasing: bool
) -> None:
    """scipy's spline prefilter spreads one NaN along whole lines, so which outputs became NaN
    depended on how far each block reached. Now the outputs whose footprint holds a NaN are NaN
    and every other value equals the zero-filled whole-array spline, on every block shape."""
    rng = np.random.default_rng(3)
    data = rng.random((20, 61, 59)).astype(np.float32)
    data[rng.random(data.shape) < 0.0005] = np.nan
    assert 0 < np.isnan(data).sum() < 60
    out_shape = (10, 31, 30)
    scales = [n / o for n, o in zip(data.shape, out_shape)]
    filled = np.nan_to_num(data.astype(np.float64), nan=0.0)
    radius = 0
    if anti_aliasing:  # sigma (scale - 1) / 2 per axis, truncated at 4 sigma: radius 2
        sigmas = [(scale - 1) / 2 for scale in scales]
        filled = gaussian_filter(filled, sigmas, mode="mirror", truncate=4.0)
        radius = 2
    whole = affine_transform(filled, scales, output_shape=out_shape, order=order)
    expected = whole.astype(np.float32)
    expected[_footprint_reference(data, out_shape, order, radius)] = np.nan
    assert 0 < np.isnan(expected).sum() < expected.size // 2
    for block_shape in [(4, 8, 8), (3, 5, 7), out_shape]:
        got = ba.sync.downsample(
            data,
            2,
            order=order,
            anti_aliasing=anti_aliasing,
            block_shape=block_shape,
            num_workers=1,
            progress=False,
        )
        assert got.shape == out_shape
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"{block_shape}")
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, equal_nan=True)
