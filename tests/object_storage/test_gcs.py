"""gs:// takes the same code path as s3:// through tensorstore's gcs kvstore.

The spec building is tested always. The round trips run against a fake GCS server,
``gcp-storage-emulator`` (in the test extra, so CI runs them; a bare install skips them):
tensorstore finds it through ``TENSORSTORE_GCS_HTTP_URL`` and sends the fixed token of
``GOOGLE_AUTH_TOKEN_FOR_TESTING``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.sources.location import Location
from tests.object_storage.conftest import free_port


def test_gs_urls_build_gcs_kvstores_without_credentials():
    location = Location.parse("zarr3://gs://my-bucket/data/v.zarr")
    assert location.kvstore() == {"driver": "gcs", "bucket": "my-bucket", "path": "data/v.zarr/"}
    assert location.prefix == "zarr3" and not location.read_only


def emulator() -> str | None:
    beside = Path(sys.executable).with_name("gcp-storage-emulator")
    return str(beside) if beside.exists() else shutil.which("gcp-storage-emulator")


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    program = emulator()
    if program is None:
        pytest.skip("gcp-storage-emulator is not installed (pip install gcp-storage-emulator)")
    port = free_port()
    with open(tmp_path / "gcs.log", "wb") as log:
        proc = subprocess.Popen(
            [program, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"]
            + ["--default-bucket", "gbucket"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url + "/storage/v1/b", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        monkeypatch.setenv("TENSORSTORE_GCS_HTTP_URL", url)
        monkeypatch.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "fake-token")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@pytest.mark.parametrize("fmt", ["zarr", "zarr3", "n5", "precomputed"])
async def test_every_format_on_a_fake_gcs(gcs, fmt):
    data = np.arange(8 * 10 * 12, dtype=np.uint16).reshape(8, 10, 12)
    src = await ba.create_source(
        f"gs://gbucket/{fmt}.vol", shape=data.shape, dtype=data.dtype, chunks=(4, 8, 8), format=fmt
    )
    await src.write(..., data)
    back = await ba.open_source(f"{fmt}://gs://gbucket/{fmt}.vol")
    np.testing.assert_array_equal(await back.read(), data)
    with pytest.raises(ba.StorageError, match="no such key"):
        await ba.open_source(f"gs://gbucket/none-{fmt}.vol", format=fmt)
