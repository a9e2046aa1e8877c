"""ba.copy moves encoded chunk files when input and output store chunks identically.

Each case is checked against the ordinary (decode, re-encode) path: the same values, the same
chunk keys (missing chunks stay missing and read as the fill value), and the raw path taken
only when it is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tensorstore as ts

import bioimage_async as ba
from bioimage_async.sources.raw_copy import raw_copy_plan
from bioimage_async.sources.tensorstore_source import TensorStoreSource

SHAPE = (20, 33, 40)
CHUNKS = (8, 16, 16)

#: format name -> create_source keywords (sharded zarr v3: a shard file is the copied unit)
FORMATS: dict[str, dict[str, Any]] = {
    "zarr": {"format": "zarr"},
    "zarr3": {"format": "zarr3"},
    "zarr3-sharded": {"format": "zarr3", "shards": (16, 32, 32)},
    "n5": {"format": "n5"},
    "precomputed": {"format": "precomputed"},
}


def sparse_volume() -> np.ndarray:
    """Data in a few chunks only: most chunks are never written."""
    data = np.zeros(SHAPE, dtype=np.uint16)
    data[0:8, 0:16, 0:16] = np.arange(8 * 16 * 16, dtype=np.uint16).reshape(8, 16, 16) + 1
    data[12:20, 20:33, 30:40] = 7
    return data


def chunk_keys(source: ba.Source) -> set[str]:
    store = source.tensorstore()
    assert store is not None
    keys = {k.decode() for k in store.kvstore.list().result()}
    return {k for k in keys if not k.endswith((".zarray", "zarr.json", "attributes.json", "info"))}


async def make_input(url: str, name: str, data: np.ndarray, **create: Any) -> ba.Source:
    src = await ba.create_source(url, shape=data.shape, dtype=data.dtype, chunks=CHUNKS, **create)
    await src.write((slice(0, 8), slice(0, 16), slice(0, 16)), data[0:8, 0:16, 0:16])
    await src.write((slice(12, 20), slice(20, 33), slice(30, 40)), data[12:20, 20:33, 30:40])
    return src


async def ordinary_copy(src: ba.Source, out: ba.Source, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(TensorStoreSource, "_raw_plan", lambda self, source: None)
        await ba.copy(src, out)


def out_url(base: str, name: str, tag: str) -> str:
    return f"{base}/{tag}.{name}"


async def check_raw_copy(
    src: ba.Source, base: str, name: str, create: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = sparse_volume()
    raw_out = await ba.create_source(
        out_url(base, name, "raw"), shape=SHAPE, dtype=data.dtype, chunks=CHUNKS, **create
    )
    await ba.copy(src, raw_out, num_workers=2)
    assert raw_out.raw_chunk_files >= len(chunk_keys(src)) > 0, "the raw path was not taken"
    plain_out = await ba.create_source(
        out_url(base, name, "plain"), shape=SHAPE, dtype=data.dtype, chunks=CHUNKS, **create
    )
    await ordinary_copy(src, plain_out, monkeypatch)
    np.testing.assert_array_equal(await raw_out.read(), data)
    np.testing.assert_array_equal(await raw_out.read(), await plain_out.read())
    assert chunk_keys(raw_out) == chunk_keys(src)
    if create.get("format") == "precomputed":  # no fill value: a decoding copy writes every
        # chunk it read, zeros too (cloud-volume takes a missing chunk for an unwritten one)
        assert chunk_keys(src) < chunk_keys(plain_out)
    else:
        assert chunk_keys(src) == chunk_keys(plain_out)
    reopened = await ba.from_spec(raw_out.to_spec())  # what a later reader sees
    np.testing.assert_array_equal(await reopened.read(), data)


@pytest.mark.parametrize("name", list(FORMATS))
async def test_raw_copy_between_folders_equals_the_ordinary_copy(tmp_path, name, monkeypatch):
    create = FORMATS[name]
    src = await make_input(str(tmp_path / f"in.{name}"), name, sparse_volume(), **create)
    await check_raw_copy(src, str(tmp_path), name, create, monkeypatch)


@pytest.mark.parametrize("name", list(FORMATS))
async def test_raw_copy_local_to_s3_and_back(tmp_path, bucket, name, monkeypatch):
    create = FORMATS[name]
    src = await make_input(str(tmp_path / f"in.{name}"), name, sparse_volume(), **create)
    await check_raw_copy(src, f"s3://{bucket}", name, create, monkeypatch)
    remote = await ba.open_source(f"s3://{bucket}/raw.{name}", format=create["format"])
    await check_raw_copy(remote, str(tmp_path / "back"), name, create, monkeypatch)


async def test_raw_copy_s3_to_s3(bucket, s3_env, monkeypatch):
    from tests.object_storage.conftest import new_bucket

    create = FORMATS["zarr3-sharded"]
    src = await make_input(f"s3://{bucket}/in.zarr", "zarr3", sparse_volume(), **create)
    other = new_bucket(s3_env)
    await check_raw_copy(src, f"s3://{other}", "zarr", create, monkeypatch)


async def test_sharded_precomputed_takes_the_ordinary_path_exactly(tmp_path, monkeypatch):
    """Its shard files are named by a hash of the chunks they hold: a block cannot name its
    files, so blocks are decoded and re-encoded (the result equals the input)."""
    data = sparse_volume()
    spec = {
        "driver": "neuroglancer_precomputed",
        "multiscale_metadata": {"data_type": "uint16", "num_channels": 1, "type": "image"},
        "scale_metadata": {
            "size": list(reversed(SHAPE)),
            "chunk_size": [16, 16, 8],
            "resolution": [1, 1, 1],
            "encoding": "raw",
            "sharding": {
                "@type": "neuroglancer_uint64_sharded_v1",
                "preshift_bits": 1,
                "minishard_bits": 1,
                "shard_bits": 2,
                "hash": "identity",
                "minishard_index_encoding": "gzip",
                "data_encoding": "gzip",
            },
        },
    }
    for name in ("in", "raw", "plain"):
        layer = {**spec, "kvstore": {"driver": "file", "path": str(tmp_path / name) + "/"}}
        store = await ts.open(layer, create=True)
        if name == "in":
            await store[..., 0].write(data.T)  # stored (x, y, z, channel)
    src, raw_out, plain_out = [
        await ba.open_source(tmp_path / name, format="precomputed", mode="r+")
        for name in ("in", "raw", "plain")
    ]
    np.testing.assert_array_equal(await src.read(), data)
    await ba.copy(src, raw_out)
    assert raw_out.raw_chunk_files == 0
    await ordinary_copy(src, plain_out, monkeypatch)
    np.testing.assert_array_equal(await raw_out.read(), data)
    np.testing.assert_array_equal(await plain_out.read(), data)
    assert all(k.endswith(".shard") for k in chunk_keys(src))


async def test_stale_output_chunks_are_deleted(tmp_path):
    data = sparse_volume()
    src = await make_input(str(tmp_path / "in.zarr"), "zarr", data)
    out = await ba.create_source(
        tmp_path / "out.zarr", shape=SHAPE, dtype=data.dtype, chunks=CHUNKS
    )
    await out.write(..., np.full(SHAPE, 9, np.uint16))  # every chunk present and stale
    stats = ba.RunStats()
    await ba.copy(src, out, block_shape=CHUNKS, stats=stats)
    assert out.raw_chunk_files > 0
    blocks = np.prod([-(-n // c) for n, c in zip(SHAPE, CHUNKS)])
    assert stats.extra["raw_copied_blocks"] == stats.blocks_done == blocks
    np.testing.assert_array_equal(await out.read(), data)
    assert chunk_keys(out) == chunk_keys(src)


async def test_http_input_is_copied_by_enumerating_the_grid(tmp_path, http_root):
    root, url = http_root
    data = sparse_volume()
    src = await make_input(str(root / "in.zarr"), "zarr", data)
    remote = await ba.open_source(f"{url}/in.zarr")
    out = await ba.create_source(
        tmp_path / "out.zarr", shape=SHAPE, dtype=data.dtype, chunks=CHUNKS
    )
    await ba.copy(remote, out)
    assert out.raw_chunk_files > 0
    np.testing.assert_array_equal(await out.read(), data)
    assert chunk_keys(out) == chunk_keys(src)


@pytest.mark.parametrize(
    "difference",
    [
        "compression",
        "chunks",
        "dtype",
        "fill_value",
        "shards",
        "view",
        "mask",
    ],
)
async def test_any_difference_takes_the_ordinary_path(tmp_path, difference):
    data = sparse_volume()
    create: dict[str, Any] = {"format": "zarr3"} if difference == "shards" else {}
    src = await make_input(str(tmp_path / "in.zarr"), "zarr", data, **create)
    out_create: dict[str, Any] = {
        "shape": SHAPE,
        "dtype": data.dtype,
        "chunks": CHUNKS,
        **create,
        **{
            "compression": {"compression": "zstd"},
            "chunks": {"chunks": (8, 16, 8)},
            "dtype": {"dtype": np.uint32},
            "fill_value": {"fill_value": 3},
            "shards": {"shards": (16, 32, 32)},
        }.get(difference, {}),
    }
    out = await ba.create_source(tmp_path / "out.zarr", **out_create)
    kwargs: dict[str, Any] = {}
    source: ba.Source = src
    expected = data
    if difference == "view":
        source = src.view((slice(4, 20), slice(0, 33), slice(0, 40)))
        out = await ba.create_source(
            tmp_path / "view.zarr", shape=source.shape, dtype=data.dtype, chunks=CHUNKS
        )
        expected = data[4:20]
        assert raw_copy_plan(source, out) is None
    if difference == "mask":
        kwargs["mask"] = np.ones(SHAPE, dtype=bool)
    stats = ba.RunStats()
    await ba.copy(source, out, stats=stats, **kwargs)
    assert out.raw_chunk_files == 0
    assert "raw_copied_blocks" not in stats.extra  # it counted tensorstore's decoding copies
    np.testing.assert_array_equal(await out.read(), expected)


@pytest.mark.parametrize("job_type", ["local", "subprocess"])
async def test_raw_copies_are_blocks_journaled_and_resumable_like_any(tmp_path, job_type):
    """block_ids copy only their blocks' files; a distributed run copies them raw too."""
    data = sparse_volume()
    src = await make_input(str(tmp_path / "in.zarr"), "zarr", data, compression="gzip")
    out = await ba.create_source(
        tmp_path / "out.zarr", shape=SHAPE, dtype=data.dtype, chunks=CHUNKS, compression="gzip"
    )
    grid = ba.BlockGrid(SHAPE, CHUNKS)
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    await ba.copy(src, out, block_shape=CHUNKS, block_ids=[0], job_type=job_type, job_config=config)
    block = grid.block(0).roi
    np.testing.assert_array_equal(await out.read(block), data[block])
    assert not (await out.read(grid.block(1).roi)).any()
    if job_type == "local":
        assert out.raw_chunk_files == 1
    await ba.copy(src, out, job_type=job_type, job_config=config)
    np.testing.assert_array_equal(await out.read(), data)
    assert chunk_keys(out) == chunk_keys(src)
