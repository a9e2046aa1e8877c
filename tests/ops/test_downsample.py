import importlib

import numpy as np
import pytest
import scipy.ndimage as ndi

import bioimage_async as ba
from bioimage_async.kernels.resample import downscale_shape


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


@pytest.mark.parametrize("order", [0, 1, 3])
async def test_matches_bioimage_py_without_anti_aliasing_on_divisible_shapes(rng, order):
    """docs/from-bioimage-py.md: the same voxels for orders 0, 1 and 3 on shapes the factor
    divides."""
    bp = pytest.importorskip("bioimage_py")
    data = rng.integers(0, 256, size=(32, 32, 48), dtype=np.uint8)
    theirs = bp.downsample(data, 2, order=order, block_shape=(8, 8, 8))
    ours = await ba.downsample(data, 2, order=order, block_shape=(8, 8, 8))
    np.testing.assert_array_equal(ours, theirs)


async def test_anti_aliasing_rounds_where_bioimage_py_truncates(rng):
    """docs/from-bioimage-py.md: integer outputs of a smoothed downsample are the nearest
    integer (scipy's float result rounded); bioimage-py truncates them."""
    bp = pytest.importorskip("bioimage_py")
    data = rng.integers(0, 256, size=(32, 32, 32), dtype=np.uint8)
    theirs = np.asarray(bp.downsample(data, 2, order=1, anti_aliasing=True))
    ours = await ba.downsample(data, 2, order=1, anti_aliasing=True, block_shape=(8, 8, 8))
    np.testing.assert_array_equal(ours, scipy_reference(data, 2, 1, True))
    lower = ours.astype(int) - theirs.astype(int)
    assert set(np.unique(lower)) == {0, 1}  # truncation: theirs is ours or one below


async def test_order_3_on_odd_shapes_is_scipy_where_bioimage_py_is_not(rng):
    """docs/from-bioimage-py.md: on shapes the factor does not divide, order 3 is scipy's
    whole-array affine_transform; bioimage-py's values are far from it."""
    bp = pytest.importorskip("bioimage_py")
    data = rng.random((33, 35, 31))
    shape = downscale_shape(data.shape, (2, 2, 2))
    scales = [i / o for i, o in zip(data.shape, shape)]
    reference = ndi.affine_transform(data, scales, output_shape=shape, order=3)
    ours = await ba.downsample(data, 2, order=3, block_shape=(8, 8, 8))
    theirs = np.asarray(bp.downsample(data, 2, order=3))
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)
    assert np.abs(theirs - reference).max() > 0.05


async def test_invalid_factor_and_order_are_refused(volume):
    with pytest.raises(ValueError, match=">= 1"):
        await ba.downsample(volume, 0)
    with pytest.raises(ValueError, match="from 0 to 5"):
        await ba.downsample(volume, 2, order=7)
    with pytest.raises(ValueError, match="entries"):
        await ba.downsample(volume, (2, 2))


@pytest.mark.parametrize("factor", [(1.5, 1.5, 1.5), (2.9, 2.9, 2.9), 1.5, "2", (2, 2.0000001, 2)])
async def test_non_integer_factors_are_refused_not_truncated(volume, factor):
    with pytest.raises(ba.InvalidArgumentError, match="integer"):
        await ba.downsample(volume, factor)


@pytest.mark.parametrize("order", [1.5, "1", True, -1])
async def test_non_integer_orders_are_refused(volume, order):
    with pytest.raises(ba.InvalidArgumentError, match="order must be an integer"):
        await ba.downsample(volume, 2, order=order)


@pytest.mark.parametrize("block_ids", ["12", [1.7], [True], 5, [[1, 2]]])
async def test_block_ids_that_are_not_integers_are_refused_with_the_value(volume, block_ids):
    with pytest.raises(ba.InvalidArgumentError, match="block_ids"):
        await ba.copy(volume, block_ids=block_ids)


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
    from bioimage_async.kernels.resample import Resampling

    target = downscale_shape(data.shape, factors)
    assert Resampling(data.shape, target, 1, True).integer_steps == factors
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


async def test_order_zero_on_a_zarr_input_whose_step_is_not_the_factor_matches_numpy(tmp_path, rng):
    """9 voxels by 4 give 3 outputs sampled every 3rd voxel: a stride-4 view (0, 4, 8) differs."""
    data = rng.integers(0, 2**16, size=(9, 6, 8), dtype=np.uint16)
    src = await ba.create_source(
        tmp_path / "i.zarr", shape=data.shape, dtype="uint16", chunks=(4, 4, 4)
    )
    await src.write(..., data)
    from_numpy = await ba.downsample(data, 4, block_shape=(2, 2, 2))
    from_zarr = await ba.downsample(src, 4, block_shape=(2, 2, 2))
    np.testing.assert_array_equal(from_zarr, from_numpy)
    np.testing.assert_array_equal(from_zarr, data[::3, ::3, ::4])
    np.testing.assert_array_equal(from_zarr, scipy_order0(data, 4))


def scipy_order0(data: np.ndarray, factor: int) -> np.ndarray:
    shape = downscale_shape(data.shape, (factor,) * data.ndim)
    scales = [i / o for i, o in zip(data.shape, shape)]
    return ndi.affine_transform(data, scales, output_shape=shape, order=0)


# ---- window reductions: mode, mean, min, max ------------------------------------------------
from bioimage_async.kernels.reductions import reduce_windows  # noqa: E402


def labels_with_ties(rng, shape, dtype):
    """Few values (many tied windows), with a large offset for 64-bit types."""
    data = rng.integers(0, 4, size=shape).astype(dtype)
    if np.dtype(dtype).itemsize == 8 and np.dtype(dtype).kind == "u":
        data += np.uint64(2**60)  # above 2**53: exact only without a float round trip
    return data


@pytest.mark.parametrize("method", ["mode", "mean", "min", "max"])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint32", "uint64", "float32"])
@pytest.mark.parametrize("factors", [(2, 2, 2), (1, 2, 2), (2, 3, 1)])
async def test_reductions_from_zarr_and_numpy_equal_the_kernel_on_the_whole_array(
    tmp_path, rng, method, dtype, factors
):
    """The zarr input goes through tensorstore's downsample driver (mode: our compiled kernel,
    where built), the numpy one through our kernel block by block: both must equal the
    whole-array reference exactly."""
    data = labels_with_ties(rng, (13, 17, 19), dtype)
    expected = reduce_windows(data, factors, method)
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype=dtype, chunks=(4, 8, 8)
    )
    await src.write(..., data)
    shape = downscale_shape(data.shape, factors)
    out = await ba.create_source(tmp_path / "o.zarr", shape=shape, dtype=dtype, chunks=(2, 4, 4))
    await ba.downsample(src, factors, out, method=method, num_workers=2)
    np.testing.assert_array_equal(await out.read(), expected)
    blockwise = await ba.downsample(
        data, factors, method=method, block_shape=(2, 4, 4), num_workers=2
    )
    np.testing.assert_array_equal(blockwise, expected)


@pytest.mark.parametrize("method", ["mode", "mean", "min", "max"])
async def test_float_reductions_with_nan_agree_bit_for_bit_from_zarr_and_numpy(
    tmp_path, rng, method
):
    """NaN propagates through min and max as documented (tensorstore's driver skips it)."""
    data = rng.choice(np.array([1.0, 2.0, np.nan], np.float32), size=(16, 16, 16))
    expected = reduce_windows(data, (2, 2, 2), method)
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype="float32", chunks=(8, 8, 8)
    )
    await src.write(..., data)
    from_zarr = await ba.downsample(src, 2, method=method, block_shape=(4, 4, 4))
    from_numpy = await ba.downsample(data, 2, method=method, block_shape=(4, 4, 4))
    for result in (from_zarr, from_numpy):
        np.testing.assert_array_equal(result.view(np.uint32), expected.view(np.uint32))
    if method in ("min", "max"):
        assert np.isnan(from_zarr).any()


@pytest.mark.parametrize("case", ["compiled", "not built", "huge blocks"])
async def test_mode_from_zarr_takes_the_compiled_kernel_else_tensorstores_driver(
    tmp_path, rng, monkeypatch, case
):
    """The compiled mode kernel on block buffers is faster than tensorstore's mode driver
    (bench_labels); without it, or for blocks too large to reuse buffers for (a shard-sized
    pyramid level), the driver serves the zarr input. Same values either way."""
    from bioimage_async.kernels import reductions

    downsample_module = importlib.import_module("bioimage_async.ops.downsample")

    if reductions._NATIVE is None:
        pytest.skip("the compiled mode kernel was not built here")
    if case == "not built":
        monkeypatch.setattr(reductions, "_NATIVE", None)
    if case == "huge blocks":
        monkeypatch.setattr(downsample_module, "MODE_KERNEL_MAX_INPUT_BYTES", 1024)
    compiled = case == "compiled"
    data = labels_with_ties(rng, (16, 24, 20), "uint32")
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype="uint32", chunks=(8, 8, 8)
    )
    await src.write(..., data)
    stats = ba.RunStats()
    result = await ba.downsample(src, 2, method="mode", num_workers=2, stats=stats)
    np.testing.assert_array_equal(result, reduce_windows(data, (2, 2, 2), "mode"))
    assert (stats.compute_s > 0) == compiled  # the driver's view is copied: nothing computed


async def test_mode_keeps_the_majority_label_that_nearest_sampling_misses():
    """An object covering 7 of every 8 voxels but never a window's first voxel: nearest
    sampling reads only background, the mode keeps the object."""
    z, y, x = np.indices((8, 8, 8))
    labels = np.where((z % 2) | (y % 2) | (x % 2), 7, 0).astype(np.uint32)
    assert not (await ba.downsample(labels, 2)).any()
    assert ((await ba.downsample(labels, 2, method="mode")) == 7).all()


@pytest.mark.parametrize("job_type", ["subprocess"])
async def test_mode_downsample_runs_distributed(tmp_path, rng, job_type):
    data = labels_with_ties(rng, (16, 24, 20), "uint64")
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype="uint64", chunks=(8, 8, 8)
    )
    await src.write(..., data)
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=(8, 12, 10), dtype="uint64", chunks=(4, 4, 4)
    )
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    await ba.downsample(
        src, 2, out, method="mode", job_type=job_type, job_config=config, num_workers=2
    )
    np.testing.assert_array_equal(await out.read(), reduce_windows(data, (2, 2, 2), "mode"))


async def test_a_method_with_spline_arguments_or_an_unknown_method_is_refused(volume):
    with pytest.raises(
        ba.InvalidArgumentError, match="order= and anti_aliasing= belong to the spline path"
    ):
        await ba.downsample(volume, 2, method="mean", order=1)
    with pytest.raises(ba.InvalidArgumentError, match="mode.*mean.*min.*max"):
        await ba.downsample(volume, 2, method="median")


async def test_a_mean_or_interpolation_into_a_float_output_is_not_rounded_to_the_input(tmp_path):
    """A uint8 window mean of 1.75 was written into a float32 output as 2.0, and an order-1
    ramp as [0, 3, 5]: the kernels rounded into the input dtype before the output saw them."""
    data = np.zeros((2, 2, 2), np.uint8)
    data[0, 0, :] = [3, 4]
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=(2, 2, 2), dtype="uint8", chunks=(2, 2, 2)
    )
    await src.write(..., data)
    for input in (data, src):  # numpy, and the zarr input tensorstore's driver would serve
        out = await ba.create_source(
            tmp_path / f"m{id(input)}.zarr", shape=(1, 1, 1), dtype="float32", chunks=(1, 1, 1)
        )
        await ba.downsample(input, 2, out, method="mean")
        assert (await out.read()).item() == 7 / 8
    ramp = np.arange(8, dtype=np.uint8).reshape(1, 1, 8)
    out = await ba.create_source(
        tmp_path / "r.zarr", shape=(1, 1, 3), dtype="float32", chunks=(1, 1, 3)
    )
    await ba.downsample(ramp, (1, 1, 3), out, order=1)
    np.testing.assert_allclose((await out.read()).ravel(), [0, 8 / 3, 16 / 3], rtol=1e-6)


async def test_a_float_mean_into_an_integer_output_is_rounded_and_still_checked(tmp_path):
    """docs: the mean is rounded for integers; the cast alone truncated 2.66 to 2."""
    data = np.array([2.5, 2.8125, 2.5, 2.8125], np.float32).reshape(1, 1, 4)
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=(1, 1, 1), dtype="uint8", chunks=(1, 1, 1)
    )
    await ba.downsample(data, (1, 1, 4), out, method="mean")
    assert (await out.read()).item() == 3
    ramp = np.array([0.0, 1.3, 2.6, 3.9], np.float32).reshape(1, 1, 4)
    out = await ba.create_source(
        tmp_path / "r.zarr", shape=(1, 1, 2), dtype="uint8", chunks=(1, 1, 2)
    )
    await ba.downsample(ramp, (1, 1, 2), out, order=1)  # samples 0.0 and 2.6
    np.testing.assert_array_equal((await out.read()).ravel(), [0, 3])
    too_big = np.full((1, 1, 2), 300.0, np.float32)
    small = await ba.create_source(
        tmp_path / "s.zarr", shape=(1, 1, 1), dtype="uint8", chunks=(1, 1, 1)
    )
    with pytest.raises(ba.RunnerError, match="do not fit"):
        await ba.downsample(too_big, (1, 1, 2), small, method="mean")


@pytest.mark.parametrize("method", ["max", "mean", "stride", "mode"])
async def test_a_view_that_drops_an_axis_downsamples_like_its_numpy_twin(tmp_path, method):
    """tensorstore cannot give the spec of its downsample driver over such a view: the op
    raised 'Cannot inverse transform schema of rank 3 by index transform of rank 2 -> 3'."""
    data = np.random.default_rng(5).integers(0, 9, (12, 6, 14), dtype=np.uint8)
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype="uint8", chunks=(4, 3, 7)
    )
    await src.write(..., data)
    view = src.view((slice(1, 12), 3, slice(2, None)))
    factor = 3 if method == "mode" else 2
    expected = await ba.downsample(data[1:12, 3, 2:], factor, method=method)
    np.testing.assert_array_equal(await ba.downsample(view, factor, method=method), expected)


@pytest.mark.parametrize("op", ["downsample", "pyramid"])
async def test_an_input_with_an_empty_axis_is_refused_as_such(tmp_path, op):
    """pyramid divided by zero; downsample said block id 0 was out of range."""
    empty = np.zeros((0, 4, 4), np.uint8)
    with pytest.raises(ba.InvalidArgumentError, match=r"\(0, 4, 4\) \(an empty axis\)"):
        if op == "pyramid":
            await ba.pyramid(empty, tmp_path / "p.ome.zarr", 1)
        else:
            await ba.downsample(empty, 2, method="mean")
    assert not (tmp_path / "p.ome.zarr").exists()
