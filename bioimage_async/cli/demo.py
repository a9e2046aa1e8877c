"""The built-in demo: generate a sample volume, write it as a TIFF stack, convert it to zarr.

Run it with ``python -m bioimage_async.cli.demo [OUTPUT_FOLDER]`` (or ``bioimage-async demo``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time

import numpy as np


def sample_volume(shape: tuple[int, int, int] = (64, 512, 512), seed: int = 0) -> np.ndarray:
    """Smooth blobs with noise: compresses like real light-microscopy data."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    coarse = rng.random((shape[0] // 8 + 1, shape[1] // 8 + 1, shape[2] // 8 + 1))
    blobs = gaussian_filter(
        np.kron(coarse, np.ones((8, 8, 8)))[: shape[0], : shape[1], : shape[2]], 3
    )
    blobs = (blobs - blobs.min()) / (np.ptp(blobs) + 1e-9)
    noise = rng.normal(0, 0.05, shape)
    return np.clip((blobs + noise) * 255, 0, 255).astype(np.uint8)


def write_sample_stack(path: str, shape: tuple[int, int, int] = (64, 512, 512)) -> tuple[int, ...]:
    """Write ``sample_volume(shape)`` as a TIFF stack (the README tour's input)."""
    import tifffile

    volume = sample_volume(shape)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tifffile.imwrite(path, volume)
    return volume.shape


DEMO_BLOCK = (32, 256, 256)


async def run_demo(folder: str) -> dict[str, object]:
    import tifffile

    import bioimage_async as ba

    os.makedirs(folder, exist_ok=True)
    tif_path = os.path.join(folder, "sample.tif")
    zarr_path = os.path.join(folder, "sample.zarr")
    volume = sample_volume()
    tifffile.imwrite(tif_path, volume)
    src = await ba.open_source(tif_path)
    out = await ba.create_source(
        zarr_path, shape=src.shape, dtype=src.dtype, chunks=(32, 128, 128), exist_ok=True
    )
    stats = ba.RunStats()
    started = time.perf_counter()
    # blocks of 2 MiB, so that the two workers share eight blocks (a copy's default blocks are
    # ~16 MiB: this whole sample would be one)
    await ba.copy(src, out, block_shape=DEMO_BLOCK, num_workers=2, stats=stats)
    seconds = time.perf_counter() - started
    check = await (await ba.open_source(zarr_path)).read(np.s_[10:20, 100:200, 300:400])
    assert np.array_equal(check, volume[10:20, 100:200, 300:400]), "round trip mismatch"
    return {
        "tiff": tif_path,
        "zarr": zarr_path,
        "shape": src.shape,
        "dtype": str(src.dtype),
        "chunks": out.chunks,
        "blocks": stats.blocks_done,
        "block_shape": DEMO_BLOCK,
        "seconds": round(seconds, 3),
        "MB/s": round(volume.nbytes / 1e6 / max(seconds, 1e-9), 1),
    }


def default_folder() -> str:
    return os.path.join(tempfile.gettempdir(), "bioimage-async-demo")


def report_text(report: dict[str, object]) -> str:
    return (
        f"Converted {report['tiff']} -> {report['zarr']}\n"
        f"  shape {report['shape']}, dtype {report['dtype']}, zarr chunks {report['chunks']}\n"
        f"  {report['blocks']} blocks of {report['block_shape']} in {report['seconds']} s "
        f"({report['MB/s']} MB/s); "
        "a sample region was read back and matches the TIFF."
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(report_text(asyncio.run(run_demo(args[0] if args else default_folder()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
