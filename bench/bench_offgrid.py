"""A copy into a region of a larger zarr array that starts off its chunk grid, side by side.

    .venv/bin/python bench/bench_offgrid.py              # 3 rounds
    .venv/bin/python bench/bench_offgrid.py --repeat 1

The input is a 384^3 uint16 zarr v2 array (blosc-lz4, 64^3 chunks); the output a 512^3 zarr v2
array of the same codec, written at offset (5, 5, 5) (off the chunk grid: every block border
cuts chunks, so a local run's blocks take turns on the chunks they share) and, for reference,
at (64, 64, 64) (on the grid). Peers: tensorstore used directly (one read, one write of the
region), zarr-python with the zarrs codec pipeline (one assignment). bioimage-py refuses the
off-grid region (its block shapes must be chunk multiples of an aligned output).

Each run is a fresh ``python bench_offgrid.py --child '<json>'`` process; imports are not
timed, opening the arrays and the copy are. The table shows medians over the rounds; every
method's output region is checked against the input once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SHAPE = (384, 384, 384)
OUT_SHAPE = (512, 512, 512)
CHUNKS = (64, 64, 64)
COMPRESSOR = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
METHODS = {
    "ba_offgrid": "bioimage_async `ba.copy` into the region at (5, 5, 5)",
    "ba_aligned": "bioimage_async `ba.copy` into the region at (64, 64, 64)",
    "ts": "tensorstore: read, one write of the region at (5, 5, 5)",
    "zarrs": "zarr-python + zarrs: `out[5:389, ...] = in[...]`",
}


def zarr_spec(path: Path, shape: tuple[int, ...], create: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"driver": "zarr", "kvstore": {"driver": "file", "path": str(path)}}
    if create:
        spec["metadata"] = {
            "shape": list(shape),
            "chunks": list(CHUNKS),
            "dtype": "<u2",
            "compressor": COMPRESSOR,
        }
        spec["create"] = True
        spec["delete_existing"] = True
    return spec


def make_input(path: Path) -> None:
    import tensorstore as ts

    rng = np.random.default_rng(0)
    data = np.cumsum(rng.integers(0, 3, SHAPE, dtype=np.uint16), axis=2, dtype=np.uint16)
    ts.open(zarr_spec(path, SHAPE, True)).result().write(data).result()


def child(args: dict[str, Any]) -> dict[str, Any]:
    method, work = args["method"], Path(args["work"])
    src_path, out_path = work / "in.zarr", work / f"out_{method}.zarr"
    offset = 64 if method == "ba_aligned" else 5
    region = tuple(slice(offset, offset + n) for n in SHAPE)
    if method.startswith("ba"):
        import bioimage_async as ba

        ba.sync.create_source  # noqa: B018 - import the lazily loaded parts before timing
    elif method == "ts":
        import tensorstore as ts
    else:
        import zarr
        import zarrs  # noqa: F401

        zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})
    import tensorstore as ts

    ts.open(zarr_spec(out_path, OUT_SHAPE, True)).result()  # an empty output, not timed
    started = time.perf_counter()
    if method.startswith("ba"):
        src = ba.sync.open_source(str(src_path))
        out = ba.sync.open_source(str(out_path), mode="r+")
        ba.sync.copy(src, out.view(region), num_workers=2, progress=False)
    elif method == "ts":
        src = ts.open(zarr_spec(src_path, SHAPE, False)).result()
        out = ts.open(zarr_spec(out_path, OUT_SHAPE, False)).result()
        out[region].write(src.read().result()).result()
    else:
        src = zarr.open_array(str(src_path), mode="r")
        out = zarr.open_array(str(out_path), mode="r+")
        out[region] = src[...]
    seconds = time.perf_counter() - started
    result = {"seconds": seconds}
    if args.get("check"):
        written = ts.open(zarr_spec(out_path, OUT_SHAPE, False)).result()
        expected = ts.open(zarr_spec(src_path, SHAPE, False)).result().read().result()
        result["exact"] = bool(np.array_equal(written[region].read().result(), expected))
        result["outside_untouched"] = not written[:offset].read().result().any()
    shutil.rmtree(out_path, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", default="/dev/shm/bench_offgrid")
    parser.add_argument("--child")
    parsed = parser.parse_args()
    if parsed.child:
        print(json.dumps(child(json.loads(parsed.child))))
        return
    work = Path(parsed.work)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "in.zarr").exists():
        make_input(work / "in.zarr")
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    checks: dict[str, dict[str, Any]] = {}
    for round_ in range(parsed.repeat):
        for method in METHODS:
            payload = {"method": method, "work": str(work), "check": round_ == 0}
            out = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(payload)],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            times[method].append(result["seconds"])
            if round_ == 0:
                checks[method] = {k: v for k, v in result.items() if k != "seconds"}
    nbytes = int(np.prod(SHAPE)) * 2
    print(f"{SHAPE} uint16 ({nbytes / 2**20:.0f} MiB) into a {OUT_SHAPE} zarr, {CHUNKS} chunks")
    print("| method | median s | MB/s | exact, outside untouched |")
    print("|---|---|---|---|")
    for method, label in METHODS.items():
        median = statistics.median(times[method])
        check = checks[method]
        print(
            f"| {label} | {median:.2f} | {nbytes / 1e6 / median:.0f} | "
            f"{check.get('exact')}, {check.get('outside_untouched')} |"
        )


if __name__ == "__main__":
    main()
