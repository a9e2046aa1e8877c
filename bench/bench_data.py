"""Benchmark inputs: a smooth-ish random uint8 volume as zarr v2 (blosc-lz4, 64^3) and as TIFF.

The volume is low-pass filtered noise (two octaves of trilinearly upsampled coarse noise plus a
little voxel noise, ~40% clipped to a zero background, like fluorescence data), generated slab by
slab from global coordinates, so it is seamless, costs only one slab of memory and compresses
like real microscopy data (blosc-lz4 ratio ~1.4; pure noise would be 1.0).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

SIZES = {
    "full": (512, 1024, 1024),  # 512 MiB, the size of the peer baselines
    "small": (128, 512, 512),  # 32 MiB, a quick check
    "tiny": (64, 128, 128),  # 1 MiB, smoke test of the harness itself
}
CHUNKS = (64, 64, 64)
SEED = 20261122
FORMAT_VERSION = 2  # bump when the generator changes, to force a rebuild

#: blosc-lz4 clevel 5 with byte shuffle: what bioimage_async's create_source writes by default.
ZARR_COMPRESSOR = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}


def _coarse(shape: tuple[int, ...], factor: int, rng: np.random.Generator) -> np.ndarray:
    grid = tuple(math.ceil(n / factor) + 2 for n in shape)
    return rng.standard_normal(grid, dtype=np.float32)


def _interp_axis(array: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``array`` along ``axis`` at fractional ``coords`` (grid units)."""
    lower = np.floor(coords).astype(np.intp)
    weight = (coords - lower).astype(np.float32)
    shape = [1] * array.ndim
    shape[axis] = -1
    weight = weight.reshape(shape)
    low = np.take(array, lower, axis=axis)
    high = np.take(array, lower + 1, axis=axis)
    return low + (high - low) * weight


def _upsample_slab(coarse: np.ndarray, factor: int, z0: int, z1: int, yx: tuple[int, int]) -> np.ndarray:
    """The trilinear upsampling of ``coarse`` over planes z0..z1 (global coordinates)."""
    zc = np.arange(z0, z1, dtype=np.float64) / factor
    first = int(np.floor(zc[0]))
    part = coarse[first : int(np.floor(zc[-1])) + 2]
    out = _interp_axis(part, zc - first, 0)
    out = _interp_axis(out, np.arange(yx[0], dtype=np.float64) / factor, 1)
    return _interp_axis(out, np.arange(yx[1], dtype=np.float64) / factor, 2)


def generate_slabs(shape: tuple[int, int, int], slab: int = 64):
    """Yield (z0, z1, uint8 slab) covering the volume; deterministic for a given shape."""
    rng = np.random.default_rng(SEED)
    octaves = [(_coarse(shape, 32, rng), 32, 60.0), (_coarse(shape, 6, rng), 6, 25.0)]
    noise_rng = np.random.default_rng(SEED + 1)
    for z0 in range(0, shape[0], slab):
        z1 = min(shape[0], z0 + slab)
        # fluorescence-like: ~40% dark background (exact zeros), smooth structures with noise
        value = np.full((z1 - z0, shape[1], shape[2]), 7.0, dtype=np.float32)
        for coarse, factor, amplitude in octaves:
            value += amplitude * _upsample_slab(coarse, factor, z0, z1, shape[1:])
        value += noise_rng.normal(0.0, 3.0, size=value.shape).astype(np.float32)
        value *= 1.5
        np.clip(value, 0, 255, out=value)
        yield z0, z1, np.rint(value).astype(np.uint8)


def _zarr_spec(path: Path, shape: tuple[int, ...]) -> dict:
    return {
        "driver": "zarr",
        "kvstore": {"driver": "file", "path": str(path) + "/"},
        "metadata": {
            "shape": list(shape),
            "chunks": list(CHUNKS),
            "dtype": "|u1",
            "compressor": ZARR_COMPRESSOR,
            "fill_value": 0,
            "order": "C",
        },
    }


def build_inputs(folder: Path, size: str, rebuild: bool = False) -> dict:
    """Create (once) ``input.zarr`` and ``input.tif`` in ``folder``; returns the manifest."""
    import tensorstore as ts
    import tifffile

    shape = SIZES[size]
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.json"
    zarr_path = folder / "input.zarr"
    tif_path = folder / "input.tif"
    if manifest_path.exists() and not rebuild:
        manifest = json.loads(manifest_path.read_text())
        if (
            manifest.get("shape") == list(shape)
            and manifest.get("version") == FORMAT_VERSION
            and zarr_path.exists()
            and tif_path.exists()
        ):
            return manifest
    for p in (zarr_path, tif_path, manifest_path):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    started = time.perf_counter()
    ctx = ts.Context({"file_io_sync": False})
    store = ts.open(_zarr_spec(zarr_path, shape), create=True, context=ctx).result()
    tif = tifffile.memmap(str(tif_path), shape=shape, dtype=np.uint8, photometric="minisblack")
    histogram = np.zeros(256, dtype=np.int64)
    for z0, z1, data in generate_slabs(shape):
        store[z0:z1].write(data).result()
        tif[z0:z1] = data
        histogram += np.bincount(data.ravel(), minlength=256)
    tif.flush()
    del tif
    zarr_bytes = sum(f.stat().st_size for f in zarr_path.rglob("*") if f.is_file())
    nbytes = int(np.prod(shape))
    manifest = {
        "version": FORMAT_VERSION,
        "size": size,
        "shape": list(shape),
        "dtype": "uint8",
        "chunks": list(CHUNKS),
        "nbytes": nbytes,
        "zarr": str(zarr_path),
        "tif": str(tif_path),
        "zarr_stored_bytes": zarr_bytes,
        "compression_ratio": round(nbytes / zarr_bytes, 3),
        "mean": float((histogram * np.arange(256)).sum() / nbytes),
        "build_s": round(time.perf_counter() - started, 2),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return manifest


def warm_page_cache(paths: list[str]) -> float:
    """Read every file once so that all methods start from a warm page cache."""
    started = time.perf_counter()
    for root in paths:
        p = Path(root)
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        for f in files:
            with open(f, "rb", buffering=0) as fh:
                while fh.read(16 << 20):
                    pass
    return time.perf_counter() - started


if __name__ == "__main__":  # python bench/bench_data.py [size] [folder]
    import sys

    size = sys.argv[1] if len(sys.argv) > 1 else "small"
    folder = Path(sys.argv[2] if len(sys.argv) > 2 else f"/tmp/bioimage-async-bench/{size}")
    print(json.dumps(build_inputs(folder, size, rebuild="--rebuild" in sys.argv), indent=2))
    print("warm", warm_page_cache([str(folder / "input.zarr"), str(folder / "input.tif")]))
