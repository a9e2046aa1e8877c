"""``ba.as_source`` of a zarr-python array: what zarr-python reads, we read (through tensorstore
where it can, through zarr-python where it cannot), with the dtype reads return."""

import numcodecs
import numpy as np
import pytest

import bioimage_async as ba

zarr = pytest.importorskip("zarr")

DATA = np.arange(2 * 6 * 8, dtype="u2").reshape(2, 6, 8) * 7


@pytest.mark.parametrize(
    "settings",
    [
        {"filters": [numcodecs.Delta(dtype="u2")]},
        {"filters": [numcodecs.FixedScaleOffset(offset=0, scale=1, dtype="u2")]},
        {"compressors": numcodecs.LZ4()},
        {"compressors": numcodecs.LZMA()},
    ],
    ids=["delta", "fixedscaleoffset", "lz4", "lzma"],
)
async def test_arrays_tensorstore_cannot_decode_read_through_zarr_python(tmp_path, settings):
    """Reopened through tensorstore, their first read failed though zarr-python reads them."""
    path = tmp_path / "a.zarr"
    written = zarr.create_array(
        path, shape=DATA.shape, dtype="u2", chunks=(1, 3, 4), zarr_format=2, **settings
    )
    written[...] = DATA
    src = ba.as_source(zarr.open_array(path, mode="r"))
    np.testing.assert_array_equal(await src.read(), DATA)
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=DATA.shape, dtype="u2", chunks=(1, 3, 4)
    )
    await ba.copy(src, out)
    np.testing.assert_array_equal(await out.read(), DATA)


async def test_a_big_endian_array_reports_the_dtype_its_reads_return(tmp_path):
    path = tmp_path / "be.zarr"
    zarr.create_array(path, shape=DATA.shape, dtype=">u2", chunks=(1, 3, 4), zarr_format=2)[...] = (
        DATA
    )
    src = ba.as_source(zarr.open_array(path, mode="r"))
    read = await src.read()
    assert src.dtype == read.dtype == np.dtype("uint16")
    np.testing.assert_array_equal(read, DATA)
