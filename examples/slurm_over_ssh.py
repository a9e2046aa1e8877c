"""Submit a conversion to a slurm cluster over SSH from a workstation, watch it, attach to it.

What it shows:

* ``ba.SlurmConfig.load(path, **overrides)``: cluster defaults from the config file (or
  ``--config FILE``), then the connection fields given on the command line on top: host, port,
  user, key, known_hosts (host keys are always checked), tmp_root, remote_python.
* ``ba.copy(..., job_type="slurm", wait=False)`` returns a ``ba.Run`` right after ``sbatch``;
  the script prints ``await run.status()`` while polling, then ``await run.wait()``.
* ``ba.attach(tmp_folder, job_config=config)`` rebuilds the handle from the run folder alone, as
  another process (or you, tomorrow) would; ``--attach TMP_FOLDER`` does only that and waits,
  ``--cancel TMP_FOLDER`` cancels the run. Ctrl-C while watching leaves the job running
  (``detach_on_cancel=True``) and prints the command that attaches again.

Paths are paths *on the cluster*: ``--tmp-root`` and the data must be on its shared filesystem.
Without ``--input`` the script writes a small sample (in.zarr, out.zarr) into ``--data-dir``,
which must be visible under the same path here and on the cluster, and checks the result.

It runs out of the box against the project's slurm + sshd test bed
(``bash tests/slurm_testbed/setup.sh "$PWD"`` as root): when
``/var/lib/slurm-testbed/testbed.env`` exists, every connection field you do not give comes
from it and the data goes into its shared folder::

    python examples/slurm_over_ssh.py                                  # the test bed
    python examples/slurm_over_ssh.py --host login.cluster.org --user me \\
        --key ~/.ssh/id_ed25519 --tmp-root /scratch/me/tmp --data-dir /scratch/me/demo \\
        --remote-python /shared/envs/ba/bin/python --partition cpu --workers 8
    python examples/slurm_over_ssh.py --config cluster.toml --data-dir /scratch/me/demo
    python examples/slurm_over_ssh.py --attach /scratch/me/tmp/bioimage_async_copy_...
    python examples/slurm_over_ssh.py --cancel /scratch/me/tmp/bioimage_async_copy_...

Needs the ``slurm`` extra (asyncssh). Exit code 0: the output is complete (and, for the
sample, equal to the input); 1: blocks failed (their ids and the run folder are printed).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import shutil
import time
from typing import Any

import numpy as np

import bioimage_async as ba

TESTBED_ENV = "/var/lib/slurm-testbed/testbed.env"


def int_tuple(text: str) -> tuple[int, ...]:
    """'32,64,64' -> (32, 64, 64)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    conn = parser.add_argument_group("connection (override the config file)")
    conn.add_argument(
        "--config",
        default=None,
        help="TOML file with a [slurm] table "
        "(default: $BIOIMAGE_ASYNC_CONFIG or ~/.config/bioimage-async/config.toml)",
    )
    conn.add_argument("--host", default=None, help="the cluster's login node")
    conn.add_argument("--port", type=int, default=None, help="its SSH port (default 22)")
    conn.add_argument("--user", default=None, help="user name on the cluster")
    conn.add_argument(
        "--key",
        action="append",
        default=None,
        help="private key file (repeatable; default: agent and ~/.ssh keys)",
    )
    conn.add_argument(
        "--known-hosts",
        default=None,
        help="known_hosts file to check the host key against (default ~/.ssh/known_hosts)",
    )
    conn.add_argument(
        "--tmp-root", default=None, help="run folders, on the cluster's shared filesystem"
    )
    conn.add_argument(
        "--remote-python", default=None, help="the cluster's Python with bioimage_async"
    )
    conn.add_argument("--partition", default=None, help="slurm partition")
    conn.add_argument("--time", default=None, help="slurm time limit, e.g. 00:10:00")
    conn.add_argument("--poll-interval", type=float, default=0.5, help="seconds between polls")
    conn.add_argument(
        "--testbed-env",
        default=TESTBED_ENV,
        help="fill the fields not given from this test bed file, if it exists",
    )

    data = parser.add_argument_group("data")
    data.add_argument("--input", default=None, help="volume to convert (a path on the cluster)")
    data.add_argument(
        "--output",
        default=None,
        help="zarr to write (a path on the cluster; created with the input's shape and --chunks)",
    )
    data.add_argument(
        "--data-dir",
        default=None,
        help="shared folder for the generated sample "
        "(default with the test bed: <its shared folder>/bioimage-async-example-<user>)",
    )
    data.add_argument("--shape", type=int_tuple, default=(64, 256, 256), help="sample shape")
    data.add_argument("--chunks", type=int_tuple, default=(32, 64, 64), help="output chunk shape")
    data.add_argument(
        "--block-shape",
        type=int_tuple,
        default=None,
        help="block shape (default: --chunks for the sample, else the library's choice)",
    )
    data.add_argument("--workers", type=int, default=4, help="array tasks running at once (%%W)")
    data.add_argument(
        "--watch-seconds",
        type=float,
        default=120.0,
        help="poll run.status() at most this long before run.wait()",
    )
    data.add_argument(
        "--cancel",
        default=None,
        metavar="TMP_FOLDER",
        help="attach to the run in TMP_FOLDER and cancel it (scancel)",
    )
    data.add_argument(
        "--attach",
        default=None,
        metavar="TMP_FOLDER",
        help="only attach to the run in TMP_FOLDER and wait for it",
    )
    return parser.parse_args(argv)


def read_testbed_env(path: str) -> dict[str, str]:
    """KEY=value lines of tests/slurm_testbed's env file ({} when it does not exist)."""
    if not path or not os.path.exists(path):
        return {}
    env = {}
    with open(path) as handle:
        for line in handle:
            if "=" in line and not line.startswith("#"):
                key, value = line.strip().split("=", 1)
                env[key] = value
    return env


def build_config(
    args: argparse.Namespace, testbed: dict[str, str], data_dir: str | None
) -> ba.SlurmConfig:
    """SlurmConfig.load(file) with the command line (then the test bed) on top."""
    from_testbed = {
        "host": testbed.get("SLURM_TESTBED_HOST"),
        "port": int(testbed["SLURM_TESTBED_PORT"]) if "SLURM_TESTBED_PORT" in testbed else None,
        "username": testbed.get("SLURM_TESTBED_USER"),
        "client_keys": [testbed["SLURM_TESTBED_CLIENT_KEY"]]
        if "SLURM_TESTBED_CLIENT_KEY" in testbed
        else None,
        "known_hosts": testbed.get("SLURM_TESTBED_KNOWN_HOSTS"),
        # run folders in our own sub-folder: the shared folder's top level is sticky (1777)
        "tmp_root": os.path.join(data_dir, "runs") if testbed and data_dir else None,
        "remote_python": testbed.get("SLURM_TESTBED_REMOTE_PYTHON"),
        "partition": testbed.get("SLURM_TESTBED_PARTITION"),
    }
    from_args = {
        "host": args.host,
        "port": args.port,
        "username": args.user,
        "client_keys": args.key,
        "known_hosts": args.known_hosts,
        "tmp_root": args.tmp_root,
        "remote_python": args.remote_python,
        "partition": args.partition,
        "time": args.time,
    }
    overrides: dict[str, Any] = {"poll_interval": args.poll_interval}
    if testbed:  # a test bed fills in only what the command line leaves open
        overrides.update({k: v for k, v in from_testbed.items() if v is not None})
    overrides.update({k: v for k, v in from_args.items() if v is not None})
    if overrides.get("client_keys"):
        overrides["client_keys"] = [os.path.expanduser(k) for k in overrides["client_keys"]]
    config = ba.SlurmConfig.load(args.config, **overrides)
    if config.host is None:
        raise SystemExit("no --host given and none in the config file or a test bed env file")
    return config


def describe(config: ba.SlurmConfig) -> str:
    return (
        f"{config.username or getpass.getuser()}@{config.host}:{config.port} "
        f"(known_hosts {config.known_hosts}, keys {config.client_keys}), "
        f"tmp_root {config.tmp_root}, remote python {config.remote_python}, "
        f"partition {config.partition}"
    )


def sample_volume(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)


def make_shared(path: str) -> None:
    """a+rwX on ``path`` and everything below it: the cluster user must be able to write there."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o777)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666)


async def prepare_sample(
    data_dir: str, shape: tuple[int, ...], chunks: tuple[int, ...]
) -> tuple[ba.Source, ba.Source]:
    """in.zarr (a random volume) and an empty out.zarr with other chunks, writable by the cluster."""
    for name in ("in.zarr", "out.zarr"):
        await asyncio.to_thread(shutil.rmtree, os.path.join(data_dir, name), True)
    await asyncio.to_thread(os.makedirs, data_dir, mode=0o777, exist_ok=True)
    src = await ba.create_source(
        os.path.join(data_dir, "in.zarr"),
        shape=shape,
        dtype="uint8",
        chunks=tuple(max(1, c // 2) for c in chunks),
    )
    await src.write(..., sample_volume(shape))
    out = await ba.create_source(
        os.path.join(data_dir, "out.zarr"), shape=shape, dtype="uint8", chunks=chunks
    )
    for name in ("in.zarr", "out.zarr"):
        await asyncio.to_thread(make_shared, os.path.join(data_dir, name))
    return src, out


async def watch(run: ba.Run, seconds: float, interval: float) -> None:
    """Print ``await run.status()`` until every task ended or ``seconds`` passed."""
    started = time.monotonic()
    while True:
        status = await run.status()
        print(
            f"  [{time.monotonic() - started:5.1f} s] blocks {status.blocks_done}/{status.blocks_total}"
            f"  tasks: {status.pending} pending, {status.running} running, "
            f"{status.tasks_succeeded} succeeded, {status.tasks_failed} failed "
            f"(of {status.tasks_total})",
            flush=True,
        )
        if status.finished or time.monotonic() - started > seconds:
            return
        await asyncio.sleep(interval)


async def wait_for(run: ba.Run) -> Any:
    try:
        return await run.wait()
    except ba.RunnerError as error:
        print(f"FAILED blocks {error.failed_block_ids}; run folder {error.tmp_folder}")
        print(f"  finish it later with resume_from={error.tmp_folder!r}")
        raise SystemExit(1) from None


def describe_result(result: Any) -> str:
    """run.wait() returns the output Source, or its spec when the output is not reachable here."""
    if isinstance(result, ba.SourceSpec):
        return f"{result.kind} output at {result.params.get('location')} (on the cluster)"
    return result.describe() if hasattr(result, "describe") else str(result)


def reattach_hint(tmp_folder: str) -> str:
    return (
        f"the job keeps running; attach again with (plus the same connection options):\n"
        f"  python {os.path.basename(__file__)} --attach {tmp_folder}"
    )


async def attach_only(tmp_folder: str, config: ba.SlurmConfig, cancel: bool) -> int:
    """--attach / --cancel: the Run handle rebuilt from the run folder alone."""
    run = await ba.attach(tmp_folder, job_config=config, detach_on_cancel=True)
    try:
        print(f"attached to {run}", flush=True)
        if cancel:
            await run.cancel()  # scancel, then wait until slurm reports the tasks gone
            status = await run.status()
            print(f"cancelled: blocks {status.blocks_done}/{status.blocks_total} stay written")
            return 0
        try:
            await watch(run, float("inf"), config.poll_interval)
            result = await wait_for(run)
        except asyncio.CancelledError:
            print(f"\nstopped watching; {reattach_hint(tmp_folder)}")
            raise
        print(f"done: {describe_result(result)}")
    finally:
        await run.close()
    return 0


async def main_async(args: argparse.Namespace) -> int:
    testbed = read_testbed_env(args.testbed_env) if args.host is None else {}
    data_dir = args.data_dir
    if data_dir is None and "SLURM_TESTBED_SHARED" in testbed:
        data_dir = os.path.join(
            testbed["SLURM_TESTBED_SHARED"], f"bioimage-async-example-{getpass.getuser()}"
        )
    config = build_config(args, testbed, data_dir)
    print(f"cluster: {describe(config)}", flush=True)
    if (
        testbed and data_dir and not (args.attach or args.cancel)
    ):  # the test bed's shared disk is mounted here
        await asyncio.to_thread(os.makedirs, data_dir, exist_ok=True)
        await asyncio.to_thread(os.chmod, data_dir, 0o777)
        if config.tmp_root and not os.path.isdir(config.tmp_root):
            await asyncio.to_thread(make_shared, config.tmp_root)
    if args.attach or args.cancel:
        return await attach_only(args.attach or args.cancel, config, cancel=bool(args.cancel))

    expected = None
    block_shape = args.block_shape
    if args.input:
        src = await ba.open_source(args.input)
        out_path = args.output or os.path.splitext(args.input.rstrip("/"))[0] + "_converted.zarr"
        out = await ba.create_source(out_path, shape=src.shape, dtype=src.dtype, chunks=args.chunks)
    else:
        if data_dir is None:
            raise SystemExit(
                "give --input/--output on the cluster, or --data-dir on its shared filesystem"
            )
        src, out = await prepare_sample(data_dir, args.shape, args.chunks)
        expected = sample_volume(args.shape)
        block_shape = block_shape or args.chunks  # small blocks: progress worth watching
    print(f"copy {src.describe()} -> {out.describe()}", flush=True)

    started = time.monotonic()
    run = await ba.copy(
        src,
        out,
        block_shape=block_shape,
        job_type="slurm",
        job_config=config,
        num_workers=args.workers,
        wait=False,  # return the Run right after sbatch
        detach_on_cancel=True,  # Ctrl-C while waiting leaves the job running (no scancel)
    )
    try:
        print(
            f"submitted in {time.monotonic() - started:.2f} s: jobs {run.job_ids}, "
            f"run folder {run.tmp_folder}",
            flush=True,
        )
        await watch(run, args.watch_seconds, config.poll_interval)

        # what another process would do with nothing but the run folder (and the same config)
        again = await ba.attach(run.tmp_folder, job_config=config)
        try:
            status = await again.status()
            print(
                f"attached from the run folder: {again}; blocks {status.blocks_done}/"
                f"{status.blocks_total}",
                flush=True,
            )
        finally:
            await again.close()

        result = await wait_for(run)
    except asyncio.CancelledError:  # Ctrl-C: the job goes on without us
        print(f"\nstopped watching; {reattach_hint(run.tmp_folder)}", flush=True)
        raise
    finally:
        await run.close()
    print(f"done in {time.monotonic() - started:.2f} s: {describe_result(result)}")

    if expected is not None:
        written = await (await ba.from_spec(out.to_spec())).read()  # reopened: no stale cache
        if not np.array_equal(written, expected):
            print("MISMATCH: the output differs from the input")
            return 1
        print("the output equals the input")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return asyncio.run(main_async(parse_args(argv)))
    except KeyboardInterrupt:  # the message was printed where the run was being watched
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
