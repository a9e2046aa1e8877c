"""A checked cast looks only at the voxels a mask lets through: nothing else is written.

Values the output cannot hold outside the mask (a background of NaN, a sentinel of -1) never
reach the output, so they must not fail the block; inside the mask they still do.
"""

import numpy as np
import pytest

import bioimage_async as ba

from ..runners.blockfns import times_hundred_int64


def out_of_range_outside_the_mask() -> tuple[np.ndarray, np.ndarray]:
    """float64 values that fit uint8 inside the mask, NaN, 300 and -1 outside it, in every
    block of a 16x16 grid."""
    data = np.tile(np.arange(16, dtype=np.float64), (32, 2))
    mask = np.zeros(data.shape, bool)
    mask[::2] = True
    data[1::4] = 300.0
    data[3::4, ::3] = np.nan
    data[3::4, 1::3] = -1.0
    return data, mask


async def zarr_of(path, data: np.ndarray, **options) -> ba.Source:
    """``data`` written to a zarr array (masks too: subprocess workers reopen them)."""
    src = await ba.create_source(
        path, shape=data.shape, dtype=data.dtype, chunks=(16, 16), **options
    )
    await src.write(..., data)
    return src


async def zarr_pair(tmp_path, data: np.ndarray, out_dtype: str) -> tuple[ba.Source, ba.Source]:
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=data.shape, dtype=data.dtype, chunks=(16, 16)
    )
    await src.write(..., data)
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=data.shape, dtype=out_dtype, chunks=(16, 16), fill_value=7
    )
    return src, out


@pytest.mark.parametrize("job_type", ["local", "subprocess"])
async def test_copy_with_a_mask_ignores_values_that_do_not_fit_outside_it(tmp_path, job_type):
    data, mask = out_of_range_outside_the_mask()
    src, out = await zarr_pair(tmp_path, data, "uint8")
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    run = {"job_type": job_type, "job_config": config, "num_workers": 2, "block_shape": (16, 16)}
    await ba.copy(src, out, mask=await zarr_of(tmp_path / "m.zarr", mask), **run)
    np.testing.assert_array_equal(await out.read(), np.where(mask, data, 7).astype(np.uint8))
    with pytest.raises(ba.RunnerError, match="do not fit the output dtype uint8") as failed:
        await ba.copy(src, out, **run)
    assert failed.value.failed_block_ids == [0, 1, 2, 3]
    inside = mask.copy()
    inside[1, 4] = True  # 300, in block 0
    with pytest.raises(ba.RunnerError, match="300") as failed:
        await ba.copy(src, out, mask=await zarr_of(tmp_path / "m2.zarr", inside), **run)
    assert failed.value.failed_block_ids == [0]


@pytest.mark.parametrize("job_type", ["local", "subprocess"])
async def test_map_blocks_with_a_mask_checks_only_the_results_inside_it(tmp_path, job_type):
    """times_hundred_int64: 0..2 fit uint8 as 0..200, 3 does not (300)."""
    data = np.tile(np.array([0, 1, 2, 3], np.uint8), (32, 8))
    mask = data < 3
    src, out = await zarr_pair(tmp_path, data, "uint8")
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    run = {"job_type": job_type, "job_config": config, "num_workers": 2, "block_shape": (16, 16)}
    masked = await zarr_of(tmp_path / "m.zarr", mask)
    await ba.map_blocks(times_hundred_int64, src, out, mask=masked, **run)
    expected = np.where(mask, data.astype(np.int64) * 100, 7).astype(np.uint8)
    np.testing.assert_array_equal(await out.read(), expected)
    with pytest.raises(ba.RunnerError, match="do not fit the output dtype uint8"):
        await ba.map_blocks(times_hundred_int64, src, out, **run)


async def test_downsample_into_a_narrower_dtype_with_a_mask_checks_only_inside_it(tmp_path):
    """A light kernel (computed in threads): mean of float windows into uint8."""
    data, _ = out_of_range_outside_the_mask()
    src = await zarr_of(tmp_path / "in.zarr", data)
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=(16, 16), dtype="uint8", chunks=(8, 8), fill_value=7
    )
    reference = await ba.downsample(data, 2, method="max")  # NaN and 300 in some windows
    mask = np.isfinite(reference) & (reference >= 0) & (reference <= 255)
    assert mask.any() and not mask.all()
    run = {"method": "max", "block_shape": (8, 8), "num_workers": 2}
    await ba.downsample(src, 2, out, mask=mask, **run)
    expected = np.where(mask, np.nan_to_num(reference), 7).astype(np.uint8)
    np.testing.assert_array_equal(await out.read(), expected)
    with pytest.raises(ba.RunnerError, match="do not fit the output dtype uint8"):
        await ba.downsample(src, 2, out, **run)
