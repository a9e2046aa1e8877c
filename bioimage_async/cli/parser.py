"""The argument parser: every option documented, every subcommand with examples.

Argument errors are one line (``bioimage-async convert: error: ...``) that points at ``--help``;
the usage block is not repeated on every mistake.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from ..runners.registry import job_types
from ..sources.formats import creatable_formats, format_names

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2

METHODS = ("auto", "mode", "mean", "min", "max", "smooth", "nearest", "linear", "cubic")


def int_tuple(text: str) -> tuple[int, ...]:
    """'64,128,128' (or '64x128x128') -> (64, 128, 128)."""
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 64,128,128, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def float_tuple(text: str) -> tuple[float, ...]:
    """'0.3,0.1,0.1' -> (0.3, 0.1, 0.1)."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive numbers such as 40,4,4, got {text!r}"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def id_list(text: str) -> list[int]:
    """'3,7,10-12' -> [3, 7, 10, 11, 12]."""
    ids: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if "-" in part[1:]:
                first, last = part.split("-", 1)
                if int(last) < int(first):  # 10-5 is no range (it selected no block)
                    raise argparse.ArgumentTypeError(
                        f"block id range {part!r} runs backwards; write it as "
                        f"{last.strip()}-{first.strip()}"
                    )
                ids.extend(range(int(first), int(last) + 1))
            else:
                ids.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"block ids are integers and ranges such as 3,7,10-12; got {text!r}"
        ) from None
    if not ids:
        raise argparse.ArgumentTypeError(
            f"--block-ids names no block ({text!r}); give ids such as 3,7,10-12"
        )
    return ids


def axis_order(text: str) -> tuple[int, ...] | str:
    """'1,0,2,3' -> (1, 0, 2, 3) (axis indices, as numpy.transpose); 'czyx' -> 'czyx' (the
    input's axis letters in the wanted order, checked against the input when it is open)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if parts and all(p.isdigit() for p in parts):
        return tuple(int(p) for p in parts)
    letters = "".join(parts).lower()
    if letters.isalpha():
        return letters
    raise argparse.ArgumentTypeError(
        f"expected axis indices such as 1,0,2,3 or the input's axis letters such as czyx, "
        f"got {text!r}"
    )


def factor(text: str) -> int | tuple[int, ...]:
    values = int_tuple(text)
    return values[0] if len(values) == 1 else values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks; shows defaults where an option has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _sub(
    sub: argparse._SubParsersAction, name: str, summary: str, examples: str
) -> argparse.ArgumentParser:
    return sub.add_parser(  # type: ignore[no-any-return]
        name,
        help=summary,
        description=f"{summary}.\n\nexamples:\n{examples}",
        formatter_class=HelpFormatter,
    )


def add_execution(
    parser: argparse.ArgumentParser, *, block_shape: bool = True, block_ids: bool = True
) -> None:
    """The options of a block-wise run. A pyramid takes neither ``block_shape`` (its blocks
    follow each level's own chunks) nor ``block_ids`` (it is one run per level, and ids name
    the blocks of one run): refused as unknown options rather than silently ignored."""
    group = parser.add_argument_group("execution (how the blocks run)")
    group.add_argument(
        "--workers",
        type=positive_int,
        default=2,
        metavar="N",
        help="parallel workers, e.g. --workers 8",
    )
    if block_shape:
        group.add_argument(
            "--block-shape",
            type=int_tuple,
            metavar="Z,Y,X",
            help="block shape, e.g. --block-shape 64,256,256 (default: derived from "
            "the chunks, always write-safe)",
        )
    group.add_argument(
        "--job-type",
        choices=job_types(),
        default="local",
        help="where the blocks run, e.g. --job-type slurm (slurm reads its "
        "settings from the config file)",
    )
    if block_ids:
        group.add_argument(
            "--block-ids",
            type=id_list,
            metavar="IDS",
            help="only these blocks, e.g. --block-ids 3,7,10-12 (to re-run failed ones)",
        )
    group.add_argument(
        "--resume",
        metavar="TMP",
        help="finish the run kept in the folder TMP (printed when a run starts, fails "
        "or is interrupted), e.g. --resume /tmp/bioimage_async_copy_...",
    )
    group.add_argument(
        "--tmp-root",
        metavar="DIR",
        help="where runs keep their folder (for slurm: a folder every node "
        "sees), e.g. --tmp-root /shared/tmp",
    )
    group.add_argument(
        "--casting",
        choices=("checked", "clip", "unsafe"),
        default="checked",
        help="values the output dtype cannot hold: refuse them (checked), clip "
        "them, or wrap them like numpy (unsafe)",
    )
    group.add_argument(
        "--retries",
        type=int,
        default=0,
        metavar="N",
        help="re-run a failed block up to N times, e.g. --retries 2",
    )
    group.add_argument(
        "--block-timeout",
        type=float,
        metavar="SECONDS",
        help="fail a block that runs longer, e.g. --block-timeout 600",
    )
    group.add_argument(
        "--no-output-lock",
        action="store_true",
        help="allow another live run to write the same output (only when the "
        "two write disjoint, chunk-aligned regions)",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def _output_options(
    parser: argparse.ArgumentParser, *, shards: bool = True, voxel_size: bool = False
) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--out-key", metavar="KEY", help="array inside the output container, e.g. --out-key raw/s0"
    )
    group.add_argument(
        "--format",
        choices=creatable_formats(),
        help="output format, e.g. --format zarr3 (default: from the output's "
        "extension: .zarr, .n5, .h5)",
    )
    group.add_argument(
        "--chunks",
        type=int_tuple,
        metavar="Z,Y,X",
        help="output chunks, e.g. --chunks 64,64,64 (default: 64 per axis)",
    )
    if shards:
        group.add_argument(
            "--shards",
            type=int_tuple,
            metavar="Z,Y,X",
            help="zarr3 shard shape, a multiple of the chunks, e.g. --shards 256,256,256",
        )
    group.add_argument(
        "--compression",
        default="default",
        help="codec, e.g. --compression zstd: default, blosc, zstd, gzip or none "
        "(precomputed: raw, jpeg, compressed_segmentation)",
    )
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an existing output array of the same shape and dtype",
    )
    if voxel_size:
        group.add_argument(
            "--voxel-size",
            type=float_tuple,
            metavar="Z,Y,X",
            help="record this voxel size in the output (zarr, n5: pixelResolution; "
            "precomputed: resolution; HDF5: element_size_um, needs --unit), e.g. "
            "--voxel-size 40,4,4 (default: the input's)",
        )
        add_unit(group)


def _input_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("input")
    group.add_argument(
        "--key",
        metavar="KEY",
        help="array inside the input container, e.g. --key setup0/timepoint0/s0",
    )
    group.add_argument(
        "--input-format",
        choices=format_names(),
        metavar="FORMAT",
        help="input format when the path does not tell, e.g. --input-format n5 "
        f"(one of {', '.join(format_names())})",
    )
    group.add_argument(
        "--level",
        type=int,
        metavar="K",
        help="level of an OME-Zarr multiscale or precomputed layer, e.g. "
        "--level 2 (default: full resolution)",
    )
    group.add_argument(
        "--pattern",
        metavar="GLOB",
        help="the slices of a folder of 2D images, e.g. --pattern 'z*.tif' "
        "(default: every .tif/.tiff, any case, in natural order)",
    )
    group.add_argument(
        "--transpose",
        type=axis_order,
        metavar="ORDER",
        help="read the input with its axes reordered, as axis indices or as its axis "
        "letters in the wanted order, e.g. --transpose czyx for an ImageJ ZCYX hyperstack "
        "(the same as --transpose 1,0,2,3)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="bioimage-async",
        description="Convert, inspect, downsample and pyramid large image volumes.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=ArgumentParser, metavar="COMMAND"
    )

    info = _sub(
        sub,
        "info",
        "Show the format, shape, dtype, chunks, voxel size and size of a "
        "volume (each level of a pyramid)",
        "  bioimage-async info raw.zarr\n  bioimage-async info pyramid.ome.zarr 1\n"
        "  bioimage-async info s3://bucket/layer --json",
    )
    info.add_argument("path", help="file, folder or URL, e.g. raw.zarr or s3://bucket/raw.zarr")
    info.add_argument("key", nargs="?", help="array or level inside it, e.g. 0 or setup0/s0")
    info.add_argument(
        "--key",
        dest="key_option",
        metavar="KEY",
        help="the same as KEY, spelt as the other commands spell it, e.g. --key setup0/s0",
    )
    info.add_argument("--level", type=int, metavar="K", help="pyramid level, e.g. --level 2")
    info.add_argument(
        "--input-format",
        choices=format_names(),
        metavar="FORMAT",
        help="the format when the path does not tell, e.g. --input-format n5",
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    convert = _sub(
        sub,
        "convert",
        "Convert a volume (TIFF, HDF5, MRC, NIfTI, zarr, n5, ...) to "
        "zarr, zarr3, n5, precomputed or HDF5",
        "  bioimage-async convert stack.tif raw.zarr --chunks 64,64,64\n"
        "  bioimage-async convert slices/ raw.zarr --pattern '*.tif'\n"
        "  bioimage-async convert raw.zarr raw3.zarr --format zarr3 --shards "
        "256,256,256\n  bioimage-async convert raw.zarr s3://bucket/raw.zarr",
    )
    convert.add_argument("input", help="file, folder or URL to read, e.g. stack.tif")
    convert.add_argument("output", help="file, folder or URL to write, e.g. raw.zarr")
    _input_options(convert)
    _output_options(convert, voxel_size=True)
    add_execution(convert)

    down = _sub(
        sub,
        "downsample",
        "Downsample by an integer factor per axis (ceil mode)",
        "  bioimage-async downsample raw.zarr s1.zarr --factor 2 --order 1 "
        "--anti-aliasing\n  bioimage-async downsample seg.zarr seg_s1.zarr --factor "
        "1,2,2 --method mode",
    )
    down.add_argument("input", help="volume to read, e.g. raw.zarr")
    down.add_argument("output", help="volume to write, e.g. raw_s1.zarr")
    down.add_argument(
        "--factor",
        type=factor,
        required=True,
        metavar="F",
        help="factor, one or per axis, e.g. --factor 2 or --factor 1,2,2",
    )
    down.add_argument(
        "--method",
        choices=("mode", "mean", "min", "max", "stride"),
        help="reduce each window instead of resampling, e.g. --method mode for labels "
        "(stride: each window's first voxel)",
    )
    down.add_argument(
        "--order",
        type=int,
        default=0,
        choices=range(6),
        help="spline order of the resampling, e.g. --order 1 (0 keeps labels)",
    )
    down.add_argument(
        "--anti-aliasing", action="store_true", help="smooth before sampling (for images)"
    )
    _input_options(down)
    _output_options(down, shards=False)
    down.add_argument(
        "--unit",
        metavar="UNIT",
        help="unit to record the voxel size in (the input's converted, or the unit of an "
        "input's sizes that have none): nm, um, mm, angstrom (e.g. --unit um)",
    )
    add_execution(down)

    pyr = _sub(
        sub,
        "pyramid",
        "Write an OME-Zarr multiscale pyramid (NGFF 0.5 by default)",
        "  bioimage-async pyramid raw.zarr raw.ome.zarr --levels 5\n"
        "  bioimage-async pyramid seg.zarr raw.ome.zarr --levels 5 --labels --name cells\n"
        "  bioimage-async pyramid stack.tif out.ome.zarr --levels 4 --voxel-size "
        "0.3,0.1,0.1 --unit um --ngff-version 0.4",
    )
    pyr.add_argument("input", help="volume to read, e.g. raw.zarr")
    pyr.add_argument("output", help="OME-Zarr group to write, e.g. raw.ome.zarr")
    pyr.add_argument(
        "--levels",
        type=positive_int,
        required=True,
        metavar="N",
        help="number of levels, level 0 included, e.g. --levels 5",
    )
    pyr.add_argument(
        "--factor",
        type=factor,
        default=2,
        metavar="F",
        help="factor per level, one or per axis, e.g. --factor 1,2,2",
    )
    pyr.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="auto: mode for labels (integers of 32/64 bits, bool, --labels), smooth for images",
    )
    pyr.add_argument(
        "--labels",
        action="store_true",
        help="a label image: written as labels/NAME inside the image pyramid at "
        "OUTPUT when there is one",
    )
    pyr.add_argument("--name", help="the label image's name, e.g. --name cells")
    pyr.add_argument(
        "--ngff-version",
        choices=("0.5", "0.4"),
        default="0.5",
        help="OME-NGFF version: 0.5 (zarr v3, sharded) or 0.4 (zarr v2)",
    )
    pyr.add_argument(
        "--voxel-size",
        type=float_tuple,
        metavar="Z,Y,X",
        help="level 0's voxel size, e.g. --voxel-size 40,4,4 (default: from the "
        "input's format, else 1)",
    )
    add_unit(pyr)
    pyr.add_argument(
        "--chunks",
        type=int_tuple,
        metavar="Z,Y,X",
        help="chunks of each level, e.g. --chunks 64,64,64",
    )
    pyr.add_argument(
        "--shards",
        type=int_tuple,
        metavar="Z,Y,X",
        help="shards of each level (0.5), e.g. --shards 256,256,256 (default: about 32 MiB)",
    )
    pyr.add_argument(
        "--overwrite", action="store_true", help="write into existing levels of the same shapes"
    )
    _input_options(pyr)
    add_execution(pyr, block_shape=False, block_ids=False)

    for name, text, example in (
        (
            "status",
            "Show a run's progress (blocks done, tasks; once it stopped, the missing blocks)",
            "status",
        ),
        ("attach", "Wait for a detached run to finish (Ctrl-C leaves it running)", "attach"),
        ("cancel", "Cancel a detached run's jobs", "cancel"),
    ):
        cmd = _sub(sub, name, text, f"  bioimage-async {example} /tmp/bioimage_async_copy_...")
        cmd.add_argument("tmp_folder", help="the run's folder (printed when it was submitted)")

    demo = _sub(
        sub,
        "demo",
        "Convert a generated sample volume from TIFF to zarr",
        "  bioimage-async demo\n  bioimage-async demo --make-input stack.tif",
    )
    demo.add_argument(
        "folder", nargs="?", help="where the demo writes, e.g. demo-out (default: a temp folder)"
    )
    demo.add_argument(
        "--make-input",
        metavar="PATH",
        help="only write a sample TIFF stack to PATH (for the README's tour), "
        "e.g. --make-input stack.tif",
    )
    return parser


def add_unit(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--unit", metavar="UNIT", help="unit of --voxel-size: nm, um, mm, angstrom (e.g. --unit nm)"
    )
