"""The runner registry: job_type strings, attach and the CLI derive from registered backends."""

import json

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.runners.registry import unregister_runner

from .sequential_runner import SequentialBackend


@pytest.fixture
def sequential():
    ba.register_runner(SequentialBackend())
    yield
    unregister_runner("sequential")


async def test_a_new_backend_is_one_module_plus_one_registration_line(sequential, volume):
    assert "sequential" in ba.job_types()
    out = await ba.copy(volume, job_type="sequential")
    np.testing.assert_array_equal(out, volume)
    partial = np.zeros_like(volume)
    await ba.copy(volume, partial, job_type="sequential", block_shape=(16, 32, 32), block_ids=[0])
    np.testing.assert_array_equal(partial[:16, :32, :32], volume[:16, :32, :32])
    assert not partial[16:].any()


async def test_the_backend_policies_are_asked_not_assumed(sequential, volume):
    with pytest.raises(ba.InvalidArgumentError, match="wait=False"):
        await ba.copy(volume, job_type="sequential", wait=False)
    with pytest.raises(ba.InvalidArgumentError, match="resume_from is not available"):
        await ba.copy(volume, job_type="sequential", resume_from="/tmp/x")


def test_the_cli_offers_registered_backends(sequential):
    from bioimage_async.cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(["convert", "a.tif", "b.zarr", "--job-type", "sequential"])
    assert args.job_type == "sequential"


async def test_an_unknown_job_type_is_refused_with_the_known_ones(volume):
    with pytest.raises(
        ba.InvalidArgumentError, match="job_type must be one of.*local.*subprocess.*slurm"
    ):
        await ba.copy(volume, job_type="thread")


async def test_attach_refuses_a_run_folder_of_an_unknown_backend(tmp_path):
    """Never a silent fallback to another backend's launcher."""
    folder = tmp_path / "run"
    (folder / "status").mkdir(parents=True)
    (folder / "manifest.json").write_text(
        json.dumps({"name": "x", "job_type": "mystery", "attempts": []})
    )
    with pytest.raises(ba.ConfigError, match="'mystery' backend, which is not registered"):
        await ba.attach(str(folder))
