"""Neuroglancer precomputed layers shared with cloud-volume: layers cloud-volume wrote (with its
defaults: gzip'd chunk files on file://) read here at the right positions, and what we add to
them read back by cloud-volume where it says the voxels are."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import bioimage_async as ba

cloudvolume = pytest.importorskip("cloudvolume")
CloudVolume = cloudvolume.CloudVolume

RESOLUTION = (4, 6, 40)  # XYZ, anisotropic
VOXEL_OFFSET = (12, 8, 4)  # XYZ, even: a 2x coarser scale lines up exactly
VOLUME_SIZE = (70, 45, 23)  # XYZ, no multiple of the chunk size
CHUNK = (16, 32, 8)  # XYZ


def _layer(
    path,
    *,
    compress=None,
    encoding="raw",
    dtype="uint16",
    num_channels=1,
    scales=1,
    voxel_offset=VOXEL_OFFSET,
):
    """A layer written by cloud-volume (its default compression unless ``compress``), every
    scale filled with random values; returns the cloudpath and each scale's data (x, y, z, c)."""
    info = CloudVolume.create_new_info(
        num_channels=num_channels,
        layer_type="segmentation" if encoding == "compressed_segmentation" else "image",
        data_type=dtype,
        encoding=encoding,
        resolution=list(RESOLUTION),
        voxel_offset=list(voxel_offset),
        volume_size=list(VOLUME_SIZE),
        chunk_size=list(CHUNK),
    )
    cloudpath = f"file://{path}"
    options = {} if compress is None else {"compress": compress}
    volume = CloudVolume(cloudpath, info=info, progress=False, **options)
    for level in range(1, scales):
        volume.add_scale((2**level, 2**level, 1), chunk_size=[16, 16, 8])
    volume.commit_info()
    rng = np.random.default_rng(11)
    written = []
    for mip in range(scales):
        at_mip = CloudVolume(cloudpath, mip=mip, progress=False, **options)
        shape = (*(int(n) for n in at_mip.volume_size), num_channels)
        data = rng.integers(1, 60_000, shape).astype(dtype)
        at_mip[:, :, :] = data
        written.append(data)
    return cloudpath, written


def _cv_zyx(cloudpath, mip=0):
    """cloud-volume's own read of a whole scale, in our (c,) z, y, x order."""
    volume = CloudVolume(cloudpath, mip=mip, progress=False)
    data = np.asarray(volume[:, :, :]).transpose(3, 2, 1, 0)
    return data[0] if data.shape[0] == 1 else data


# ---- cloud-volume's layers, read here ---------------------------------------------------------
@pytest.mark.parametrize(
    "compress, encoding, dtype, channels",
    [
        (None, "raw", "uint16", 1),  # '<chunk>.gz' files
        (None, "compressed_segmentation", "uint32", 1),
        (None, "compressed_segmentation", "uint64", 1),
        (False, "compressed_segmentation", "uint64", 1),  # plain files: tensorstore
        (False, "raw", "float32", 3),
    ],
)
async def test_cloudvolume_layers_read_voxel_for_voxel_at_every_scale(
    tmp_path, compress, encoding, dtype, channels
):
    cloudpath, _ = _layer(
        tmp_path / "l",
        compress=compress,
        encoding=encoding,
        dtype=dtype,
        num_channels=channels,
        scales=2,
    )
    info = json.loads((tmp_path / "l" / "info").read_text())
    for mip, scale in enumerate(info["scales"]):
        expected = _cv_zyx(cloudpath, mip)
        for opened in (
            await ba.open_source(tmp_path / "l", scale["key"]),
            await ba.open_source(f"precomputed://{tmp_path / 'l'}", level=mip),
        ):
            assert opened.shape == expected.shape
            region = np.s_[..., 1:-2, 3:, 5:-1]
            np.testing.assert_array_equal(await opened.read(region), expected[region])
            xyz = [
                o * r + (r - b) / 2
                for o, r, b in zip(scale["voxel_offset"], scale["resolution"], RESOLUTION)
            ]
            assert opened.translation == pytest.approx((0.0,) * (channels > 1) + tuple(xyz[::-1]))
            assert opened.voxel_size[-3:] == pytest.approx(tuple(scale["resolution"][::-1]))


# ---- scales added to a cloud-volume layer ----------------------------------------------------
def _absolute_max_downsample(cloudpath, factor):
    """The 2x max-downsample of scale 0 on cloud-volume's absolute voxel grid (x, y, z): voxel X
    of the coarser scale covers voxels factor*X ... of scale 0, as cloud-volume places it."""
    volume = CloudVolume(cloudpath, progress=False)
    data = np.asarray(volume[:, :, :])[..., 0]
    offset = [int(o) for o in volume.voxel_offset]
    end = [o + n for o, n in zip(offset, data.shape)]
    padded_shape = [math.ceil(e / f) * f for e, f in zip(end, factor)]
    padded = np.zeros(padded_shape, data.dtype)  # values are >= 1: zeros never win a max
    padded[offset[0] : end[0], offset[1] : end[1], offset[2] : end[2]] = data
    fx, fy, fz = factor
    blocks = padded.reshape(
        padded_shape[0] // fx, fx, padded_shape[1] // fy, fy, padded_shape[2] // fz, fz
    )
    return blocks.max(axis=(1, 3, 5))


async def _coarser_scale(layer, shape, **placed) -> ba.Source:
    """A 2x coarser scale (80 x 12 x 8 nm, key 8_12_80) added to the layer for ``shape``."""
    return await ba.create_source(
        f"precomputed://{layer}",
        internal_path="8_12_80",
        shape=tuple(math.ceil(n / 2) for n in shape),
        dtype="uint16",
        chunks=(8, 16, 16),
        voxel_size=(80, 12, 8),
        unit="nm",
        **placed,
    )


async def test_a_scale_added_to_a_cloudvolume_layer_lines_up_with_its_voxel_offset(tmp_path):
    """create_source(..., internal_path=<new key>) gave the new scale voxel_offset 0 whatever the
    layer's: cloud-volume and neuroglancer showed its downsample 6x4x2 voxels off the data."""
    cloudpath, _ = _layer(tmp_path / "l")  # cloud-volume's defaults: .gz chunk files
    level0 = await ba.open_source(tmp_path / "l")
    coarser = await _coarser_scale(tmp_path / "l", level0.shape)
    await ba.downsample(level0, 2, coarser, method="max")

    mip1 = CloudVolume(cloudpath, mip=1, progress=False)
    assert [int(v) for v in mip1.voxel_offset] == [v // 2 for v in VOXEL_OFFSET]
    offset, size = [int(v) for v in mip1.voxel_offset], [int(v) for v in mip1.volume_size]
    expected = _absolute_max_downsample(cloudpath, (2, 2, 2))[
        offset[0] : offset[0] + size[0],
        offset[1] : offset[1] + size[1],
        offset[2] : offset[2] + size[2],
    ]
    np.testing.assert_array_equal(np.asarray(mip1[:, :, :])[..., 0], expected)
    # and we place it where cloud-volume does
    reopened = await ba.open_source(tmp_path / "l", "8_12_80")
    assert reopened.translation == pytest.approx(
        tuple(o * 2 * r + r / 2 for o, r in zip(offset, RESOLUTION))[::-1]
    )


async def test_a_scale_that_cannot_line_up_with_an_odd_voxel_offset_is_refused_with_a_fix(
    tmp_path,
):
    """On a layer whose voxel_offset x is odd, the added 2x scale got floor(offset / 2): its
    voxel 0, downsampled from the layer's voxel 0, sat one scale-0 voxel off in cloud-volume."""
    odd = (13, 8, 4)  # XYZ
    cloudpath, _ = _layer(tmp_path / "l", compress=False, voxel_offset=odd)
    level0 = await ba.open_source(tmp_path / "l")
    info_before = (tmp_path / "l" / "info").read_text()
    with pytest.raises(ba.InvalidArgumentError, match=r"voxel_offset \[13, 8, 4\].*view"):
        await _coarser_scale(tmp_path / "l", level0.shape)
    assert (tmp_path / "l" / "info").read_text() == info_before  # nothing added
    # the message's fix: a view starting on the factor's grid, placed at its first window
    view = level0.view(np.s_[:, :, 1:])
    first, coarse = (40.0, 6.0, 4.0), (80.0, 12.0, 8.0)  # z, y, x nm
    placed = tuple(t + (c - f) / 2 for t, c, f in zip(view.translation, coarse, first))
    coarser = await _coarser_scale(tmp_path / "l", view.shape, translation=placed)
    await ba.downsample(view, 2, coarser, method="max")
    mip1 = CloudVolume(cloudpath, mip=1, progress=False)
    offset, size = [int(v) for v in mip1.voxel_offset], [int(v) for v in mip1.volume_size]
    assert offset == [7, 4, 2]
    whole = _absolute_max_downsample(cloudpath, (2, 2, 2))
    expected = whole[offset[0] : offset[0] + size[0], offset[1] : offset[1] + size[1]]
    np.testing.assert_array_equal(
        np.asarray(mip1[:, :, :])[..., 0], expected[:, :, offset[2] : offset[2] + size[2]]
    )


# ---- choosing a scale ------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [None, False])
@pytest.mark.parametrize("choice", [{"scale_index": 2}, {"level": 2}, {"scale_index": -1}])
async def test_a_scale_index_outside_the_layer_is_a_clear_error(tmp_path, compress, choice):
    """An index past the last scale raised a bare IndexError; -1 opened the last scale of a
    layer of '.gz' files and was refused (by tensorstore) on a layer of plain files."""
    _layer(tmp_path / "l", compress=compress, scales=2)
    with pytest.raises(ba.InvalidArgumentError, match=r"2 scales.*4_6_40, 8_12_40"):
        await ba.open_source(tmp_path / "l", **choice)


@pytest.mark.parametrize("compress", [None, False])
async def test_a_scale_index_given_as_internal_path_is_refused_with_the_fix(tmp_path, compress):
    """open_source(layer, 1) failed with "'int' object has no attribute 'strip'"."""
    _layer(tmp_path / "l", compress=compress, scales=2)
    with pytest.raises(ba.InvalidArgumentError, match=r"scale_index=1"):
        await ba.open_source(tmp_path / "l", 1)


# ---- other formats written into a layer's folder ---------------------------------------------
async def test_a_pyramid_is_not_written_into_a_precomputed_layer(tmp_path):
    """An OME-Zarr pyramid written into a layer's folder sat beside its 'info', and opening the
    folder kept returning the layer's old voxels instead of the pyramid just written."""
    cloudpath, _ = _layer(tmp_path / "l")
    before = sorted(p.name for p in (tmp_path / "l").iterdir())
    source = await ba.open_source(tmp_path / "l")
    for exist_ok in (False, True):
        with pytest.raises(ba.SourceExistsError, match="precomputed"):
            await ba.pyramid(source, tmp_path / "l", 2, exist_ok=exist_ok)
    with pytest.raises(ba.SourceExistsError, match="precomputed"):
        await ba.create_source(
            tmp_path / "l", format="zarr", shape=(4, 4, 4), dtype="uint8", chunks=(4, 4, 4)
        )
    assert sorted(p.name for p in (tmp_path / "l").iterdir()) == before
    np.testing.assert_array_equal(await source.read(), _cv_zyx(cloudpath))


async def test_a_precomputed_layer_is_not_created_over_a_zarr_array(tmp_path):
    zarr = await ba.create_source(
        tmp_path / "z", format="zarr", shape=(4, 4, 4), dtype="uint8", chunks=(4, 4, 4)
    )
    await zarr.write(..., np.ones((4, 4, 4), np.uint8))
    with pytest.raises(ba.SourceExistsError, match="zarr"):
        await ba.create_source(
            f"precomputed://{tmp_path / 'z'}", shape=(4, 4, 4), dtype="uint8", chunks=(4, 4, 4)
        )
    assert not (tmp_path / "z" / "info").exists()


async def test_a_pyramid_refuses_an_output_named_as_precomputed(tmp_path):
    """ba.pyramid(src, 'precomputed://out', ...) wrote an OME-Zarr there without a word; no
    precomputed reader (cloud-volume, neuroglancer) finds a layer in it."""
    _layer(tmp_path / "l", compress=False)
    source = await ba.open_source(tmp_path / "l")
    with pytest.raises(ba.InvalidArgumentError, match="OME-Zarr"):
        await ba.pyramid(source, f"precomputed://{tmp_path / 'out'}", 2)
    assert not (tmp_path / "out").exists()


# ---- position kept through a spec ------------------------------------------------------------
@pytest.mark.parametrize("compress", [None, False])
async def test_a_reopened_spec_keeps_the_layer_position(tmp_path, compress):
    """TensorStoreSource specs dropped the translation: a source reopened from its spec (as
    workers and ba.attach do) sat at the origin, and so did a pyramid built from it."""
    _layer(tmp_path / "l", compress=compress)
    source = await ba.open_source(tmp_path / "l")
    again = await ba.from_spec(json.loads(json.dumps(source.to_spec().to_json())))
    assert source.translation == pytest.approx((160.0, 48.0, 48.0))
    assert again.translation == pytest.approx(source.translation)


async def test_a_jpeg_layer_reads_back_as_stored_in_the_process_that_wrote_it(tmp_path):
    """tensorstore's chunk cache kept the values written into a jpeg layer: the writing
    handle, a fresh open_source and a reopened spec read them exactly, while the file (and
    cloud-volume, neuroglancer, any other process) holds the jpeg-decoded values."""
    written = np.random.default_rng(0).integers(0, 255, (16, 64, 64), dtype=np.uint8)
    layer = await ba.create_source(
        f"precomputed://{tmp_path / 'jpeg'}", shape=written.shape, dtype="uint8",
        chunks=(8, 32, 32), compression="jpeg",
    )  # fmt: skip
    await ba.copy(written, layer)
    stored = np.asarray(
        cloudvolume.CloudVolume(f"file://{tmp_path / 'jpeg'}", progress=False)[:, :, :]
    )[..., 0].transpose(2, 1, 0)
    assert not np.array_equal(stored, written)  # jpeg is lossy: the test means something
    np.testing.assert_array_equal(await layer.read(), stored)
    reopened = await ba.open_source(f"precomputed://{tmp_path / 'jpeg'}")
    np.testing.assert_array_equal(await reopened.read(), stored)
    again = await ba.from_spec(layer.to_spec())
    await again.write(..., written)
    np.testing.assert_array_equal(await again.read(), stored)


@pytest.mark.parametrize("encoding", ["raw", "compressed_segmentation"])
async def test_every_written_chunk_is_stored_zeros_too(tmp_path, encoding):
    """A chunk of zeros was not stored (tensorstore skips chunks equal to the fill value), so
    cloud-volume with its defaults raised EmptyVolumeException on a fully written layer, and
    rewriting a chunk with zeros deleted its file."""
    dtype = "uint32" if encoding == "compressed_segmentation" else "uint8"
    data = np.zeros((16, 16, 32), dtype)
    data[:, :, 16:] = 7  # x chunk 0: all zeros
    layer = await ba.create_source(
        f"precomputed://{tmp_path / 'l'}", shape=data.shape, dtype=dtype, chunks=(16, 16, 16),
        voxel_size=(4, 4, 4), unit="nm", compression=encoding,
    )  # fmt: skip
    await ba.copy(data, layer)
    volume = CloudVolume(f"file://{tmp_path / 'l'}", progress=False)  # fill_missing=False
    np.testing.assert_array_equal(np.asarray(volume[:, :, :])[..., 0].transpose(2, 1, 0), data)
    await layer.write(np.s_[:, :, 16:], np.zeros((16, 16, 16), dtype))  # zeros over data
    np.testing.assert_array_equal(np.asarray(volume[:, :, :])[..., 0], 0)
