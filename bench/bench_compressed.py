"""Compressed inputs -> zarr v2 blosc-lz4 64^3: bioimage_async next to bioimage-py and the direct path.

    .venv/bin/python bench/bench_compressed.py                  # 128 planes x3 + the 8x file
    .venv/bin/python bench/bench_compressed.py --repeat 1 --skip-big --cases strips,gzip

Inputs (built once in ``--data``, from bench_data's smooth-ish generator, 1024 x 1024 uint8
planes): a deflate TIFF with 256-row strips, a deflate TIFF with 256 x 256 tiles, a folder of
deflate slices, a gzip HDF5 and a gzip+shuffle HDF5 with 64^3 chunks; and a deflate TIFF 8x
larger (bioimage_async only) to show that peak memory does not grow with the file.

Methods: ``ba.copy`` with the issue's ``block_shape=(64, 256, 256)`` and with default blocks,
bioimage-py's ``bp.copy`` with the same blocks, and the direct path (tifffile's threaded whole
read, or h5py's, plus one tensorstore write).

Each run is a fresh ``python bench_compressed.py --child '<json>'`` process: imports are not
timed (bioimage_async's lazily loaded modules and format libraries included), the work (open the
input, create the output, convert) is. Methods alternate within each round; the table shows
medians over the rounds and the peak RSS of the child's process tree (psutil, sampled every
20 ms, its members listed every 0.25 s; imports included). Each method's first output is checked
against the generated volume. Outputs go to /dev/shm by default (see ``default_work``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import generate_slabs  # noqa: E402

PLANE = (1024, 1024)
CHUNKS = (64, 64, 64)
BLOCK = (64, 256, 256)
WORKERS = 2
ZARR_COMPRESSOR = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}

#: case -> (label, file name, HDF5 key)
CASES: dict[str, tuple[str, str, str | None]] = {
    "strips": ("deflate TIFF, 256-row strips", "strips.tif", None),
    "tiles": ("deflate TIFF, 256 x 256 tiles", "tiles.tif", None),
    "slices": ("folder of deflate TIFF slices", "slices", None),
    "gzip": ("gzip HDF5, 64^3 chunks", "gzip.h5", "data"),
    "gzip_shuffle": ("gzip+shuffle HDF5, 64^3 chunks", "gzip_shuffle.h5", "data"),
}
METHODS = {
    "ba": "bioimage_async `ba.copy`",
    "ba_default": "bioimage_async `ba.copy`, default blocks",
    "bp": "bioimage-py 0.2.2 `bp.copy`",
    "direct": "direct (whole read + one tensorstore write)",
}


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------
def planes(shape: tuple[int, int, int]):
    for _, _, slab in generate_slabs(shape):
        yield from slab


def tiles(shape: tuple[int, int, int], tile: tuple[int, int]):
    """The tiles of every plane in TIFF order (what TiffWriter takes for tiled iterators)."""
    for plane in planes(shape):
        for y in range(0, shape[1], tile[0]):
            for x in range(0, shape[2], tile[1]):
                yield plane[y : y + tile[0], x : x + tile[1]]


def build(folder: Path, planes_count: int, big_planes: int) -> None:
    """Write the inputs that are missing (each from the same deterministic generator)."""
    import h5py
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    shape = (planes_count, *PLANE)

    def tiff(path: Path, shape: tuple[int, int, int], **kwargs: Any) -> None:
        if path.exists():
            return
        started = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        tile = kwargs.get("tile")
        data = tiles(shape, tile) if tile else planes(shape)
        with tifffile.TiffWriter(tmp) as writer:
            writer.write(data, shape=shape, dtype=np.uint8, compression="zlib", **kwargs)
        tmp.rename(path)
        print(f"built {path.name} in {time.perf_counter() - started:.0f} s", flush=True)

    tiff(folder / "strips.tif", shape, rowsperstrip=256)
    tiff(folder / "tiles.tif", shape, tile=(256, 256))
    slices = folder / "slices"
    if not slices.exists():
        tmp = folder / "slices.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for z, plane in enumerate(planes(shape)):
            tifffile.imwrite(
                tmp / f"slice_{z:04d}.tif", plane, compression="zlib", rowsperstrip=256
            )
        tmp.rename(slices)
    for name, shuffle in (("gzip.h5", False), ("gzip_shuffle.h5", True)):
        path = folder / name
        if path.exists():
            continue
        tmp = path.with_suffix(".tmp")
        with h5py.File(tmp, "w") as f:
            data = f.create_dataset(
                "data",
                shape=shape,
                dtype=np.uint8,
                chunks=CHUNKS,
                compression="gzip",
                shuffle=shuffle,
            )
            for z0, z1, slab in generate_slabs(shape):
                data[z0:z1] = slab
        tmp.rename(path)
    if big_planes:
        tiff(folder / f"strips_{big_planes}.tif", (big_planes, *PLANE), rowsperstrip=256)


# ------------------------------------------------------------------------------------------------
# the child: one method on one input, imports untimed
# ------------------------------------------------------------------------------------------------
def ts_output(path: str, shape: tuple[int, ...]) -> Any:
    import tensorstore as ts

    spec = {
        "driver": "zarr",
        "kvstore": {"driver": "file", "path": path + "/"},
        "metadata": {
            "shape": list(shape),
            "chunks": list(CHUNKS),
            "dtype": "|u1",
            "compressor": ZARR_COMPRESSOR,
            "fill_value": 0,
            "order": "C",
        },
    }
    return ts.open(spec, create=True, context=ts.Context({"file_io_sync": False})).result()


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    method, source, key, out = cfg["method"], cfg["input"], cfg["key"], cfg["out"]
    shape = tuple(cfg["shape"])
    extra: dict[str, Any] = {}
    if method in ("ba", "ba_default"):
        import asyncio

        from methods import preimport_package

        import bioimage_async as ba

        preimport_package()  # the lazily imported format, runner and pipeline modules

        async def work() -> None:
            src = await ba.open_source(source, key)
            dst = await ba.create_source(out, shape=src.shape, dtype=src.dtype, chunks=CHUNKS)
            block = BLOCK if method == "ba" else None  # None: the file's own layout decides
            await ba.copy(src, dst, block_shape=block, num_workers=WORKERS)
            extra["decoded"] = getattr(src, "decode_count", None)

        def run() -> None:
            asyncio.run(work())

    elif method == "bp":
        import bioimage_py as bp
        import numcodecs
        import zarr

        def run() -> None:
            dst = zarr.create_array(
                out,
                shape=shape,
                chunks=CHUNKS,
                dtype="uint8",
                zarr_format=2,
                fill_value=0,
                compressors=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1),
            )
            src = bp.open_source(
                source, key if key else ("*.tif" if cfg["case"] == "slices" else None)
            )
            bp.copy(src, dst, block_shape=BLOCK, num_workers=WORKERS)

    else:
        import h5py  # noqa: F401
        import tensorstore  # noqa: F401
        import tifffile

        def run() -> None:
            if cfg["case"] == "slices":
                files = sorted(str(p) for p in Path(source).glob("*.tif"))
                data = tifffile.imread(files, ioworkers=WORKERS, maxworkers=1)
            elif key is None:
                data = tifffile.imread(source, maxworkers=WORKERS)
            else:
                import h5py as h5

                with h5.File(source, "r") as f:
                    data = f[key][...]
            ts_output(out, shape).write(data).result()

    import_s = time.perf_counter() - started
    started, cpu = time.perf_counter(), cpu_seconds()
    run()
    return {
        "work_s": time.perf_counter() - started,
        "cpu_s": cpu_seconds() - cpu,
        "import_s": import_s,
        **extra,
    }


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (bioimage-py's worker processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# ------------------------------------------------------------------------------------------------
# the parent: alternate fresh processes, sample their memory, check the outputs
# ------------------------------------------------------------------------------------------------
def wait_for_quiet(cores: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until other processes use less than ``cores``; returns it."""
    import psutil

    deadline = time.monotonic() + max_wait
    while True:
        busy = psutil.cpu_percent(interval=0.5) / 100 * (psutil.cpu_count() or 1)
        if busy < cores or time.monotonic() > deadline:
            return busy


def run_child(cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    import psutil

    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ps = psutil.Process(proc.pid)
    samples: list[int] = []
    deadline = time.monotonic() + timeout
    tree: list[psutil.Process] = [ps]
    listed = 0.0
    while proc.poll() is None and time.monotonic() < deadline:
        # listing children walks all of /proc (~0.75 ms of a core): every 0.25 s, not every
        # sample, so that measuring takes <1% of the two cores the methods compete for
        if time.monotonic() - listed > 0.25:
            try:
                tree, listed = [ps, *ps.children(recursive=True)], time.monotonic()
            except psutil.Error:
                pass
        total = 0
        for member in tree:
            try:
                total += member.memory_info().rss
            except psutil.Error:
                pass
        samples.append(total)
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate()
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{cfg['case']}/{cfg['method']} failed ({proc.returncode}):\n{err[-3000:]}"
        )
    half = len(samples) // 2
    return {
        **json.loads(lines[-1][7:]),
        "peak_mib": max(samples, default=0) / 2**20,
        # flat memory: the second half of the run peaks no higher than the first
        "peak_halves_mib": [
            max(part, default=0) / 2**20 for part in (samples[:half], samples[half:])
        ],
    }


def default_work(data: Path) -> Path:
    """Outputs go to memory (tmpfs) where there is one, as the inputs are read from the page cache.

    Why: on this VM's disk (ext4 without a journal) creating a file scans past every inode freed
    in the last 1-5 minutes. After a benchmark deletes its outputs, the next run's 512 chunk files
    cost 0.3-0.5 s of kernel time (``recently_deleted``, and threads spinning on the directory
    lock), more than the conversion itself, for every method alike and depending on what was
    deleted before. Pass ``--work`` to measure on a disk.
    """
    shm = Path("/dev/shm")
    return shm / "bioimage-async-bench-out" if shm.is_dir() else data / "out"


def in_memory(work: Path) -> bool:
    return str(work).startswith("/dev/shm")


def fresh_output(work: Path, name: str, trash: list[str], delete_between: bool) -> str:
    """A new output path for one run. On a disk, outputs are deleted at the end (unless
    ``delete_between``: each before the next run, which makes the next run pay for the
    deletion, see ``default_work``); in memory, each before the next run, to bound the memory.
    """
    out = str(work / f"{name}.zarr")
    if delete_between or in_memory(work):
        for old in trash:
            shutil.rmtree(old, ignore_errors=True)
        trash.clear()
    trash.append(out)
    return out


def verify(out: str, shape: tuple[int, int, int]) -> None:
    """The output equals the generated volume, slab by slab (bounded memory)."""
    import tensorstore as ts

    spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": out + "/"}}
    store = ts.open(spec, read=True).result()
    for z0, z1, slab in generate_slabs(shape):
        if not np.array_equal(store[z0:z1].read().result(), slab):
            raise AssertionError(f"{out}: planes {z0}-{z1} differ from the input")


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="/tmp/bioimage-async-bench/compressed")
    parser.add_argument("--planes", type=int, default=128)
    parser.add_argument("--big-planes", type=int, default=1024)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.3,
        help="start a run once other processes use fewer cores than this",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=20,
        help="longest wait for a quiet machine before a run (s)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        help="where outputs go (default: a folder in /dev/shm where it exists, else DATA/out)",
    )
    parser.add_argument(
        "--delete-between",
        action="store_true",
        help="delete each output before the next run (pays ext4's recently-deleted inode scan)",
    )
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return

    data = Path(args.data)
    build(data, args.planes, 0 if args.skip_big else args.big_planes)
    shape = (args.planes, *PLANE)
    cases = [c for c in args.cases.split(",") if c]
    methods = [m for m in args.methods.split(",") if m]
    work = args.work or default_work(data)
    shutil.rmtree(work, ignore_errors=True)  # a previous invocation's outputs
    trash: list[str] = []
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_ in range(args.repeat):
        for case in cases:
            _, name, key = CASES[case]
            order = methods if round_ % 2 == 0 else methods[::-1]
            for method in order:
                out = fresh_output(
                    work, f"{case}-{method}-r{round_ + 1}", trash, args.delete_between
                )
                cfg = {
                    "case": case,
                    "method": method,
                    "input": str(data / name),
                    "key": key,
                    "out": out,
                    "shape": list(shape),
                }
                other = wait_for_quiet(args.quiet, args.quiet_wait)
                result = {**run_child(cfg, args.timeout), "other_cores": other}
                if round_ == 0 and not args.no_verify:
                    verify(out, shape)
                results.setdefault((case, method), []).append(result)
                print(
                    f"round {round_ + 1} {case:13s} {method:7s} {result['work_s']:6.2f} s "
                    f"cpu {result['cpu_s']:5.2f} s {result['peak_mib']:6.0f} MiB "
                    f"others {other:.1f} cores {result.get('decoded', '')}",
                    flush=True,
                )
    big: list[dict[str, Any]] = []
    if not args.skip_big:
        big_shape = (args.big_planes, *PLANE)
        for round_ in range(args.repeat):
            out = fresh_output(work, f"big-ba-r{round_ + 1}", trash, args.delete_between)
            cfg = {
                "case": "strips",
                "method": "ba",
                "key": None,
                "out": out,
                "input": str(data / f"strips_{args.big_planes}.tif"),
                "shape": list(big_shape),
            }
            wait_for_quiet(args.quiet, args.quiet_wait)
            big.append(run_child(cfg, args.timeout))
            if round_ == 0 and not args.no_verify:
                verify(out, big_shape)
            halves = big[-1]["peak_halves_mib"]
            print(
                f"round {round_ + 1} big strips ba {big[-1]['work_s']:6.2f} s "
                f"{big[-1]['peak_mib']:6.0f} MiB (halves {halves[0]:.0f} / {halves[1]:.0f})",
                flush=True,
            )
    for out in trash:
        shutil.rmtree(out, ignore_errors=True)
    text = table(results, cases, methods, shape, big, args, work)
    print(text)
    if args.out is not None:
        args.out.write_text(header() + text + "\n")
        (args.out.with_suffix(".json")).write_text(
            json.dumps({f"{c}/{m}": runs for (c, m), runs in results.items()} | {"big": big})
        )


def header() -> str:
    """Date, machine and the libraries that decode (libdeflate through which package)."""
    import datetime as dt
    import importlib.util
    import platform
    from importlib.metadata import version

    via = next(
        (name for name in ("deflate", "imagecodecs") if importlib.util.find_spec(name)),
        "none (tifffile's zlib)",
    )
    return (
        f"# Compressed inputs -> zarr, {dt.date.today()}\n\n"
        f"Machine: {os.cpu_count()} cores, {platform.platform()}, Python "
        f"{platform.python_version()}; tensorstore {version('tensorstore')}, tifffile "
        f"{version('tifffile')}, bioimage-py {version('bioimage-py')}; bioimage_async's deflate TIFF decoder: libdeflate via {via}.\n"
    )


def table(
    results: dict[tuple[str, str], list[dict[str, Any]]],
    cases: list[str],
    methods: list[str],
    shape: tuple[int, ...],
    big: list[dict[str, Any]],
    args: argparse.Namespace,
    work: Path,
) -> str:
    def median(case: str, method: str, field: str) -> float | None:
        runs = results.get((case, method))
        return statistics.median(r[field] for r in runs) if runs else None

    lines = [
        f"\n{shape[0]} planes of {PLANE[0]} x {PLANE[1]} uint8 -> zarr v2 blosc-lz4 64^3, "
        f"block_shape {BLOCK}, {WORKERS} workers; median of {args.repeat} alternating fresh "
        "processes, imports excluded; CPU s of the process and its children over the work; peak "
        f"RSS of the process tree (imports included). Outputs written to {work} "
        f"({'memory, tmpfs' if in_memory(work) else 'disk'}), a new folder per run.\n",
        "| input | method | work s | CPU s | peak RSS MiB | vs direct | vs bioimage-py |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        direct, bp = median(case, "direct", "work_s"), median(case, "bp", "work_s")
        for method in methods:
            seconds = median(case, method, "work_s")
            if seconds is None:
                continue
            vs_direct = seconds / direct if direct and method != "direct" else None
            vs_bp = seconds / bp if bp and method != "bp" else None
            lines.append(
                f"| {CASES[case][0]} | {METHODS[method]} | {seconds:.2f} | "
                f"{fmt(median(case, method, 'cpu_s'), '.2f')} | "
                f"{fmt(median(case, method, 'peak_mib'), '.0f')} | {ratio(vs_direct)} | "
                f"{ratio(vs_bp)} |"
            )
    if big:
        seconds = statistics.median(r["work_s"] for r in big)
        cpu = statistics.median(r["cpu_s"] for r in big)
        peak = statistics.median(r["peak_mib"] for r in big)
        first = statistics.median(r["peak_halves_mib"][0] for r in big)
        second = statistics.median(r["peak_halves_mib"][1] for r in big)
        lines.append(
            f"| deflate TIFF, 256-row strips, {args.big_planes} planes (8x) | {METHODS['ba']} | "
            f"{seconds:.2f} | {cpu:.2f} | {peak:.0f} (1st half {first:.0f}, 2nd half "
            f"{second:.0f}) | - | - |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
