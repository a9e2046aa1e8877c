"""examples/tiff_to_s3.py runs as a real program against the moto server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "tiff_to_s3.py"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BIOIMAGE_ASYNC_NO_CONFIG="1", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_tiff_to_s3_writes_a_sharded_zarr3_and_reads_it_back(tmp_path, bucket, s3_env):
    tifffile = pytest.importorskip("tifffile")
    stack = np.arange(40 * 50 * 60, dtype=np.uint16).reshape(40, 50, 60)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    url = f"s3://{bucket}/stack.zarr"
    result = run(
        str(tmp_path / "stack.tif"),
        url,
        "--chunks",
        "16,32,32",
        "--shards",
        "32,64,64",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "equal to the TIFF" in result.stdout
    store = ts.open(
        {
            "driver": "zarr3",
            "kvstore": {
                "driver": "s3",
                "bucket": bucket,
                "path": "stack.zarr/",
                "endpoint": s3_env,
                "aws_region": "us-east-1",
            },
        }
    ).result()
    np.testing.assert_array_equal(store.read().result(), stack)
    codecs = store.spec().to_json()["metadata"]["codecs"]
    assert codecs[0]["name"] == "sharding_indexed"


def test_tiff_to_s3_says_which_bucket_is_missing(tmp_path, s3_env):
    result = run("--sample", "s3://no-such-bucket-here/x.zarr", cwd=tmp_path)
    assert result.returncode != 0
    assert "no such bucket 'no-such-bucket-here'" in result.stderr
    assert "Traceback" not in result.stderr
