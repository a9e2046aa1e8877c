"""Every tensorstore format on s3:// (a moto server on 127.0.0.1): create, read, write, views,
detection, specs, the ops, distributed workers, and errors said in storage terms."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np
import pytest
import tensorstore as ts

import bioimage_async as ba
from bioimage_async.sources.location import Location
from tests.object_storage.conftest import s3_objects

SHAPE = (20, 30, 40)
CHUNKS = (8, 16, 16)
CREATE: dict[str, dict[str, Any]] = {
    "zarr": {"format": "zarr"},
    "zarr3": {"format": "zarr3"},
    "zarr3-sharded": {"format": "zarr3", "shards": (16, 32, 32)},
    "n5": {"format": "n5"},
    "precomputed": {"format": "precomputed"},
}
#: what tensorstore's own driver is called, and how it shows our (z, y, x) arrays
TS_DRIVER = {
    "zarr": "zarr",
    "zarr3": "zarr3",
    "n5": "n5",
    "precomputed": "neuroglancer_precomputed",
}


@pytest.fixture
def data() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 60000, size=SHAPE, dtype=np.uint16)


def ts_kvstore(endpoint: str, bucket: str, path: str) -> dict[str, Any]:
    return {
        "driver": "s3",
        "bucket": bucket,
        "path": path,
        "endpoint": endpoint,
        "aws_region": "us-east-1",
    }


def as_stored(name: str, data: np.ndarray) -> np.ndarray:
    """Our (z, y, x) array in the axis order tensorstore's driver shows."""
    if name == "n5":
        return data.T
    if name == "precomputed":
        return data.T[..., np.newaxis]
    return data


@pytest.mark.parametrize("name", list(CREATE))
async def test_every_format_created_on_s3_reads_back_with_tensorstore_directly(
    bucket, s3_env, name, data
):
    create = CREATE[name]
    url = f"s3://{bucket}/ours/{name}.vol"
    src = await ba.create_source(url, shape=SHAPE, dtype=data.dtype, chunks=CHUNKS, **create)
    await src.write(..., data)
    np.testing.assert_array_equal(await src.read(), data)
    driver = TS_DRIVER[create["format"]]
    store = await ts.open(
        {"driver": driver, "kvstore": ts_kvstore(s3_env, bucket, f"ours/{name}.vol/")}
    )
    np.testing.assert_array_equal(await store.read(), as_stored(create["format"], data))
    # and the spec of our source is a tensorstore spec tensorstore opens as it is
    params = src.to_spec().to_json()["params"]
    again = await ts.open(params["tensorstore"])
    np.testing.assert_array_equal(await again.read(), data)


@pytest.mark.parametrize("name", list(CREATE))
async def test_ours_reads_what_tensorstore_wrote_on_s3_detecting_the_format(
    bucket, s3_env, name, data
):
    fmt = CREATE[name]["format"]
    kvstore = ts_kvstore(s3_env, bucket, f"theirs/{name}/")
    stored = as_stored(fmt, data)
    spec: dict[str, Any] = {"driver": TS_DRIVER[fmt], "kvstore": kvstore}
    if fmt == "precomputed":
        spec["multiscale_metadata"] = {"data_type": "uint16", "num_channels": 1, "type": "image"}
        spec["scale_metadata"] = {
            "size": list(stored.shape[:3]),
            "chunk_size": [16, 16, 8],
            "resolution": [4, 4, 40],
            "encoding": "raw",
        }
    else:
        spec["dtype"] = "uint16"
        spec["schema"] = {"domain": {"shape": list(stored.shape)}}
        if name == "zarr3-sharded":
            spec["schema"]["chunk_layout"] = {
                "read_chunk": {"shape": [8, 16, 16]},
                "write_chunk": {"shape": [16, 32, 32]},
            }
    store = await ts.open(spec, create=True)
    await store.write(stored)
    # no extension, no prefix: detected from what is stored (zarr v2 vs v3 included)
    src = await ba.open_source(f"s3://{bucket}/theirs/{name}")
    assert src.format == fmt
    np.testing.assert_array_equal(await src.read(), data)
    np.testing.assert_array_equal(await src.read((5, slice(3, 17))), data[5, 3:17])
    prefixed = await ba.open_source(f"{fmt}://s3://{bucket}/theirs/{name}")
    np.testing.assert_array_equal(await prefixed.read((slice(2, 9), 4)), data[2:9, 4])


async def test_writes_and_views_on_s3(bucket, data):
    src = await ba.create_source(
        f"s3://{bucket}/a.zarr", shape=SHAPE, dtype=data.dtype, chunks=CHUNKS
    )
    view = src.view((slice(4, 12), slice(None), slice(10, 30)))
    await view.write(..., data[4:12, :, 10:30])
    np.testing.assert_array_equal(await view.read(), data[4:12, :, 10:30])
    reopened = await ba.open_source(f"s3://{bucket}/a.zarr", mode="r+")
    assert reopened.writable
    part = await reopened.read()
    np.testing.assert_array_equal(part[4:12, :, 10:30], data[4:12, :, 10:30])
    assert not part[:4].any() and not part[12:].any()
    again = await ba.from_spec(view.to_spec())
    np.testing.assert_array_equal(await again.read(), data[4:12, :, 10:30])


async def test_internal_paths_and_groups_on_s3_name_the_arrays_below(bucket, data):
    for key in ("raw/s0", "raw/s1", "labels/seg"):
        await ba.create_source(
            f"s3://{bucket}/c.zarr",
            internal_path=key,
            shape=(4, 4, 4),
            dtype="uint8",
            chunks=(2, 2, 2),
        )
    inner = await ba.open_source(f"s3://{bucket}/c.zarr", "raw/s1")
    assert inner.shape == (4, 4, 4)
    with pytest.raises(ba.InternalPathNotFoundError) as caught:
        await ba.open_source(f"s3://{bucket}/c.zarr")
    assert caught.value.available == ["labels/seg", "raw/s0", "raw/s1"]
    with pytest.raises(ba.InternalPathNotFoundError, match="raw/s9"):
        await ba.open_source(f"s3://{bucket}/c.zarr", "raw/s9")


async def test_copy_local_to_s3_to_s3_to_local_through_blocks(tmp_path, bucket, s3_env, data):
    from tests.object_storage.conftest import new_bucket

    local = await ba.create_source(
        tmp_path / "in.zarr", shape=SHAPE, dtype=data.dtype, chunks=CHUNKS
    )
    await local.write(..., data)
    # zstd vs the default blosc: codecs differ, so every copy decodes and re-encodes blocks
    up = await ba.create_source(
        f"s3://{bucket}/up.zarr", shape=SHAPE, dtype=data.dtype, chunks=CHUNKS, compression="zstd"
    )
    await ba.copy(local, up, block_shape=(8, 16, 40))
    other = new_bucket(s3_env)
    across = await ba.create_source(
        f"s3://{other}/n.n5", shape=SHAPE, dtype=data.dtype, chunks=CHUNKS
    )
    await ba.copy(up, across)
    down = await ba.create_source(
        tmp_path / "down.zarr3", shape=SHAPE, dtype=data.dtype, chunks=CHUNKS, format="zarr3"
    )
    await ba.copy(across, down)
    np.testing.assert_array_equal(await down.read(), data)


async def test_spec_carries_url_endpoint_region_and_profile_never_a_secret(
    bucket, s3_env, aws_env, tmp_path
):
    credentials = tmp_path / "credentials"
    credentials.write_text("[lab]\naws_access_key_id = AKIDLAB\naws_secret_access_key = s3cr3t\n")
    aws_env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    aws_env.setenv("AWS_SESSION_TOKEN", "session-token-value")
    storage = ba.StorageOptions(endpoint_url=s3_env, region="eu-west-1", profile="lab")
    src = await ba.create_source(
        f"s3://{bucket}/p.zarr", shape=(4, 4), dtype="uint8", chunks=(2, 2), storage=storage
    )
    spec = src.to_spec().to_json()
    text = json.dumps(spec)
    for secret in ("testing-secret", "s3cr3t", "session-token-value", "AKIDLAB"):
        assert secret not in text
    params = spec["params"]
    assert params["location"] == f"s3://{bucket}/p.zarr"
    assert params["storage"] == {"endpoint_url": s3_env, "region": "eu-west-1", "profile": "lab"}
    kvstore = params["tensorstore"]["kvstore"]
    assert kvstore["endpoint"] == s3_env and kvstore["aws_region"] == "eu-west-1"


def test_kvstore_specs_of_every_url_form(aws_env):
    aws_env.setenv("AWS_ENDPOINT_URL", "http://minio.local:9000")
    aws_env.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    s3 = Location.parse("zarr3://s3://bkt/data/a.zarr/")
    assert (s3.prefix, s3.scheme, s3.bucket, s3.key) == ("zarr3", "s3", "bkt", "data/a.zarr")
    assert s3.kvstore() == {
        "driver": "s3",
        "bucket": "bkt",
        "path": "data/a.zarr/",
        "endpoint": "http://minio.local:9000",
        "aws_region": "eu-central-1",
        "aws_credentials": {"type": "default"},
    }
    aws_env.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    assert s3.kvstore()["aws_credentials"] == {"type": "environment"}
    aws_env.setenv("AWS_PROFILE", "lab")
    aws_env.delenv("AWS_ACCESS_KEY_ID")
    assert s3.kvstore()["aws_credentials"] == {
        "type": "profile",
        "profile": "lab",
        "credentials_file": os.environ["AWS_SHARED_CREDENTIALS_FILE"],
        "config_file": os.devnull,  # none exists: tensorstore needs one, /dev/null is quiet
    }
    explicit = Location.parse("s3://bkt/a", ba.StorageOptions(profile="other", anonymous=False))
    assert explicit.kvstore()["aws_credentials"]["type"] == "profile"
    public = Location.parse("s3://bkt/a", ba.StorageOptions(anonymous=True))
    assert public.kvstore()["aws_credentials"] == {"type": "anonymous"}
    gs = Location.parse("precomputed://gs://gbucket/layer")
    assert (gs.prefix, gs.kvstore()) == (
        "precomputed",
        {"driver": "gcs", "bucket": "gbucket", "path": "layer/"},
    )
    http = Location.parse("n5://https://host.org/data/x.n5")
    assert http.read_only and http.kvstore() == {
        "driver": "http",
        "base_url": "https://host.org/data/x.n5/",
    }


# ---- the ops, locally and in worker processes ---------------------------------------------------
async def test_downsample_and_map_blocks_from_s3_in_subprocess_workers(
    tmp_path, bucket, s3_env, aws_env, data
):
    src = await ba.create_source(
        f"s3://{bucket}/in.zarr", shape=SHAPE, dtype=data.dtype, chunks=CHUNKS
    )
    await src.write(..., data)
    half = await ba.create_source(
        f"s3://{bucket}/half.zarr", shape=(10, 15, 20), dtype=data.dtype, chunks=(8, 16, 16)
    )
    doubled = await ba.create_source(
        tmp_path / "doubled.zarr", shape=SHAPE, dtype="uint32", chunks=CHUNKS
    )
    # the endpoint reaches the workers through the specs only; credentials through their env
    aws_env.delenv("AWS_ENDPOINT_URL")
    await ba.downsample(src, 2, half, method="mean", job_type="subprocess", num_workers=2)
    await ba.map_blocks(
        _double, src, doubled, block_shape=(8, 16, 40), job_type="subprocess", num_workers=2
    )
    expected = data.reshape(10, 2, 15, 2, 20, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(await half.read(), expected, atol=1)
    np.testing.assert_array_equal(await doubled.read(), data.astype(np.uint32) * 2)


def _double(block: np.ndarray) -> np.ndarray:
    return block.astype(np.uint32) * 2


# ---- errors in storage terms, quickly ------------------------------------------------------------
async def test_a_missing_bucket_is_named_quickly_on_open_and_create(s3_env):
    started = time.monotonic()
    with pytest.raises(ba.StorageError, match="no such bucket 'no-such-bucket-x'"):
        await ba.open_source("s3://no-such-bucket-x/a.zarr")
    with pytest.raises(ba.StorageError, match="no such bucket 'no-such-bucket-x'"):
        await ba.create_source("s3://no-such-bucket-x/a.zarr", shape=(4,), dtype="u1", chunks=(2,))
    with pytest.raises(ba.StorageError, match="no such bucket"):
        await ba.open_source("s3://no-such-bucket-x/layer")  # no extension: detection
    assert time.monotonic() - started < 5


async def test_a_missing_key_is_named(bucket):
    with pytest.raises(ba.StorageError, match=r"no such key 'none/a.zarr' in bucket"):
        await ba.open_source(f"s3://{bucket}/none/a.zarr")
    with pytest.raises(ba.StorageError, match=r"no such key 'none/layer'"):
        await ba.open_source(f"s3://{bucket}/none/layer")
    with pytest.raises(ba.StorageError, match=r"no such key 'none/p/info'"):
        await ba.open_source(f"precomputed://s3://{bucket}/none/p")


async def test_a_closed_port_fails_within_the_configured_bound(aws_env):
    from tests.object_storage.conftest import free_port

    aws_env.setenv("AWS_ACCESS_KEY_ID", "k")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "s")
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ba.StorageError, match="unreachable") as caught:
        await ba.open_source("s3://bucket/a.zarr", storage=ba.StorageOptions(endpoint_url=dead))
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert dead in message and "tensorstore_spec" not in message and len(message) < 600
    with pytest.raises(ba.StorageError, match="unreachable"):
        await ba.create_source(
            "s3://bucket/a.zarr",
            shape=(4,),
            dtype="u1",
            chunks=(2,),
            storage={"endpoint_url": dead},
        )
    assert time.monotonic() - started < 10


async def test_storage_bounds_are_configurable():
    from bioimage_async.context import resource_options, tensorstore_context

    previous = resource_options()
    ba.configure(storage_retries=3, storage_timeout=4.5)
    try:
        spec = tensorstore_context().spec.to_json()
        assert spec["s3_request_retries"]["max_retries"] == 3
        assert spec["gcs_request_retries"]["max_retries"] == 3
        assert resource_options().storage_timeout == 4.5
        with pytest.raises(ba.InvalidArgumentError, match="storage_retries"):
            ba.configure(storage_retries=0)
    finally:
        ba.configure(storage_retries=previous.storage_retries, storage_timeout=4.5)


async def test_a_server_stopped_mid_run_fails_quickly_and_keeps_finished_blocks(
    tmp_path, aws_env, data
):
    from tests.object_storage.conftest import new_bucket, start_moto, stop_moto

    proc, endpoint = start_moto(tmp_path / "moto.log")
    try:
        aws_env.setenv("AWS_ACCESS_KEY_ID", "k")
        aws_env.setenv("AWS_SECRET_ACCESS_KEY", "s")
        aws_env.setenv("AWS_ENDPOINT_URL", endpoint)
        bucket = new_bucket(endpoint)
        src = await ba.create_source(
            f"s3://{bucket}/in.zarr", shape=SHAPE, dtype=data.dtype, chunks=CHUNKS
        )
        await src.write(..., data)
        out = await ba.create_source(
            tmp_path / "out.zarr", shape=SHAPE, dtype=data.dtype, chunks=CHUNKS, compression="zstd"
        )

        def stop_after_three(done: int, total: int) -> None:
            if done == 3 and proc.poll() is None:
                stop_moto(proc)

        started = time.monotonic()
        with pytest.raises(ba.RunnerError) as caught:
            await ba.copy(src, out, block_shape=(8, 16, 16), progress=stop_after_three)
        assert time.monotonic() - started < 30
    finally:
        if proc.poll() is None:
            stop_moto(proc)
    error = caught.value
    assert error.failed_block_ids and "tensorstore_spec" not in str(error)
    assert "unreachable" in str(error) or "kept failing" in str(error)
    grid = ba.BlockGrid(SHAPE, (8, 16, 16))
    written = await out.read()
    finished = [b for b in range(grid.num_blocks) if b not in error.failed_block_ids]
    assert len(finished) >= 3
    for block_id in finished:
        region = grid.block(block_id).roi
        np.testing.assert_array_equal(written[region], data[region])


async def test_the_objects_tensorstore_wrote_are_what_tensorstore_names(bucket, s3_env):
    src = await ba.create_source(
        f"s3://{bucket}/k.zarr", shape=(4, 4), dtype="uint8", chunks=(2, 2), compression="none"
    )
    await src.write((slice(0, 2), slice(0, 2)), np.ones((2, 2), np.uint8))
    assert set(s3_objects(s3_env, bucket)) == {"k.zarr/.zarray", "k.zarr/0.0"}


async def test_a_damaged_input_chunk_is_named_by_its_own_url_in_a_copy_between_arrays(
    bucket, s3_env, data
):
    """The error of the input's chunk came through the output's handle: its key was glued
    onto the output's URL (s3://b/data/seg.zarr/data/raw.zarr/0.0.0), a key that does not
    exist."""
    raw = await ba.create_source(f"s3://{bucket}/data/raw.zarr", shape=data.shape,
                                 dtype=data.dtype, chunks=(8, 16, 16), compression="gzip")  # fmt: skip
    await ba.copy(data, raw)
    store = ts.KvStore.open(ts_kvstore(s3_env, bucket, "data/raw.zarr/")).result()
    store.write("0.0.0", b"not a gzip stream").result()
    seg = await ba.create_source(f"s3://{bucket}/data/seg.zarr", shape=data.shape,
                                 dtype=data.dtype, chunks=(8, 16, 16))  # fmt: skip
    with pytest.raises(ba.RunnerError) as error:
        await ba.copy(raw, seg, block_shape=(8, 16, 16))
    assert f"s3://{bucket}/data/raw.zarr/0.0.0" in str(error.value)
    assert "seg.zarr/data" not in str(error.value)
