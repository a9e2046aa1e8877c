"""``bioimage-async``: convert, inspect, downsample and pyramid volumes from the shell.

Exit codes: 0 success, 1 a run failed (the failed block ids and the resume command are printed),
2 bad arguments or input. Errors are one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
from typing import Any, NoReturn

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _id_list(text: str) -> list[int]:
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            first, last = part.split("-", 1)
            ids.extend(range(int(first), int(last) + 1))
        else:
            ids.append(int(part))
    return ids


def _factor(text: str) -> int | tuple[int, ...]:
    values = _ints(text)
    return values[0] if len(values) == 1 else values


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 too, with our one-line style
        self.print_usage(sys.stderr)
        print(f"bioimage-async: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _add_exec(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("execution")
    group.add_argument("--workers", type=int, default=2, help="parallel workers (default 2)")
    group.add_argument(
        "--block-shape", type=_ints, help="block shape z,y,x (default: derived from the chunks)"
    )
    group.add_argument("--job-type", choices=("local", "subprocess", "slurm"), default="local")
    group.add_argument("--block-ids", type=_id_list, help="only these block ids, e.g. 3,7,10-12")
    group.add_argument("--resume", metavar="TMP", help="finish the failed distributed run in TMP")
    group.add_argument("--tmp-root", help="where distributed runs keep their folder")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="bioimage-async", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    info = sub.add_parser("info", help="format, shape, dtype, chunks, size of a volume")
    info.add_argument("path")
    info.add_argument("key", nargs="?")
    info.add_argument("--json", action="store_true", help="print JSON")

    convert = sub.add_parser("convert", help="convert a volume to zarr / zarr3 / n5 / precomputed")
    convert.add_argument("input")
    convert.add_argument("output")
    convert.add_argument("--key", help="array inside the input container")
    convert.add_argument("--out-key", help="array inside the output container")
    convert.add_argument(
        "--format", default="zarr", choices=("zarr", "zarr3", "n5", "precomputed", "hdf5")
    )
    convert.add_argument("--chunks", type=_ints, help="output chunks z,y,x (default: 64^3-ish)")
    convert.add_argument("--shards", type=_ints, help="zarr3 shard shape z,y,x")
    convert.add_argument("--compression", default="default")
    convert.add_argument(
        "--pattern", help="glob of the slices when the input is a folder of 2D images"
    )
    convert.add_argument(
        "--overwrite", action="store_true", help="write into an existing output array"
    )
    _add_exec(convert)

    down = sub.add_parser("downsample", help="downsample by an integer factor (ceil mode)")
    down.add_argument("input")
    down.add_argument("output")
    down.add_argument("--factor", type=_factor, required=True, help="F or fz,fy,fx")
    down.add_argument(
        "--order", type=int, default=0, choices=range(6), help="spline order (0 = label safe)"
    )
    down.add_argument("--anti-aliasing", action="store_true")
    down.add_argument("--key")
    down.add_argument("--out-key")
    down.add_argument("--format", default="zarr", choices=("zarr", "zarr3", "n5", "precomputed"))
    down.add_argument("--chunks", type=_ints)
    down.add_argument("--overwrite", action="store_true")
    _add_exec(down)

    pyr = sub.add_parser("pyramid", help="write an OME-Zarr multiscale pyramid")
    pyr.add_argument("input")
    pyr.add_argument("output")
    pyr.add_argument("--levels", type=int, required=True)
    pyr.add_argument("--factor", type=_factor, default=2)
    pyr.add_argument(
        "--method", default="auto", choices=("auto", "nearest", "linear", "smooth", "cubic")
    )
    pyr.add_argument("--key")
    pyr.add_argument("--chunks", type=_ints)
    pyr.add_argument("--overwrite", action="store_true")
    _add_exec(pyr)

    for name, text in (
        ("status", "show a distributed run's progress"),
        ("attach", "wait for a distributed run to finish"),
        ("cancel", "cancel a distributed run"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("tmp_folder")

    demo = sub.add_parser("demo", help="convert a generated sample volume from TIFF to zarr")
    demo.add_argument("folder", nargs="?")
    return parser


def _exec_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    import bioimage_async as ba

    kwargs: dict[str, Any] = {
        "num_workers": args.workers,
        "job_type": args.job_type,
        "block_ids": args.block_ids,
        "resume_from": args.resume,
        "progress": False if args.no_progress else None,
    }
    if args.job_type == "slurm":
        kwargs["job_config"] = ba.SlurmConfig.load(
            **({"tmp_root": args.tmp_root} if args.tmp_root else {})
        )
    elif args.tmp_root:
        kwargs["job_config"] = ba.RunnerConfig(tmp_root=args.tmp_root)
    return kwargs


def _default_chunks(
    shape: tuple[int, ...], given: tuple[int, ...] | None, src_chunks: Any
) -> tuple[int, ...]:
    if given is not None:
        if len(given) != len(shape):
            raise ValueError(f"--chunks {given} must have {len(shape)} entries for shape {shape}")
        return given
    base = [64] * len(shape) if len(shape) >= 3 else [512] * len(shape)
    return tuple(min(b, n) for b, n in zip(base, shape))


def _disk_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


async def cmd_info(args: argparse.Namespace) -> int:
    import bioimage_async as ba
    from bioimage_async.sources.registry import infer_format

    src = await ba.open_source(args.path, args.key)
    info: dict[str, Any] = {
        "path": args.path,
        "format": getattr(src, "format", None) or infer_format(args.path),
        "shape": list(src.shape),
        "dtype": str(src.dtype),
        "chunks": list(src.chunks) if src.chunks else None,
        "shards": list(src.shards) if src.shards else None,
        "size_bytes": src.nbytes,
    }
    if "://" not in args.path:
        info["disk_bytes"] = _disk_size(args.path)
    spec = src.to_spec().to_json()["params"].get("tensorstore") if src.reopenable else None
    store = getattr(src, "store", None)
    if store is not None:
        meta = store.spec().to_json().get("metadata", {})
        info["compression"] = (
            meta.get("compressor") or meta.get("compression") or meta.get("codecs")
        )
    del spec
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for key, value in info.items():
            if key.endswith("bytes"):
                value = f"{value / 2**20:.1f} MiB ({value} bytes)"
            print(f"{key:>12}: {value}")
    return EXIT_OK


async def _open_output(
    path: str,
    key: str | None,
    fmt: str,
    shape: tuple[int, ...],
    dtype: Any,
    chunks: tuple[int, ...],
    overwrite: bool,
    **kw: Any,
) -> Any:
    import bioimage_async as ba

    return await ba.create_source(
        path,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        format=fmt,
        internal_path=key,
        exist_ok=overwrite,
        **kw,
    )


async def cmd_convert(args: argparse.Namespace) -> int:
    import bioimage_async as ba

    extra = {"pattern": args.pattern} if args.pattern else {}
    src = await ba.open_source(args.input, args.key, **extra)
    chunks = _default_chunks(src.shape, args.chunks, src.chunks)
    out = await _open_output(
        args.output,
        args.out_key,
        args.format,
        src.shape,
        src.dtype,
        chunks,
        args.overwrite,
        compression=args.compression,
        shards=args.shards,
    )
    stats = ba.RunStats()
    await ba.copy(src, out, block_shape=args.block_shape, stats=stats, **_exec_kwargs(args))
    print(
        f"converted {args.input} -> {args.output}: shape {src.shape}, {src.dtype}, "
        f"chunks {out.chunks}, {stats.blocks_done} blocks in {stats.wall_s:.2f} s"
    )
    return EXIT_OK


async def cmd_downsample(args: argparse.Namespace) -> int:
    import bioimage_async as ba
    from bioimage_async.ops.downsample import normalize_factors
    from bioimage_async.ops.resample import downscale_shape

    src = await ba.open_source(args.input, args.key)
    target = downscale_shape(src.shape, normalize_factors(args.factor, src.ndim))
    chunks = _default_chunks(target, args.chunks, None)
    out = await _open_output(
        args.output, args.out_key, args.format, target, src.dtype, chunks, args.overwrite
    )
    await ba.downsample(
        src,
        args.factor,
        out,
        order=args.order,
        anti_aliasing=args.anti_aliasing,
        block_shape=args.block_shape,
        **_exec_kwargs(args),
    )
    print(f"downsampled {args.input} {src.shape} -> {args.output} {target}")
    return EXIT_OK


async def cmd_pyramid(args: argparse.Namespace) -> int:
    import bioimage_async as ba

    src = await ba.open_source(args.input, args.key)
    kwargs = _exec_kwargs(args)
    levels = await ba.pyramid(
        src,
        args.output,
        args.levels,
        factor=args.factor,
        method=args.method,
        chunks=args.chunks,
        exist_ok=args.overwrite,
        **kwargs,
    )
    print(
        f"wrote {len(levels)} levels to {args.output}: "
        + ", ".join(str(level.shape) for level in levels)
    )
    return EXIT_OK


async def cmd_run(args: argparse.Namespace) -> int:
    import bioimage_async as ba

    config = ba.SlurmConfig.load() if _manifest_job_type(args.tmp_folder) == "slurm" else None
    run = await ba.attach(args.tmp_folder, config)
    if args.command == "status":
        status = await run.status()
        print(
            f"run {run.name!r} jobs {status.job_ids}: {status.blocks_done}/{status.blocks_total} "
            f"blocks done; tasks {status.tasks_succeeded} succeeded, {status.tasks_failed} failed, "
            f"{status.running} running, {status.pending} pending"
        )
        return EXIT_OK
    if args.command == "cancel":
        await run.cancel()
        print(f"cancelled {run.job_ids}; resume later with --resume {args.tmp_folder}")
        return EXIT_OK
    await run.wait(progress=None)
    print(f"run {run.name!r} finished: every block is written")
    return EXIT_OK


def _manifest_job_type(folder: str) -> str | None:
    try:
        with open(os.path.join(folder, "manifest.json")) as handle:
            return json.load(handle).get("job_type")
    except (OSError, ValueError):
        return None


async def dispatch(args: argparse.Namespace) -> int:
    if args.command == "info":
        return await cmd_info(args)
    if args.command == "convert":
        return await cmd_convert(args)
    if args.command == "downsample":
        return await cmd_downsample(args)
    if args.command == "pyramid":
        return await cmd_pyramid(args)
    if args.command in ("status", "attach", "cancel"):
        return await cmd_run(args)
    if args.command == "demo":
        from .demo import default_folder, report_text, run_demo

        print(report_text(await run_demo(args.folder or default_folder())))
        return EXIT_OK
    raise AssertionError(args.command)


def _resume_hint(argv: list[str], tmp_folder: str | None, failed: list[int]) -> str:
    if tmp_folder:
        kept = [a for a in argv if a != "--resume"]
        return (
            "resume with: bioimage-async "
            + shlex.join(kept)
            + " --resume "
            + shlex.quote(tmp_folder)
        )
    ids = ",".join(str(i) for i in failed)
    return (
        "re-run the missing blocks with: bioimage-async "
        + shlex.join(argv)
        + f" --overwrite --block-ids {ids}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    import bioimage_async as ba

    try:
        return asyncio.run(dispatch(args))
    except ba.RunnerError as error:
        if args.debug:
            raise
        first_line = str(error).splitlines()[0]
        print(f"bioimage-async: {first_line}", file=sys.stderr)
        print(f"failed block ids: {error.failed_block_ids}", file=sys.stderr)
        print(_resume_hint(argv, error.tmp_folder, error.failed_block_ids), file=sys.stderr)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        print("bioimage-async: interrupted; finished blocks are written", file=sys.stderr)
        return 130
    except (ba.BioimageAsyncError, ValueError, TypeError, OSError, KeyError, ImportError) as error:
        if args.debug:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"bioimage-async: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
