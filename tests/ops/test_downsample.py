import numpy as np
import pytest
import scipy.ndimage as ndi

import bioimage_async as ba
from bioimage_async.ops.resample import downscale_shape


def scipy_reference(data: np.ndarray, factor: int, order: int, anti_aliasing: bool) -> np.ndarray:
    """The seed's resampling on the whole array, computed with scipy directly."""
    shape = downscale_shape(data.shape, (factor,) * data.ndim)
    scales = [i / o for i, o in zip(data.shape, shape)]
    work = data.astype(np.float64)
    if anti_aliasing:
        work = ndi.gaussian_filter(work, [max(0, (s - 1) / 2) for s in scales], mode="mirror")
    result = ndi.affine_transform(work, scales, output_shape=shape, order=order)
    return np.clip(np.rint(result), 0, 255).astype(data.dtype)


def test_output_shape_is_ceil_mode():
    assert downscale_shape((45, 70, 83), (2, 2, 2)) == (23, 35, 42)
    assert downscale_shape((45, 70, 83), (1, 3, 4)) == (45, 24, 21)


async def test_order_zero_factor_two_on_even_shape_is_exact_striding(rng):
    data = rng.integers(0, 1000, size=(32, 48, 64)).astype(np.uint16)
    result = await ba.downsample(data, 2, block_shape=(8, 8, 8))
    np.testing.assert_array_equal(result, data[::2, ::2, ::2])


@pytest.mark.parametrize(
    "order,anti_aliasing", [(0, False), (1, False), (1, True), (0, True), (3, False), (2, True)]
)
@pytest.mark.parametrize("block_shape", [(8, 8, 8), (5, 11, 7)])
async def test_blockwise_equals_whole_array(volume, order, anti_aliasing, block_shape):
    whole = await ba.downsample(
        volume,
        2,
        order=order,
        anti_aliasing=anti_aliasing,
        block_shape=downscale_shape(volume.shape, (2, 2, 2)),
    )
    blocked = await ba.downsample(
        volume, 2, order=order, anti_aliasing=anti_aliasing, block_shape=block_shape, num_workers=2
    )
    if order <= 1:
        np.testing.assert_array_equal(blocked, whole)
    else:  # the spline prefilter is global: a halo of 12 + order voxels brings it within rounding
        assert np.abs(blocked.astype(int) - whole.astype(int)).max() <= 1


@pytest.mark.parametrize("order,anti_aliasing", [(0, False), (1, False), (1, True), (3, False)])
async def test_matches_scipy_whole_array_resampling(volume, order, anti_aliasing):
    result = await ba.downsample(
        volume, 2, order=order, anti_aliasing=anti_aliasing, block_shape=(8, 16, 16), num_workers=2
    )
    reference = scipy_reference(volume, 2, order, anti_aliasing)
    tolerance = 0 if order == 0 else 1
    assert np.abs(result.astype(int) - reference.astype(int)).max() <= tolerance


async def test_label_safe_default_never_invents_values(rng):
    labels = rng.integers(0, 5, size=(31, 33, 35)).astype(np.uint32) * 1000
    result = await ba.downsample(labels, 3)
    assert set(np.unique(result)) <= set(np.unique(labels))


async def test_anisotropic_factor_and_zarr_in_and_out(tmp_path, zarr_volume, volume):
    shape = downscale_shape(volume.shape, (1, 2, 2))
    out = await ba.create_source(
        tmp_path / "s1.zarr", shape=shape, dtype="uint8", chunks=(16, 16, 16)
    )
    await ba.downsample(zarr_volume, (1, 2, 2), out, order=1, anti_aliasing=True, num_workers=2)
    expected = await ba.downsample(volume, (1, 2, 2), order=1, anti_aliasing=True)
    np.testing.assert_array_equal(await out.read(), expected)


async def test_matches_bioimage_py(volume):
    bp = pytest.importorskip("bioimage_py")
    for order, anti_aliasing, tolerance in [(0, False, 0), (1, False, 1), (1, True, 1)]:
        theirs = bp.downsample(
            volume, 2, order=order, anti_aliasing=anti_aliasing, block_shape=(16, 16, 16)
        )
        ours = await ba.downsample(volume, 2, order=order, anti_aliasing=anti_aliasing)
        assert ours.shape == theirs.shape
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= tolerance, (
            order,
            anti_aliasing,
        )


async def test_invalid_factor_and_order_are_refused(volume):
    with pytest.raises(ValueError, match=">= 1"):
        await ba.downsample(volume, 0)
    with pytest.raises(ValueError, match="between 0 and 5"):
        await ba.downsample(volume, 2, order=7)
    with pytest.raises(ValueError, match="entries"):
        await ba.downsample(volume, (2, 2))


async def test_resized_source_wrapper_reads_like_downsample(volume):
    resized = ba.ResizedSource(ba.as_source(volume), (23, 35, 42), order=1, anti_aliasing=True)
    expected = await ba.downsample(volume, 2, order=1, anti_aliasing=True)
    np.testing.assert_array_equal(
        await resized.read(np.s_[3:9, 10:20, 5:40]), expected[3:9, 10:20, 5:40]
    )


@pytest.mark.parametrize("factor", [2, (1, 2, 2), 3])
@pytest.mark.parametrize("block_shape", [(8, 8, 8), (5, 11, 7)])
async def test_integer_factor_fast_path_matches_whole_array_and_scipy(rng, factor, block_shape):
    """in == factor * out: the plane-wise anti-aliased path (resample_planes) is taken."""
    data = rng.integers(0, 256, size=(48, 66, 84), dtype=np.uint8)
    factors = (factor,) * 3 if isinstance(factor, int) else factor
    from bioimage_async.ops.resample import ResampleKernel

    target = downscale_shape(data.shape, factors)
    assert ResampleKernel(data.shape, target, 1, True).integer_steps == factors
    whole = await ba.downsample(data, factor, order=1, anti_aliasing=True, block_shape=target)
    blocked = await ba.downsample(
        data, factor, order=1, anti_aliasing=True, block_shape=block_shape, num_workers=2
    )
    np.testing.assert_array_equal(blocked, whole)
    scales = [i / o for i, o in zip(data.shape, target)]
    smoothed = ndi.gaussian_filter(
        data.astype(np.float64), [max(0, (s - 1) / 2) for s in scales], mode="mirror"
    )
    reference = np.clip(
        np.rint(ndi.affine_transform(smoothed, scales, output_shape=target, order=1)), 0, 255
    )
    assert np.abs(whole.astype(int) - reference.astype(int)).max() <= 1


async def test_order_zero_on_a_zarr_input_uses_tensorstore_striding_and_reopens(tmp_path, rng):
    data = rng.integers(0, 2**16, size=(32, 48, 64), dtype=np.uint16)
    src = await ba.create_source(
        tmp_path / "i.zarr", shape=data.shape, dtype="uint16", chunks=(16, 16, 16)
    )
    await src.write(..., data)
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=(16, 24, 32), dtype="uint16", chunks=(8, 8, 8)
    )
    await ba.downsample(src, 2, out, num_workers=2)
    np.testing.assert_array_equal(await out.read(), data[::2, ::2, ::2])
    again = await ba.create_source(
        tmp_path / "o2.zarr", shape=(16, 24, 32), dtype="uint16", chunks=(8, 8, 8)
    )
    await ba.downsample(
        src,
        2,
        again,
        job_type="subprocess",
        num_workers=2,
        job_config=ba.RunnerConfig(tmp_root=str(tmp_path)),
    )
    np.testing.assert_array_equal(await again.read(), data[::2, ::2, ::2])
