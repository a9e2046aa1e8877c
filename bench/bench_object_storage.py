"""Copies to and from S3 (a local moto server): ``ba.copy`` next to tensorstore used directly.

    .venv/bin/python bench/bench_object_storage.py              # 256 MiB, 3 runs, ~5 min
    .venv/bin/python bench/bench_object_storage.py --size small --repeat 1   # a quick check

The input is a 256 MiB uint8 zarr v2 (blosc-lz4, 64^3 chunks; bench_data's smooth noise,
compression ratio ~1.4). Each copy goes local -> S3 (the output a fresh key on moto) and
S3 -> local (from a copy uploaded once), by:

- ``ba.copy``: bioimage_async, output created with the same codecs, so the encoded chunk files
  are moved as they are (``sources/raw_copy``);
- ``ba.copy (blocks)``: the same with the raw path switched off: decode, re-encode per block;
- ``ts write``: tensorstore directly, ``ts.open`` of both and ``dst.write(src)``;
- ``ts kvstore``: tensorstore directly, a chunk-by-chunk ``KvStore.read``/``write`` copy of the
  listed keys, 32 in flight;
- ``zarr-python + obstore``: zarr-python 3's ``ObjectStore`` over obstore's ``S3Store``, copied
  in 64-plane slabs (only when obstore imports; ``--extra-path`` adds a folder it was
  ``pip install --target``-ed to).

Each run is a fresh ``--child`` process: it imports and opens everything untimed, then times
the copy alone (``time.perf_counter``). The parent samples the RSS of the child's process tree
every 20 ms with psutil (moto's own memory is not counted: it holds the objects). Methods
alternate run by run; the table has the median of the runs and the highest peak RSS. Every
output is checked against the input (chunk by chunk, untimed) after its run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SHAPES = {"full": (256, 1024, 1024), "small": (64, 512, 512)}
METHODS = ("ba.copy", "ba.copy (blocks)", "ts write", "ts kvstore", "zarr-python + obstore")
DIRECTIONS = ("local -> S3", "S3 -> local")
BUCKET = "bench"
CONCURRENCY = 32


# ---- the child: one copy, timed -------------------------------------------------------------
def s3_kvstore(endpoint: str, path: str) -> dict[str, Any]:
    return {
        "driver": "s3",
        "bucket": BUCKET,
        "path": path,
        "endpoint": endpoint,
        "aws_region": "us-east-1",
        "aws_credentials": {"type": "environment"},
    }


def zarr_metadata(shape: list[int]) -> dict[str, Any]:
    from bench_data import CHUNKS, ZARR_COMPRESSOR

    return {
        "shape": shape,
        "chunks": list(CHUNKS),
        "dtype": "|u1",
        "compressor": ZARR_COMPRESSOR,
        "fill_value": 0,
        "order": "C",
    }


async def child_bioimage_async(job: dict[str, Any], raw: bool) -> float:
    import bioimage_async as ba

    if not raw:
        import importlib

        importlib.import_module("bioimage_async.ops.copy").raw_copy_plan = lambda a, b: None
    src = await ba.open_source(job["src"])
    out = await ba.create_source(
        job["dst"], shape=src.shape, dtype=src.dtype, chunks=src.chunks, compression="blosc"
    )
    started = time.perf_counter()
    await ba.copy(src, out, progress=False)
    return time.perf_counter() - started


def ts_spec(job: dict[str, Any], role: str) -> dict[str, Any]:
    url = job[role]
    if url.startswith("s3://"):
        kvstore = s3_kvstore(job["endpoint"], url.split("/", 3)[3] + "/")
    else:
        kvstore = {"driver": "file", "path": url + "/"}
    return {"driver": "zarr", "kvstore": kvstore}


async def child_ts_write(job: dict[str, Any]) -> float:
    import tensorstore as ts

    context = ts.Context({"file_io_sync": False})
    src = await ts.open(ts_spec(job, "src"), context=context)
    dst = await ts.open(
        {**ts_spec(job, "dst"), "metadata": zarr_metadata(list(src.shape))},
        create=True,
        context=context,
    )
    started = time.perf_counter()
    await dst.write(src)
    return time.perf_counter() - started


async def child_ts_kvstore(job: dict[str, Any]) -> float:
    import tensorstore as ts

    context = ts.Context({"file_io_sync": False})
    src = await ts.open(ts_spec(job, "src"), context=context)
    dst = await ts.open(
        {**ts_spec(job, "dst"), "metadata": zarr_metadata(list(src.shape))},
        create=True,
        context=context,
    )
    source, target = src.kvstore, dst.kvstore
    started = time.perf_counter()
    keys = iter([k for k in await source.list() if not k.startswith(b".")])

    async def worker() -> None:
        for key in keys:
            result = await source.read(key)
            if result.state == "value":
                await target.write(key, result.value)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


async def child_zarr_obstore(job: dict[str, Any]) -> float:
    import zarr
    from numcodecs import Blosc
    from obstore.store import LocalStore, S3Store
    from zarr.storage import ObjectStore

    def store(url: str, read_only: bool) -> Any:
        if url.startswith("s3://"):
            inner = S3Store(
                BUCKET,
                prefix=url.split("/", 3)[3],
                endpoint=job["endpoint"],
                region="us-east-1",
                access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                client_options={"allow_http": True},
            )
        else:
            os.makedirs(url, exist_ok=True)
            inner = LocalStore(url)
        return ObjectStore(inner, read_only=read_only)

    src = await zarr.api.asynchronous.open_array(store=store(job["src"], True), zarr_format=2)
    dst = await zarr.api.asynchronous.create_array(
        store=store(job["dst"], False),
        shape=src.shape,
        chunks=src.chunks,
        dtype=src.dtype,
        zarr_format=2,
        compressors=Blosc(cname="lz4", clevel=5, shuffle=1),
        fill_value=0,
    )
    started = time.perf_counter()
    for z0 in range(0, src.shape[0], src.chunks[0]):
        slab = await src.getitem(slice(z0, z0 + src.chunks[0]))
        await dst.setitem(slice(z0, z0 + src.chunks[0]), slab)
    return time.perf_counter() - started


def child(args: argparse.Namespace) -> None:
    job = json.loads(args.child)
    if job.get("extra_path"):
        sys.path.append(job["extra_path"])  # after the venv: only what it lacks comes from there
    runners = {
        "ba.copy": lambda: child_bioimage_async(job, raw=True),
        "ba.copy (blocks)": lambda: child_bioimage_async(job, raw=False),
        "ts write": lambda: child_ts_write(job),
        "ts kvstore": lambda: child_ts_kvstore(job),
        "zarr-python + obstore": lambda: child_zarr_obstore(job),
    }
    cpu = time.process_time()
    seconds = asyncio.run(runners[job["method"]]())
    cpu = time.process_time() - cpu  # all threads; includes the untimed opening (small)
    print(json.dumps({"seconds": seconds, "cpu": cpu}), flush=True)


# ---- the parent: server, inputs, alternation, the table --------------------------------------
def start_moto(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    sys.path.insert(0, str(ROOT))
    from tests.object_storage.conftest import start_moto as start

    return start(folder / "moto.log")


def sample_tree_rss(proc: subprocess.Popen[bytes], peak: list[int], stop: threading.Event) -> None:
    import psutil

    try:
        root = psutil.Process(proc.pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            break
        peak[0] = max(peak[0], total)
        stop.wait(0.02)


def run_child(job: dict[str, Any], env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    peak = [0]
    stop = threading.Event()
    sampler = threading.Thread(target=sample_tree_rss, args=(proc, peak, stop), daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=1800)
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{job['method']} failed:\n{err.decode()[-3000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return {"seconds": result["seconds"], "cpu": result["cpu"], "peak_rss": peak[0]}


def check_equal(job: dict[str, Any], reference: Any) -> None:
    """The output equals the input, slab by slab (untimed)."""
    import numpy as np
    import tensorstore as ts

    out = ts.open(ts_spec(job, "dst")).result()
    for z0 in range(0, out.shape[0], 64):
        if not np.array_equal(out[z0 : z0 + 64].read().result(), reference[z0 : z0 + 64]):
            raise RuntimeError(f"{job['method']} wrote different values at z={z0}")


def remove_output(job: dict[str, Any]) -> None:
    import tensorstore as ts

    url = job["dst"]
    if url.startswith("s3://"):
        prefix = url.split("/", 3)[3] + "/"
        store = ts.KvStore.open(s3_kvstore(job["endpoint"], "")).result()
        store.delete_range(ts.KvStore.KeyRange(prefix, prefix[:-1] + "0")).result()
    else:
        shutil.rmtree(url, ignore_errors=True)


def obstore_available(extra_path: str | None) -> bool:
    code = "import sys; p = sys.argv[1]; p and sys.path.append(p); import obstore, zarr.storage"
    code += "; zarr.storage.ObjectStore"
    result = subprocess.run([sys.executable, "-c", code, extra_path or ""], capture_output=True)
    return result.returncode == 0


def build_input(folder: Path, shape: tuple[int, ...]) -> Path:
    import tensorstore as ts
    from bench_data import _zarr_spec, generate_slabs

    path = folder / f"input-{'x'.join(map(str, shape))}.zarr"
    if (path / ".zarray").exists():
        return path
    store = ts.open(_zarr_spec(path, shape), create=True, delete_existing=True).result()
    for z0, z1, data in generate_slabs(shape):
        store[z0:z1].write(data).result()
    return path


def upload(endpoint: str, local: Path, key: str) -> None:
    import tensorstore as ts

    source = ts.KvStore.open({"driver": "file", "path": str(local) + "/"}).result()
    target = ts.KvStore.open(s3_kvstore(endpoint, key + "/")).result()
    for name in source.list().result():
        target.write(name, source.read(name).result().value).result()


def table(rows: list[dict[str, Any]], nbytes: int) -> str:
    lines = [
        "| direction | method | median s | MiB/s | x ts write | CPU s | peak RSS MiB | runs (s) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for direction in DIRECTIONS:
        group = [r for r in rows if r["direction"] == direction]
        base = next((r["median"] for r in group if r["method"] == "ts write"), None)
        for r in group:
            ratio = f"{r['median'] / base:.2f}" if base else "-"
            runs = ", ".join(f"{s:.2f}" for s in r["runs"])
            lines.append(
                f"| {direction} | {r['method']} | {r['median']:.2f} | "
                f"{nbytes / 2**20 / r['median']:.0f} | {ratio} | {r['cpu']:.2f} | "
                f"{r['peak_mib']:.0f} | {runs} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--size", choices=sorted(SHAPES), default="full")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", default="/tmp/bioimage-async-bench/object-storage")
    parser.add_argument("--extra-path", help="a pip --target folder holding obstore")
    parser.add_argument("--out", help="the Markdown file (default bench/results/<date>-...)")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import numpy as np
    import tensorstore as ts

    shape = SHAPES[args.size]
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    local_input = build_input(data, shape)
    reference = ts.open({"driver": "zarr", "kvstore": f"file://{local_input}/"}).result()
    reference_array = reference.read().result()
    nbytes = int(np.prod(shape))
    methods = [m for m in METHODS if m != "zarr-python + obstore"]
    if obstore_available(args.extra_path):
        methods.append("zarr-python + obstore")
    else:
        print("obstore is not importable: zarr-python + obstore left out", file=sys.stderr)

    work = Path(tempfile.mkdtemp(prefix="bench-s3-", dir=data))
    proc, endpoint = start_moto(work)
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        BIOIMAGE_ASYNC_NO_CONFIG="1",
    )
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT"), timeout=10
        ).read()
        upload(endpoint, local_input, "input.zarr")
        for run in range(args.repeat):
            for direction in DIRECTIONS:
                order = methods if run % 2 == 0 else list(reversed(methods))
                for method in order:
                    if direction == "local -> S3":
                        src, dst = str(local_input), f"s3://{BUCKET}/out-{run}.zarr"
                    else:
                        src, dst = f"s3://{BUCKET}/input.zarr", str(work / f"out-{run}.zarr")
                    job = {
                        "method": method,
                        "src": src,
                        "dst": dst,
                        "endpoint": endpoint,
                        "extra_path": args.extra_path,
                    }
                    result = run_child(job, env)
                    check_equal(job, reference_array)
                    remove_output(job)
                    results.setdefault((direction, method), []).append(result)
                    print(
                        f"run {run} {direction:12} {method:24} {result['seconds']:6.2f} s "
                        f"peak {result['peak_rss'] / 2**20:5.0f} MiB",
                        flush=True,
                    )
    finally:
        from tests.object_storage.conftest import stop_moto

        stop_moto(proc)
        shutil.rmtree(work, ignore_errors=True)

    rows = [
        {
            "direction": direction,
            "method": method,
            "median": statistics.median(r["seconds"] for r in runs),
            "runs": [r["seconds"] for r in runs],
            "peak_mib": max(r["peak_rss"] for r in runs) / 2**20,
            "cpu": statistics.median(r["cpu"] for r in runs),
        }
        for (direction, method), runs in results.items()
    ]
    rows.sort(key=lambda r: (DIRECTIONS.index(r["direction"]), METHODS.index(r["method"])))
    from importlib.metadata import version

    header = (
        f"# Object storage copies ({datetime.date.today()})\n\n"
        f"{nbytes / 2**20:.0f} MiB uint8 zarr v2 (blosc-lz4, 64^3 chunks, "
        f"{len(list(local_input.glob('*')))} files) on a local moto server "
        f"(moto_server subprocess, 127.0.0.1), {os.cpu_count()} cores; median of "
        f"{args.repeat} alternating runs, each a fresh process with imports and opening "
        f"untimed; CPU s: the copying process's CPU time (all threads; moto's not counted); "
        f"peak RSS of the copying process tree (psutil, 20 ms).\n"
        f"tensorstore {version('tensorstore')}, moto {version('moto')}, Python "
        f"{sys.version.split()[0]}.\n\n"
    )
    text = header + table(rows, nbytes) + "\n"
    print(text)
    out = (
        Path(args.out)
        if args.out
        else (ROOT / "bench" / "results" / f"{datetime.date.today()}-object-storage.md")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    (out.with_suffix(".json")).write_text(json.dumps(rows, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
