"""Helpers for the tests on the real slurm + sshd test bed (tests/slurm_testbed/setup.sh)."""

import os
import shutil
import subprocess

import pytest

import bioimage_async as ba

ENV_FILE = "/var/lib/slurm-testbed/testbed.env"
CHUNKS = (16, 32, 32)


def load_env():
    if not os.path.exists(ENV_FILE):
        pytest.skip("the slurm test bed is not set up (bash tests/slurm_testbed/setup.sh)")
    env = {}
    for line in open(ENV_FILE):
        if "=" in line and not line.startswith("#"):
            key, value = line.strip().split("=", 1)
            env[key] = value
    return env


def _testbed_fixture():
    return load_env()


def _shared_fixture(testbed, tmp_path):
    """A per-test folder on the 'shared filesystem' that the cluster user can write."""
    folder = os.path.join(testbed["SLURM_TESTBED_SHARED"], f"{tmp_path.name}-{os.getpid()}")
    os.makedirs(folder)
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def ssh_config(testbed, shared, **kw):
    fields = dict(
        tmp_root=shared,
        poll_interval=0.25,
        latency_wait=10,
        scheduler_poll_interval=1.0,
        host=testbed["SLURM_TESTBED_HOST"],
        port=int(testbed["SLURM_TESTBED_PORT"]),
        username=testbed["SLURM_TESTBED_USER"],
        client_keys=[testbed["SLURM_TESTBED_CLIENT_KEY"]],
        known_hosts=testbed["SLURM_TESTBED_KNOWN_HOSTS"],
        remote_python=testbed["SLURM_TESTBED_REMOTE_PYTHON"],
    )
    fields.update(kw)
    return ba.SlurmConfig(**fields)


def local_config(shared, **kw):
    return ba.SlurmConfig(
        tmp_root=shared, poll_interval=0.25, latency_wait=10, scheduler_poll_interval=1.0, **kw
    )


async def make_io(shared, data, name="out.zarr", out_shape=None, out_chunks=CHUNKS):
    src = await ba.create_source(
        os.path.join(shared, "in.zarr"), shape=data.shape, dtype=data.dtype, chunks=CHUNKS
    )
    await src.write(..., data)
    out = await ba.create_source(
        os.path.join(shared, name),
        shape=out_shape or data.shape,
        dtype=data.dtype,
        chunks=out_chunks,
    )
    subprocess.run(["chmod", "-R", "a+rwX", shared], check=True)
    return src, out


def squeue_alive(job_ids):
    result = subprocess.run(
        ["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i %T"],
        capture_output=True,
        text=True,
    )
    return [
        line for line in result.stdout.splitlines() if line.split()[1] in ("RUNNING", "PENDING")
    ]
