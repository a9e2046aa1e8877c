"""Copies to and from S3 (a local moto server): ``ba.copy`` next to tensorstore used directly.

    .venv/bin/python bench/bench_object_storage.py              # 256 MiB, 3 runs, ~5 min
    .venv/bin/python bench/bench_object_storage.py --size small --repeat 1   # a quick check

The input is a 256 MiB uint8 zarr v2 with 64^3 chunks (bench_data's smooth noise), once with
blosc-lz4 (compression ratio ~1.4, cheap codec) and once with zlib level 5 (what
``create_source(compression="gzip")`` writes for zarr v2; ratio ~1.9, an expensive codec:
there a raw copy saves the decode and the encode). Each copy goes local -> S3 (the output a
fresh key on moto) and S3 -> local (from a copy uploaded once), by:

- ``ba.copy``: bioimage_async, output created with the same codecs, so each block's encoded
  chunk files are moved as they are (``TensorStoreSource.copy_region_from`` ->
  ``sources/raw_copy``), inside the normal block pipeline (journal, locks, retries);
- ``ba.copy (blocks)``: the same with the raw path switched off
  (``sources.tensorstore_source.raw_copy_plan`` patched to None): chunk to chunk inside
  tensorstore, decode and re-encode per block;
- ``ts write``: tensorstore directly, ``ts.open`` of both and ``dst.write(src)``;
- ``ts kvstore``: tensorstore directly, a chunk-by-chunk ``KvStore.read``/``write`` copy of the
  listed keys, 32 in flight;
- ``zarr-python + obstore``: zarr-python 3's ``ObjectStore`` over obstore's ``S3Store``, copied
  in 64-plane slabs (only when obstore imports; ``--extra-path`` adds a folder it was
  ``pip install --target``-ed to).

Each run is a fresh ``--child`` process: it imports (for bioimage_async: every module, since it
loads some lazily) and opens everything untimed, then times the copy alone
(``time.perf_counter``); the bioimage_async rows report how many chunk files went the raw way. The parent samples the RSS of the child's process tree
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
#: codec name -> (zarr v2 compressor, bioimage_async create_source compression=)
CODECS = {
    "blosc": ({"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}, "blosc"),
    "gzip": ({"id": "zlib", "level": 5}, "gzip"),
}
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


def zarr_metadata(shape: list[int], codec: str = "blosc") -> dict[str, Any]:
    from bench_data import CHUNKS

    return {
        "shape": shape,
        "chunks": list(CHUNKS),
        "dtype": "|u1",
        "compressor": CODECS[codec][0],
        "fill_value": 0,
        "order": "C",
    }


async def child_bioimage_async(job: dict[str, Any], raw: bool) -> float:
    import importlib

    from methods import preimport_package

    import bioimage_async as ba

    preimport_package()  # untimed: the package imports format and runner modules lazily
    if not raw:
        module = importlib.import_module("bioimage_async.sources.tensorstore_source")
        module.raw_copy_plan = lambda a, b: None  # type: ignore[attr-defined]
    src = await ba.open_source(job["src"])
    out = await ba.create_source(
        job["dst"], shape=src.shape, dtype=src.dtype, chunks=src.chunks,
        compression=CODECS[job["codec"]][1],
    )
    started = time.perf_counter()
    await ba.copy(src, out, progress=False)
    seconds = time.perf_counter() - started
    job["raw_chunk_files"] = getattr(out, "raw_chunk_files", None)
    return seconds


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
        {**ts_spec(job, "dst"), "metadata": zarr_metadata(list(src.shape), job["codec"])},
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
        {**ts_spec(job, "dst"), "metadata": zarr_metadata(list(src.shape), job["codec"])},
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
    from numcodecs import Blosc, Zlib
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
        compressors=Blosc(cname="lz4", clevel=5, shuffle=1) if job["codec"] == "blosc" else Zlib(5),
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
    print(json.dumps({"seconds": seconds, "cpu": cpu, "raw_chunk_files": job.get("raw_chunk_files")}),
          flush=True)


# ---- the parent: server, inputs, alternation, the table --------------------------------------
def start_moto(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    sys.path.insert(0, str(ROOT))
    from tests.object_storage.conftest import start_moto as start

    return start(folder / "moto.log")


def sample_tree_rss(
    proc: subprocess.Popen[bytes], peak: list[int], stop: threading.Event,
    cpu: dict[int, float] | None = None,
) -> None:
    """Peak RSS of the child's process tree into ``peak[0]``; the last CPU seconds seen of each
    of its processes into ``cpu``."""
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
                    if cpu is not None:
                        t = p.cpu_times()
                        cpu[p.pid] = t.user + t.system
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
    tree_cpu: dict[int, float] = {}
    stop = threading.Event()
    sampler = threading.Thread(
        target=sample_tree_rss, args=(proc, peak, stop, tree_cpu), daemon=True
    )
    sampler.start()
    out, err = proc.communicate(timeout=1800)
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{job['method']} failed:\n{err.decode()[-3000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return {"seconds": result["seconds"], "cpu": result["cpu"], "peak_rss": peak[0],
            "raw_chunk_files": result.get("raw_chunk_files"),
            "tree_cpu": max(sum(tree_cpu.values()), result["cpu"])}


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


def build_input(folder: Path, shape: tuple[int, ...], codec: str = "blosc") -> Path:
    import tensorstore as ts
    from bench_data import _zarr_spec, generate_slabs

    suffix = "" if codec == "blosc" else f"-{codec}"
    path = folder / f"input-{'x'.join(map(str, shape))}{suffix}.zarr"
    if (path / ".zarray").exists():
        return path
    spec = _zarr_spec(path, shape)
    spec["metadata"]["compressor"] = CODECS[codec][0]
    store = ts.open(spec, create=True, delete_existing=True).result()
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
        "| codec | direction | method | median s | MiB/s | x ts write | paired x ts write (min-max) "
        "| CPU s | peak RSS MiB | raw chunk files | runs (s) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for codec in CODECS:
        for direction in DIRECTIONS:
            group = [r for r in rows if r["direction"] == direction and r["codec"] == codec]
            base = next((r for r in group if r["method"] == "ts write"), None)
            for r in group:
                ratio = f"{r['median'] / base['median']:.2f}" if base else "-"
                pairs = [a / b for a, b in zip(r["runs"], base["runs"])] if base else []
                paired = (f"{statistics.median(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})"
                          if pairs else "-")
                runs = ", ".join(f"{s:.2f}" for s in r["runs"])
                raw = r.get("raw_chunk_files")
                lines.append(
                    f"| {codec} | {direction} | {r['method']} | {r['median']:.2f} | "
                    f"{nbytes / 2**20 / r['median']:.0f} | {ratio} | {paired} | {r['cpu']:.2f} | "
                    f"{r['peak_mib']:.0f} | {'-' if raw is None else raw} | {runs} |"
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
    parser.add_argument("--codecs", default=",".join(CODECS), help="comma-separated: blosc,gzip")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import numpy as np
    import tensorstore as ts

    shape = SHAPES[args.size]
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    codecs = args.codecs.split(",")
    local_inputs = {codec: build_input(data, shape, codec) for codec in codecs}
    reference = ts.open({"driver": "zarr", "kvstore": f"file://{local_inputs[codecs[0]]}/"}).result()
    reference_array = reference.read().result()
    nbytes = int(np.prod(shape))
    methods = [m for m in args.methods.split(",") if m != "zarr-python + obstore"]
    if "zarr-python + obstore" in args.methods.split(","):
        if obstore_available(args.extra_path):
            methods.append("zarr-python + obstore")
        else:
            print("obstore is not importable: zarr-python + obstore left out", file=sys.stderr)
    import psutil
    from run_benchmarks import calibrate, system_busy_s

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
    results: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    moto = psutil.Process(proc.pid)

    def moto_cpu() -> float:
        total = 0.0
        for p in [moto, *moto.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    try:
        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT"), timeout=10
        ).read()
        for codec in codecs:
            upload(endpoint, local_inputs[codec], f"input-{codec}.zarr")
        for run in range(args.repeat):
            for codec in codecs:
                for direction in DIRECTIONS:
                    order = methods if run % 2 == 0 else list(reversed(methods))
                    for method in order:
                        if direction == "local -> S3":
                            src, dst = str(local_inputs[codec]), f"s3://{BUCKET}/out-{run}.zarr"
                        else:
                            src = f"s3://{BUCKET}/input-{codec}.zarr"
                            dst = str(work / f"out-{run}.zarr")
                        job = {
                            "method": method,
                            "codec": codec,
                            "src": src,
                            "dst": dst,
                            "endpoint": endpoint,
                            "extra_path": args.extra_path,
                        }
                        calib = calibrate()
                        busy0, moto0, t0 = system_busy_s(), moto_cpu(), time.perf_counter()
                        result = run_child(job, env)
                        elapsed = time.perf_counter() - t0
                        # cores used by others (not the child's tree, not moto) over its life
                        # (the child's CPU as last sampled, up to 20 ms before it exited)
                        others = system_busy_s() - busy0 - (moto_cpu() - moto0) - result["tree_cpu"]
                        result.update(calib_ms=calib, other_load=max(0.0, others / elapsed))
                        check_equal(job, reference_array)
                        remove_output(job)
                        results.setdefault((codec, direction, method), []).append(result)
                        print(
                            f"run {run} {codec:5} {direction:12} {method:24} "
                            f"{result['seconds']:6.2f} s peak {result['peak_rss'] / 2**20:5.0f} MiB"
                            f" raw {result.get('raw_chunk_files')} probe {calib:.0f} ms "
                            f"other {result['other_load']:.2f}",
                            flush=True,
                        )
    finally:
        from tests.object_storage.conftest import stop_moto

        stop_moto(proc)
        shutil.rmtree(work, ignore_errors=True)

    rows = [
        {
            "codec": codec,
            "direction": direction,
            "method": method,
            "raw_chunk_files": runs[-1].get("raw_chunk_files"),
            "calib_ms": [r["calib_ms"] for r in runs],
            "other_load": [round(r["other_load"], 2) for r in runs],
            "median": statistics.median(r["seconds"] for r in runs),
            "runs": [r["seconds"] for r in runs],
            "peak_mib": max(r["peak_rss"] for r in runs) / 2**20,
            "cpu": statistics.median(r["cpu"] for r in runs),
        }
        for (codec, direction, method), runs in results.items()
    ]
    rows.sort(key=lambda r: (list(CODECS).index(r["codec"]), DIRECTIONS.index(r["direction"]),
                             METHODS.index(r["method"])))
    every = [r for runs in results.values() for r in runs]
    calib = sorted(r["calib_ms"] for r in every)
    other = sorted(r["other_load"] for r in every)
    from importlib.metadata import version

    header = (
        f"# Object storage copies ({datetime.date.today()})\n\n"
        f"{nbytes / 2**20:.0f} MiB uint8 zarr v2, 64^3 chunks ("
        + ", ".join(
            f"{c}: {CODECS[c][0]['id']} {len(list(p.glob('*')))} files, ratio "
            f"{nbytes / sum(f.stat().st_size for f in p.glob('*')):.2f}"
            for c, p in local_inputs.items()
        )
        + f") on a local moto server (moto_server subprocess, 127.0.0.1), {os.cpu_count()} "
        f"cores (other load measured per run); median of {args.repeat} alternating "
        "runs, each a fresh process with imports and opening untimed; paired = median over "
        "runs of the ratio to the `ts write` run of the same round; CPU s: the copying "
        "process's CPU time (all threads; moto's not counted); peak RSS of the copying process "
        "tree (psutil, 20 ms); raw chunk files: chunk files `ba.copy` moved without decoding. "
        f"CPU probe before each run {calib[0]:.0f}-{calib[-1]:.0f} ms (median "
        f"{statistics.median(calib):.0f}); other load (cores used by processes other than the "
        f"copy and moto during a run) median {statistics.median(other):.2f}, max "
        f"{other[-1]:.2f}. Compare rows by their ratios.\n"
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
