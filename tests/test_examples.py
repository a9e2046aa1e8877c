"""The scripts in examples/ run as real programs: each in a subprocess, checked by what it writes.

The web service is started as a real server on a free 127.0.0.1 port and queried with a real
HTTP client while its conversion runs in the server's event loop; the slice latency measured
during the conversion is printed (run with ``-s`` to see it) and bounded: a responsiveness bound
for a 2-core shared machine, not a throughput threshold. The slurm example runs against the
real test bed (tests/slurm_testbed) and is skipped when it is not set up.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TESTBED_ENV = "/var/lib/slurm-testbed/testbed.env"


def example_env() -> dict[str, str]:
    return dict(os.environ, BIOIMAGE_ASYNC_NO_CONFIG="1", PYTHONUNBUFFERED="1")


def run_example(name: str, *args: str, cwd: Path, timeout: float = 120) -> str:
    """Run examples/<name> with ``args`` in ``cwd``; return its stdout (it must exit with 0)."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=example_env(),
    )
    assert result.returncode == 0, (
        f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def read_zarr(path: Path) -> np.ndarray:
    """Read a zarr array with zarr-python: a reader independent of the library under test."""
    import zarr

    return zarr.open_array(str(path), mode="r")[...]


# ---- examples/tiff_to_ome_zarr.py ---------------------------------------------------------------
def check_pyramid(output: Path, level0: np.ndarray, levels: int) -> None:
    """NGFF metadata validates, level 0 equals the stack, level n has the ceil-halved shape."""
    import zarr
    from ome_zarr_models.v05.image import Image

    image = Image.from_zarr(zarr.open_group(str(output), mode="r"))
    datasets = image.ome_attributes.multiscales[0].datasets
    assert [d.path for d in datasets] == [str(i) for i in range(levels)]
    shape = level0.shape
    for level, dataset in enumerate(datasets):
        # the spline path's scale is the exact ratio of the level shapes (2 for even shapes)
        scale = [n0 / n for n0, n in zip(level0.shape, shape)]
        assert dataset.coordinateTransformations[0].scale == scale
        array = zarr.open_array(str(output / str(level)), mode="r")
        assert array.shape == shape, (level, array.shape, shape)
        shape = tuple((n + 1) // 2 for n in shape)
    np.testing.assert_array_equal(read_zarr(output / "0"), level0)


def test_tiff_to_ome_zarr_converts_the_generated_sample_file(tmp_path):
    import tifffile

    stdout = run_example(
        "tiff_to_ome_zarr.py", "--workdir", str(tmp_path), "--levels", "4", cwd=tmp_path
    )
    sample = tifffile.imread(tmp_path / "sample.tif")
    assert sample.shape == (64, 256, 256)
    check_pyramid(tmp_path / "sample.ome.zarr", sample, levels=4)
    printed = re.findall(r"level (\d): path \S+  shape (\([\d, ]+\))", stdout)
    assert printed == [
        ("0", "(64, 256, 256)"),
        ("1", "(32, 128, 128)"),
        ("2", "(16, 64, 64)"),
        ("3", "(8, 32, 32)"),
    ]
    assert "level 0 matches the input" in stdout


def test_tiff_to_ome_zarr_stacks_a_folder_of_slices_by_pattern(tmp_path):
    import tifffile

    slices = tmp_path / "slices"
    slices.mkdir()
    volume = np.random.default_rng(3).integers(0, 60000, (12, 40, 50), dtype=np.uint16)
    for z, plane in enumerate(volume):
        tifffile.imwrite(slices / f"z_{z}.tif", plane)  # z_10 sorts after z_2 (natural order)
    tifffile.imwrite(slices / "overview.tif", volume[0])  # not matched by the pattern
    output = tmp_path / "stack.ome.zarr"
    stdout = run_example(
        "tiff_to_ome_zarr.py",
        str(slices),
        str(output),
        "--pattern",
        "z_*.tif",
        "--levels",
        "2",
        "--chunks",
        "8,32,32",
        "--workers",
        "1",
        cwd=tmp_path,
    )
    check_pyramid(output, volume, levels=2)
    assert "shape (12, 40, 50)" in stdout and "shape (6, 20, 25)" in stdout
    # an existing output is refused unless --overwrite is given
    refused = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "tiff_to_ome_zarr.py"),
            str(slices),
            str(output),
            "--pattern",
            "z_*.tif",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=example_env(),
    )
    assert refused.returncode != 0 and "--overwrite" in refused.stderr


# ---- examples/notebook_session.py -------------------------------------------------------------
def summary_of(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("SUMMARY ")]
    assert len(lines) == 1, stdout
    return json.loads(lines[0][len("SUMMARY ") :])


def check_notebook_outputs(workdir: Path, summary: dict, threshold: int) -> None:
    raw, mask = read_zarr(workdir / "raw.zarr"), read_zarr(workdir / "mask.zarr")
    assert list(raw.shape) == summary["shape"]
    np.testing.assert_array_equal(mask, np.where(raw >= threshold, 255, 0).astype(np.uint8))
    assert summary["foreground"] == int((raw >= threshold).sum())
    assert summary["overview_shape"] == [(n + 1) // 2 for n in raw.shape]


def test_notebook_session_runs_as_a_script(tmp_path):
    stdout = run_example(
        "notebook_session.py",
        "--workdir",
        str(tmp_path / "nb"),
        "--shape",
        "40,96,80",
        "--threshold",
        "100",
        cwd=tmp_path,
    )
    summary = summary_of(stdout)
    assert summary["threshold"] == 100 and summary["blocks"] == 2 * 2 * 2  # chunks 32,64,64
    check_notebook_outputs(tmp_path / "nb", summary, threshold=100)


def test_notebook_session_runs_inside_a_running_event_loop_like_jupyter(tmp_path):
    """Jupyter executes cells while its event loop runs: ba.sync must not need the loop."""
    driver = (
        "import asyncio, runpy, sys\n"
        "async def kernel():\n"
        "    sys.argv = ['notebook', '-f', 'kernel-123.json', '--workdir', 'nb']\n"  # Jupyter's -f
        f"    runpy.run_path({str(EXAMPLES / 'notebook_session.py')!r}, run_name='__main__')\n"
        "asyncio.run(kernel())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", driver],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=example_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = summary_of(result.stdout)
    check_notebook_outputs(tmp_path / "nb", summary, threshold=128)


# ---- examples/web_service.py ------------------------------------------------------------------
SERVICE_SHAPE = (256, 1024, 1024)
MAX_SLICE_REQUESTS = 300  # bounded request loop
P95_BOUND_S = 1.0  # responsiveness bound for a 2-core shared machine (a slice takes ~0.1 s idle)
STATUS_P95_BOUND_S = 0.25  # /status only reads a dict: its latency is the event loop's


class Service:
    """examples/web_service.py as a subprocess; its stdout is collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.url: str | None = None
        self.serving = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            match = re.search(r"serving on (http://\S+)", line)
            if match:
                self.url = match.group(1)
                self.serving.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def stop(self, signum: int = signal.SIGINT, timeout: float = 30) -> int:
        """Ask the service to stop (graceful shutdown); kill it only if it does not."""
        if self.process.returncode is None:
            self.process.send_signal(signum)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await asyncio.wait_for(self.reader, 10)
        return self.process.returncode


@asynccontextmanager
async def web_service(workdir: Path, output: Path) -> AsyncIterator[Service]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "web_service.py"),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--workdir",
        str(workdir),
        "--output",
        str(output),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=example_env(),
        cwd=workdir,
    )
    service = Service(process)
    try:
        try:  # the first start writes the 256 MiB sample (a few seconds)
            await asyncio.wait_for(service.serving.wait(), 60)
        except TimeoutError:
            pytest.fail(f"the service did not start:\n{service.output}")
        assert service.url is not None and service.url.startswith("http://127.0.0.1:")
        yield service
    finally:
        await service.stop()


@pytest.fixture(scope="module")
def service_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the web tests, so the sample volume is generated once."""
    return tmp_path_factory.mktemp("web_service")


async def get_status(http) -> dict:  # noqa: ANN001 - aiohttp.ClientSession
    async with http.get("/status") as response:
        assert response.status == 200
        return await response.json()


def check_png(body: bytes, expected: np.ndarray) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(body))
    assert image.format == "PNG" and image.mode == "L"
    assert image.size == (expected.shape[1], expected.shape[0])  # (width, height)
    np.testing.assert_array_equal(np.asarray(image), expected)


def latency_summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies) or [float("nan")]
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"n": len(ordered), "median": statistics.median(ordered), "p95": p95, "max": ordered[-1]}


@pytest.mark.timeout(150)
async def test_web_service_serves_slices_while_the_conversion_runs(service_workdir, tmp_path):
    aiohttp = pytest.importorskip("aiohttp")
    import tifffile

    output = tmp_path / "converted.zarr"
    async with web_service(service_workdir, output) as service:
        sample = tifffile.memmap(service_workdir / "sample_256x1024x1024.tif", mode="r")
        assert sample.shape == SERVICE_SHAPE
        async with aiohttp.ClientSession(service.url) as http:
            first = await get_status(http)
            assert first["state"] == "running", first

            latencies: list[float] = []
            progress_seen: set[int] = set()
            bodies: list[tuple[int, bytes]] = []  # validated after the timed loop
            png_ms: list[float] = []  # the server's own PNG-encoding time (Server-Timing)
            status_latencies: list[float] = []  # /status does no work: the loop's own latency
            deadline = time.monotonic() + 60
            for i in range(MAX_SLICE_REQUESTS):
                started = time.perf_counter()
                before = await get_status(http)
                status_latencies.append(time.perf_counter() - started)
                if before["state"] != "running" or time.monotonic() > deadline:
                    break
                z = (i * 37 + 11) % SERVICE_SHAPE[0]
                started = time.perf_counter()
                async with http.get(f"/slice/{z}.png") as response:
                    body = await response.read()
                elapsed = time.perf_counter() - started
                assert response.status == 200 and response.content_type == "image/png", body[:200]
                after = await get_status(http)
                if after["state"] == "running":  # the request lay inside the conversion
                    latencies.append(elapsed)
                    progress_seen.add(after["blocks_done"])
                    timing = re.search(r"png;dur=([\d.]+)", response.headers["Server-Timing"])
                    png_ms.append(float(timing.group(1)))
                bodies.append((z, body))

            stats, status_stats = latency_summary(latencies), latency_summary(status_latencies)
            print(
                f"\nslice latency during the conversion ({stats['n']} requests of "
                f"{SERVICE_SHAPE[1]}x{SERVICE_SHAPE[2]} PNGs): median {stats['median'] * 1000:.0f} ms, "
                f"p95 {stats['p95'] * 1000:.0f} ms, max {stats['max'] * 1000:.0f} ms; "
                f"(of which PNG encoding in a thread: median "
                f"{statistics.median(png_ms or [float('nan')]):.0f} ms); "
                f"blocks_done seen while running: {sorted(progress_seen)}; /status latency: "
                f"median {status_stats['median'] * 1000:.1f} ms, p95 {status_stats['p95'] * 1000:.1f} ms, "
                f"max {status_stats['max'] * 1000:.1f} ms"
            )
            for z, body in bodies:  # Pillow opens them, right size, the pixels of the source
                check_png(body, sample[z])
            assert stats["n"] >= 5, f"only {stats['n']} slice requests overlapped the conversion"
            assert stats["p95"] < P95_BOUND_S, stats
            assert status_stats["p95"] < STATUS_P95_BOUND_S, status_stats

            for _ in range(240):  # bounded wait for the end of the conversion
                status = await get_status(http)
                if status["state"] != "running":
                    break
                await asyncio.sleep(0.25)
            assert status["state"] == "done", status
            assert status["blocks_total"] and status["blocks_done"] == status["blocks_total"], (
                status
            )

            # the output serves the same pixels once written; errors are HTTP errors
            async with http.get("/slice/100.png", params={"volume": "output"}) as response:
                assert response.status == 200
                check_png(await response.read(), sample[100])
            async with http.get(f"/slice/{SERVICE_SHAPE[0]}.png") as response:
                assert response.status == 404
            async with http.get("/slice/3.png", params={"volume": "nope"}) as response:
                assert response.status == 400

        # every block written: the zarr equals the input (read with zarr-python, slab by slab)
        import zarr

        converted = zarr.open_array(str(output), mode="r")
        assert converted.shape == SERVICE_SHAPE and converted.dtype == np.uint8
        for start in range(0, SERVICE_SHAPE[0], 64):
            np.testing.assert_array_equal(converted[start : start + 64], sample[start : start + 64])
        assert await service.stop() == 0
    assert "conversion done" in service.output and "stopped" in service.output


@pytest.mark.timeout(120)
async def test_web_service_shutdown_cancels_the_conversion(service_workdir, tmp_path):
    aiohttp = pytest.importorskip("aiohttp")

    async with web_service(service_workdir, tmp_path / "cancelled.zarr") as service:
        async with aiohttp.ClientSession(service.url) as http:
            status = await get_status(http)
        assert status["state"] == "running", status
        started = time.monotonic()
        assert await service.stop(signal.SIGTERM) == 0
        stopped_after = time.monotonic() - started
    assert "shutting down: cancelling the conversion" in service.output, service.output
    assert "conversion cancelled" in service.output and "stopped" in service.output
    assert stopped_after < 20, f"graceful shutdown took {stopped_after:.1f} s"
    assert (tmp_path / "cancelled.zarr" / ".zarray").exists()


# ---- examples/slurm_over_ssh.py ---------------------------------------------------------------
@pytest.fixture
def testbed_data_dir(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """The test bed's settings and a sub-folder of its shared folder that the cluster can write."""
    if not os.path.exists(TESTBED_ENV):
        pytest.skip("the slurm test bed is not set up (bash tests/slurm_testbed/setup.sh)")
    with open(TESTBED_ENV) as handle:
        env = dict(
            line.strip().split("=", 1)
            for line in handle
            if "=" in line and not line.startswith("#")
        )
    data_dir = Path(env["SLURM_TESTBED_SHARED"]) / f"examples-{tmp_path.name}-{os.getpid()}"
    data_dir.mkdir()
    data_dir.chmod(0o777)
    yield env, data_dir
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.slurm
@pytest.mark.timeout(180)
def test_slurm_over_ssh_converts_on_the_test_bed(testbed_data_dir, tmp_path):
    env, data_dir = testbed_data_dir
    stdout = run_example(
        "slurm_over_ssh.py", "--data-dir", str(data_dir), "--shape", "48,128,96",
        "--chunks", "16,64,32", "--workers", "3", "--poll-interval", "0.25",
        cwd=tmp_path, timeout=170,
    )  # fmt: skip
    assert f"@{env['SLURM_TESTBED_HOST']}:{env['SLURM_TESTBED_PORT']}" in stdout
    assert re.search(r"submitted in [\d.]+ s: jobs \['\d+'\]", stdout), stdout
    polls = re.findall(r"blocks (\d+)/(\d+)  tasks:", stdout)
    assert polls and all(total == "18" for _, total in polls), stdout  # 3 x 2 x 3 blocks
    assert "attached from the run folder: <Run 'copy'" in stdout
    assert "the output equals the input" in stdout
    np.testing.assert_array_equal(read_zarr(data_dir / "out.zarr"), read_zarr(data_dir / "in.zarr"))
    assert not list((data_dir / "runs").iterdir())  # a successful run removes its folder


@pytest.mark.slurm
@pytest.mark.timeout(180)
def test_slurm_over_ssh_ctrl_c_leaves_the_job_running_and_attach_finishes_it(
    testbed_data_dir, tmp_path
):
    _, data_dir = testbed_data_dir
    command = [
        sys.executable, str(EXAMPLES / "slurm_over_ssh.py"), "--data-dir", str(data_dir),
        "--shape", "256,512,512", "--chunks", "32,64,64", "--workers", "1", "--watch-seconds", "0",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, env=example_env(), text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # Ctrl-C as in a terminal
    )  # fmt: skip
    lines = []
    assert process.stdout is not None
    for line in process.stdout:  # bounded by the process (and the test's timeout)
        lines.append(line)
        if line.startswith("attached from the run folder"):
            time.sleep(0.5)  # now inside run.wait()
            process.send_signal(signal.SIGINT)
    output = "".join(lines)
    assert process.wait(30) == 130, output
    assert "stopped watching; the job keeps running" in output, output
    folder = re.search(r"--attach (\S+)", output).group(1)
    assert os.path.isdir(folder)

    stdout = run_example(
        "slurm_over_ssh.py", "--data-dir", str(data_dir), "--attach", folder, cwd=tmp_path
    )
    assert "attached to <Run 'copy'" in stdout and "blocks 512/512" in stdout, stdout
    assert "done: zarr array at" in stdout or "done: tensorstore output" in stdout, stdout
    np.testing.assert_array_equal(read_zarr(data_dir / "out.zarr"), read_zarr(data_dir / "in.zarr"))
    assert not os.path.exists(folder)  # the attached wait() cleaned the run folder up
