"""The CPU floor of a compressed-TIFF -> zarr conversion: what any converter must spend.

    .venv/bin/python bench/bench_floor.py                     # the strips and tiles files
    .venv/bin/python bench/bench_floor.py --repeat 7 --files strips.tif

Issue #15 asks the TIFF copy to run at most 1.0x tifffile's threaded read plus one tensorstore
write. Both paths do the same two things with the CPU: inflate every strip or tile of the file,
and blosc-lz4 encode every 64^3 chunk of the output. This script measures those two stages
alone, single-threaded, in CPU seconds (``time.process_time``, min over ``--repeat`` runs):

- inflating the file's segments with every inflater importable here: libdeflate (through
  imagecodecs, which tifffile and bioimage_async use), zlib, and, if installed, python-isal
  (``pip install isal``) and zlib-ng (``pip install zlib-ng``). A faster inflater than
  libdeflate would let a converter spend less than the direct path;
- encoding the decoded volume with tensorstore's zarr driver (blosc lz4, clevel 5, 64^3
  chunks) into a memory kvstore, with one data-copy thread.

Their sum is the conversion's CPU floor (file reads and writes excluded); compare it with
the ``CPU s`` columns of ``bench_compressed.py``. Inputs come from ``bench_compressed.py``
(``--data``, built by it on first run). Nothing here is timed in wall-clock terms.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def segments(path: Path) -> tuple[list[bytes], int, np.ndarray]:
    """Every compressed segment of every page, the decoded size of one, and the volume."""
    import tifffile

    with tifffile.TiffFile(path) as tif, open(path, "rb") as handle:
        data = tif.asarray(maxworkers=2)
        page = tif.pages.first
        decoded = int(np.prod(page.chunks)) * page.dtype.itemsize
        out = []
        for page in tif.pages:
            for offset, count in zip(page.dataoffsets, page.databytecounts):
                handle.seek(offset)
                out.append(handle.read(count))
    return out, decoded, data


def inflaters(size: int) -> dict[str, Callable[[bytes], object]]:
    """The inflaters importable here, each returning one decoded segment."""
    import zlib

    import imagecodecs

    found: dict[str, Callable[[bytes], object]] = {
        "libdeflate (imagecodecs.deflate_decode)": lambda s: imagecodecs.deflate_decode(
            s, out=size
        ),
        "zlib (stdlib)": zlib.decompress,
    }
    try:
        from isal import isal_zlib

        found["ISA-L (python-isal)"] = isal_zlib.decompress
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng

        found["zlib-ng (zlib-ng)"] = zlib_ng.decompress
    except ImportError:
        pass
    return found


def cpu_seconds(work: Callable[..., object], repeat: int, *args: object) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work(*args)
        best = min(best, time.process_time() - started)
    return best


def inflate_all(inflate: Callable[[bytes], object], found: list[bytes]) -> None:
    for segment in found:
        inflate(segment)


def encode(data: np.ndarray) -> None:
    import tensorstore as ts

    spec = {
        "driver": "zarr",
        "kvstore": {"driver": "memory"},
        "metadata": {
            "shape": list(data.shape),
            "chunks": [64, 64, 64],
            "dtype": "|u1",
            "compressor": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
            "fill_value": 0,
        },
    }
    context = ts.Context({"data_copy_concurrency": {"limit": 1}})
    ts.open(spec, create=True, context=context).result().write(data).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/tmp/bioimage-async-bench/compressed")
    parser.add_argument("--files", default="strips.tif,tiles.tif")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for name in args.files.split(","):
        path = Path(args.data) / name
        if not path.exists():
            raise SystemExit(f"{path} is missing: run bench/bench_compressed.py once to build it")
        found, size, data = segments(path)
        packed = sum(len(s) for s in found) / 2**20
        print(
            f"\n{name}: {len(found)} segments, {packed:.1f} MiB compressed, "
            f"{data.nbytes / 2**20:.0f} MiB decoded; CPU s, min of {args.repeat}"
        )
        fastest = float("inf")
        for label, inflate in inflaters(size).items():
            seconds = cpu_seconds(inflate_all, args.repeat, inflate, found)
            fastest = min(fastest, seconds)
            print(f"  inflate, {label}: {seconds:.3f}")
        encoded = cpu_seconds(encode, args.repeat, data)
        print(f"  encode, tensorstore blosc-lz4 64^3: {encoded:.3f}")
        print(f"  floor (fastest inflate + encode): {fastest + encoded:.3f}")


if __name__ == "__main__":
    main()
