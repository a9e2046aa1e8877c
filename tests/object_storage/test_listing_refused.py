"""An old nested zarr v2 array (chunks '0/0/0', no ``dimension_separator`` in its .zarray) in an
s3 bucket that refuses listing: the layout cannot be listed, so the first chunk is probed under
both names; a server error on that probe is an error, never a missing chunk.

moto enforces no bucket policy (a policy denying s3:ListBucket is stored and ignored) and
enforces IAM only once authentication is switched on for the whole server, which the shared
session server cannot have. So a small proxy sits between tensorstore and moto: it answers LIST
requests 403 AccessDenied and forwards the rest, a missing key's 404 included (as moto's IAM
mode does; AWS itself answers 403 there to a caller without s3:ListBucket).
"""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts

import bioimage_async as ba
from tests.sources.test_zarr_layouts import set_separator, write_v2

SHAPE = (20, 30, 40)
CHUNKS = (8, 16, 16)
ARRAY = "old.zarr"
#: the first chunk's key under each separator, as the probe asks for it
FIRST_CHUNK = {".": f"{ARRAY}/0.0.0", "/": f"{ARRAY}/0/0/0"}

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def s3_error(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>proxy</RequestId></Error>"
    ).encode()


@dataclass
class Faults:
    """What the proxy changes: LIST refused (403 AccessDenied), and a status for GETs of given
    keys ('bucket-relative/key' -> 500...). ``seen`` records (method, key, query, status)."""

    bucket: str
    refuse_listing: bool = True
    errors: dict[str, int] = field(default_factory=dict)
    seen: list[tuple[str, str, str, int]] = field(default_factory=list)

    def key(self, path: str) -> str | None:
        """The object key of a path-style request to the bucket ('' for the bucket itself)."""
        parts = urllib.parse.unquote(path).lstrip("/").split("/", 1)
        if parts[0] != self.bucket:
            return None
        return parts[1] if len(parts) > 1 else ""

    def injected(self, method: str, path: str, query: str) -> tuple[int, bytes] | None:
        key = self.key(path)
        if key is None or method not in ("GET", "HEAD"):
            return None
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        listing = key == "" and bool({"list-type", "prefix", "delimiter"} & params.keys())
        if listing and self.refuse_listing:
            return 403, s3_error("AccessDenied", "Access Denied")
        status = self.errors.get(key)
        if status == 403:  # what AWS answers a caller without s3:ListBucket for a missing key
            return status, s3_error("AccessDenied", "Access Denied")
        if status is not None:
            return status, s3_error("InternalError", "We encountered an internal error.")
        return None

    def lists(self) -> list[int]:
        """The statuses of the LIST requests seen."""
        return [status for _, key, query, status in self.seen if key == "" and query]

    def reads(self, key: str) -> list[int]:
        return [status for method, k, _, status in self.seen if k == key and method == "GET"]


class FaultProxy(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, upstream: str, faults: Faults) -> None:
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.faults = faults
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Forwards each request to moto unchanged (signed headers included: moto does not check
    signatures), unless ``Faults`` answers it."""

    server: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.relay()

    def do_HEAD(self) -> None:
        self.relay()

    def do_PUT(self) -> None:
        self.relay()

    def do_POST(self) -> None:
        self.relay()

    def do_DELETE(self) -> None:
        self.relay()

    def relay(self) -> None:
        path, _, query = self.path.partition("?")
        faults = self.server.faults
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        injected = faults.injected(self.command, path, query)
        if injected is not None:
            status, payload = injected
            headers = [("Content-Type", "application/xml")]
        else:
            status, headers, payload = self.forward(body)
        with self.server.lock:
            faults.seen.append((self.command, faults.key(path) or "", query, status))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.server.upstream, timeout=10)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body:
                headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body or None, headers=headers)
            reply = connection.getresponse()
            payload = reply.read()
            kept = [(k, v) for k, v in reply.getheaders() if k.lower() not in _HOP_BY_HOP]
            return reply.status, kept, payload
        finally:
            connection.close()


@pytest.fixture
def refusing(bucket: str, s3_env: str) -> Iterator[tuple[Faults, ba.StorageOptions]]:
    """(faults, storage options reaching ``bucket`` through a proxy that refuses listing)."""
    faults = Faults(bucket)
    proxy = FaultProxy(s3_env, faults)
    thread = threading.Thread(target=proxy.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield faults, ba.StorageOptions(endpoint_url=proxy.url)
    finally:
        proxy.shutdown()
        proxy.server_close()


@pytest.fixture
def data() -> np.ndarray:
    return np.random.default_rng(7).integers(1, 60000, size=SHAPE, dtype=np.uint16)


def upload(folder: Path, endpoint: str, bucket: str, prefix: str) -> list[str]:
    """Every file below ``folder`` as an object below ``prefix``, straight to moto."""
    store = ts.KvStore.open(
        {
            "driver": "s3",
            "bucket": bucket,
            "path": prefix.rstrip("/") + "/",
            "endpoint": endpoint,
            "aws_region": "us-east-1",
            "aws_credentials": {"type": "environment"},
        }
    ).result()
    keys = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    for key in keys:
        store.write(key, (folder / key).read_bytes()).result()
    return keys


def old_zarr(tmp_path: Path, data: np.ndarray, separator: str, bucket: str, endpoint: str) -> None:
    """What zarr < 2.8 left: chunk keys joined by ``separator``, no dimension_separator."""
    local = tmp_path / ARRAY
    write_v2(local, data, CHUNKS, separator)
    set_separator(local, None)
    keys = upload(local, endpoint, bucket, ARRAY)
    assert ".zarray" in keys and FIRST_CHUNK[separator].removeprefix(f"{ARRAY}/") in keys


@pytest.mark.parametrize("separator", ["/", "."], ids=["nested", "dotted"])
async def test_an_old_zarr_in_a_bucket_refusing_listing_reads_its_chunks(
    tmp_path, bucket, s3_env, refusing, data, separator
):
    faults, storage = refusing
    old_zarr(tmp_path, data, separator, bucket, s3_env)
    src = await ba.open_source(f"s3://{bucket}/{ARRAY}", storage=storage)
    np.testing.assert_array_equal(await src.read(), data)
    # the layout came from the probe: the listing was tried and refused, the first chunk
    # asked for under both names, and only the stored one was there
    assert faults.lists() and set(faults.lists()) == {403}
    other = "." if separator == "/" else "/"
    assert 200 in faults.reads(FIRST_CHUNK[separator])
    assert faults.reads(FIRST_CHUNK[other]) == [404]
    # a worker reopens from the spec: it reads the same chunks without asking again
    again = await ba.from_spec(src.to_spec())
    np.testing.assert_array_equal(await again.read((slice(3, 17), 5)), data[3:17, 5])


@pytest.mark.parametrize("failing", ["/", "."], ids=["stored-name", "other-name"])
async def test_a_server_error_on_the_probe_is_an_error_not_a_missing_chunk(
    tmp_path, bucket, s3_env, refusing, data, failing
):
    """A 500 says nothing about the layout. Taken as 'missing' on the stored name, it left the
    metadata's '.' to decide: every voxel read as the fill value; on the other name the open
    would pass by luck. Either way the error is raised."""
    faults, storage = refusing
    old_zarr(tmp_path, data, "/", bucket, s3_env)
    faults.errors[FIRST_CHUNK[failing]] = 500
    with pytest.raises(ba.StorageError) as caught:
        src = await ba.open_source(f"s3://{bucket}/{ARRAY}", storage=storage)
        await src.read()  # reached only if the open passed: fill values, or the 500 again
    assert set(faults.reads(FIRST_CHUNK[failing])) == {500}
    message = str(caught.value)
    assert f"s3://{bucket}/{FIRST_CHUNK[failing]}" in message  # the whole key
    assert "InternalError" in message


@pytest.mark.parametrize("listing", ["allowed", "refused"])
async def test_an_old_nested_zarr_whose_first_chunk_row_was_never_written_reads_its_chunks(
    tmp_path, bucket, s3_env, refusing, data, listing
):
    """The layout was looked for in the first chunk row only (its listing, or its first
    chunk): an array whose first z slab was never written read as all fill value."""
    faults, storage = refusing
    local = tmp_path / ARRAY
    write_v2(local, data, CHUNKS, "/")
    set_separator(local, None)
    for row in (local / "0").iterdir():  # the first slab of chunks: never written
        for chunk in row.iterdir():
            chunk.unlink()
        row.rmdir()
    (local / "0").rmdir()
    upload(local, s3_env, bucket, ARRAY)
    expected = data.copy()
    expected[: CHUNKS[0]] = 0
    options = storage if listing == "refused" else None
    src = await ba.open_source(f"s3://{bucket}/{ARRAY}", storage=options)
    np.testing.assert_array_equal(await src.read(), expected)


async def test_access_denied_on_a_missing_chunk_names_the_listbucket_cause(
    tmp_path, bucket, s3_env, refusing, data
):
    """Without s3:ListBucket, AWS answers 403 AccessDenied for a chunk never written: the read
    fails (never fill values) and the message says a missing key is one cause."""
    faults, storage = refusing
    local = tmp_path / "sparse.zarr"
    write_v2(local, data, CHUNKS, ".")
    (local / "0.0.0").unlink()  # never written
    upload(local, s3_env, bucket, "sparse.zarr")
    faults.errors["sparse.zarr/0.0.0"] = 403
    with pytest.raises(ba.StorageError, match=r"sparse\.zarr/0\.0\.0.*s3:ListBucket"):
        src = await ba.open_source(f"s3://{bucket}/sparse.zarr", storage=storage)
        await src.read()  # (the open's layout probe meets it first)


@pytest.mark.parametrize("status", [410, 501])
async def test_a_chunk_that_fails_is_named_not_the_whole_array(
    tmp_path, bucket, s3_env, refusing, data, status
):
    """A 410 on one chunk was said as 'no such key' of the array, and a 501 escaped as a
    bare NotImplementedError with tensorstore's dump."""
    faults, storage = refusing
    faults.refuse_listing = False
    local = tmp_path / "full.zarr"
    write_v2(local, data, CHUNKS, ".")
    set_separator(local, ".")
    upload(local, s3_env, bucket, "full.zarr")
    faults.errors["full.zarr/1.1.1"] = status
    src = await ba.open_source(f"s3://{bucket}/full.zarr", storage=storage)
    with pytest.raises(ba.StorageError, match=r"s3://[^ ]+/full\.zarr/1\.1\.1:"):
        await src.read()  # the chunk's URL, not the array's with the key in a dump after it


@pytest.mark.parametrize("listing", ["allowed", "refused"])
async def test_an_old_nested_zarr_whose_chunks_sit_between_the_probed_rows(
    tmp_path, bucket, s3_env, refusing, listing, caplog
):
    """No chunk at the probed rows (the first, middle and last): the '.' of an undeclared
    separator was taken on trust and the array read as all fill value, without a word. A
    bucket that lists now lists the keys; one that refuses says it could not tell."""
    faults, storage = refusing
    data = np.arange(40 * 16 * 16, dtype=np.uint16).reshape(40, 16, 16) + 1
    local = tmp_path / "sparse.zarr"
    write_v2(local, data, (8, 16, 16), "/")
    set_separator(local, None)
    for z in (0, 2, 3, 4):  # only chunk row z=1 stays: rows 0, 2 and 4 are the probed ones
        (local / str(z) / "0" / "0").unlink()
    upload(local, s3_env, bucket, "sparse.zarr")
    expected = np.zeros_like(data)
    expected[8:16] = data[8:16]
    options = storage if listing == "refused" else None
    with caplog.at_level("WARNING", logger="bioimage_async"):
        src = await ba.open_source(f"s3://{bucket}/sparse.zarr", storage=options)
        values = await src.read()
    if listing == "allowed":
        np.testing.assert_array_equal(values, expected)
        assert "dimension_separator" not in caplog.text
    else:
        assert 'add "dimension_separator": "/"' in caplog.text


async def test_a_gzip_chunk_layer_in_a_bucket_whose_probed_chunks_are_absent_is_refused(
    tmp_path, bucket, s3_env
):
    """Its '.gz' chunks sat only where no chunk was looked for: it opened through tensorstore
    and read as zeros. The bucket's listing now finds them."""
    CloudVolume = pytest.importorskip("cloudvolume").CloudVolume
    info = CloudVolume.create_new_info(
        num_channels=1, layer_type="image", data_type="uint8", encoding="raw",
        resolution=[4, 4, 40], voxel_offset=[0, 0, 0], volume_size=[64, 64, 8],
        chunk_size=[16, 16, 8],
    )  # fmt: skip
    volume = CloudVolume(f"file://{tmp_path / 'layer'}", info=info, progress=False)
    volume.commit_info()
    volume[16:32, 16:32, :] = np.full((16, 16, 8, 1), 9, np.uint8)  # x, y chunk 1 of 4 only
    assert [p.name for p in (tmp_path / "layer").glob("*/*.gz")] == ["16-32_16-32_0-8.gz"]
    upload(tmp_path / "layer", s3_env, bucket, "layer")
    with pytest.raises(ba.FormatNotSupportedError, match=r"'<chunk>\.gz' files"):
        await ba.open_source(f"precomputed://s3://{bucket}/layer")


async def test_a_storage_failure_in_a_raw_chunk_copy_is_a_storage_error(
    tmp_path, bucket, s3_env, refusing
):
    """The raw (chunk file) path raised SourceError where the decoding path raises
    StorageError: code catching storage failures (an OSError) missed it."""
    faults, storage = refusing
    faults.refuse_listing = False
    data = np.arange(16 * 32 * 32, dtype=np.uint16).reshape(16, 32, 32)
    kwargs = dict(shape=data.shape, dtype="uint16", chunks=(8, 16, 16))
    local = await ba.create_source(tmp_path / "in.zarr", **kwargs)
    await local.write(..., data)
    upload(tmp_path / "in.zarr", s3_env, bucket, "in.zarr")
    faults.errors["in.zarr/1.1.1"] = 500
    src = await ba.open_source(f"s3://{bucket}/in.zarr", storage=storage)
    out = await ba.create_source(tmp_path / "out.zarr", **kwargs)
    stats = ba.RunStats()
    with pytest.raises(ba.RunnerError) as failed:
        await ba.copy(src, out, block_shape=(8, 16, 16), stats=stats, retries=0)
    assert failed.value.failed_block_ids == [7]
    assert stats.extra.get("raw_copied_blocks", 0) == 7  # the other blocks moved as files
    assert "StorageError" in str(failed.value) and "1.1.1" in str(failed.value)
