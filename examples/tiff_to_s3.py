"""Convert a local TIFF stack into a sharded zarr v3 array on S3, then read a region back.

The input is one (multi-page) TIFF file, or a folder of 2D slices with ``--pattern``. The
output URL is ``s3://bucket/key`` (or ``zarr3://s3://...``); the bucket must exist. Credentials
are found as every AWS tool finds them (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, ``~/.aws/credentials``); the endpoint of an S3-compatible store (MinIO, Ceph,
a local moto server) comes from ``--endpoint-url`` or ``AWS_ENDPOINT_URL``. Nothing secret is
printed or written into the array's metadata.

    export AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...
    python examples/tiff_to_s3.py stack.tif s3://my-bucket/stack.zarr
    python examples/tiff_to_s3.py slices/ s3://my-bucket/stack.zarr --pattern "z_*.tif"
    python examples/tiff_to_s3.py --sample s3://my-bucket/sample.zarr   # writes a sample TIFF

Needs the ``tiff`` extra (``pip install "bioimage-async[tiff]"``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

import numpy as np

import bioimage_async as ba


def int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 32,64,64, got {text!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", nargs="?", help="a TIFF file or a folder of slices")
    parser.add_argument("output", help="s3://bucket/key of the zarr v3 array to create")
    parser.add_argument("--pattern", help="glob of the slices when input is a folder")
    parser.add_argument("--sample", action="store_true", help="convert a generated sample TIFF")
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS_ENDPOINT_URL)")
    parser.add_argument("--region", help="the bucket's region (default: AWS_REGION)")
    parser.add_argument("--chunks", type=int_tuple, default=(32, 64, 64), help="z,y,x chunk")
    parser.add_argument("--shards", type=int_tuple, default=(64, 128, 128), help="z,y,x shard")
    parser.add_argument("--overwrite", action="store_true", help="write into an existing array")
    args = parser.parse_args(argv)
    if (args.input is None) == (not args.sample):
        parser.error("give an input TIFF or --sample (not both)")
    return args


def write_sample(folder: str, shape: tuple[int, int, int] = (48, 160, 150)) -> str:
    """A small uint16 stack with structure (it compresses like microscopy, not like noise)."""
    import tifffile

    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    volume = ((np.sin(x / 9.0) + np.cos(y / 13.0) + z / 24.0) * 8000 + 20000).astype(np.uint16)
    path = os.path.join(folder, "sample.tif")
    tifffile.imwrite(path, volume)
    print(f"wrote the sample: {path} {volume.shape} {volume.dtype}")
    return path


def fit(values: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The last len(shape) values, clipped to the shape."""
    values = values[-len(shape) :]
    return tuple(max(1, min(v, n)) for v, n in zip(values, shape))


async def convert(args: argparse.Namespace, input_path: str) -> None:
    storage = ba.StorageOptions(endpoint_url=args.endpoint_url, region=args.region)
    src = await (
        ba.open_source(input_path, pattern=args.pattern)
        if args.pattern
        else ba.open_source(input_path)
    )
    print(f"input:  {src.describe()}  shape {src.shape}  dtype {src.dtype}")
    chunks = fit(args.chunks, src.shape)
    shards = tuple(-(-s // c) * c for s, c in zip(fit(args.shards, src.shape), chunks))
    out = await ba.create_source(
        args.output,
        shape=src.shape,
        dtype=src.dtype,
        chunks=chunks,
        shards=shards,
        format="zarr3",
        exist_ok=args.overwrite,
        storage=storage,
    )
    started = time.perf_counter()
    await ba.copy(src, out, progress=False)
    seconds = time.perf_counter() - started
    print(f"output: {args.output}  chunks {chunks}  shards {shards}  ({seconds:.2f} s)")

    # read a region back through a fresh handle, as another program would
    again = await ba.open_source(args.output, storage=storage)
    region = tuple(slice(n // 4, n // 4 + max(1, n // 2)) for n in src.shape)
    back, expected = await again.read(region), await src.read(region)
    if not np.array_equal(back, expected):
        raise SystemExit("the region read back from S3 differs from the TIFF")
    where = ", ".join(f"{s.start}:{s.stop}" for s in region)
    print(f"read back [{where}] from {args.output}: equal to the TIFF (mean {back.mean():.1f})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        input_path = write_sample(folder) if args.sample else args.input
        try:
            asyncio.run(convert(args, input_path))
        except ba.BioimageAsyncError as err:  # storage errors are a few lines: show them as such
            raise SystemExit(f"error: {err}") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
