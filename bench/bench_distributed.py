#!/usr/bin/env python
"""Overhead of the distributed backends: submission latency, per-block overhead, polling cost.

    .venv/bin/python bench/bench_distributed.py            # everything (~5-8 min)
    .venv/bin/python bench/bench_distributed.py --quick    # one variant per backend (~2 min)
    .venv/bin/python bench/bench_distributed.py --skip ssh,bp

Backends: ``subprocess``, ``slurm`` with local sbatch, ``slurm`` over SSH (asyncssh + SFTP to
the test bed's sshd), and bioimage-py 0.2.2's subprocess backend as the peer; the in-process
``local`` runner is a reference row (the per-block cost without any distribution).

Needs the slurm test bed (/var/lib/slurm-testbed/testbed.env): the data and the run folders
live in a fresh folder under ``SLURM_TESTBED_SHARED`` (chmod a+rwX so the cluster user can
write), which is removed at the end. Jobs are small (<= 4 at once, seconds each); on a timeout
or error only this script's own jobs are cancelled (through ``Run.wait``'s cancellation).

Measured:

1. Submission latency (``--reps`` runs of 16 blocks in 4 tasks per backend): the time from the
   ``ba.copy(..., wait=False)`` call until it returns the Run handle, and until the first done
   record exists in the run folder's ``progress/`` (polled every 2 ms straight on the local
   filesystem, which is the shared folder here, so SSH adds nothing to the observation). The
   handle time is split into phases by timing the runner's own calls (connect, RunFolder.create,
   add_tasks, launcher.submit (of which ``scontrol show config``), record_attempt); "other" is the
   op's set-up (opening sources, write plan). bioimage-py's call blocks until the end, so only
   its first-block time (polled the same way) and its return time exist.
2. Per-block overhead: a 10 x 100 x 100 uint8 zarr with 1 x 10 x 10 chunks and blocks, i.e.
   exactly 1,000 blocks of 100 voxels, copied end to end with num_workers=4 (wall from the
   call until ``run.wait()`` returns, the clean-up of the run folder included), with the default
   task split and ``blocks_per_task`` = 10, 100, 250 (bioimage-py: ``tasks_per_worker`` = 1 and
   4, i.e. 250 and 62.5 blocks per task; its 10-blocks-per-task split starts 100 processes of
   ~2 s imports each and does not fit the time budget). Outputs are checked against the input.
3. Polling cost: ``run.folder.sentinels``, ``run.folder.blocks_done_count`` and
   ``run.launcher.states`` are wrapped on the Run handle, so every poll of ``run.wait()`` is
   timed per call, along with the operations it causes: local directory listings and per-entry
   ``stat`` calls (counted through a proxy of the ``os`` module of runners/files.py), /proc
   reads (subprocess liveness), scheduler commands spawned (squeue/sacct) and, over SSH, exec
   channels and SFTP request packets by type. A nested call (the subprocess launcher's
   ``states`` calls ``sentinels`` itself) is counted inside its caller. A synthetic run folder
   with 4 .. 10,000 task files then shows how one poll's listings scale with the number of
   tasks and of blocks, locally and over SFTP.

Results: a Markdown report printed and written to bench/results/<date>-distributed.md, the raw
numbers as JSON next to it. Run folders use ``poll_interval=0.25`` (the tests' value).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")  # bioimage-py's progress bar

import bioimage_async as ba  # noqa: E402

HERE = Path(__file__).resolve().parent
ENV_FILE = "/var/lib/slurm-testbed/testbed.env"
SHAPE = (10, 100, 100)
BLOCK = (1, 10, 10)  # 10 * 10 * 10 = 1,000 blocks of 100 voxels (one chunk each)
NUM_BLOCKS = 1000
NUM_WORKERS = 4
POLL = 0.25
RUN_TIMEOUT = 180.0
BPT_VARIANTS: list[int | None] = [None, 10, 100, 250]
BP_TPW = [1, 4]  # 25 (100 one-process tasks) takes > 3 min on 2 busy cores
RTT_EXAMPLE_MS = 20.0  # a typical workstation -> login node round trip, for extrapolation


# ------------------------------------------------------------------------------------------------
# operation counters and phase timers (instrumentation from outside the package)
# ------------------------------------------------------------------------------------------------
class Ops:
    """Thread-safe counters of filesystem / scheduler / SSH operations caused by the runner."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def snap(self) -> collections.Counter[str]:
        with self.lock:
            return collections.Counter(self.counts)


OPS = Ops()
PHASES: collections.Counter[str] = collections.Counter()
FINISH_INFO: dict[str, Any] = {}


class _Entry:
    """An os.DirEntry whose ``stat()`` is counted (``is_file`` uses d_type: no syscall)."""

    __slots__ = ("_entry",)

    def __init__(self, entry: os.DirEntry) -> None:
        self._entry = entry

    def stat(self, *args: Any, **kwargs: Any) -> os.stat_result:
        OPS.add("fs.stat")
        return self._entry.stat(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._entry, name)


class _Scandir:
    def __init__(self, iterator: Any) -> None:
        self._it = iterator

    def __enter__(self) -> _Scandir:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._it.close()

    def __iter__(self) -> Any:
        return (_Entry(e) for e in self._it)


class _OsProxy:
    """Stands in for ``os`` inside runners/files.py: counts listings, stats, writes, renames."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def scandir(self, path: Any) -> _Scandir:
        OPS.add("fs.listdir")
        return _Scandir(os.scandir(path))

    def replace(self, src: Any, dst: Any) -> None:
        OPS.add("fs.rename")
        os.replace(src, dst)

    def makedirs(self, *args: Any, **kwargs: Any) -> None:
        OPS.add("fs.mkdir")
        os.makedirs(*args, **kwargs)


def _counting_open(*args: Any, **kwargs: Any) -> Any:
    path = str(args[0]) if args else ""
    OPS.add("proc.read" if path.startswith("/proc/") else "fs.open")
    return open(*args, **kwargs)


def _fxp_names() -> dict[Any, str]:
    import asyncssh.constants as constants

    names = {}
    for key, value in vars(constants).items():
        if key.startswith("FXP_") and isinstance(value, int) and value < 100:
            names[value] = key[4:]
    return names


def _timed_async(owner: Any, attr: str, label: str) -> None:
    raw = owner.__dict__[attr]
    is_cm = isinstance(raw, classmethod)
    fn = raw.__func__ if is_cm else raw

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            PHASES[label] += time.perf_counter() - started

    wrapper.__name__ = fn.__name__
    setattr(owner, attr, classmethod(wrapper) if is_cm else wrapper)


def install_instrumentation() -> None:
    import bioimage_async.runners.distributed as dist_mod
    import bioimage_async.runners.files as files_mod
    import bioimage_async.runners.slurm as slurm_mod
    import bioimage_async.runners.ssh as ssh_mod
    import bioimage_async.runners.subprocess as sp_mod
    from bioimage_async.runners.protocol import RunFolder
    from bioimage_async.runners.run import Run

    files_mod.os = _OsProxy()  # type: ignore[assignment]
    files_mod.open = _counting_open  # type: ignore[attr-defined]
    sp_mod.open = _counting_open  # type: ignore[attr-defined]

    # scheduler commands: spawned here, or one SSH exec channel each
    local_run = ssh_mod.LocalShell.run

    async def counted_local_run(self: Any, argv: Any, **kwargs: Any) -> Any:
        OPS.add(f"cmd.{argv[0]}")
        return await local_run(self, argv, **kwargs)

    ssh_mod.LocalShell.run = counted_local_run  # type: ignore[method-assign]
    remote_run = ssh_mod.SshSession.run

    async def counted_remote_run(self: Any, argv: Any, **kwargs: Any) -> Any:
        OPS.add(f"ssh.exec.{argv[0]}")
        return await remote_run(self, argv, **kwargs)

    ssh_mod.SshSession.run = counted_remote_run  # type: ignore[method-assign]

    # every SFTP request packet (each one a round trip unless pipelined)
    names = _fxp_names()
    original_open = ssh_mod.SshSession._open

    async def counted_open(self: Any) -> None:
        await original_open(self)
        OPS.add("ssh.connect")
        handler = self._sftp._handler
        send = handler._send_request

        def counting(pkttype: Any, args: Any, waiter: Any) -> Any:
            if isinstance(pkttype, bytes):
                name = pkttype.decode().split("@")[0]
            else:
                name = names.get(pkttype, str(pkttype))
            OPS.add(f"sftp.{name}")
            return send(pkttype, args, waiter)

        handler._send_request = counting

    ssh_mod.SshSession._open = counted_open  # type: ignore[method-assign]

    # phases of the submission
    plan_writes = dist_mod.plan_writes

    def timed_plan(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return plan_writes(*args, **kwargs)
        finally:
            PHASES["plan"] += time.perf_counter() - started

    dist_mod.plan_writes = timed_plan  # type: ignore[assignment]
    _timed_async(sp_mod.SubprocessRunner, "connect", "connect")
    _timed_async(slurm_mod.SlurmRunner, "connect", "connect")
    _timed_async(RunFolder, "create", "folder")
    _timed_async(RunFolder, "add_tasks", "tasks")
    _timed_async(sp_mod.SubprocessLauncher, "submit", "submit")
    _timed_async(slurm_mod.SlurmLauncher, "submit", "submit")
    _timed_async(slurm_mod.SlurmLauncher, "max_array_size", "scontrol")
    _timed_async(RunFolder, "record_attempt", "record")

    # the end of a run: read the task summaries (not timed), then time _finish
    finish = Run._finish

    async def timed_finish(self: Any, dead: Any) -> None:
        FINISH_INFO.clear()
        FINISH_INFO.update(task_summaries(self.folder.path))
        before = OPS.snap()
        started = time.perf_counter()
        try:
            await finish(self, dead)
        finally:
            FINISH_INFO["finish_s"] = time.perf_counter() - started
            FINISH_INFO["finish_ops"] = dict(OPS.snap() - before)

    Run._finish = timed_finish  # type: ignore[method-assign]


def task_summaries(folder: str) -> dict[str, Any]:
    """Per-task worker summaries from status/*.success (the run folder is local here).

    A sentinel's mtime is the task's end and its ``seconds`` the time inside ``run_task``, so
    end - seconds is when the task began its work (interpreter start and ``import
    bioimage_async`` are before that). With at most W = num_workers tasks at once, the i-th task
    to begin (i >= W) took the slot of the (i-W)-th task to end: begin_i - end_(i-W) is the
    relaunch gap (scheduler latency + process start + imports; ~0 when a worker process runs
    its next task itself).
    """
    seconds, ends = [], []
    try:
        for entry in os.scandir(os.path.join(folder, "status")):
            if entry.name.endswith(".success"):
                with open(entry.path) as handle:
                    secs = float(json.load(handle).get("seconds", 0.0))
                seconds.append(secs)
                ends.append(entry.stat().st_mtime)
    except OSError:
        pass
    begins = sorted(e - s for e, s in zip(ends, seconds))
    ends_sorted = sorted(ends)
    gaps = [begins[i] - ends_sorted[i - NUM_WORKERS] for i in range(NUM_WORKERS, len(begins))]
    return {"task_seconds": seconds, "relaunch_gaps": gaps}


class PollProbe:
    """Wraps the three calls one poll of ``run.wait()`` makes, on this Run's objects only."""

    LABELS = ("sentinels", "blocks_done_count", "states")

    def __init__(self, run: Any) -> None:
        self.records: dict[str, list[tuple[float, collections.Counter[str]]]] = {
            label: [] for label in self.LABELS
        }
        self.depth = 0
        self._wrap(run.folder, "sentinels")
        self._wrap(run.folder, "blocks_done_count")
        self._wrap(run.launcher, "states")

    def _wrap(self, obj: Any, name: str) -> None:
        original = getattr(obj, name)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            top = self.depth == 0
            self.depth += 1
            before = OPS.snap() if top else None
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self.depth -= 1
                if top:
                    self.records[name].append((elapsed, OPS.snap() - before))

        setattr(obj, name, wrapper)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"polls": len(self.records["sentinels"])}
        per_poll_ops: list[int] = []
        for label, recs in self.records.items():
            if not recs:
                out[label] = None
                continue
            times = [r[0] * 1e3 for r in recs]
            keys = sorted({k for _, c in recs for k in c})
            ops_mean = {k: statistics.fmean(c.get(k, 0) for _, c in recs) for k in keys}
            totals = [sum(c.values()) for _, c in recs]
            out[label] = {
                "calls": len(recs),
                "median_ms": statistics.median(times),
                "p90_ms": float(np.percentile(times, 90)),
                "max_ms": max(times),
                "ops_mean": ops_mean,
                "ops_min": min(totals),
                "ops_max": max(totals),
            }
        # ops of one whole poll = the i-th call of each (states is skipped on the last poll)
        polls = self.records["sentinels"]
        for index in range(len(polls)):
            total = 0
            for label in self.LABELS:
                recs = self.records[label]
                if index < len(recs):
                    total += sum(recs[index][1].values())
            per_poll_ops.append(total)
        if per_poll_ops:
            out["ops_per_poll_min"] = min(per_poll_ops)
            out["ops_per_poll_max"] = max(per_poll_ops)
        return out


# ------------------------------------------------------------------------------------------------
# test bed, data, configs
# ------------------------------------------------------------------------------------------------
def load_env() -> dict[str, str]:
    if not os.path.exists(ENV_FILE):
        sys.exit(f"{ENV_FILE} is missing: set up the slurm test bed (bash tests/slurm_testbed/setup.sh)")
    env = {}
    for line in open(ENV_FILE):
        if "=" in line and not line.startswith("#"):
            key, value = line.strip().split("=", 1)
            env[key] = value
    return env


def chmod_all(path: str) -> None:
    subprocess.run(["chmod", "-R", "a+rwX", path], check=True)


def slurm_config(env: dict[str, str], root: str, ssh: bool, **kw: Any) -> ba.SlurmConfig:
    fields: dict[str, Any] = dict(tmp_root=root, poll_interval=POLL, latency_wait=10)
    if ssh:
        fields.update(
            host=env["SLURM_TESTBED_HOST"], port=int(env["SLURM_TESTBED_PORT"]),
            username=env["SLURM_TESTBED_USER"], client_keys=[env["SLURM_TESTBED_CLIENT_KEY"]],
            known_hosts=env["SLURM_TESTBED_KNOWN_HOSTS"],
            remote_python=env["SLURM_TESTBED_REMOTE_PYTHON"],
        )
    if env.get("SLURM_TESTBED_PARTITION"):
        fields["partition"] = env["SLURM_TESTBED_PARTITION"]
    fields.update(kw)
    return ba.SlurmConfig(**fields)


class Bench:
    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args = args
        self.env = env
        self.work = os.path.join(
            env["SLURM_TESTBED_SHARED"], f"bench-distributed-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.data: np.ndarray | None = None
        self.src: Any = None
        self.counter = 0
        self.results: dict[str, Any] = {"submission": [], "per_block": [], "scale": []}

    # ---- data -------------------------------------------------------------------------------
    async def setup(self) -> None:
        os.makedirs(self.work)
        os.chmod(self.work, 0o777)
        for sub in ("runs-subprocess", "runs-slurm", "runs-ssh", "runs-bp", "out"):
            os.makedirs(os.path.join(self.work, sub))
        rng = np.random.default_rng(0)
        self.data = rng.integers(0, 256, SHAPE, dtype=np.uint8)
        self.src = await ba.create_source(
            os.path.join(self.work, "in.zarr"), shape=SHAPE, dtype="uint8", chunks=BLOCK
        )
        await self.src.write(..., self.data)
        grid = ba.BlockGrid(SHAPE, BLOCK)
        assert grid.num_blocks == NUM_BLOCKS, grid.num_blocks
        chmod_all(self.work)

    async def new_output(self) -> tuple[str, Any]:
        self.counter += 1
        path = os.path.join(self.work, "out", f"out-{self.counter:03d}.zarr")
        out = await ba.create_source(path, shape=SHAPE, dtype="uint8", chunks=BLOCK)
        chmod_all(path)
        return path, out

    async def check(self, out: Any, block_ids: Any = None) -> bool:
        got = await out.read()
        if block_ids is None:
            return bool(np.array_equal(got, self.data))
        grid = ba.BlockGrid(SHAPE, BLOCK)
        for block_id in block_ids:
            block = grid.block(block_id)
            sl = tuple(slice(b, e) for b, e in zip(block.begin, block.end))
            if not np.array_equal(got[sl], self.data[sl]):
                return False
        return True

    def backend(self, name: str, **kw: Any) -> tuple[str, Any]:
        """(job_type, job_config) of a backend name."""
        if name == "subprocess":
            return "subprocess", ba.RunnerConfig(
                tmp_root=os.path.join(self.work, "runs-subprocess"), poll_interval=POLL, **kw
            )
        if name == "slurm":
            return "slurm", slurm_config(self.env, os.path.join(self.work, "runs-slurm"), False, **kw)
        if name == "ssh":
            return "slurm", slurm_config(self.env, os.path.join(self.work, "runs-ssh"), True, **kw)
        raise ValueError(name)

    @staticmethod
    def load() -> float:
        return os.getloadavg()[0]

    def others_jobs(self) -> int:
        """Jobs of other users/tests on the cluster right now (noise indicator)."""
        try:
            out = subprocess.run(
                ["squeue", "-h", "-t", "PENDING,RUNNING", "-o", "%i"],
                capture_output=True, text=True, timeout=10,
            ).stdout
            return len(out.split())
        except Exception:  # noqa: BLE001
            return -1

    # ---- one ba distributed run -------------------------------------------------------------
    async def ba_run(
        self, name: str, *, block_ids: Any = None, blocks_per_task: int | None = None
    ) -> dict[str, Any]:
        job_type, config = self.backend(name, blocks_per_task=blocks_per_task)
        _, out = await self.new_output()
        stats = ba.RunStats()
        others = self.others_jobs()
        load = self.load()
        PHASES.clear()
        ops_before = OPS.snap()
        started = time.perf_counter()
        run = await ba.copy(
            self.src, out, block_shape=BLOCK, job_type=job_type, job_config=config,
            num_workers=NUM_WORKERS, block_ids=block_ids, stats=stats, progress=False, wait=False,
        )
        handle_s = time.perf_counter() - started
        submit_ops = dict(OPS.snap() - ops_before)
        phases = dict(PHASES)
        probe = PollProbe(run)
        progress_dir = os.path.join(run.tmp_folder, "progress")
        first_s = None
        FINISH_INFO.clear()
        # a timeout cancels the wait, which cancels this run's own jobs (and nothing else)
        waiting = asyncio.ensure_future(asyncio.wait_for(run.wait(), RUN_TIMEOUT))
        try:
            # the first done record, watched next to run.wait() with plain (uncounted) listings
            while not waiting.done():
                if _any_done(progress_dir):
                    first_s = time.perf_counter() - started
                    break
                await asyncio.sleep(0.002)
            await waiting
            wall = time.perf_counter() - started
        finally:
            if not waiting.done():
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
            await run.close()
        ok = await self.check(out, block_ids)
        tasks = int(stats.extra.get("tasks", 0))
        task_seconds = FINISH_INFO.get("task_seconds", [])
        return {
            "backend": name,
            "blocks_per_task": blocks_per_task,
            "blocks": NUM_BLOCKS if block_ids is None else len(block_ids),
            "tasks": tasks,
            "wall_s": wall,
            "handle_s": handle_s,
            "first_block_s": first_s,
            "phases": phases,
            "submit_ops": submit_ops,
            "finish_s": FINISH_INFO.get("finish_s"),
            "finish_ops": FINISH_INFO.get("finish_ops", {}),
            "task_s_mean": statistics.fmean(task_seconds) if task_seconds else None,
            "relaunch_gap_s": (statistics.median(FINISH_INFO["relaunch_gaps"])
                               if FINISH_INFO.get("relaunch_gaps") else None),
            "task_s_sum": sum(task_seconds),
            "poll": probe.summary(),
            "check": ok,
            "others_jobs": others,
            "load": load,
        }

    # ---- the in-process reference -----------------------------------------------------------
    async def local_run(self) -> dict[str, Any]:
        _, out = await self.new_output()
        stats = ba.RunStats()
        load = self.load()
        started = time.perf_counter()
        await ba.copy(
            self.src, out, block_shape=BLOCK, job_type="local", num_workers=NUM_WORKERS,
            stats=stats, progress=False,
        )
        wall = time.perf_counter() - started
        return {
            "backend": "local", "blocks_per_task": None, "blocks": NUM_BLOCKS, "tasks": 0,
            "wall_s": wall, "check": await self.check(out), "load": load,
        }

    # ---- bioimage-py 0.2.2, subprocess backend ----------------------------------------------
    async def bp_run(self, *, tasks_per_worker: int, block_ids: Any = None) -> dict[str, Any]:
        import bioimage_py as bp
        import numcodecs
        import zarr
        from bioimage_py.runner import RunnerConfig as BpRunnerConfig

        root = os.path.join(self.work, "runs-bp")
        self.counter += 1
        out_path = os.path.join(self.work, "out", f"bp-{self.counter:03d}.zarr")
        out = zarr.create_array(
            out_path, shape=SHAPE, chunks=BLOCK, dtype="uint8", zarr_format=2, fill_value=0,
            compressors=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1),
        )
        src = zarr.open_array(os.path.join(self.work, "in.zarr"), mode="r")
        config = BpRunnerConfig(tmp_root=root, poll_interval=POLL, tasks_per_worker=tasks_per_worker)
        before = set(os.listdir(root))
        load = self.load()
        started = time.perf_counter()
        call = asyncio.ensure_future(asyncio.to_thread(
            bp.copy, src, out, block_shape=BLOCK, job_type="subprocess", job_config=config,
            num_workers=NUM_WORKERS, block_ids=block_ids,
        ))
        first_s = None
        while not call.done() and time.perf_counter() - started < RUN_TIMEOUT:
            new = [d for d in os.listdir(root) if d not in before]
            if any(_any_done(os.path.join(root, d, "progress")) for d in new):
                first_s = time.perf_counter() - started
                break
            await asyncio.sleep(0.002)
        try:
            await asyncio.wait_for(asyncio.shield(call), RUN_TIMEOUT)
        except asyncio.TimeoutError:
            await asyncio.wait_for(call, 2 * RUN_TIMEOUT)  # bp cannot be cancelled: let it end
            raise
        wall = time.perf_counter() - started
        got = zarr.open_array(out_path, mode="r")[...]
        if block_ids is None:
            ok = bool(np.array_equal(got, self.data))
        else:
            ok = bool(np.count_nonzero(got) > 0)
        n_blocks = NUM_BLOCKS if block_ids is None else len(block_ids)
        return {
            "backend": "bp", "tasks_per_worker": tasks_per_worker, "blocks": n_blocks,
            "tasks": min(n_blocks, NUM_WORKERS * tasks_per_worker),
            "blocks_per_task": n_blocks / min(n_blocks, NUM_WORKERS * tasks_per_worker),
            "wall_s": wall, "handle_s": None, "first_block_s": first_s, "check": ok,
            "load": load,
        }

    # ---- synthetic polling scale ------------------------------------------------------------
    async def polling_scale(self, with_ssh: bool) -> None:
        from bioimage_async.runners.files import LocalFiles
        from bioimage_async.runners.protocol import PROGRESS_LINE, Manifest, RunFolder, progress_line
        from bioimage_async.runners.ssh import ResilientSftpFiles, SshSession

        cases = [(4, 1000), (100, 1000), (100, 100_000), (1000, 100_000), (10_000, 100_000)]
        if self.args.quick:
            cases = [(4, 1000), (100, 1000), (1000, 100_000)]
        session = None
        if with_ssh:
            session = SshSession(slurm_config(self.env, self.work, True))
        try:
            for n_tasks, n_blocks in cases:
                path = os.path.join(self.work, f"synthetic-{n_tasks}-{n_blocks}")
                for sub in ("progress", "status"):
                    os.makedirs(os.path.join(path, sub))
                per_task = np.array_split(np.arange(n_blocks), n_tasks)
                for task_id, ids in enumerate(per_task):
                    with open(os.path.join(path, "progress", f"{task_id}.log"), "wb") as handle:
                        handle.write(b"".join(progress_line(int(i)) for i in ids))
                    # every task finished except the last few: status/ as full as it gets
                    if task_id < n_tasks - 2:
                        with open(os.path.join(path, "status", f"{task_id}.success"), "w") as handle:
                            handle.write('{"blocks": %d}' % len(ids))
                chmod_all(path)
                row: dict[str, Any] = {"tasks": n_tasks, "blocks": n_blocks}
                backends = [("local", LocalFiles())]
                if session is not None:
                    backends.append(("sftp", ResilientSftpFiles(session)))
                for label, files in backends:
                    folder = RunFolder(files, path, Manifest({"name": "synthetic"}))
                    assert await folder.blocks_done_count() == n_blocks  # warm-up + sanity
                    assert PROGRESS_LINE == 13
                    for method in ("sentinels", "blocks_done_count"):
                        times = []
                        ops = collections.Counter()
                        reps = 7 if n_tasks >= 10_000 else 15
                        for _ in range(reps):
                            before = OPS.snap()
                            started = time.perf_counter()
                            await getattr(folder, method)()
                            times.append((time.perf_counter() - started) * 1e3)
                            ops = OPS.snap() - before
                        row[f"{label}.{method}.ms"] = statistics.median(times)
                        row[f"{label}.{method}.ops"] = dict(ops)
                self.results["scale"].append(row)
                shutil.rmtree(path, ignore_errors=True)
                print(f"  scale {n_tasks} tasks / {n_blocks} blocks: "
                      + ", ".join(f"{k}={v:.2f}" for k, v in row.items() if k.endswith(".ms")),
                      flush=True)
        finally:
            if session is not None:
                await session.close()


async def safe(label: str, make: Any, **info: Any) -> dict[str, Any]:
    """One measured run; a failure (timeout, error) becomes a row instead of ending the bench."""
    try:
        return await make()
    except Exception as error:  # noqa: BLE001
        print(f"  {label}: FAILED {type(error).__name__}: {error}", flush=True)
        return {**info, "error": f"{type(error).__name__}: {str(error)[:200]}"}


def worker_startup(env: dict[str, str], reps: int = 3) -> list[dict[str, Any]]:
    """Interpreter start + import of each backend's worker module (a fresh process each)."""
    cases = [
        ("bioimage_async worker, this venv", [sys.executable, "-c", "import bioimage_async.runners.worker"]),
        ("bioimage_async worker, cluster venv (SSH runs)",
         [env["SLURM_TESTBED_REMOTE_PYTHON"], "-c", "import bioimage_async.runners.worker"]),
        ("bioimage-py 0.2.2 harness", [sys.executable, "-c", "import bioimage_py.runner._harness"]),
        ("bare interpreter", [sys.executable, "-c", "pass"]),
    ]
    rows = []
    for label, argv in cases:
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, timeout=60)
            times.append(time.perf_counter() - started)
            if done.returncode:
                break
        rows.append({"label": label, "median_s": statistics.median(times), "ok": done.returncode == 0})
    return rows


def _any_done(progress_dir: str) -> bool:
    try:
        with os.scandir(progress_dir) as entries:
            return any(e.name.endswith(".log") and e.stat().st_size >= 1 for e in entries)
    except FileNotFoundError:
        return False


# ------------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------------
async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    env = load_env()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    backends = [b for b in ("subprocess", "slurm", "ssh") if b not in skip]
    bench = Bench(args, env)
    install_instrumentation()
    await bench.setup()
    print(f"work folder {bench.work}", flush=True)
    t0 = time.perf_counter()
    try:
        # warm-up: imports and page cache, not measured
        await bench.local_run()
        if "subprocess" in backends:
            await bench.ba_run("subprocess", block_ids=list(range(4)), blocks_per_task=1)

        # 1. submission latency
        small = list(range(16))
        for rep in range(args.reps):
            for name in backends:
                row = await safe(
                    f"submit {name}", lambda name=name: bench.ba_run(name, block_ids=small, blocks_per_task=4),
                    backend=name,
                )
                row["rep"] = rep
                bench.results["submission"].append(row)
                if "error" not in row:
                    print(f"  submit {name} rep {rep}: handle {row['handle_s']:.3f} s, first block "
                          f"{row['first_block_s']:.3f} s, wall {row['wall_s']:.2f} s", flush=True)
            if "bp" not in skip:
                row = await safe(
                    "submit bp", lambda: bench.bp_run(tasks_per_worker=1, block_ids=small), backend="bp",
                )
                row["rep"] = rep
                bench.results["submission"].append(row)
                if "error" not in row:
                    print(f"  submit bp rep {rep}: first block {row['first_block_s']:.3f} s, "
                          f"wall {row['wall_s']:.2f} s", flush=True)

        # 2. + 3. per-block overhead, with the polls of every run instrumented
        row = await bench.local_run()
        bench.results["per_block"].append(row)
        print(f"  1000 blocks local: {row['wall_s']:.2f} s", flush=True)
        variants = [None] if args.quick else BPT_VARIANTS
        for name in backends:
            for bpt in variants:
                row = await safe(
                    f"1000 blocks {name} bpt={bpt}",
                    lambda name=name, bpt=bpt: bench.ba_run(name, blocks_per_task=bpt),
                    backend=name, blocks_per_task=bpt,
                )
                bench.results["per_block"].append(row)
                if "error" in row:
                    continue
                print(f"  1000 blocks {name} bpt={bpt}: {row['tasks']} tasks, wall "
                      f"{row['wall_s']:.2f} s, handle {row['handle_s']:.3f} s, polls "
                      f"{row['poll']['polls']}, check {row['check']}", flush=True)
        if "bp" not in skip:
            for tpw in [1] if args.quick else BP_TPW:
                row = await safe(
                    f"1000 blocks bp tpw={tpw}", lambda tpw=tpw: bench.bp_run(tasks_per_worker=tpw),
                    backend="bp", tasks_per_worker=tpw,
                )
                bench.results["per_block"].append(row)
                if "error" in row:
                    continue
                print(f"  1000 blocks bp tpw={tpw}: {row['tasks']} tasks, wall {row['wall_s']:.2f} s, "
                      f"check {row['check']}", flush=True)

        # 3b. polling scale on a synthetic run folder
        await bench.polling_scale(with_ssh="ssh" in backends)
        bench.results["startup"] = worker_startup(env)
        loads = [r.get("load") for r in bench.results["per_block"] + bench.results["submission"]
                 if r.get("load") is not None]
        if loads:
            bench.results["load_note"] = (
                f"over this run it ranged {min(loads):.1f}-{max(loads):.1f}, so absolute times are "
                "noisy; compare rows of similar load"
            )
    finally:
        shutil.rmtree(bench.work, ignore_errors=True)
    bench.results["total_s"] = time.perf_counter() - t0
    return bench.results


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
LABELS = {
    "local": "bioimage_async `local` (in-process reference)",
    "subprocess": "bioimage_async `subprocess`",
    "slurm": "bioimage_async `slurm`, local sbatch",
    "ssh": "bioimage_async `slurm` over SSH",
    "bp": "bioimage-py 0.2.2 `subprocess`",
}
OP_SHORT = {
    "fs.listdir": "listdir", "fs.stat": "stat", "proc.read": "/proc read", "fs.open": "open",
    "fs.rename": "rename", "fs.mkdir": "mkdir",
}


def fmt_ops(ops: dict[str, float], digits: int = 0) -> str:
    if not ops:
        return "0"
    parts = []
    for key in sorted(ops, key=lambda k: (-ops[k], k)):
        value = ops[key]
        if value < 0.05:
            continue
        name = OP_SHORT.get(key, key.replace("cmd.", "spawn ").replace("ssh.exec.", "ssh exec ")
                            .replace("sftp.", "SFTP "))
        text = f"{value:.{digits}f}" if digits else f"{value:.0f}" if value == int(value) else f"{value:.1f}"
        parts.append(f"{text} {name}")
    return " + ".join(parts) or "0"


def med(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{statistics.median(values):.3f}"


def rng_str(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return ""
    return f" ({min(values):.3f}-{max(values):.3f})"


def sftp_requests(ops: dict[str, float]) -> float:
    return sum(v for k, v in ops.items() if k.startswith("sftp."))


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines: list[str] = []
    today = dt.date.today().isoformat()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines.append(f"# Distributed backends: overhead benchmark, {today}")
    lines.append("")
    lines.append(
        f"Machine: {os.cpu_count()} cores, {mem:.0f} GiB, Linux {platform.release()}, Python "
        f"{platform.python_version()}; single-node slurm test bed (slurmctld/slurmd on this machine, "
        f"16 advertised CPUs), sshd on 127.0.0.1:2222 (SFTP to localhost: ~0.5 ms per request here, "
        f"measured by the listings of 3b; a workstation reaching a login node pays its "
        f"network round trip, assumed 20 ms below, per request). Data: {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} "
        f"uint8 zarr v2, chunks = blocks = {BLOCK[0]}x{BLOCK[1]}x{BLOCK[2]} (1,000 blocks of 100 "
        f"voxels, copied). num_workers={NUM_WORKERS}, poll_interval={POLL} s, latency_wait=10. "
        f"Other engineers' tests share the cluster: 'others' = jobs pending/running at the start of "
        f"a run, load = the 1-minute load average then (2 cores: > 2 means the CPU was shared; "
        f"{results.get('load_note', '')}). Generated by `bench/bench_distributed.py`{' --quick' if args.quick else ''} in "
        f"{results['total_s']:.0f} s."
    )
    lines.append("")

    # ---- 1. submission latency --------------------------------------------------------------
    lines.append("## 1. Submission latency (16 blocks in 4 tasks, "
                 f"median of {args.reps} runs, min-max in parentheses)")
    lines.append("")
    lines.append("| backend | call -> Run handle s | call -> first block done s | handle: connect / "
                 "folder / tasks / submit (scontrol) / record / other, ms | submission ops | others |")
    lines.append("|---|---:|---:|---|---|---:|")
    by_backend: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    failures = [r for r in results["submission"] + results["per_block"] if "error" in r]
    for row in results["submission"]:
        if "error" not in row:
            by_backend[row["backend"]].append(row)
    for name, rows in by_backend.items():
        handle = [r["handle_s"] for r in rows]
        first = [r["first_block_s"] for r in rows]
        if name == "bp":
            walls = [r["wall_s"] for r in rows]
            lines.append(
                f"| {LABELS[name]} (tasks_per_worker=1) | n/a: blocks until done ({med(walls)} s) | "
                f"{med(first)}{rng_str(first)} | - | - | - |"
            )
            continue
        phase_keys = ("connect", "folder", "tasks", "submit", "scontrol", "record")
        ph = {k: statistics.median(r["phases"].get(k, 0.0) for r in rows) * 1e3 for k in phase_keys}
        other = statistics.median(
            r["handle_s"] - sum(r["phases"].get(k, 0.0) for k in phase_keys if k != "scontrol")
            for r in rows
        ) * 1e3
        phase_text = (f"{ph['connect']:.0f} / {ph['folder']:.0f} / {ph['tasks']:.0f} / "
                      f"{ph['submit']:.0f} ({ph['scontrol']:.0f}) / {ph['record']:.0f} / {other:.0f}")
        ops = rows[-1]["submit_ops"]
        others = max(r["others_jobs"] for r in rows)
        lines.append(
            f"| {LABELS[name]} | {med(handle)}{rng_str(handle)} | {med(first)}{rng_str(first)} | "
            f"{phase_text} | {fmt_ops(ops)} | {others} |"
        )
    lines.append("")
    lines.append("Handle phases: connect = SSH connection + SFTP session; folder = `RunFolder.create` "
                 "(5 folders, payload, manifest); tasks = `add_tasks` (one JSON per task + manifest); "
                 "submit = `launcher.submit` (worker spawn / sbatch, of which `scontrol show config`); "
                 "record = `record_attempt` (manifest again); other = the op's own set-up (write "
                 "plan, source specs). Submission ops: every operation between the call and the "
                 "handle.")
    lines.append("")

    # ---- 2. per-block overhead --------------------------------------------------------------
    lines.append(f"## 2. Per-block overhead: {NUM_BLOCKS} trivial blocks end to end, num_workers={NUM_WORKERS}")
    lines.append("")
    lines.append("wall = call until `run.wait()` returns (run-folder clean-up included); ms/block = "
                 "wall / 1000; tasks = `RunStats.extra['tasks']`; task s = mean seconds inside one "
                 "worker task (from its `.success` summary: manifest, payload, opening sources, its "
                 "blocks); relaunch gap = median time from a task's end until the task taking its "
                 "slot begins its work (scheduler latency + interpreter start + imports; from the "
                 "sentinels' mtimes); finish = `Run._finish` (reading every progress log + removing "
                 "the run folder).")
    lines.append("")
    lines.append("| backend | blocks/task | tasks | wall s | ms/block | handle s | first block s | "
                 "task s (mean) | relaunch gap s | finish s | polls | check | others | load |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|")
    for row in results["per_block"]:
        name = row["backend"]
        if "error" in row:
            continue
        if name == "bp":
            label = f"{LABELS[name]} (tasks_per_worker={row['tasks_per_worker']})"
            bpt = f"{row['blocks_per_task']:g}"
        elif name == "local":
            label, bpt = LABELS[name], "-"
        else:
            label = LABELS[name]
            bpt = str(row["blocks_per_task"]) if row["blocks_per_task"] else f"default ({NUM_BLOCKS // max(1, row['tasks']):g})"

        def f3(v: Any) -> str:
            return "-" if v is None else f"{v:.3f}"

        lines.append(
            f"| {label} | {bpt} | {row['tasks'] or '-'} | {row['wall_s']:.2f} | "
            f"{row['wall_s'] / row['blocks'] * 1e3:.2f} | {f3(row.get('handle_s'))} | "
            f"{f3(row.get('first_block_s'))} | {f3(row.get('task_s_mean'))} | "
            f"{f3(row.get('relaunch_gap_s'))} | {f3(row.get('finish_s'))} | {row.get('poll', {}).get('polls', '-')} | "
            f"{'ok' if row['check'] else 'FAIL'} | {row.get('others_jobs', '-')} | "
            f"{row.get('load', 0):.1f} |"
        )
    if failures:
        lines.append("")
        lines.append("Runs that failed (not in the tables):")
        lines.append("")
        for row in failures:
            what = {k: v for k, v in row.items() if k in ("backend", "blocks_per_task", "tasks_per_worker", "rep")}
            lines.append(f"- {what}: {row['error']}")
    lines.append("")

    # submission and finish work over SSH vs the number of tasks
    ssh_rows = [r for r in results["per_block"] if r["backend"] == "ssh" and "error" not in r]
    if ssh_rows:
        lines.append("SFTP requests and SSH exec channels of the SSH runs (each SFTP request is one "
                     f"sequential round trip in the runner's code; 'at {RTT_EXAMPLE_MS:.0f} ms' "
                     "extrapolates to a workstation whose round trip to the login node is "
                     f"{RTT_EXAMPLE_MS:.0f} ms):")
        lines.append("")
        lines.append("| blocks/task | tasks | submission: SFTP requests | exec channels | handle s here "
                     f"| handle at {RTT_EXAMPLE_MS:.0f} ms | finish: SFTP requests | finish s here | "
                     f"finish at {RTT_EXAMPLE_MS:.0f} ms |")
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in ssh_rows:
            sub_req = sftp_requests(row["submit_ops"])
            execs = sum(v for k, v in row["submit_ops"].items() if k.startswith("ssh.exec"))
            connects = row["submit_ops"].get("ssh.connect", 0)
            fin_req = sftp_requests(row["finish_ops"])
            # connect: ~4 round trips for TCP + key exchange + auth + SFTP channel
            rt_sub = sub_req + 3 * execs + 6 * connects
            lines.append(
                f"| {row['blocks_per_task'] or 'default'} | {row['tasks']} | {sub_req:.0f} | "
                f"{execs:.0f} | {row['handle_s']:.3f} | ~{rt_sub * RTT_EXAMPLE_MS / 1e3:.1f} s | "
                f"{fin_req:.0f} | {row['finish_s']:.3f} | ~{fin_req * RTT_EXAMPLE_MS / 1e3:.1f} s |"
            )
        lines.append("")

    # ---- 3. polling cost ---------------------------------------------------------------------
    lines.append("## 3. Polling cost during the runs of section 2")
    lines.append("")
    lines.append("Per call of `run.wait()`'s poll loop: median ms (max); ops = mean operations per "
                 "call (listdir = one directory listing, stat = one `DirEntry.stat()` syscall, "
                 "/proc read = one file read for worker liveness, spawn = one scheduler command "
                 "started here, ssh exec = one SSH exec channel, SFTP X = one SFTP request packet).")
    lines.append("")
    lines.append("| backend | tasks | polls | `sentinels()` ms | `blocks_done_count()` ms | "
                 "`launcher.states()` ms | ops per `sentinels` | ops per `blocks_done_count` | "
                 "ops per `states` | ops/poll min-max |")
    lines.append("|---|---:|---:|---:|---:|---:|---|---|---|---:|")
    for row in results["per_block"]:
        poll = row.get("poll")
        if "error" in row:
            continue
        if not poll or not poll.get("sentinels"):
            continue
        cells = []
        ops_cells = []
        for label in PollProbe.LABELS:
            rec = poll.get(label)
            if rec is None:
                cells.append("-")
                ops_cells.append("-")
                continue
            cells.append(f"{rec['median_ms']:.2f} ({rec['max_ms']:.1f})")
            ops_cells.append(fmt_ops(rec["ops_mean"]))
        lines.append(
            f"| {LABELS[row['backend']]}, blocks/task {row['blocks_per_task'] or 'default'} | "
            f"{row['tasks']} | {poll['polls']} | {' | '.join(cells)} | {' | '.join(ops_cells)} | "
            f"{poll.get('ops_per_poll_min', '-')}-{poll.get('ops_per_poll_max', '-')} |"
        )
    lines.append("")

    if results["scale"]:
        lines.append("### 3b. One poll's listings vs the size of the run (synthetic run folder: "
                     "N progress logs holding B blocks, N-2 `.success` sentinels)")
        lines.append("")
        has_sftp = any("sftp.sentinels.ms" in r for r in results["scale"])
        header = "| tasks N | blocks B | local `sentinels` ms | local `blocks_done_count` ms | local ops per call |"
        sep = "|---:|---:|---:|---:|---|"
        if has_sftp:
            header += " SFTP `sentinels` ms | SFTP `blocks_done_count` ms | SFTP requests per call |"
            sep += "---:|---:|---|"
        lines.append(header)
        lines.append(sep)
        for row in results["scale"]:
            text = (f"| {row['tasks']} | {row['blocks']} | {row['local.sentinels.ms']:.2f} | "
                    f"{row['local.blocks_done_count.ms']:.2f} | "
                    f"{fmt_ops(row['local.blocks_done_count.ops'])} |")
            if has_sftp:
                text += (f" {row['sftp.sentinels.ms']:.2f} | {row['sftp.blocks_done_count.ms']:.2f} | "
                         f"{fmt_ops(row['sftp.blocks_done_count.ops'])} |")
            lines.append(text)
        lines.append("")
    if results.get("startup"):
        lines.append("### Worker start-up (fresh interpreter + import of the worker module, median of 3)")
        lines.append("")
        lines.append("| worker | s |")
        lines.append("|---|---:|")
        for row in results["startup"]:
            lines.append(f"| {row['label']} | {row['median_s']:.2f}{'' if row['ok'] else ' (failed)'} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one variant per backend, 1 rep")
    parser.add_argument("--reps", type=int, default=3, help="submission-latency repetitions")
    parser.add_argument("--skip", default="", help="comma list of: subprocess, slurm, ssh, bp")
    parser.add_argument("--no-write", action="store_true", help="print only, write no result files")
    args = parser.parse_args()
    if args.quick:
        args.reps = 1
    try:
        results = asyncio.run(main_async(args))
    except Exception:
        traceback.print_exc()
        return 1
    report = render(results, args)
    print(report)
    if not args.no_write:
        out_dir = HERE / "results"
        out_dir.mkdir(exist_ok=True)
        stem = f"{dt.date.today().isoformat()}-distributed{'-quick' if args.quick else ''}"
        (out_dir / f"{stem}.md").write_text(report)
        (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
        print(f"wrote {out_dir / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
