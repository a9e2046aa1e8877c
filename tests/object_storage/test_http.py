"""Layers served over http(s) (read-only): a Range-capable static server on 127.0.0.1.

Sharded formats read parts of shard files, so they need a server that honours Range; plain
``python -m http.server`` ignores it and tensorstore then refuses the answer.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import tensorstore as ts

import bioimage_async as ba

SHAPE = (20, 30, 40)


@pytest.fixture
def data() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 250, size=SHAPE, dtype=np.uint8)


async def test_a_precomputed_layer_over_http_reads_exactly(http_root, data):
    root, url = http_root
    for name, sharding in (("plain", None), ("sharded", True)):
        scale: dict[str, object] = {
            "size": [40, 30, 20],
            "chunk_size": [16, 16, 8],
            "resolution": [4, 4, 40],
            "encoding": "raw",
        }
        if sharding:
            scale["sharding"] = {
                "@type": "neuroglancer_uint64_sharded_v1",
                "preshift_bits": 1,
                "minishard_bits": 1,
                "shard_bits": 1,
                "hash": "identity",
                "minishard_index_encoding": "gzip",
                "data_encoding": "raw",
            }
        store = await ts.open(
            {
                "driver": "neuroglancer_precomputed",
                "kvstore": {"driver": "file", "path": str(root / name) + "/"},
                "multiscale_metadata": {"data_type": "uint8", "num_channels": 1, "type": "image"},
                "scale_metadata": scale,
            },
            create=True,
        )
        await store[..., 0].write(data.T)
        layer = await ba.open_source(f"precomputed://{url}/{name}")
        assert layer.format == "precomputed" and not layer.writable
        np.testing.assert_array_equal(await layer.read(), data)
        np.testing.assert_array_equal(await layer.read((slice(3, 11), 7)), data[3:11, 7])
        detected = await ba.open_source(f"{url}/{name}")  # the 'info' file names it
        np.testing.assert_array_equal(await detected.read((4,)), data[4])


@pytest.mark.parametrize(
    "create",
    [{"format": "zarr"}, {"format": "zarr3", "shards": (16, 32, 32)}, {"format": "n5"}],
    ids=["zarr", "zarr3-sharded", "n5"],
)
async def test_zarr_and_n5_over_http_read_exactly(http_root, data, create):
    root, url = http_root
    src = await ba.create_source(
        root / "vol", shape=SHAPE, dtype=data.dtype, chunks=(8, 16, 16), **create
    )
    await src.write(..., data)
    remote = await ba.open_source(f"{url}/vol")
    assert remote.format == create["format"]
    np.testing.assert_array_equal(await remote.read(), data)
    np.testing.assert_array_equal(
        await remote.read((slice(9, 13), slice(1, 29), 5)), data[9:13, 1:29, 5]
    )
    with pytest.raises(ba.ReadOnlySourceError, match="read-only"):
        await ba.open_source(f"{url}/vol", mode="r+")
    with pytest.raises(ba.ReadOnlySourceError, match="read-only"):
        await ba.create_source(f"{url}/new.zarr", shape=(4,), dtype="u1", chunks=(2,))


async def test_missing_layers_and_groups_over_http(http_root):
    root, url = http_root
    started = time.monotonic()
    with pytest.raises(ba.StorageError, match="no such key 'nothing.zarr'"):
        await ba.open_source(f"{url}/nothing.zarr")
    with pytest.raises(ba.StorageError, match="no such key 'nolayer/info'"):
        await ba.open_source(f"precomputed://{url}/nolayer")
    assert time.monotonic() - started < 5
    # an OME-Zarr group cannot be listed over http: its multiscales name the arrays
    for level in ("0", "1"):
        await ba.create_source(
            root / "ome.zarr", internal_path=level, shape=(4, 4), dtype="u1", chunks=(2, 2)
        )
    (root / "ome.zarr" / ".zattrs").write_text(
        json.dumps({"multiscales": [{"datasets": [{"path": "0"}, {"path": "1"}]}]})
    )
    full = await ba.open_source(f"{url}/ome.zarr")  # an OME-Zarr root opens its level 0
    assert full.shape == (4, 4)
    assert (await ba.open_source(f"{url}/ome.zarr", level=1)).shape == (4, 4)
    level = await ba.open_source(f"{url}/ome.zarr", "1")
    assert level.shape == (4, 4)


async def test_a_closed_http_port_fails_quickly():
    from tests.object_storage.conftest import free_port

    started = time.monotonic()
    with pytest.raises(ba.StorageError, match="unreachable"):
        await ba.open_source(f"http://127.0.0.1:{free_port()}/v.zarr")
    assert time.monotonic() - started < 5


async def test_a_layer_of_gzip_chunk_files_served_over_http_is_refused_not_read_as_zeros(
    http_root,
):
    """cloud-volume finds '<chunk>.gz' names on file:// only; over http every chunk 404s and
    read as missing (zeros) through either reader."""
    CloudVolume = pytest.importorskip("cloudvolume").CloudVolume
    root, base = http_root
    info = CloudVolume.create_new_info(
        num_channels=1,
        layer_type="image",
        data_type="uint8",
        encoding="raw",
        resolution=[4, 4, 40],
        voxel_offset=[0, 0, 0],
        volume_size=[32, 32, 8],
        chunk_size=[16, 16, 8],
    )
    volume = CloudVolume(f"file://{root / 'layer'}", info=info, progress=False)
    volume.commit_info()
    volume[:, :, :] = np.full((32, 32, 8, 1), 9, np.uint8)
    with pytest.raises(ba.FormatNotSupportedError, match=r"'<chunk>\.gz' files"):
        await ba.open_source(f"precomputed://{base}/layer")


def nested_zarr_without_separator(root, data):
    """A zarr v2 array with nested chunks ('0/0/0') and no dimension_separator in its .zarray:
    what zarr's NestedDirectoryStore wrote before zarr 2.8."""
    zarr = pytest.importorskip("zarr")
    array = zarr.create_array(
        store=str(root),
        shape=data.shape,
        chunks=(8, 16, 16),
        dtype=data.dtype,
        zarr_format=2,
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )
    array[...] = data
    meta = json.loads((root / ".zarray").read_text())
    meta.pop("dimension_separator", None)
    (root / ".zarray").write_text(json.dumps(meta))


async def test_an_old_nested_zarr_over_http_reads_its_chunks_not_fill_values(http_root, data):
    """http cannot list, so the .zarray was taken on trust: every voxel read as 0."""
    root, url = http_root
    nested_zarr_without_separator(root / "nested.zarr", data)
    remote = await ba.open_source(f"{url}/nested.zarr")
    np.testing.assert_array_equal(await remote.read(), data)


async def test_a_refused_http_read_says_the_url_is_not_public_not_aws_settings(http_root, data):
    """A 403 over http told the user to check AWS_ACCESS_KEY_ID and the bucket's policy."""
    root, url = http_root
    src = await ba.create_source(
        root / "vol", shape=SHAPE, dtype=data.dtype, chunks=(8, 16, 16), format="zarr"
    )
    await src.write(..., data)
    (root / "vol" / ".forbidden").write_text("")
    with pytest.raises(ba.StorageError, match="not public") as refused:
        await ba.open_source(f"{url}/vol", format="zarr")
    assert "AWS" not in str(refused.value)


async def test_an_old_nested_zarr_whose_first_chunk_was_never_written_reads_over_http(
    http_root, data
):
    """Only the first chunk was asked for under both names: absent (never written, all fill
    value), the .zarray's '.' was trusted and every stored chunk read as 0. Chunks spread over
    the array are asked for next."""
    root, url = http_root
    nested_zarr_without_separator(root / "nested.zarr", data)
    (root / "nested.zarr" / "0" / "0" / "0").unlink()  # as if never written
    expected = data.copy()
    expected[:8, :16, :16] = 0
    remote = await ba.open_source(f"{url}/nested.zarr")
    np.testing.assert_array_equal(await remote.read(), expected)


async def test_a_gzip_chunk_layer_whose_first_chunk_was_never_written_is_refused_too(http_root):
    """Only the first chunk's names were asked for: never written, the layer opened through
    tensorstore, which read every '.gz' chunk as missing, zeros."""
    CloudVolume = pytest.importorskip("cloudvolume").CloudVolume
    root, base = http_root
    info = CloudVolume.create_new_info(
        num_channels=1, layer_type="image", data_type="uint8", encoding="raw",
        resolution=[4, 4, 40], voxel_offset=[0, 0, 0], volume_size=[48, 48, 16],
        chunk_size=[16, 16, 8],
    )  # fmt: skip
    volume = CloudVolume(f"file://{root / 'layer'}", info=info, progress=False)
    volume.commit_info()
    volume[:, :, 8:16] = np.full((48, 48, 8, 1), 9, np.uint8)  # the first z chunk row: never
    assert not list((root / "layer").glob("*/0-16_0-16_0-8*"))
    with pytest.raises(ba.FormatNotSupportedError, match=r"'<chunk>\.gz' files"):
        await ba.open_source(f"precomputed://{base}/layer")


async def test_cloudvolume_over_http_says_a_forbidden_chunk_may_be_what_it_calls_missing(
    http_root, caplog
):
    """cloud-files answers a 403 as a missing file: fill_missing=True reads forbidden chunks
    as zeros (warned at open), and without it the error no longer advises fill_missing."""
    cloudvolume = pytest.importorskip("cloudvolume")
    from bioimage_async.sources.cloudvolume import open_cloudvolume

    root, base = http_root
    info = cloudvolume.CloudVolume.create_new_info(
        num_channels=1, layer_type="image", data_type="uint8", encoding="raw",
        resolution=[4, 4, 40], voxel_offset=[0, 0, 0], volume_size=[32, 32, 8],
        chunk_size=[16, 16, 8],
    )  # fmt: skip
    volume = cloudvolume.CloudVolume(
        f"file://{root / 'layer'}", info=info, compress=False, progress=False
    )
    volume.commit_info()
    volume[:, :, :] = np.full((32, 32, 8, 1), 9, np.uint8)
    (root / "layer" / "4_4_40" / ".forbidden").write_text("")  # the server answers 403 there
    strict = open_cloudvolume(f"precomputed://{base}/layer")
    with pytest.raises(ba.SourceError, match="never written, or forbidden"):
        await strict.read()
    with caplog.at_level("WARNING", logger="bioimage_async"):
        open_cloudvolume(f"precomputed://{base}/layer", fill_missing=True)
    assert "403 Forbidden" in caplog.text
    with pytest.raises(ba.BioimageAsyncError):  # tensorstore tells forbidden from missing
        await (await ba.open_source(f"precomputed://{base}/layer")).read()


async def test_storage_errors_over_http_say_what_the_server_did(http_root, data):
    """A server that ignores Range lost its cause (the message was cut at a shard's '{1, 2}'
    coordinates), a redirect read 'Unknown [HTTP code 302]', and a zarr3:// prefix on a zarr
    v2 array said the array held 'none'."""
    root, url = http_root
    sharded = await ba.create_source(
        root / "sh.zarr", shape=(32, 64, 64), dtype="uint16", chunks=(16, 16, 16),
        shards=(32, 64, 64), format="zarr3",
    )  # fmt: skip
    await sharded.write(..., np.ones((32, 64, 64), np.uint16))
    (root / "sh.zarr" / ".ignores_range").write_text("")
    remote = await ba.open_source(f"{url}/sh.zarr")
    with pytest.raises(ba.StorageError, match="ignores HTTP Range") as partial:
        await remote.read_roi(np.s_[5:20, 10:40, 3:50])
    assert "{" in str(partial.value)  # the shard's coordinates kept, not the cut
    with pytest.raises(ba.StorageError, match=r"HTTP 302, a redirect"):
        await ba.open_source(f"{url}/moved/sh.zarr")
    await ba.create_source(root / "v2.zarr", shape=SHAPE, dtype=data.dtype, chunks=(8, 8, 8))
    for where in (f"{url}/v2.zarr", str(root / "v2.zarr")):
        with pytest.raises(ba.InvalidArgumentError, match="holds a zarr array, not a zarr3 one"):
            await ba.open_source(f"zarr3://{where}")
