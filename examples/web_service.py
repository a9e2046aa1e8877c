"""An aiohttp service that serves slices of a volume while a conversion runs in the same event loop.

What it shows: bioimage_async is asyncio-native, so a long ``ba.copy`` is just one more task in
the web server's event loop. It never blocks the loop (tensorstore I/O is async, TIFF reads run
in the library's bounded thread pool), so the server keeps answering requests while the
conversion writes block after block. The PNG encoding of a slice is CPU work done by Pillow: it
runs in a worker thread (``asyncio.to_thread``), never on the loop.

Endpoints (bound to 127.0.0.1 by default; slices carry a ``Server-Timing`` header with the
read and PNG-encoding times)::

    GET /slice/{z}.png            plane z of the input volume as a PNG (uint8 -> L, uint16 -> I;16)
    GET /slice/{z}.png?volume=output   the same plane of the output, as far as it is written
    GET /status                   JSON: state (starting|running|done|failed|cancelled),
                                  blocks_done, blocks_total (from ba.copy's progress= callable)

On startup the service starts ``ba.copy(input -> output zarr)`` as a background task in the
server's own event loop; stopping the service (Ctrl-C or SIGTERM) cancels the conversion
gracefully: finished blocks stay written and the count is printed.

Run it out of the box: the first run generates a 256x1024x1024 uint8 TIFF (256 MiB) in
``--workdir`` and later runs reuse it; the copy to gzip-compressed zarr takes several seconds
on 2 cores, long enough to watch ``/status`` move::

    python examples/web_service.py                        # then open http://127.0.0.1:8080/status
    python examples/web_service.py --port 0               # any free port (printed on start)
    python examples/web_service.py --input stack.tif --output stack.zarr --compression blosc
    curl -s http://127.0.0.1:8080/status; curl -so z100.png http://127.0.0.1:8080/slice/100.png

Needs aiohttp and Pillow (``pip install aiohttp pillow``) and the ``tiff`` extra. The server
prints ``serving on http://HOST:PORT`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

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
        "--host", default="127.0.0.1", help="address to bind (default: loopback only)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port to bind; 0 picks a free one")
    parser.add_argument(
        "--input",
        default=None,
        help="volume to serve and convert: a TIFF file, "
        "a folder of slices (with --pattern), zarr, n5, ... (default: a sample)",
    )
    parser.add_argument(
        "--pattern", default=None, help="glob of the slices when --input is a folder"
    )
    parser.add_argument(
        "--output", default=None, help="zarr to write (default: <workdir>/converted.zarr)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument(
        "--chunks", type=int_tuple, default=(64, 128, 128), help="output chunk shape"
    )
    parser.add_argument(
        "--compression",
        default="gzip",
        help="output codec: gzip (CPU-heavy, the default here), zstd, blosc, none",
    )
    parser.add_argument(
        "--block-shape",
        type=int_tuple,
        default=None,
        help="conversion block shape, a multiple of --chunks (default: the "
        "library's choice, aligned to whole TIFF pages)",
    )
    parser.add_argument("--workers", type=int, default=2, help="num_workers of the conversion")
    parser.add_argument(
        "--codec-threads",
        type=int,
        default=None,
        help="threads that compress/decompress chunks (ba.configure("
        "data_copy_concurrency=N)); fewer leave more CPU for requests",
    )
    parser.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "bioimage-async-examples", "web_service"),
        help="where the sample and the default output go",
    )
    parser.add_argument(
        "--sample-shape",
        type=int_tuple,
        default=(256, 1024, 1024),
        help="shape z,y,x of the generated sample (generated once, then reused)",
    )
    parser.add_argument(
        "--png-compress-level",
        type=int,
        default=1,
        help="zlib level of the PNGs (1: fast, what an interactive viewer wants)",
    )
    return parser.parse_args(argv)


# ---- sample data ------------------------------------------------------------------------------
def sample_plane(z: int, height: int, width: int, noise: np.ndarray) -> np.ndarray:
    """Plane z of the sample: diagonal bands that drift with z, plus fixed-seed noise."""
    y = np.arange(height, dtype=np.int32)[:, None] // 4
    x = np.arange(width, dtype=np.int32)[None, :] // 4
    bands = ((x + y + 3 * z) % 224).astype(np.uint8)
    return bands + np.roll(noise, z, axis=1)


def ensure_sample(workdir: str, shape: tuple[int, ...]) -> str:
    """Write the sample TIFF (page by page, constant memory) unless it already exists."""
    import tifffile

    depth, height, width = shape
    path = os.path.join(workdir, f"sample_{depth}x{height}x{width}.tif")
    if os.path.exists(path):
        print(f"reusing the sample {path}", flush=True)
        return path
    os.makedirs(workdir, exist_ok=True)
    noise = np.random.default_rng(0).integers(0, 32, (height, width), dtype=np.uint8)
    partial = path + ".partial"
    started = time.perf_counter()
    with tifffile.TiffWriter(partial) as writer:
        planes = (sample_plane(z, height, width, noise) for z in range(depth))
        writer.write(planes, shape=shape, dtype=np.uint8)
    os.replace(partial, path)  # a killed run never leaves a truncated sample behind
    print(f"wrote the sample {path} {shape} in {time.perf_counter() - started:.1f} s", flush=True)
    return path


# ---- the conversion ---------------------------------------------------------------------------
@dataclass
class Conversion:
    """What /status reports; updated by ba.copy's progress= callable, in the loop's thread."""

    input: str
    output: str
    state: str = "starting"
    blocks_done: int = 0
    blocks_total: int | None = None
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    failed_block_ids: list[int] = field(default_factory=list)

    def progress(self, done: int, total: int) -> None:
        self.blocks_done, self.blocks_total = done, total

    def to_json(self) -> dict[str, Any]:
        end = self.finished if self.finished is not None else time.monotonic()
        return {
            "state": self.state,
            "blocks_done": self.blocks_done,
            "blocks_total": self.blocks_total,
            "fraction": self.blocks_done / self.blocks_total if self.blocks_total else 0.0,
            "elapsed_s": round(end - self.started, 3) if self.started is not None else 0.0,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "failed_block_ids": self.failed_block_ids,
        }


async def run_conversion(
    conversion: Conversion,
    src: ba.Source,
    out: ba.Source,
    *,
    workers: int,
    block_shape: tuple[int, ...] | None,
) -> None:
    """``ba.copy`` as a background task; its state is what /status shows."""
    conversion.state, conversion.started = "running", time.monotonic()
    try:
        await ba.copy(
            src, out, block_shape=block_shape, num_workers=workers, progress=conversion.progress
        )
    except asyncio.CancelledError:
        conversion.state = "cancelled"
        raise
    except ba.RunnerError as error:  # finished blocks stay written; the error names the others
        conversion.state, conversion.error = "failed", str(error).splitlines()[0]
        conversion.failed_block_ids = list(error.failed_block_ids)
    except Exception as error:  # noqa: BLE001 - report it on /status instead of dying silently
        conversion.state, conversion.error = "failed", f"{type(error).__name__}: {error}"
    else:
        conversion.state = "done"
    finally:
        conversion.finished = time.monotonic()
        print(
            f"conversion {conversion.state}: {conversion.blocks_done}/"
            f"{conversion.blocks_total} blocks in {conversion.finished - conversion.started:.2f} s",
            flush=True,
        )


# ---- the web app ------------------------------------------------------------------------------
CONVERSION = web.AppKey("conversion", Conversion)
VOLUMES = web.AppKey("volumes", dict)
PNG_LEVEL = web.AppKey("png_level", int)


def encode_png(plane: np.ndarray, compress_level: int) -> bytes:
    """Blocking: Pillow's encoder (CPU work); called through asyncio.to_thread."""
    from PIL import Image

    if plane.dtype == np.uint8:
        image = Image.fromarray(plane)  # 8-bit greyscale ("L")
    elif plane.dtype == np.uint16:
        image = Image.fromarray(plane.astype("<u2", copy=False))  # 16-bit greyscale ("I;16")
    else:  # floats, wider ints, booleans: stretch to 0..255 for display
        values = plane.astype(np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        image = Image.fromarray(scaled.astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


async def get_slice(request: web.Request) -> web.Response:
    volumes: dict[str, ba.Source] = request.app[VOLUMES]
    name = request.query.get("volume", "input")
    if name not in volumes:
        raise web.HTTPBadRequest(text=f"volume must be one of {sorted(volumes)}, got {name!r}")
    source = volumes[name]
    z = int(request.match_info["z"])
    if not 0 <= z < source.shape[0]:
        raise web.HTTPNotFound(text=f"z={z} is outside 0..{source.shape[0] - 1}")
    started = time.perf_counter()
    plane = await source.read(np.s_[z])  # async: tensorstore, or the library's thread pool
    read_done = time.perf_counter()
    body = await asyncio.to_thread(encode_png, plane, request.app[PNG_LEVEL])  # off the loop
    encoded = time.perf_counter()
    timing = (
        f"read;dur={(read_done - started) * 1e3:.1f}, png;dur={(encoded - read_done) * 1e3:.1f}"
    )
    return web.Response(
        body=body,
        content_type="image/png",
        headers={"Cache-Control": "no-store", "Server-Timing": timing},
    )


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONVERSION].to_json())


async def get_index(request: web.Request) -> web.Response:
    volumes: dict[str, ba.Source] = request.app[VOLUMES]
    src = volumes["input"]
    return web.json_response(
        {
            "endpoints": ["/slice/{z}.png", "/slice/{z}.png?volume=output", "/status"],
            "shape": list(src.shape),
            "dtype": str(src.dtype),
        }
    )


def conversion_context(
    src: ba.Source, out: ba.Source, args: argparse.Namespace
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup context: start the conversion on startup, cancel it on shutdown."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        conversion = run_conversion(
            app[CONVERSION], src, out, workers=args.workers, block_shape=args.block_shape
        )
        task = asyncio.create_task(conversion, name="conversion")  # in the server's own loop
        yield
        if not task.done():
            print("shutting down: cancelling the conversion", flush=True)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context


async def open_volumes(args: argparse.Namespace) -> tuple[ba.Source, ba.Source, str, str]:
    if args.input is None:
        input_path = await asyncio.to_thread(ensure_sample, args.workdir, args.sample_shape)
    else:
        input_path = args.input
    src = (
        await ba.open_source(input_path, pattern=args.pattern)
        if args.pattern
        else await ba.open_source(input_path)
    )
    if src.ndim != 3:
        raise SystemExit(
            f"{input_path} has shape {src.shape}; this service shows z slices of 3D volumes"
        )
    output_path = args.output or os.path.join(args.workdir, "converted.zarr")
    if os.path.exists(output_path):
        if args.output is not None and not args.overwrite:
            raise SystemExit(f"{output_path} exists; pass --overwrite to replace it")
        await asyncio.to_thread(shutil.rmtree, output_path)  # our default output, or --overwrite
    chunks = tuple(min(c, n) for c, n in zip(args.chunks[-src.ndim :], src.shape))
    out = await ba.create_source(
        output_path, shape=src.shape, dtype=src.dtype, chunks=chunks, compression=args.compression
    )
    return src, out, input_path, output_path


async def serve(args: argparse.Namespace) -> None:
    if args.codec_threads is not None:  # before any store is opened
        ba.configure(data_copy_concurrency=args.codec_threads)
    src, out, input_path, output_path = await open_volumes(args)
    app = web.Application()
    app[CONVERSION] = Conversion(input=input_path, output=output_path)
    app[VOLUMES] = {"input": src, "output": out}
    app[PNG_LEVEL] = args.png_compress_level
    app.router.add_get("/", get_index)
    app.router.add_get(r"/slice/{z:\d+}.png", get_slice)
    app.router.add_get("/status", get_status)
    app.cleanup_ctx.append(conversion_context(src, out, args))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()  # runs the cleanup context up to its yield: the conversion starts
    try:
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        print(
            f"input {input_path} {src.shape} {src.dtype} -> output {output_path} "
            f"(chunks {out.chunks}, {args.compression})",
            flush=True,
        )
        print(f"serving on http://{host}:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()  # stops accepting, then cancels the conversion (graceful)
    print("stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
