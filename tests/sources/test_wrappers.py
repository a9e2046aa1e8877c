"""Wrapper sources computed on read: ResizedSource at its far edge, ThresholdSource's spec."""

import json

import numpy as np
import pytest
import scipy.ndimage as ndi

import bioimage_async as ba


def nearest_reference(data: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Output i samples input i * in/out (corner aligned), rounded to the nearest voxel; past
    the last voxel the edge voxel, as order 1 does (scipy's mode 'nearest')."""
    scales = [i / o for i, o in zip(data.shape, shape)]
    return ndi.affine_transform(data, scales, output_shape=shape, order=0, mode="nearest")


@pytest.mark.parametrize(
    ("in_shape", "out_shape"),
    [((7, 5, 6), (20, 13, 6)), ((5, 7, 9), (13, 20, 4)), ((3, 2, 11), (10, 9, 31))],
)
async def test_nearest_upsampling_reads_the_far_edge_whole_and_block_wise(
    tmp_path, rng, in_shape, out_shape
):
    """7 -> 20 samples input 19 * 0.35 = 6.65, which rounds to 7: one past the last voxel."""
    data = rng.integers(1, 250, size=in_shape, dtype=np.uint8)
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=in_shape, dtype="uint8", chunks=(4, 4, 4)
    )
    await src.write(..., data)
    resized = ba.ResizedSource(src, out_shape, order=0)
    expected = nearest_reference(data, out_shape)
    np.testing.assert_array_equal(await resized.read(), expected)
    edge = tuple(slice(n - 3, n) for n in out_shape)
    np.testing.assert_array_equal(await resized.read(edge), expected[edge])
    blocked = await ba.copy(resized, block_shape=(3, 4, 5), num_workers=2)
    np.testing.assert_array_equal(blocked, expected)


async def float32_volume_at_a_tenth(tmp_path) -> tuple[np.ndarray, ba.Source]:
    """float32(0.1) is 0.10000000149 > 0.1 in float64, but equal to the Python float 0.1
    compared in float32 (numpy 2, NEP 50)."""
    data = np.array([[0.0, np.float32(0.1)], [0.2, np.float32(0.1)]], np.float32)
    src = await ba.create_source(tmp_path / "in.zarr", shape=(2, 2), dtype="float32", chunks=(2, 2))
    await src.write(..., data)
    return data, src


@pytest.mark.parametrize("threshold", [np.float64(0.1), np.float32(0.1), 0.1])
async def test_a_threshold_compares_the_same_in_this_process_and_from_its_spec(tmp_path, threshold):
    """Workers reopen the source from JSON, where a numpy float64 became a Python float: a
    voxel at the threshold compared differently in the driver process and in the workers."""
    data, src = await float32_volume_at_a_tenth(tmp_path)
    here = ba.ThresholdSource(src, threshold)
    spec = json.loads(json.dumps(here.to_spec().to_json()))
    reopened = await ba.from_spec(spec)
    expected = data > float(threshold)  # numpy's own comparison with a Python float
    np.testing.assert_array_equal(await here.read(), expected)
    np.testing.assert_array_equal(await reopened.read(), expected)


async def test_a_threshold_copy_in_worker_processes_equals_the_local_one(tmp_path):
    data, src = await float32_volume_at_a_tenth(tmp_path)
    threshold = ba.ThresholdSource(src, np.float64(0.1))
    local = await ba.copy(threshold)
    out = await ba.create_source(tmp_path / "o.zarr", shape=(2, 2), dtype=bool, chunks=(1, 2))
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    await ba.copy(threshold, out, job_type="subprocess", job_config=config, num_workers=2)
    np.testing.assert_array_equal(await out.read(), local)
    np.testing.assert_array_equal(local, data > 0.1)


@pytest.mark.parametrize("threshold", [np.uint8(200), np.int64(-1), 300])
async def test_an_integer_threshold_compares_exactly_against_integers(tmp_path, threshold):
    data = np.array([0, 199, 200, 201, 255], np.uint8)
    src = await ba.create_source(tmp_path / "in.zarr", shape=(5,), dtype="uint8", chunks=(5,))
    await src.write(..., data)
    here = ba.ThresholdSource(src, threshold)
    reopened = await ba.from_spec(json.loads(json.dumps(here.to_spec().to_json())))
    expected = data.astype(np.int64) > int(threshold)
    np.testing.assert_array_equal(await here.read(), expected)
    np.testing.assert_array_equal(await reopened.read(), expected)


@pytest.mark.parametrize("threshold", ["0.5", None, np.array([1.0, 2.0]), complex(1, 1)])
async def test_a_threshold_that_is_no_real_number_is_refused(tmp_path, threshold):
    _, src = await float32_volume_at_a_tenth(tmp_path)
    with pytest.raises(ba.InvalidArgumentError, match="threshold must be"):
        ba.ThresholdSource(src, threshold)


@pytest.mark.parametrize("order", [2, 3, 5])
@pytest.mark.parametrize(
    ("in_shape", "out_shape"), [((7, 6, 5), (20, 13, 11)), ((5, 8, 9), (13, 8, 4))]
)
async def test_spline_upsampling_samples_past_the_last_voxel_at_the_edge_value(
    tmp_path, order, in_shape, out_shape
):
    """Corner-aligned upsampling samples past the last voxel (19 * 7/20 = 6.65 > 6); a spline
    there must extend the edge as orders 0 and 1 do, not blend in zeros: a constant volume
    stays constant, whole and block-wise."""
    data = np.full(in_shape, 200, np.uint8)
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=in_shape, dtype="uint8", chunks=(4, 4, 4)
    )
    await src.write(..., data)
    resized = ba.ResizedSource(src, out_shape, order=order)
    np.testing.assert_array_equal(await resized.read(), np.full(out_shape, 200, np.uint8))
    blocked = await ba.copy(resized, block_shape=(3, 4, 5), num_workers=2)
    np.testing.assert_array_equal(blocked, np.full(out_shape, 200, np.uint8))


@pytest.mark.parametrize("order", [2, 3])
async def test_spline_upsampling_block_wise_equals_the_whole_read(tmp_path, rng, order):
    data = rng.random((30, 20, 9)).astype(np.float32)
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype="float32", chunks=(8, 8, 8)
    )
    await src.write(..., data)
    resized = ba.ResizedSource(src, (70, 45, 20), order=order)
    whole = await resized.read()
    blocked = await ba.copy(resized, block_shape=(16, 16, 8), num_workers=2)
    np.testing.assert_allclose(blocked, whole, atol=1e-5)
    assert np.isclose(whole[0, 0, 0], data[0, 0, 0], atol=1e-5)  # corner aligned: a knot
