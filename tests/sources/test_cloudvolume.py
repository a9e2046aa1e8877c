"""CloudVolume layers through open_cloudvolume, checked against cloud-volume's own reads."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.sources.cloudvolume import CloudVolumeSource, open_cloudvolume

cloudvolume = pytest.importorskip("cloudvolume")
CloudVolume = cloudvolume.CloudVolume

VOXEL_OFFSET = (10, 20, 3)  # XYZ
VOLUME_SIZE = (70, 50, 19)  # XYZ, not a multiple of the chunk size
CHUNK = (16, 16, 8)  # XYZ
#: mip -> (downsampling factor, chunk size), XYZ
MIPS = {1: ((2, 2, 1), (16, 16, 8)), 2: ((4, 4, 1), (8, 8, 8))}


def _new_layer(path, *, num_channels=1, dtype="uint16"):
    info = CloudVolume.create_new_info(
        num_channels=num_channels,
        layer_type="image",
        data_type=dtype,
        encoding="raw",
        resolution=[4, 4, 40],
        voxel_offset=list(VOXEL_OFFSET),
        volume_size=list(VOLUME_SIZE),
        chunk_size=list(CHUNK),
    )
    # compress=False: on file:// cloud-volume would otherwise write *.gz chunk files, which
    # tensorstore does not read, and the two readers could not be compared.
    volume = CloudVolume(f"file://{path}", info=info, compress=False, progress=False)
    for factor, chunk in MIPS.values():
        volume.add_scale(factor, chunk_size=list(chunk))
    volume.commit_info()
    return f"file://{path}"


def _cv(cloudpath, mip=0, **kwargs):
    return CloudVolume(cloudpath, mip=mip, compress=False, progress=False, **kwargs)


def _cv_read_zyx(cloudpath, mip=0, offset=None, size=None, **kwargs):
    volume = _cv(cloudpath, mip, **kwargs)
    lo = volume.voxel_offset if offset is None else offset
    hi = [a + b for a, b in zip(lo, volume.volume_size if size is None else size)]
    cutout = volume[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    return np.asarray(cutout)[..., 0].transpose(2, 1, 0)


@pytest.fixture(scope="module")
def layer(tmp_path_factory):
    """A 3-mip uint16 layer written by cloud-volume, with a non-zero voxel offset."""
    cloudpath = _new_layer(tmp_path_factory.mktemp("cv") / "layer")
    rng = np.random.default_rng(42)
    data = rng.integers(0, 60_000, VOLUME_SIZE, dtype=np.uint16)[..., None]  # x, y, z, c
    _cv(cloudpath)[...] = data
    for mip, (factor, _) in MIPS.items():
        _cv(cloudpath, mip)[...] = data[:: factor[0], :: factor[1], :: factor[2]]
    return cloudpath


def _aligned_blocks(shape, chunks, grid_offset):
    """Blocks whose borders lie on the chunk grid (shifted by grid_offset), in C order."""
    edges = []
    for n, c, g in zip(shape, chunks, grid_offset):
        cuts = sorted({0, n, *range(g % c or c, n, c)})
        edges.append([slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])])
    return list(itertools.product(*edges))


async def _gather_writes(source, data, blocks, in_flight=16):
    limit = asyncio.Semaphore(in_flight)

    async def write(block):
        async with limit:
            await source.write(block, data[block])

    await asyncio.gather(*(write(b) for b in blocks))


# ---- reading ---------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("mip", [0, 1, 2])
async def test_every_mip_reads_voxel_for_voxel_as_cloudvolume(layer, mip):
    source = open_cloudvolume(layer, mip=mip)
    expected = _cv_read_zyx(layer, mip)
    volume = _cv(layer, mip)
    assert source.shape == tuple(int(n) for n in volume.volume_size[::-1])
    assert source.chunks == tuple(int(c) for c in volume.chunk_size[::-1])
    assert source.dtype == np.uint16
    assert source.grid_offset == (0, 0, 0)
    np.testing.assert_array_equal(await source.read(...), expected)


@pytest.mark.asyncio
async def test_regions_and_int_indices_read_like_numpy(layer):
    source = open_cloudvolume(layer)
    expected = _cv_read_zyx(layer)
    for index in [
        np.s_[3:17, 5:37, 9:61],
        np.s_[7, 10:30, :],
        np.s_[..., 4],
        np.s_[-1, -3, -5],
        np.s_[0:0, :, :],
    ]:
        np.testing.assert_array_equal(await source.read(index), expected[index])
    np.testing.assert_array_equal(source[2:5, 1, 3:50], expected[2:5, 1, 3:50])


@pytest.mark.asyncio
async def test_offset_and_size_select_an_absolute_xyz_box(layer):
    offset, size = (13, 25, 5), (30, 20, 10)
    source = open_cloudvolume(layer, offset=offset, size=size)
    assert source.shape == (10, 20, 30)
    np.testing.assert_array_equal(
        await source.read(...), _cv_read_zyx(layer, offset=offset, size=size)
    )
    # The layer's chunks start at its voxel offset: x borders at 10 + 16k, so local 13 (= 26).
    assert source.grid_offset == ((3 - 5) % 8, (20 - 25) % 16, (10 - 13) % 16)


@pytest.mark.asyncio
async def test_an_offset_alone_presents_the_rest_of_the_layer(layer):
    source = open_cloudvolume(layer, offset=(40, 30, 10))
    assert source.xyz_size == (40, 40, 12)
    np.testing.assert_array_equal(
        await source.read(...), _cv_read_zyx(layer, offset=(40, 30, 10), size=(40, 40, 12))
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("mip", [0, 1])
async def test_open_source_precomputed_and_open_cloudvolume_agree(layer, mip):
    key = _cv(layer, mip).key
    folder = layer[len("file://") :]
    through_tensorstore = await ba.open_source(f"precomputed://{folder}", key)
    through_cloudvolume = open_cloudvolume(f"precomputed://{layer}", mip=mip)
    assert through_tensorstore.shape == through_cloudvolume.shape
    assert through_tensorstore.axes == through_cloudvolume.axes == "zyx"  # was None
    np.testing.assert_array_equal(
        await through_tensorstore.read(...), await through_cloudvolume.read(...)
    )
    by_folder = await ba.open_source(folder, key)
    np.testing.assert_array_equal(
        await by_folder.read(np.s_[2:9, 4:20, 1:30]),
        await through_cloudvolume.read(np.s_[2:9, 4:20, 1:30]),
    )


@pytest.mark.asyncio
async def test_a_plain_local_path_opens_and_is_recorded_absolute(layer, monkeypatch):
    folder = layer[len("file://") :]
    parent, name = folder.rsplit("/", 1)
    monkeypatch.chdir(parent)
    source = open_cloudvolume(name)
    assert source.to_spec().params["cloudpath"] == layer
    np.testing.assert_array_equal(await source.read(...), _cv_read_zyx(layer))


@pytest.mark.asyncio
async def test_spec_round_trips_through_json(layer):
    source = open_cloudvolume(layer, mip=1, offset=(7, 12, 4), size=(20, 9, 11))
    spec = json.loads(json.dumps(source.to_spec().to_json()))
    assert spec["kind"] == "cloudvolume"
    reopened = await ba.from_spec(spec)
    assert isinstance(reopened, CloudVolumeSource)
    assert (reopened.shape, reopened.chunks, reopened.grid_offset) == (
        source.shape,
        source.chunks,
        source.grid_offset,
    )
    np.testing.assert_array_equal(await reopened.read(...), await source.read(...))


@pytest.mark.asyncio
async def test_concurrent_reads_use_one_handle_per_worker_thread(layer, monkeypatch):
    source = open_cloudvolume(layer)
    seen: dict[int, set[int]] = {}
    original = CloudVolumeSource._thread_volume

    def recording(self):
        volume = original(self)
        seen.setdefault(threading.get_ident(), set()).add(id(volume))
        return volume

    monkeypatch.setattr(CloudVolumeSource, "_thread_volume", recording)
    expected = _cv_read_zyx(layer)
    blocks = _aligned_blocks(source.shape, source.chunks, source.grid_offset)
    results = await asyncio.gather(*(source.read(b) for b in blocks))
    for block, data in zip(blocks, results):
        np.testing.assert_array_equal(data, expected[block])
    handles = [h for hs in seen.values() for h in hs]
    assert all(len(hs) == 1 for hs in seen.values())
    assert len(set(handles)) == len(handles)  # no handle is shared by two threads


# ---- writing ---------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_concurrent_chunk_aligned_writes_end_identical_to_the_input(tmp_path):
    cloudpath = _new_layer(tmp_path / "out")
    source = open_cloudvolume(cloudpath, compress=False)
    data = np.random.default_rng(1).integers(0, 60_000, source.shape, dtype=np.uint16)
    blocks = _aligned_blocks(source.shape, source.chunks, source.grid_offset)
    assert len(blocks) > 16
    await _gather_writes(source, data, blocks, in_flight=16)
    np.testing.assert_array_equal(_cv_read_zyx(cloudpath), data)
    np.testing.assert_array_equal(await source.read(...), data)
    # The layer stays readable through tensorstore too.
    reread = await ba.open_source(f"precomputed://{tmp_path / 'out'}")
    np.testing.assert_array_equal(await reread.read(...), data)


@pytest.mark.asyncio
async def test_concurrent_writes_into_an_unaligned_box_align_to_the_layer_grid(tmp_path):
    cloudpath = _new_layer(tmp_path / "out")
    offset, size = (13, 25, 5), (50, 40, 12)
    source = open_cloudvolume(cloudpath, offset=offset, size=size, fill_missing=True)
    assert source.grid_offset == (6, 11, 13)
    data = np.random.default_rng(2).integers(1, 60_000, source.shape, dtype=np.uint16)
    blocks = _aligned_blocks(source.shape, source.chunks, source.grid_offset)
    await _gather_writes(source, data, blocks, in_flight=16)
    everything = _cv_read_zyx(cloudpath, fill_missing=True)
    inside = tuple(slice(o - v, o - v + s) for o, v, s in zip(offset, VOXEL_OFFSET, size))[::-1]
    np.testing.assert_array_equal(everything[inside], data)
    outside = np.ones(everything.shape, dtype=bool)
    outside[inside] = False
    assert not everything[outside].any()


@pytest.mark.asyncio
async def test_writes_through_a_reopened_spec_land_in_the_layer(tmp_path):
    cloudpath = _new_layer(tmp_path / "out")
    source = open_cloudvolume(cloudpath, mip=2, compress=False)
    reopened = await ba.from_spec(source.to_spec().to_json())
    data = np.arange(np.prod(source.shape), dtype=np.uint16).reshape(source.shape)
    await reopened.write(..., data)
    np.testing.assert_array_equal(_cv_read_zyx(cloudpath, mip=2), data)


# ---- errors ----------------------------------------------------------------------------------
def test_multi_channel_layers_are_refused_with_the_channel_count(tmp_path):
    cloudpath = _new_layer(tmp_path / "rgb", num_channels=3, dtype="uint8")
    with pytest.raises(ba.FormatNotSupportedError, match="3 channels"):
        open_cloudvolume(cloudpath)


def test_a_box_outside_the_layer_is_refused(layer):
    with pytest.raises(ba.InvalidIndexError, match="outside the layer"):
        open_cloudvolume(layer, offset=(0, 0, 0), size=(20, 20, 5))
    with pytest.raises(ba.InvalidIndexError):
        open_cloudvolume(layer, offset=(70, 20, 3), size=(20, 50, 19))


@pytest.mark.asyncio
async def test_out_of_bounds_indices_are_invalid(layer):
    source = open_cloudvolume(layer)
    with pytest.raises(ba.InvalidIndexError):
        await source.read(np.s_[0:20, :, :])
    with pytest.raises(ba.InvalidIndexError):
        await source.write(np.s_[:, 50, :], 0)


@pytest.mark.asyncio
async def test_reading_never_written_chunks_says_to_use_fill_missing(tmp_path):
    cloudpath = _new_layer(tmp_path / "empty")
    with pytest.raises(ba.SourceError, match="fill_missing=True"):
        await open_cloudvolume(cloudpath).read(np.s_[0:2, 0:2, 0:2])
    assert not (await open_cloudvolume(cloudpath, fill_missing=True).read(...)).any()


def test_a_missing_layer_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no CloudVolume layer"):
        open_cloudvolume(tmp_path / "nothing")


def test_secrets_are_never_written_into_a_spec(layer):
    source = open_cloudvolume(layer, secrets={"token": "do-not-leak"})
    with pytest.raises(ba.NotSerializableError, match="secrets"):
        source.to_spec()


# ---- sharded layers ----------------------------------------------------------------------------
def _new_sharded_layer(path):
    info = CloudVolume.create_new_info(
        num_channels=1,
        layer_type="image",
        data_type="uint8",
        encoding="raw",
        resolution=[4, 4, 40],
        voxel_offset=[8, 0, 16],
        volume_size=[64, 60, 40],
        chunk_size=[8, 8, 8],
    )
    info["scales"][0]["sharding"] = {
        "@type": "neuroglancer_uint64_sharded_v1",
        "preshift_bits": 3,
        "hash": "identity",
        "minishard_bits": 3,
        "shard_bits": 3,
        "minishard_index_encoding": "raw",
        "data_encoding": "raw",
    }
    CloudVolume(f"file://{path}", info=info, compress=False, progress=False).commit_info()
    return f"file://{path}"


@pytest.mark.asyncio
async def test_sharded_layers_expose_their_shards_and_align_writes_to_them(tmp_path):
    cloudpath = _new_sharded_layer(tmp_path / "sharded")
    source = open_cloudvolume(cloudpath, compress=False)
    assert source.chunks == (8, 8, 8)
    assert source.shards == (32, 32, 32)  # 2**3 chunks per axis, as tensorstore lays them out
    assert source.write_granularity == (32, 32, 32)
    assert source.grid_offset == (0, 0, 0)
    assert open_cloudvolume(cloudpath, offset=(12, 4, 20)).grid_offset == (28, 28, 28)
    data = np.random.default_rng(3).integers(0, 255, source.shape, dtype=np.uint8)
    blocks = _aligned_blocks(source.shape, source.shards, source.grid_offset)
    await _gather_writes(source, data, blocks, in_flight=16)
    np.testing.assert_array_equal(_cv_read_zyx(cloudpath), data)
    reread = await ba.open_source(f"precomputed://{tmp_path / 'sharded'}")
    np.testing.assert_array_equal(await reread.read(...), data)


# ---- precomputed layers written with cloud-volume's defaults: gzip'd <chunk>.gz files -------
def _gzip_layer(path, data_xyz, **options):
    """A layer written by cloud-volume with its defaults (file:// gzips every chunk), or with
    ``options`` such as ``compress='br'``."""
    info = CloudVolume.create_new_info(
        num_channels=1,
        layer_type="image",
        data_type="uint16",
        encoding="raw",
        resolution=[4, 4, 40],
        voxel_offset=[0, 0, 0],
        volume_size=list(data_xyz.shape),
        chunk_size=[16, 16, 8],
    )
    volume = CloudVolume(f"file://{path}", info=info, progress=False, **options)
    volume.commit_info()
    volume[:, :, :] = data_xyz
    return volume


@pytest.fixture
def gzip_layer(tmp_path, rng_cv):
    data_xyz = rng_cv.integers(1, 60000, size=(40, 35, 17), dtype=np.uint16)
    _gzip_layer(tmp_path / "gz", data_xyz)
    names = [p.name for p in (tmp_path / "gz").rglob("*") if p.is_file() and p.name != "info"]
    assert names and all(name.endswith(".gz") for name in names)  # cloud-volume's default
    return tmp_path / "gz", data_xyz.transpose(2, 1, 0)


@pytest.fixture
def rng_cv():
    return np.random.default_rng(7)


@pytest.mark.parametrize("form", ["path", "precomputed_url", "format"])
async def test_a_gzip_chunked_layer_reads_exactly_through_every_opener(gzip_layer, form):
    path, expected = gzip_layer
    if form == "path":
        src = await ba.open_source(path)
    elif form == "precomputed_url":
        src = await ba.open_source(f"precomputed://file://{path}")
    else:
        src = await ba.open_source(str(path), format="precomputed")
    assert src.shape == expected.shape
    np.testing.assert_array_equal(await src.read(), expected)
    again = await ba.from_spec(src.to_spec().to_json())
    np.testing.assert_array_equal(await again.read(np.s_[3]), expected[3])
    assert not src.writable  # mode='r'


async def test_a_small_write_into_a_gzip_layer_keeps_the_rest_of_the_chunk(gzip_layer):
    path, expected = gzip_layer
    src = await ba.open_source(path, mode="r+")
    await src.write(np.s_[2:4, 5:7, 9:11], np.full((2, 2, 2), 7, np.uint16))
    expected = expected.copy()
    expected[2:4, 5:7, 9:11] = 7
    files = [p.name for p in path.rglob("*") if p.is_file() and p.name != "info"]
    assert all(name.endswith(".gz") for name in files)  # the layer's convention is kept
    read_back = _cv_read_zyx(f"file://{path}")
    np.testing.assert_array_equal(read_back, expected)
    np.testing.assert_array_equal(await (await ba.open_source(path)).read(), expected)


async def test_copying_a_gzip_layer_to_zarr_is_exact(gzip_layer, tmp_path):
    path, expected = gzip_layer
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=expected.shape, dtype="uint16", chunks=(8, 16, 16)
    )
    await ba.copy(await ba.open_source(path), out, num_workers=2)
    np.testing.assert_array_equal(await out.read(), expected)


@pytest.mark.parametrize("compress", ["br", "zstd", "xz"])
async def test_layers_of_other_compressed_chunk_files_read_as_cloudvolume_reads_them(
    tmp_path, rng_cv, compress
):
    """'<chunk>.br' (.zstd, .xz) files: tensorstore read them as zeros, silently."""
    data_xyz = rng_cv.integers(1, 60000, size=(40, 35, 17), dtype=np.uint16)
    _gzip_layer(tmp_path / "c", data_xyz, compress=compress)
    suffix = {"br": ".br", "zstd": ".zstd", "xz": ".xz"}[compress]
    assert all(p.name.endswith(suffix) for p in (tmp_path / "c").rglob("*-*"))
    src = await ba.open_source(tmp_path / "c")
    np.testing.assert_array_equal(await src.read(), data_xyz.transpose(2, 1, 0))
    np.testing.assert_array_equal(await src.read(), _cv_read_zyx(f"file://{tmp_path / 'c'}"))


async def test_create_with_exist_ok_over_a_gzip_layer_keeps_its_data_and_convention(gzip_layer):
    path, expected = gzip_layer
    reopened = await ba.create_source(
        path,
        shape=expected.shape,
        dtype="uint16",
        chunks=(8, 16, 16),
        format="precomputed",
        exist_ok=True,
    )
    np.testing.assert_array_equal(await reopened.read(), expected)  # zeros through tensorstore
    await reopened.write(np.s_[0:2, 0:2, 0:2], np.full((2, 2, 2), 5, np.uint16))
    expected = expected.copy()
    expected[0:2, 0:2, 0:2] = 5
    files = [p.name for p in path.rglob("*") if p.is_file() and p.name != "info"]
    assert all(name.endswith(".gz") for name in files)  # no plain chunk shadowing a .gz one
    np.testing.assert_array_equal(_cv_read_zyx(f"file://{path}"), expected)


@pytest.mark.parametrize("mip", [0, 1, 2])
async def test_the_voxel_offset_is_the_translation_in_nanometers(layer, mip, tmp_path):
    """tensorstore presents a layer from 0: the voxel offset was dropped, and a pyramid of the
    layer sat at the origin instead of over the layer in neuroglancer."""
    volume, base = _cv(layer, mip), _cv(layer, 0).resolution

    def centre(offset):  # OME-Zarr places a coarser voxel's centre between the base voxels'
        xyz = [o * r + (r - b) / 2 for o, r, b in zip(offset, volume.resolution, base)]
        return tuple(float(v) for v in reversed(xyz))

    expected = centre(volume.voxel_offset)
    path = layer.removeprefix("file://")
    by_tensorstore = await ba.open_source(path, scale_index=mip)
    by_cloudvolume = open_cloudvolume(layer, mip=mip)
    assert by_tensorstore.translation == pytest.approx(expected)
    assert by_cloudvolume.translation == pytest.approx(expected)
    corner = [o + 1 for o in volume.voxel_offset]  # a box one voxel in from the layer's corner
    box = open_cloudvolume(layer, mip=mip, offset=corner, size=(2, 2, 2))
    assert box.translation == pytest.approx(centre(corner))
    if mip == 0:
        await ba.pyramid(by_tensorstore, tmp_path / "p.ome.zarr", 1)
        ngff_zarr = pytest.importorskip("ngff_zarr")
        back = ngff_zarr.from_ngff_zarr(str(tmp_path / "p.ome.zarr"))
        assert tuple(back.images[0].translation.values()) == pytest.approx(expected)


async def test_a_gzip_layer_reports_its_voxel_offset_too(tmp_path, rng_cv):
    data_xyz = rng_cv.integers(1, 60000, size=(20, 18, 9), dtype=np.uint16)
    info = CloudVolume.create_new_info(
        num_channels=1,
        layer_type="image",
        data_type="uint16",
        encoding="raw",
        resolution=[4, 4, 40],
        voxel_offset=[100, 200, 10],
        volume_size=list(data_xyz.shape),
        chunk_size=[16, 16, 8],
    )
    volume = CloudVolume(f"file://{tmp_path / 'gz'}", info=info, progress=False)
    volume.commit_info()
    volume[:, :, :] = data_xyz
    src = await ba.open_source(tmp_path / "gz")
    assert src.translation == pytest.approx((400.0, 800.0, 400.0))
    np.testing.assert_array_equal(await src.read(), data_xyz.transpose(2, 1, 0))


@pytest.mark.parametrize("compress", ["br", "zstd"])
async def test_writes_into_a_br_layer_keep_one_file_per_chunk(tmp_path, rng_cv, compress):
    """A write wrote '<chunk>.gz' beside each '<chunk>.br': two copies of every chunk, and
    readers in the same process (cloud-volume's own too) returned the old one."""
    data_xyz = rng_cv.integers(1, 60000, size=(32, 32, 16), dtype=np.uint16)
    _gzip_layer(tmp_path / "c", data_xyz, compress=compress)
    files = sorted(p.name for p in (tmp_path / "c").rglob("*-*"))
    src = await ba.open_source(tmp_path / "c", mode="r+")
    await src.write(..., np.full((16, 32, 32), 222, np.uint16))
    assert sorted(p.name for p in (tmp_path / "c").rglob("*-*")) == files
    assert set(np.unique(await (await ba.open_source(tmp_path / "c")).read())) == {222}
    assert set(np.unique(_cv_read_zyx(f"file://{tmp_path / 'c'}"))) == {222}


async def test_a_gzip_jpeg_layer_is_written_gzip_too(tmp_path):
    """cloud-volume writes jpeg chunks uncompressed by default: a write into a '.gz' jpeg
    layer left plain files beside the '.gz' ones."""
    info = CloudVolume.create_new_info(
        num_channels=1,
        layer_type="image",
        data_type="uint8",
        encoding="jpeg",
        resolution=[4, 4, 40],
        voxel_offset=[0, 0, 0],
        volume_size=[32, 32, 16],
        chunk_size=[16, 16, 8],
    )
    volume = CloudVolume(f"file://{tmp_path / 'j'}", info=info, compress="gzip", progress=False)
    volume.commit_info()
    volume[:, :, :] = np.full((32, 32, 16), 100, np.uint8)
    src = await ba.open_source(tmp_path / "j", mode="r+")
    await src.write(..., np.full((16, 32, 32), 200, np.uint8))
    names = [p.name for p in (tmp_path / "j").rglob("*-*")]
    assert len(names) == 8 and all(n.endswith(".gz") for n in names)
    back = np.asarray(CloudVolume(f"file://{tmp_path / 'j'}", progress=False)[:, :, :])
    assert abs(int(back.mean()) - 200) <= 2  # jpeg is lossy


async def test_a_scale_with_two_kinds_of_chunk_files_is_refused(tmp_path, rng_cv):
    data_xyz = rng_cv.integers(1, 60000, size=(32, 32, 16), dtype=np.uint16)
    _gzip_layer(tmp_path / "c", data_xyz, compress="br")
    _gzip_layer(tmp_path / "c", data_xyz, compress="gzip")  # the same chunks again, as .gz
    with pytest.raises(ba.FormatNotSupportedError, match=r"several kinds.*'<chunk>.br'"):
        await ba.open_source(tmp_path / "c")
