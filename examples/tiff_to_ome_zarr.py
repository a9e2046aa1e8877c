"""Convert a TIFF stack to an OME-Zarr (NGFF 0.4) multiscale pyramid with ``ba.pyramid``.

The input is either one (multi-page) TIFF file or a folder of 2D TIFF slices selected by a glob
pattern (stacked in natural order: slice_2 before slice_10). Level 0 is a block-wise copy of
the stack; every further level is downsampled from the level just written, so the TIFF is read
once. The script prints each level (path, shape, chunks, scale) and checks that level 0 equals
the input.

Run it out of the box (it writes a small sample stack first)::

    python examples/tiff_to_ome_zarr.py                       # sample TIFF file -> pyramid
    python examples/tiff_to_ome_zarr.py --sample-as slices    # sample folder of slices
    python examples/tiff_to_ome_zarr.py stack.tif stack.ome.zarr --levels 5 --workers 2
    python examples/tiff_to_ome_zarr.py slices/ out.ome.zarr --pattern "z_*.tif"

Needs the ``tiff`` extra (``pip install "bioimage-async[tiff]"``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time

import numpy as np

import bioimage_async as ba


def int_tuple(text: str) -> tuple[int, ...]:
    """'64,128,128' -> (64, 128, 128)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "input",
        nargs="?",
        help="a TIFF file or a folder of 2D TIFF slices (default: a generated sample in --workdir)",
    )
    parser.add_argument(
        "output",
        nargs="?",
        help="the OME-Zarr folder to write (default: <workdir>/<input name>.ome.zarr)",
    )
    parser.add_argument(
        "--pattern",
        default=None,
        help="glob of the slices when INPUT is a folder (default: '*.tif*')",
    )
    parser.add_argument("--levels", type=int, default=4, help="number of resolution levels")
    parser.add_argument("--factor", type=int, default=2, help="downscaling factor per level")
    parser.add_argument(
        "--method",
        default="auto",
        choices=["auto", "nearest", "linear", "smooth", "cubic"],
        help="auto: nearest for label-like integer data, smooth otherwise",
    )
    parser.add_argument(
        "--chunks",
        type=int_tuple,
        default=(64, 128, 128),
        help="zarr chunk shape of every level (TIFF pages make poor 3D chunks)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "bioimage-async-examples", "tiff_to_ome_zarr"),
        help="where the sample and the default output go",
    )
    parser.add_argument(
        "--sample-shape",
        type=int_tuple,
        default=(64, 256, 256),
        help="shape (z, y, x) of the generated sample",
    )
    parser.add_argument(
        "--sample-as",
        choices=["file", "slices"],
        default="file",
        help="write the sample as one multi-page TIFF or a folder of slices",
    )
    return parser.parse_args(argv)


def sample_volume(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth blobs plus noise, uint8: compresses and downsamples like light microscopy."""
    from scipy.ndimage import gaussian_filter, zoom

    rng = np.random.default_rng(seed)
    coarse = rng.random(tuple(max(2, n // 16) for n in shape))
    blobs = zoom(coarse, [n / c for n, c in zip(shape, coarse.shape)], order=1)[
        tuple(slice(0, n) for n in shape)
    ]
    blobs = gaussian_filter(blobs, 2.0)
    blobs = (blobs - blobs.min()) / (np.ptp(blobs) + 1e-9)
    return np.clip(blobs * 230 + rng.normal(0, 8, shape), 0, 255).astype(np.uint8)


def write_sample(workdir: str, shape: tuple[int, ...], as_slices: bool) -> tuple[str, str | None]:
    """Write the sample stack; return (input path, pattern)."""
    import tifffile

    volume = sample_volume(shape)
    os.makedirs(workdir, exist_ok=True)
    if as_slices:
        folder = os.path.join(workdir, "sample_slices")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        for z, plane in enumerate(volume):
            tifffile.imwrite(os.path.join(folder, f"slice_{z}.tif"), plane)  # unpadded on purpose
        print(f"wrote the sample: {len(volume)} slices {volume.shape[1:]} in {folder}")
        return folder, "slice_*.tif"
    path = os.path.join(workdir, "sample.tif")
    tifffile.imwrite(path, volume)
    print(f"wrote the sample: {path} {volume.shape} {volume.dtype}")
    return path, None


def default_output(workdir: str, input_path: str) -> str:
    name = os.path.basename(os.path.normpath(input_path))
    for ext in (".tiff", ".tif"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return os.path.join(workdir, f"{name}.ome.zarr")


async def convert(args: argparse.Namespace) -> list[ba.Source]:
    pattern = args.pattern
    if args.input is None:
        input_path, pattern = await asyncio.to_thread(
            write_sample, args.workdir, args.sample_shape, args.sample_as == "slices"
        )
    else:
        input_path = args.input
    output = args.output or default_output(args.workdir, input_path)
    if os.path.exists(output):
        if not args.overwrite and args.output is not None:
            raise SystemExit(f"{output} exists; pass --overwrite to replace it")
        await asyncio.to_thread(shutil.rmtree, output)  # our own default output, or --overwrite

    src = (
        await ba.open_source(input_path, pattern=pattern)
        if pattern
        else await ba.open_source(input_path)
    )
    print(f"input:  {src.describe()}  shape {src.shape}  dtype {src.dtype}")
    chunks = tuple(args.chunks[-src.ndim :]) if len(args.chunks) >= src.ndim else None
    started = time.perf_counter()
    levels = await ba.pyramid(
        src,
        output,
        args.levels,
        factor=args.factor,
        method=args.method,
        chunks=chunks,
        num_workers=args.workers,
        progress=False,
    )
    seconds = time.perf_counter() - started
    print(f"output: {output}  ({len(levels)} levels in {seconds:.2f} s)")
    for index, level in enumerate(levels):
        reopened = await ba.open_source(output, level=index)  # OME-Zarr in: its voxel size too
        print(
            f"  level {index}: path {os.path.join(output, str(index))}  shape {level.shape}  "
            f"chunks {level.chunks}  shards {level.shards}  scale {reopened.voxel_size}"
        )

    # level 0 is an exact copy of the stack: compare a few planes (cheap, whatever the size)
    for z in sorted({0, src.shape[0] // 2, src.shape[0] - 1}):
        plane_in, plane_out = await src.read(np.s_[z]), await levels[0].read(np.s_[z])
        if not np.array_equal(plane_in, plane_out):
            raise SystemExit(f"level 0 differs from the input at z={z}")
    print("level 0 matches the input")
    return levels


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    asyncio.run(convert(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
