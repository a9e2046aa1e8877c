"""What a resume must match: the data a call names, not how its handles were opened."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.runners.protocol import data_spec

from .blockfns import bright_volume, fail_while_marker_exists

SHAPE, BLOCK = (32, 32, 64), (16, 16, 16)


async def failed_run(tmp_path: Path, job_type: str) -> tuple[np.ndarray, str, Path]:
    """A run whose bright block 3 failed: (input data, its run folder, the failure marker).
    Input and output come from ba.create_source, so their handles are writable."""
    data = bright_volume(SHAPE, BLOCK, [3])
    src = await ba.create_source(tmp_path / "in.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    await src.write(..., data)
    out = await ba.create_source(tmp_path / "out.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    marker = tmp_path / "marker"
    marker.touch()
    with pytest.raises(ba.RunnerError) as caught:
        await ba.map_blocks(
            fail_while_marker_exists(str(marker)),
            src,
            out,
            block_shape=BLOCK,
            job_type=job_type,
            num_workers=2,
            job_config=config(tmp_path),
        )
    assert caught.value.failed_block_ids == [3]
    marker.unlink()
    return data, str(caught.value.tmp_folder), marker


def config(tmp_path: Path) -> ba.RunnerConfig:
    return ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)


async def resume(tmp_path: Path, job_type: str, folder: str, marker: Path, src: ba.Source):
    out = await ba.open_source(tmp_path / "out.zarr", mode="r+")
    await ba.map_blocks(
        fail_while_marker_exists(str(marker)),
        src,
        out,
        block_shape=BLOCK,
        job_type=job_type,
        num_workers=2,
        job_config=config(tmp_path),
        resume_from=folder,
    )
    return out


@pytest.mark.parametrize("job_type", ["local", "subprocess"])
async def test_a_resume_may_reopen_the_input_read_only(tmp_path, job_type):
    """A new session reopens the input with ba.open_source(path): read-only, same data."""
    data, folder, marker = await failed_run(tmp_path, job_type)
    src = await ba.open_source(tmp_path / "in.zarr")
    assert not src.writable
    out = await resume(tmp_path, job_type, folder, marker, src)
    np.testing.assert_array_equal(await out.read(), 255 - data)


async def test_a_run_folder_from_before_part_hashes_resumes_with_a_read_only_input(tmp_path):
    data, folder, marker = await failed_run(tmp_path, "local")
    manifest_path = Path(folder) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.pop("part_hashes", None)  # what older versions wrote
    manifest_path.write_text(json.dumps(manifest))
    src = await ba.open_source(tmp_path / "in.zarr")
    out = await resume(tmp_path, "local", folder, marker, src)
    np.testing.assert_array_equal(await out.read(), 255 - data)


@pytest.mark.parametrize("old_manifest", [False, True])
async def test_a_resume_with_another_input_is_refused_naming_the_input(tmp_path, old_manifest):
    _, folder, marker = await failed_run(tmp_path, "local")
    if old_manifest:
        manifest_path = Path(folder) / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest.pop("part_hashes", None)
        manifest_path.write_text(json.dumps(manifest))
    other = await ba.create_source(
        tmp_path / "other.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK
    )
    with pytest.raises(ba.PayloadMismatchError) as caught:
        await resume(tmp_path, "local", folder, marker, other)
    message = str(caught.value)
    assert "another input" in message and "other.zarr" in message
    for part in ("block layout", "another function", "another output", "another mask"):
        assert part not in message
    assert caught.value.tmp_folder == folder
    assert os.path.exists(folder)  # nothing ran: the run can still be resumed


def test_data_spec_drops_how_a_handle_was_opened_and_keeps_which_data():
    view = {
        "kind": "view",
        "params": {
            "source": {
                "kind": "tensorstore",
                "params": {
                    "location": "/d/in.zarr",
                    "lock_path": "/d/in.zarr/.lock",
                    "writable": True,
                    "storage": {"endpoint_url": "http://s3", "profile": "me"},
                    "tensorstore": {"driver": "zarr", "dtype": "uint8"},
                },
            },
            "roi": [[0, 4]],
            "squeeze": [],
        },
    }
    inner = data_spec(view)["params"]["source"]["params"]
    assert inner == {
        "location": "/d/in.zarr",
        "storage": {"endpoint_url": "http://s3"},
        "tensorstore": {"driver": "zarr", "dtype": "uint8"},
    }
    assert data_spec(view)["params"]["roi"] == [[0, 4]]
    hdf5 = {"kind": "hdf5", "params": {"path": "/d/a.h5", "key": "raw", "mode": "r+"}}
    assert data_spec(hdf5) == {"kind": "hdf5", "params": {"path": "/d/a.h5", "key": "raw"}}
