"""Runs held at a gate: real worker processes whose blocks wait until a file is gone, so that
"still running" never depends on timing."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np

import bioimage_async as ba

from .blockfns import append_line

SHAPE, BLOCK = (32, 32, 64), (16, 16, 16)  # 16 blocks


def gated_invert(gate: str, counts: str, fail_locally: str = "", one_through: str = ""):
    """255 - block; in a run's worker process only once ``gate`` is gone (a local run's
    compute processes pass at once, so a wrongly accepted run ends instead of hanging).
    Each call appends a line to ``counts``. Outside run workers, while ``fail_locally``
    exists, a call fails instead; the first worker call that creates ``one_through`` passes
    the gate (its block finishes, so a waiting driver reports progress)."""

    def fn(block: np.ndarray) -> np.ndarray:
        in_run_worker = sys.argv[0].endswith(os.path.join("runners", "worker.py"))
        if fail_locally and not in_run_worker and os.path.exists(fail_locally):
            raise RuntimeError("failing outside run workers")
        if in_run_worker and not first_through(one_through):
            while os.path.exists(gate):
                time.sleep(0.02)
        append_line(counts, "1\n")
        return 255 - block

    return fn


def first_through(marker: str) -> bool:
    """True for the one call that creates ``marker`` (an exclusive create across processes)."""
    if not marker:
        return False
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


async def gated_setup(
    tmp_path: Path, *, one_through: bool = False, **defaults: Any
) -> tuple[np.ndarray, ba.Source, Path, Path, Callable[..., Any]]:
    """The data, the output, a closed gate, the call count file and a map_blocks caller
    (``run(job_type, **kwargs)``, with ``defaults`` under the kwargs)."""
    data = np.random.default_rng(0).integers(0, 255, SHAPE, dtype=np.uint8)
    src = await ba.create_source(tmp_path / "in.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    await src.write(..., data)
    out = await ba.create_source(tmp_path / "out.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    gate, counts = tmp_path / "gate", tmp_path / "calls.txt"
    gate.write_text("")
    passes = str(tmp_path / "one_through") if one_through else ""
    fn = gated_invert(str(gate), str(counts), str(tmp_path / "fail_locally"), passes)
    config = ba.RunnerConfig(tmp_root=str(tmp_path), poll_interval=0.05)

    def run(job_type: str, **kwargs: Any) -> Any:
        return ba.map_blocks(
            fn,
            src,
            out,
            block_shape=BLOCK,
            job_type=job_type,
            num_workers=2,
            job_config=config,
            **{**defaults, **kwargs},
        )

    return data, out, gate, counts, run


def calls(counts: Path) -> int:
    return len(counts.read_text().split()) if counts.exists() else 0


@contextlib.asynccontextmanager
async def while_gated(live: ba.Run, gate: Path) -> AsyncIterator[None]:
    """Checks on a run held at ``gate``: the run is cancelled if they fail, and the gate opens
    either way (its workers then finish)."""
    try:
        yield
    except BaseException:
        await live.cancel()
        raise
    finally:
        gate.unlink()
