"""A raw copy (encoded chunk files moved as they are) refuses bytes that are no chunk of the array.

A server may answer a chunk GET with 200 and an HTML page (a gateway or CDN error, a sign-in
page) or end a body early on a response without Content-Length. Decoding would fail on such
bytes; a raw copy must fail the block too, instead of writing them as the output's chunk.
Each case serves a real array, made by tensorstore through ``ba.create_source``, from a local
HTTP server that injects one such fault for one chunk (shard) key.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.sources.raw_copy import raw_chunks
from tests.object_storage.conftest import RangeHandler, RangeServer

SHAPE = (20, 33, 40)
CHUNKS = (8, 16, 16)
SHARDS = (16, 32, 32)

#: case -> (dtype, create_source keywords)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "zarr-blosc": ("uint16", {"format": "zarr", "compression": "blosc"}),
    "zarr-zstd": ("uint16", {"format": "zarr", "compression": "zstd"}),
    "zarr-gzip": ("uint16", {"format": "zarr", "compression": "gzip"}),
    "zarr-none": ("uint16", {"format": "zarr", "compression": "none"}),
    "zarr3": ("uint16", {"format": "zarr3"}),
    "zarr3-gzip": ("uint16", {"format": "zarr3", "compression": "gzip"}),
    "zarr3-sharded": ("uint16", {"format": "zarr3", "shards": SHARDS}),
    "n5": ("uint16", {"format": "n5"}),
    "n5-gzip": ("uint16", {"format": "n5", "compression": "gzip"}),
    "n5-raw": ("uint16", {"format": "n5", "compression": "none"}),
    "precomputed": ("uint16", {"format": "precomputed"}),
    "precomputed-jpeg": ("uint8", {"format": "precomputed", "compression": "jpeg"}),
    "precomputed-segmentation": (
        "uint32",
        {"format": "precomputed", "compression": "compressed_segmentation"},
    ),
}


class FaultyHandler(RangeHandler):
    """RangeHandler that answers the paths in ``server.faults`` wrongly, with status 200:
    "html" sends an error page, "truncate" half the file without Content-Length."""

    def do_GET(self) -> None:
        fault = self.server.faults.get(self.path.split("?")[0])  # type: ignore[attr-defined]
        if fault is None:
            super().do_GET()
            return
        body = Path(self.translate_path(self.path)).read_bytes()
        if fault == "html":
            body = b"<html><body><h1>502 Bad Gateway</h1>" + b" " * 4000 + b"</body></html>"
        else:
            body = body[: len(body) // 2]
        self.send_response(200)
        self.send_header(
            "Content-Type", "text/html" if fault == "html" else "application/octet-stream"
        )
        if fault == "html":
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")  # the body ends where the connection does
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def faulty_http(tmp_path: Path) -> Iterator[tuple[Path, str, dict[str, str]]]:
    """(folder, base URL, faults): faults maps a URL path ('/in.zarr/1.1.1') to its fault."""
    root = tmp_path / "www"
    root.mkdir()
    server = RangeServer(("127.0.0.1", 0), functools.partial(FaultyHandler, directory=str(root)))
    faults: dict[str, str] = {}
    server.faults = faults  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", faults
    finally:
        server.shutdown()
        server.server_close()


def volume(dtype: str) -> np.ndarray:
    """Varied values (each chunk compresses differently) with a few labels for segmentation."""
    rng = np.random.default_rng(7)
    return (rng.integers(0, 6, SHAPE) * 37 + np.arange(SHAPE[2]) % 5).astype(dtype)


async def serve(root: Path, url: str, case: str) -> tuple[ba.Source, np.ndarray]:
    """The case's array written under ``root``, opened again through HTTP, and its data."""
    dtype, create = CASES[case]
    data = volume(dtype)
    local = await ba.create_source(
        root / f"in.{case}", shape=SHAPE, dtype=dtype, chunks=CHUNKS, **create
    )
    await local.write(..., data)
    if create["format"] == "precomputed":
        data = await local.read()  # jpeg is lossy: what the file holds is the reference
    remote = await ba.open_source(f"{url}/in.{case}", format=create["format"])
    return remote, data


def unit_of(case: str) -> tuple[int, ...]:
    """The shape a key holds: a shard for sharded zarr v3, else a chunk."""
    return SHARDS if "shards" in CASES[case][1] else CHUNKS


def url_path(source: ba.Source, root: Path, position: tuple[int, ...]) -> str:
    """The URL path of the key holding the block at grid ``position`` (stored grid order)."""
    local = raw_chunks(source)
    assert local is not None
    folder = Path(local.kvstore.spec().to_json()["path"])
    return "/" + str(folder.relative_to(root) / local.naming.key_of(position))


async def output_for(tmp_path: Path, case: str, tag: str) -> ba.Source:
    dtype, create = CASES[case]
    return await ba.create_source(
        tmp_path / f"{tag}.{case}", shape=SHAPE, dtype=dtype, chunks=CHUNKS, **create
    )


@pytest.mark.parametrize("case", list(CASES))
async def test_a_sound_input_is_still_copied_raw_and_exact(tmp_path, faulty_http, case):
    root, url, _ = faulty_http
    remote, data = await serve(root, url, case)
    out = await output_for(tmp_path, case, "out")
    stats = ba.RunStats()
    await ba.copy(remote, out, block_shape=unit_of(case), stats=stats, progress=False)
    assert stats.extra["raw_copied_blocks"] == stats.blocks_done > 0
    np.testing.assert_array_equal(await out.read(), data)


@pytest.mark.parametrize("fault", ["html", "truncate"])
@pytest.mark.parametrize("case", list(CASES))
async def test_an_error_page_or_cut_body_fails_exactly_its_block(
    tmp_path, faulty_http, case, fault
):
    root, url, faults = faulty_http
    remote, data = await serve(root, url, case)
    unit = unit_of(case)
    grid = ba.BlockGrid(SHAPE, unit)
    # an inner chunk for the page, the last (edge) chunk for the cut body
    position = (1, 1, 1) if fault == "html" else tuple(-(-n // u) - 1 for n, u in zip(SHAPE, unit))
    local = await ba.open_source(root / f"in.{case}", format=CASES[case][1]["format"])
    stored = position if CASES[case][1]["format"] in ("zarr", "zarr3") else position[::-1]
    key_path = url_path(local, root, stored)
    assert (root / key_path.lstrip("/")).is_file()
    faults[key_path] = fault
    out = await output_for(tmp_path, case, "out")
    with pytest.raises(ba.RunnerError) as caught:
        await ba.copy(remote, out, block_shape=unit, progress=False)
    bad = grid.block_id(position)
    assert caught.value.failed_block_ids == [bad]
    assert "error page" in str(caught.value)
    written = raw_chunks(out)
    assert written is not None
    assert (await written.kvstore.read(written.naming.key_of(stored))).state == "missing"
    for block in grid:
        if block.id != bad:
            np.testing.assert_array_equal(await out.read(block.roi), data[block.roi])


# ---- files written by other tools: no false alarm, and damage seen at any cut ---------------
def _zarr_python(path: Path, version: int, **codecs: Any) -> str:
    zarr = pytest.importorskip("zarr")
    array = zarr.create_array(
        str(path), shape=SHAPE, chunks=CHUNKS, dtype="uint16", zarr_format=version, **codecs
    )
    array[...] = volume("uint16")
    return "zarr" if version == 2 else "zarr3"


def _z5py(path: Path, compression: str) -> str:
    z5py = pytest.importorskip("z5py")
    file = z5py.File(str(path), mode="a", use_zarr_format=False)
    dataset = file.create_dataset(
        "d", shape=SHAPE, chunks=CHUNKS, dtype="uint16", compression=compression
    )
    dataset[...] = volume("uint16")  # z5py writes edge chunks clipped
    return "n5"


def _cloud_volume(path: Path, encoding: str, dtype: str) -> str:
    cloudvolume = pytest.importorskip("cloudvolume")
    info = cloudvolume.CloudVolume.create_new_info(
        num_channels=1,
        layer_type="segmentation" if dtype == "uint64" else "image",
        data_type=dtype,
        encoding=encoding,
        resolution=[1, 1, 1],
        voxel_offset=[0, 0, 0],
        chunk_size=CHUNKS[::-1],
        volume_size=SHAPE[::-1],
    )
    layer = cloudvolume.CloudVolume(f"file://{path}", info=info, compress=False, progress=False)
    layer.commit_info()
    layer[:, :, :] = volume(dtype).T
    return "precomputed"


def _sharded_precomputed(path: Path) -> str:
    """tensorstore's neuroglancer_uint64_sharded_v1 layout (hashed shard names)."""
    import tensorstore as ts

    sharding = {
        "@type": "neuroglancer_uint64_sharded_v1",
        "preshift_bits": 1,
        "minishard_bits": 1,
        "shard_bits": 2,
        "hash": "identity",
        "minishard_index_encoding": "gzip",
        "data_encoding": "gzip",
    }
    spec = {
        "driver": "neuroglancer_precomputed",
        "kvstore": {"driver": "file", "path": f"{path}/"},
        "multiscale_metadata": {"data_type": "uint16", "num_channels": 1, "type": "image"},
        "scale_metadata": {
            "size": SHAPE[::-1],
            "chunk_size": CHUNKS[::-1],
            "resolution": [1, 1, 1],
            "encoding": "raw",
            "sharding": sharding,
        },
    }
    ts.open(spec, create=True).result()[..., 0].write(volume("uint16").T).result()
    return "precomputed"


def _written_by(kind: str, path: Path) -> tuple[Path, str]:
    numcodecs = pytest.importorskip("numcodecs")
    makers = {
        "zarr-python v2 blosc": lambda: _zarr_python(path, 2, compressors=numcodecs.Blosc()),
        "zarr-python v2 zlib": lambda: _zarr_python(path, 2, compressors=numcodecs.Zlib()),
        "zarr-python v2 bz2": lambda: _zarr_python(path, 2, compressors=numcodecs.BZ2()),
        "zarr-python v3 zstd": lambda: _zarr_python(path, 3),
        "zarr-python v3 sharded": lambda: _zarr_python(path, 3, shards=SHARDS),
        "z5py gzip": lambda: _z5py(path, "gzip"),
        "z5py xz": lambda: _z5py(path, "xz"),
        "z5py raw": lambda: _z5py(path, "raw"),
        "cloud-volume compressed_segmentation": lambda: _cloud_volume(
            path, "compressed_segmentation", "uint64"
        ),
        "cloud-volume jpeg": lambda: _cloud_volume(path, "jpeg", "uint8"),
        "tensorstore sharded precomputed": lambda: _sharded_precomputed(path),
    }
    form = makers[kind]()
    return (path / "d" if form == "n5" else path), form


@pytest.mark.parametrize(
    "kind",
    [
        "zarr-python v2 blosc",
        "zarr-python v2 zlib",
        "zarr-python v2 bz2",
        "zarr-python v3 zstd",
        "zarr-python v3 sharded",
        "z5py gzip",
        "z5py xz",
        "z5py raw",
        "cloud-volume compressed_segmentation",
        "cloud-volume jpeg",
        "tensorstore sharded precomputed",
    ],
)
async def test_chunks_other_tools_write_pass_and_any_cut_or_page_is_seen(tmp_path, kind):
    path, form = _written_by(kind, tmp_path / "in")
    source = await ba.open_source(path, format=form)
    raw = raw_chunks(source)
    assert raw is not None, "the raw path is refused for this array"
    keys = [k.decode() for k in await raw.kvstore.list()]
    keys = [k for k in keys if raw.naming.is_chunk(k)]
    assert keys
    page = memoryview(b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>" * 8)
    for key in keys:
        value = (await raw.kvstore.read(key)).value
        assert raw.check.problem(key, memoryview(value)) is None, key
        assert raw.check.problem(key, page) is not None, key
        for cut in {0, 1, len(value) // 3, len(value) // 2, len(value) - 4, len(value) - 1}:
            assert raw.check.problem(key, memoryview(value[:cut])) is not None, (key, cut)
