"""A real S3-protocol server (moto_server) and a Range-capable static HTTP server on 127.0.0.1.

moto runs in its own process for the whole session (its state cannot leak into the test
process, and a crash cannot take pytest down); every test gets a fresh bucket. Its output goes
to a log file: werkzeug logs every request, and an unread pipe would block the server.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bioimage_async as ba
from bioimage_async.context import resource_options

MOTO_SERVER = Path(sys.executable).with_name("moto_server")

#: AWS variables a test must not inherit from the machine running it.
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/moto-api/", timeout=1) as reply:
                reply.read()
            return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_moto(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto_server on a free port (retried: another process may take the port first)."""
    log = open(log_path, "ab")  # noqa: SIM115 - closed by stop_moto through the process
    for attempt in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc)
            return proc, url
        except Exception:
            proc.kill()
            proc.wait()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def stop_moto(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def moto_available() -> bool:
    try:
        import moto  # noqa: F401
    except ImportError:
        return False
    return MOTO_SERVER.exists()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """'http://127.0.0.1:PORT' of a moto S3 server shared by the session."""
    if not moto_available():
        pytest.skip("moto[server] is not installed (pip install -e '.[test]')")
    proc, url = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield url
    finally:
        stop_moto(proc)


@pytest.fixture(autouse=True)
def bounded_storage() -> Iterator[None]:
    """Failures come back in about a second: two tries per request, 10 s per open."""
    previous = resource_options()
    ba.configure(storage_retries=2, storage_timeout=10.0)
    try:
        yield
    finally:
        ba.configure(
            storage_retries=previous.storage_retries, storage_timeout=previous.storage_timeout
        )


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AWS variable from the machine, no instance-metadata lookups, no ~/.aws files."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    return monkeypatch


@pytest.fixture
def s3_env(aws_env: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """The standard variables pointing at moto, as a user of an S3-compatible store sets them."""
    aws_env.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    aws_env.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    aws_env.setenv("AWS_REGION", "us-east-1")
    return moto_endpoint


def create_bucket(endpoint: str, name: str) -> None:
    """An unsigned PUT (moto accepts it while auth is not enforced)."""
    request = urllib.request.Request(f"{endpoint}/{name}", method="PUT")
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert reply.status == 200


def new_bucket(endpoint: str) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    create_bucket(endpoint, name)
    return name


@pytest.fixture
def bucket(s3_env: str) -> str:
    """A fresh, empty bucket on moto."""
    return new_bucket(s3_env)


def s3_objects(endpoint: str, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object below ``prefix``, read with tensorstore's kvstore (the ground truth)."""
    import tensorstore as ts

    store = ts.KvStore.open(
        {
            "driver": "s3",
            "bucket": bucket,
            "path": prefix,
            "endpoint": endpoint,
            "aws_region": "us-east-1",
            "aws_credentials": {"type": "environment"},
        }
    ).result()
    return {k.decode(): bytes(store.read(k).result().value) for k in store.list().result()}


# ---- a static HTTP server that honours Range (python -m http.server ignores it) --------------
class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Partial reads (sharded zarr v3 and precomputed) need 206 answers to Range requests."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        self._remaining: int | None = None
        if self.path.startswith("/moved/"):  # what a Zenodo or GitHub link answers
            self.send_response(302)
            self.send_header("Location", self.path[len("/moved") :])
            self.end_headers()
            return None
        wanted = self.headers.get("Range")
        path = self.translate_path(self.path)
        if os.path.exists(os.path.join(os.path.dirname(path), ".forbidden")):
            self.send_error(403)  # a folder marked private: what a server without access says
            return None
        if self._marked(path, ".ignores_range"):  # python -m http.server: whole files only
            wanted = None
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", (wanted or "").strip())
        if not match or match.groups() == ("", "") or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        if match.group(1) == "":
            start, end = max(0, size - int(match.group(2))), size - 1
        else:
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
        if start >= size or start > end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return None
        handle = open(path, "rb")  # noqa: SIM115 - closed by the base class after copyfile
        handle.seek(start)
        self._remaining = end - start + 1
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(self._remaining))
        self.end_headers()
        return handle

    @staticmethod
    def _marked(path: str, marker: str) -> bool:
        """Whether a folder above ``path`` holds ``marker``."""
        folder = os.path.dirname(path)
        while folder and folder != os.path.dirname(folder):
            if os.path.exists(os.path.join(folder, marker)):
                return True
            folder = os.path.dirname(folder)
        return False

    def copyfile(self, source: Any, outputfile: Any) -> None:
        remaining = self._remaining
        if remaining is None:
            super().copyfile(source, outputfile)
            return
        while remaining > 0:
            data = source.read(min(65536, remaining))
            if not data:
                break
            outputfile.write(data)
            remaining -= len(data)


class RangeServer(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops connections under tensorstore's concurrency
    daemon_threads = True


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(folder, 'http://127.0.0.1:PORT') serving the folder read-only with Range support."""
    root = tmp_path / "www"
    root.mkdir()
    server = RangeServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
