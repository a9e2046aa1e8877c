"""What each subcommand does, over the async API (the CLI is a thin layer, like ``ba.sync``).

Checks run before anything is created where they can (the execution options, the input);
where a check needs the output (block shapes against its chunks, block ids against its grid),
an output this command created is removed again when the run fails before its first block, so
the corrected command can simply be run again.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import bioimage_async as ba

from ..context import run_blocking
from ..errors import BioimageAsyncError, InvalidArgumentError, RunnerError, SourceExistsError
from ..runners.options import ExecOptions
from ..runners.protocol import MANIFEST, id_ranges
from ..runners.registry import runner_backend
from ..sources import ome_zarr
from ..sources.location import Location
from ..sources.physical import check_unit, in_nanometers, sizes_in_unit, spatial_axes
from ..sources.registry import creation_backend, infer_format
from ..sources.ts_drivers import voxel_offset_of
from .parser import EXIT_OK

logger = logging.getLogger("bioimage_async")


def mark_side(error: BioimageAsyncError, side: str) -> BioimageAsyncError:
    """Remember whether an error concerns the input or the output (for the CLI's words)."""
    error.cli_side = side  # type: ignore[attr-defined]
    return error


def exec_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The execution keywords, validated now (before any output is created)."""
    kwargs: dict[str, Any] = {
        "num_workers": args.workers,
        "job_type": args.job_type,
        "block_ids": getattr(args, "block_ids", None),  # a pyramid takes none
        "resume_from": args.resume,
        "progress": False if args.no_progress else None,
        "casting": args.casting,
        "retries": args.retries,
        "block_timeout": args.block_timeout,
        "output_lock": not args.no_output_lock,
    }
    if args.job_type == "slurm":
        overrides = {"tmp_root": args.tmp_root} if args.tmp_root else {}
        kwargs["job_config"] = ba.SlurmConfig.load(**overrides)
    elif args.tmp_root:
        kwargs["job_config"] = ba.RunnerConfig(tmp_root=args.tmp_root)
    ExecOptions.from_kwargs(kwargs)
    return kwargs


async def open_input(args: argparse.Namespace) -> ba.Source:
    options: dict[str, Any] = {}
    if getattr(args, "pattern", None):
        options["pattern"] = args.pattern
    if getattr(args, "level", None) is not None:
        options["level"] = args.level
    try:
        source = await ba.open_source(
            args.input, args.key, format=getattr(args, "input_format", None), **options
        )
        order = getattr(args, "transpose", None)
        return source if order is None else source.transpose(*transpose_order(source, order))
    except BioimageAsyncError as error:
        raise mark_side(error, "input") from error


def transpose_order(source: ba.Source, order: tuple[int, ...] | str) -> tuple[int, ...]:
    """--transpose as axis indices: given as indices (a permutation, as numpy.transpose), or
    as the input's axis letters in the wanted order, each looked up in ``source.axes``."""
    axes = source.axes
    example = ",".join(map(str, reversed(range(source.ndim))))
    if isinstance(order, str):
        if axes is None:
            raise ba.InvalidArgumentError(
                f"--transpose {order} names axes by letter, but {source.describe()} records no "
                f"axis names; give the order as axis indices instead, e.g. --transpose {example}"
            )
        axes = axes.lower()
        if len(order) != len(axes) or sorted(order) != sorted(axes):
            in_order = "".join(a for a in "tczyx" if a in axes)
            hint = in_order if sorted(in_order) == sorted(axes) else axes[::-1]
            raise ba.InvalidArgumentError(
                f"--transpose {order} does not match the input's axes {axes!r} "
                f"({source.describe()}): give each of its letters once, in the wanted order, "
                f"e.g. --transpose {hint}"
            )
        return tuple(axes.index(letter) for letter in order)
    if sorted(order) != list(range(source.ndim)):
        raise ba.InvalidArgumentError(
            f"--transpose {','.join(map(str, order))} must name each of the input's "
            f"{source.ndim} axes once, counted from 0 (shape {source.shape}), e.g. "
            f"--transpose {example}"
        )
    return order


#: The dataset ``create_source`` makes in an HDF5 file when no --out-key names one.
HDF5_DEFAULT_KEY = "data"


class CreatedOutput:
    """Knows what this command created, so a run that fails before its first block can remove
    it again (local paths only; nothing that existed before is touched). A zarr or n5 output
    is a folder, its --out-key a folder inside it; an HDF5 output is a file, its key a dataset
    inside it (the file is shared with the datasets already there).

    ``new_node`` is the first part of the key that did not exist (the key itself, or the
    group a nested key created on the way): the one thing to remove when the container
    existed. Take the snapshot off the event loop (``await run_blocking(CreatedOutput, ...)``):
    it looks into the file system, and into an existing HDF5 file."""

    def __init__(self, path: str, key: str | None, *, hdf5: bool = False) -> None:
        self.location = Location.parse(path)
        self.hdf5 = hdf5
        self.key = (key or "").strip("/") or (HDF5_DEFAULT_KEY if hdf5 else "")
        local = self.location.is_local
        self.container_existed = local and os.path.exists(self.location.path)
        self.new_node: str | None = None
        self.key_existed = False
        if self.container_existed and self.key:
            self.new_node = self._first_missing_node()
            self.key_existed = self.new_node is None

    def _first_missing_node(self) -> str | None:
        parts = self.key.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if not self.hdf5:
            root = self.location.path
            return next((p for p in prefixes if not os.path.exists(os.path.join(root, p))), None)
        import h5py

        try:
            with h5py.File(self.location.path, "r") as file:
                return next((p for p in prefixes if p not in file), None)
        except OSError:  # not HDF5, or locked by a writer: creating it fails; never remove
            return None

    @property
    def missing_path(self) -> str:
        """Where the output is, for a message: the container, and the key inside it."""
        path = self.location.path
        return f"{path} (key {self.key!r})" if self.hdf5 else os.path.join(path, self.key)

    def remove(self) -> None:
        if not self.location.is_local:
            return
        if not self.container_existed:
            target = self.location.path
        elif self.new_node is None:
            return
        elif self.hdf5:
            import h5py

            # the output's own handle may still be open in this process: HDF5 shares the
            # file with it, and the dataset goes once both are closed
            with h5py.File(self.location.path, "r+") as file:
                if self.new_node in file:
                    del file[self.new_node]
            return
        else:
            target = os.path.join(self.location.path, self.new_node)
        if os.path.isdir(target):
            shutil.rmtree(target, ignore_errors=True)
        elif os.path.isfile(target):
            os.remove(target)


def writes_hdf5(path: str, format: str | None) -> bool:
    """Whether ``create_source`` would write an HDF5 file at ``path`` (False when it would
    refuse the path: its own error says why)."""
    try:
        return creation_backend(Location.parse(path), format).name == "hdf5"
    except BioimageAsyncError:
        return False


async def run_guarded(
    created: CreatedOutput, stats: ba.RunStats, run: Callable[[], Awaitable[Any]]
) -> Any:
    """Run; if it fails before any block ran, remove the output this command created. A
    cancelled run (Ctrl-C, SIGTERM) keeps it: its run folder stays for --resume, which
    finishes blocks into that output (removing it made the printed --resume fail)."""
    try:
        return await run()
    except BaseException as error:
        untouched = stats.blocks_done == 0 and "tasks" not in stats.extra
        stopped = (RunnerError, KeyboardInterrupt, asyncio.CancelledError)
        if untouched and not isinstance(error, stopped):
            await run_blocking(created.remove)
        raise


def require_resumable_output(args: argparse.Namespace, created: CreatedOutput) -> None:
    """--resume finishes blocks into the output the run left: if it is gone, creating it
    afresh would leave every block the run had finished empty while the run reports success."""
    if args.resume is None or not created.location.is_local:
        return
    if not created.container_existed or (created.key and not created.key_existed):
        missing = created.missing_path if created.container_existed else created.location.path
        raise ba.InvalidArgumentError(
            f"--resume {args.resume} finishes a run into {missing}, which is not there any "
            "more (removed or moved); the blocks that run finished were in it. Run the command "
            "again without --resume"
        )


# ---- the run folder of an output a killed run left ------------------------------------------
#: How run folders are named: bioimage_async_<op>_<date>-<time>_<random> under the tmp root.
RUN_FOLDER_GLOB = "bioimage_async_*"


def run_root(args: argparse.Namespace) -> str | None:
    """The folder this command's runs keep their run folders in (--tmp-root, the config file,
    or the system temp folder); None where they live on another machine (slurm over ssh)."""
    options = ExecOptions.from_kwargs(exec_kwargs(args))
    backend = runner_backend(options.job_type)
    assert options.job_config is not None  # ExecOptions fills in the backend's default
    if backend.remote_folders(options.job_config):
        return None
    return backend.tmp_root(options.job_config)


def _local_paths(spec: Any) -> list[str]:
    """Every absolute local path a source spec names (its file, folder or kvstore path)."""
    if isinstance(spec, dict):
        return [p for value in spec.values() for p in _local_paths(value)]
    if isinstance(spec, list):
        return [p for value in spec for p in _local_paths(value)]
    if isinstance(spec, str):
        path = spec.removeprefix("file://")
        return [os.path.normpath(path)] if os.path.isabs(path) else []
    return []


def run_folders_writing(root: str, output: str) -> list[str]:
    """The run folders under ``root`` whose output is ``output`` or lies inside it (a key of
    a container, a level of an OME-Zarr), newest first. A folder stays after a run failed,
    was cancelled or was killed; it is removed when the run finishes."""
    target = os.path.normpath(os.path.abspath(output))
    found: list[tuple[str, str]] = []
    for folder in glob.glob(os.path.join(root, RUN_FOLDER_GLOB)):
        try:
            with open(os.path.join(folder, MANIFEST)) as handle:
                manifest = json.load(handle)
            paths = _local_paths(manifest["sources"]["output"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a run folder, or one being written: not this output's
        if any(p == target or p.startswith(target + os.sep) for p in paths):
            found.append((str(manifest.get("created", "")), folder))
    return [folder for _, folder in sorted(found, reverse=True)]


async def with_resume_hint(
    error: SourceExistsError, args: argparse.Namespace, output: str, key: str | None = None
) -> SourceExistsError:
    """An existing array refused (the refusal that --overwrite lifts): if a run that was
    writing it left its folder (killed, failed, cancelled), name the --resume that finishes it
    rather than only --overwrite. ``key``: the folder of a zarr/n5 array inside ``output``."""
    location = Location.parse(output)
    root = run_root(args) if location.is_local and "exist_ok" in str(error) else None
    if root is None:  # another refusal (a group, another shape), or no run folders here
        return error
    where = os.path.join(location.path, key.strip("/")) if key else location.path
    folders = await run_blocking(run_folders_writing, root, where)
    if not folders:
        return SourceExistsError(
            f"{str(error).rstrip('.')}. If a run into it was interrupted, finish it with the same "
            "command plus --resume and that run's folder (printed as the run started, named "
            f"{RUN_FOLDER_GLOB[:-1]}<op>_<date>_...); none for this output is under {root}, "
            "so look under the --tmp-root that run had"
        )
    more = len(folders) - 1
    older = f"; {plural(more, 'older run folder')} for it under {root}" if more else ""
    return SourceExistsError(
        f"{output} holds the blocks of a run that did not finish, whose folder is "
        f"{folders[0]}: finish it with the same command plus --resume {folders[0]}, or "
        f"start over with --overwrite{older}"
    )


async def create_output(
    args: argparse.Namespace,
    path: str,
    shape: tuple[int, ...],
    dtype: Any,
    chunks: tuple[int, ...],
    **extra: Any,
) -> tuple[ba.Source, CreatedOutput]:
    created = await run_blocking(
        CreatedOutput, path, args.out_key, hdf5=writes_hdf5(path, args.format)
    )
    require_resumable_output(args, created)
    try:
        out = await ba.create_source(
            path,
            shape=shape,
            dtype=dtype,
            chunks=chunks,
            format=args.format,
            internal_path=args.out_key,
            exist_ok=args.overwrite or args.resume is not None,
            **extra,
        )
    except Exception as error:
        # refused half-way (the file made, its dataset not): nothing this command made stays
        await run_blocking(created.remove)
        if isinstance(error, SourceExistsError):
            key = None if created.hdf5 else args.out_key  # an HDF5 key is no folder
            raise mark_side(await with_resume_hint(error, args, path, key), "output") from error
        if isinstance(error, BioimageAsyncError):
            raise mark_side(error, "output") from error
        raise
    return out, created


def default_chunks(shape: tuple[int, ...], given: tuple[int, ...] | None) -> tuple[int, ...]:
    if given is not None:
        if len(given) != len(shape):
            raise ba.InvalidArgumentError(
                f"--chunks {','.join(map(str, given))} has {len(given)} entries; the volume "
                f"has {len(shape)} axes (shape {shape})"
            )
        return given
    base = [64] * len(shape) if len(shape) >= 3 else [512] * len(shape)
    return tuple(min(b, n) for b, n in zip(base, shape))


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def timing(stats: ba.RunStats, nbytes: int, seconds: float) -> str:
    per_gb = seconds / max(nbytes / 1e9, 1e-12)
    return (
        f"{plural(stats.blocks_done, 'block')} in {seconds:.2f} s ({per_gb:.2f} s/GB, "
        f"{nbytes / 1e6 / max(seconds, 1e-9):.0f} MB/s)"
    )


def format_of(source: ba.Source, path: str) -> str:
    return str(source.format or infer_format(path) or source.kind)


# ---- info -----------------------------------------------------------------------------------
def disk_size(path: str) -> int | None:
    if not os.path.exists(path):
        return None
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue
    return total


async def describe(source: ba.Source, path: str, where: str) -> dict[str, Any]:
    location = Location.parse(where)
    info: dict[str, Any] = {
        "path": where,
        "format": format_of(source, path),
        "shape": list(source.shape),
        "dtype": str(source.dtype),
        "chunks": list(source.chunks) if source.chunks else None,
        "shards": list(source.shards) if source.shards else None,
        "axes": source.axes,
        "voxel_size": list(source.voxel_size) if source.voxel_size else None,
        "unit": source.unit,
        "size_bytes": source.nbytes,
    }
    if location.is_local:
        info["disk_bytes"] = await run_blocking(disk_size, location.path)
    return info


def info_key(args: argparse.Namespace) -> str | None:
    """The array or level to describe: KEY or --key (the other commands' spelling)."""
    given, option = args.key, args.key_option
    if given is not None and option is not None and given.strip("/") != option.strip("/"):
        raise ba.InvalidArgumentError(
            f"KEY {given!r} and --key {option!r} name different arrays; give one of them"
        )
    return given if given is not None else option


async def info_report(args: argparse.Namespace, given_key: str | None) -> dict[str, Any]:
    """What ``info`` prints: the array, or each level of a pyramid."""
    key = (given_key or "").strip("/")
    location = Location.parse(args.path)
    levels = None
    if args.level is None:
        attributes = await ome_zarr.group_attributes(location, key)
        levels = ome_zarr.multiscale_levels(attributes or {})
    if levels:  # a pyramid: one entry per level
        entries = []
        for index, level in enumerate(levels):
            source = await ba.open_source(args.path, key or None, level=index)
            entries.append(await describe(source, args.path, str(location.join(key, level.path))))
        return {"path": str(location.join(key)), "levels": entries}
    options = {"level": args.level} if args.level is not None else {}
    source = await ba.open_source(args.path, given_key, format=args.input_format, **options)
    return await describe(source, args.path, str(location.join(key)))


async def cmd_info(args: argparse.Namespace) -> int:
    try:
        report = await info_report(args, info_key(args))
    except BioimageAsyncError as error:  # every word of it is about the input
        raise mark_side(error, "input") from error
    if args.json:
        print(json.dumps(report, indent=1))
    elif "levels" in report:
        print(f"{report['path']}: OME-Zarr multiscale, {plural(len(report['levels']), 'level')}")
        for index, entry in enumerate(report["levels"]):
            print(f"  level {index}:")
            print_fields(entry, indent=4)
    else:
        print_fields(report, indent=0)
    return EXIT_OK


def print_fields(info: dict[str, Any], indent: int) -> None:
    for key, value in info.items():
        if value is None:
            continue
        if key.endswith("bytes"):
            value = f"{value / 2**20:.1f} MiB ({value} bytes)"
        elif isinstance(value, list):
            value = " x ".join(str(v) for v in value)
        print(f"{' ' * indent}{key:>12}: {value}")


# ---- convert, downsample, pyramid ------------------------------------------------------------
def warn_position_dropped(
    src: ba.Source, output: str, window_factors: tuple[int, ...] | None = None
) -> None:
    """An input that sits somewhere (an MRC or NIfTI origin, a precomputed layer's voxel offset,
    an OME-Zarr level's translation) is converted into an array that starts at 0: say so, or the
    copy is silently shifted against its neighbours in a viewer. A pyramid keeps the position.

    ``window_factors``: the output's voxels are the centres of windows of that many input
    voxels (a window reduction), so its voxel 0 sits half a window minus half a voxel further
    on, which is said as well where the input has a voxel size (a physical space)."""
    translation = src.translation
    what = f"{src.describe()} sits at"
    sizes = src.voxel_size
    if window_factors is not None and sizes is not None and len(sizes) == src.ndim:
        origin = translation if translation is not None else (0.0,) * src.ndim
        shift = [(f - 1) / 2 * v for f, v in zip(window_factors, sizes)]
        if any(shift):
            translation = tuple(o + d for o, d in zip(origin, shift))
            what = "the output's voxel 0 (the centre of the input's first window) sits at"
    if translation is None or not any(translation):
        return
    place = ", ".join(f"{value:g}" for value in translation)
    logger.warning(
        "%s (%s) %s; %s records no such position (precomputed: whole voxels only) and starts "
        "at 0. To keep it, build a pyramid (bioimage-async pyramid), whose OME-Zarr metadata "
        "records the translation",
        what,
        place,
        src.unit or "in voxel-size units",
        output,
    )


def kept_translation(
    src: ba.Source,
    args: argparse.Namespace,
    voxel_size: tuple[float, ...] | None,
    unit: str | None,
) -> tuple[float, ...] | None:
    """The input's translation, in the output's unit, for an output format that records it
    (precomputed's voxel_offset: whole voxels only); None where it would be dropped (then
    ``warn_position_dropped`` says so). ``--voxel-size`` names another space: no translation,
    as for a pyramid."""
    translation = src.translation
    if translation is None or not any(translation) or voxel_size is None:
        return None
    if args.voxel_size is not None or len(translation) != len(voxel_size):
        return None
    if not creation_backend(Location.parse(args.output), args.format).records_translation:
        return None
    spatial = spatial_axes(len(translation), src.axes)
    moved = sizes_in_unit(translation, src.unit, unit, spatial)
    if any(t and not is_spatial for t, is_spatial in zip(moved, spatial)):
        return None
    sizes = in_nanometers(list(reversed(voxel_size[-3:])), unit)
    try:  # a new layer: its first scale is its own base
        voxel_offset_of(moved, unit, sizes, sizes)
    except InvalidArgumentError:  # not whole voxels
        return None
    return moved


def kept_axis_names(src: ba.Source, args: argparse.Namespace) -> tuple[str, ...] | None:
    """The input's axis names, for an output format that records them. A format with no
    place for them (precomputed's axes are (c,) z, y, x by definition) takes the axes by
    position: an input whose named axes are in another order is refused, since its channels
    would be written as z (and z's voxel size lost), with the --transpose that fixes it."""
    if src.axes is None:
        return None
    backend = creation_backend(Location.parse(args.output), args.format)
    if backend.records_axis_names:
        return tuple(src.axes)
    positional = "tczyx"[-src.ndim :] if src.ndim <= 5 else None
    if src.axes != positional:
        fix = (
            f"reorder them with --transpose {positional}, or convert"
            if positional is not None and sorted(src.axes) == sorted(positional)
            else "convert"
        )
        raise InvalidArgumentError(
            f"the {backend.name} format has no place for axis names and takes the axes by "
            f"position as {positional or 'at most 5 axes tczyx'!r}, but the input's axes are "
            f"{src.axes!r}: its {src.axes[0]!r} axis would be written as "
            f"{(positional or 'tczyx')[0]!r}, with its voxel size. {fix[0].upper()}{fix[1:]} "
            "to zarr, zarr3, n5 or hdf5, which record the axes"
        )
    return None


#: Output formats that record voxel sizes in one fixed unit (a size without one would be
#: declared in it).
FIXED_SIZE_UNITS = {"precomputed": "nanometres", "hdf5": "micrometres"}


def check_sizes_have_a_unit(
    args: argparse.Namespace, voxel_size: tuple[float, ...] | None, unit: str | None
) -> None:
    """Refuse to write the input's unitless voxel size (a NIfTI without xyzt_units) into a
    format whose sizes have a fixed unit: it would be declared in that unit, unasked."""
    if voxel_size is None or unit is not None or getattr(args, "voxel_size", None) is not None:
        return
    backend = creation_backend(Location.parse(args.output), args.format)
    fixed = FIXED_SIZE_UNITS.get(backend.name)
    if fixed is None:
        return
    sizes = ", ".join(f"{float(v):g}" for v in voxel_size)
    other = ", or --voxel-size with --unit" if hasattr(args, "voxel_size") else ""
    raise InvalidArgumentError(
        f"the voxel size ({sizes}) taken from the input has no unit, and the {backend.name} "
        f"format records sizes in {fixed}: pass --unit with the unit of the input's sizes "
        f"(e.g. --unit um){other}"
    )


async def cmd_convert(args: argparse.Namespace) -> int:
    kwargs = exec_kwargs(args)
    src = await open_input(args)
    chunks = default_chunks(src.shape, args.chunks)
    voxel_size = args.voxel_size if args.voxel_size is not None else src.voxel_size
    unit = args.unit if args.unit is not None else (src.unit if args.voxel_size is None else None)
    if args.voxel_size is None and args.unit is not None and voxel_size is not None:
        # --unit alone names the unit to record the input's sizes in: convert them
        unit = check_unit(args.unit)
        spatial = spatial_axes(len(voxel_size), src.axes)
        voxel_size = sizes_in_unit(voxel_size, src.unit, unit, spatial)
    try:
        names = kept_axis_names(src, args)
        check_sizes_have_a_unit(args, voxel_size, unit)
    except BioimageAsyncError as error:
        raise mark_side(error, "output") from error
    translation = kept_translation(src, args, voxel_size, unit)
    if translation is None:
        warn_position_dropped(src, args.output)
    out, created = await create_output(
        args,
        args.output,
        src.shape,
        src.dtype,
        chunks,
        compression=args.compression,
        shards=args.shards,
        voxel_size=voxel_size,
        unit=unit,
        dimension_names=names,
        translation=translation,
    )
    stats = ba.RunStats()
    started = time.perf_counter()
    await run_guarded(
        created,
        stats,
        lambda: ba.copy(src, out, block_shape=args.block_shape, stats=stats, **kwargs),
    )
    seconds = time.perf_counter() - started
    print(
        f"converted {args.input} ({format_of(src, args.input)}) -> {args.output} "
        f"({format_of(out, args.output)}): shape {src.shape}, {src.dtype}, chunks {out.chunks}"
        + (f", shards {out.shards}" if out.shards else "")
        + f"; {timing(stats, src.nbytes, seconds)}"
    )
    return EXIT_OK


async def cmd_downsample(args: argparse.Namespace) -> int:
    from ..kernels.resample import downscale_shape
    from ..ops.downsample import normalize_factors

    kwargs = exec_kwargs(args)
    src = await open_input(args)
    factors = normalize_factors(args.factor, src.ndim)
    target = downscale_shape(src.shape, factors)
    voxel_size = None
    if src.voxel_size is not None:  # as convert keeps it: the output's voxels are larger
        if args.method is not None:  # a window of `factor` voxels per output voxel
            voxel_size = tuple(s * f for s, f in zip(src.voxel_size, factors))
        else:  # spline sampling at i * in / out
            voxel_size = tuple(s * n / m for s, n, m in zip(src.voxel_size, src.shape, target))
    unit = src.unit
    if voxel_size is not None and args.unit is not None:  # as convert's --unit alone
        unit = check_unit(args.unit)
        voxel_size = sizes_in_unit(voxel_size, src.unit, unit, spatial_axes(src.ndim, src.axes))
    try:
        names = kept_axis_names(src, args)
        check_sizes_have_a_unit(args, voxel_size, unit)
    except BioimageAsyncError as error:
        raise mark_side(error, "output") from error
    windows = factors if args.method not in (None, "stride") else None
    warn_position_dropped(src, args.output, windows)
    out, created = await create_output(
        args,
        args.output,
        target,
        src.dtype,
        default_chunks(target, args.chunks),
        compression=args.compression,
        voxel_size=voxel_size,
        unit=unit if voxel_size is not None else None,
        dimension_names=names,
    )
    stats = ba.RunStats()
    started = time.perf_counter()
    await run_guarded(
        created,
        stats,
        lambda: ba.downsample(
            src,
            args.factor,
            out,
            order=args.order,
            anti_aliasing=args.anti_aliasing,
            method=args.method,
            block_shape=args.block_shape,
            stats=stats,
            **kwargs,
        ),
    )
    seconds = time.perf_counter() - started
    print(
        f"downsampled {args.input} {src.shape} -> {args.output} {target}; "
        f"{timing(stats, src.nbytes, seconds)}"
    )
    return EXIT_OK


async def cmd_pyramid(args: argparse.Namespace) -> int:
    kwargs = exec_kwargs(args)
    src = await open_input(args)
    created = await run_blocking(CreatedOutput, args.output, None)
    require_resumable_output(args, created)
    stats = ba.RunStats()
    kwargs["stats"] = stats
    started = time.perf_counter()
    try:
        levels = await run_guarded(
            created,
            stats,
            lambda: ba.pyramid(
                src,
                args.output,
                args.levels,
                factor=args.factor,
                method=args.method,
                ngff_version=args.ngff_version,
                labels=args.labels,
                name=args.name,
                voxel_size=args.voxel_size,
                unit=args.unit,
                chunks=args.chunks,
                shards=args.shards,
                exist_ok=args.overwrite or args.resume is not None,
                **kwargs,
            ),
        )
    except SourceExistsError as error:
        if args.overwrite or args.resume is not None:
            raise mark_side(error, "output") from error
        raise mark_side(await with_resume_hint(error, args, args.output), "output") from error
    except BioimageAsyncError as error:
        raise mark_side(error, "output") from error
    seconds = time.perf_counter() - started
    shapes = ", ".join(str(level.shape) for level in levels)
    # labels inside an image follow the image's version, whatever --ngff-version said
    version = "0.5" if getattr(levels[0], "format", None) == "zarr3" else "0.4"
    print(
        f"wrote {plural(len(levels), 'level')} to {args.output} (OME-NGFF "
        f"{version}): {shapes}; {timing(stats, src.nbytes, seconds)}"
    )
    return EXIT_OK


# ---- runs -------------------------------------------------------------------------------------
def manifest_job_type(folder: str) -> str | None:
    try:
        with open(os.path.join(folder, "manifest.json")) as handle:
            return str(json.load(handle).get("job_type"))
    except (OSError, ValueError):
        return None


#: Task states that finished their work (the rest, in a run nothing runs any more, stopped).
FINISHED_STATES = ("SUCCEEDED", "COMPLETED")
#: Missing block ranges printed in full up to this many.
SHOWN_RANGES = 20


def stopped_how(task_states: dict[int, str], cancelled_at: str | None = None) -> str:
    """How a run that no task runs any more ended: cancelled when its folder records a cancel
    (``cancel``, ``Run.cancel``) or slurm says CANCELLED; a subprocess worker that is GONE
    without that record was killed (or its machine went down)."""
    ended: dict[str, int] = {}
    for state in task_states.values():
        if state not in FINISHED_STATES:
            ended[state] = ended.get(state, 0) + 1
    if cancelled_at is not None:
        how = f"cancelled at {cancelled_at}"
    elif "CANCELLED" in ended:
        how = "cancelled"
    elif ended and set(ended) == {"GONE"}:
        how = "killed (its worker processes ended without finishing, and nobody cancelled it)"
    else:
        how = "stopped"
    states = ", ".join(f"{count} {state}" for state, count in sorted(ended.items()))
    return f"not running: {how}" + (f" (tasks: {states})" if states and how == "stopped" else "")


def missing_text(missing: list[int]) -> str:
    """'3 blocks missing: 5-6,9' (the ranges --block-ids takes), the first ranges only when
    there are many."""
    ranges = id_ranges(missing, sep=",").split(",")
    shown = ",".join(ranges[:SHOWN_RANGES])
    more = (
        f" ... and {len(ranges) - SHOWN_RANGES} more ranges" if len(ranges) > SHOWN_RANGES else ""
    )
    return f"{plural(len(missing), 'block')} missing: {shown}{more}"


async def local_status(path: str) -> str:
    """The status of a local run's folder (the folder the CLI prints as a run starts): whether
    its driver still runs, and what is missing. A local run has no jobs to attach to, so
    ``status`` of it was an error."""
    from ..runners.files import LocalFiles
    from ..runners.lease import holder_alive
    from ..runners.protocol import RunFolder

    files = LocalFiles()
    folder = await RunFolder.open(files, path)
    missing = await folder.missing_blocks()
    total = folder.manifest.requested_count()
    lines = [f"local run {folder.manifest.name!r}: {total - len(missing)}/{total} blocks done"]
    lease = folder.lease()
    holder = await lease.read()
    if holder is not None and await holder_alive(files, lease.path, holder):
        lines.append(f"running: driven by pid {holder.get('pid')} on {holder.get('host')}")
    elif missing:
        cancelled = await folder.cancelled_at()
        how = (
            f"cancelled at {cancelled}" if cancelled else "stopped (failed, interrupted or killed)"
        )
        lines.append(f"not running: {how}: {missing_text(missing)}")
        lines.append(f"finish it with the command that started the run, plus --resume {path}")
    return "\n".join(lines)


async def cmd_run(args: argparse.Namespace) -> int:
    job_type = manifest_job_type(args.tmp_folder)
    if args.command == "status" and job_type == "local":
        print(await local_status(args.tmp_folder))
        return EXIT_OK
    config = ba.SlurmConfig.load() if job_type == "slurm" else None
    run = await ba.attach(args.tmp_folder, config)
    if args.command == "status":
        status = await run.status()
        print(
            f"run {run.name!r} jobs {status.job_ids}: {status.blocks_done}/{status.blocks_total} "
            f"blocks done; tasks {status.tasks_succeeded} succeeded, {status.tasks_failed} "
            f"failed, {status.running} running, {status.pending} pending"
        )
        if not (status.running or status.pending):  # nothing will write the rest
            missing = await run.folder.missing_blocks()  # read where the run lives
            if missing:
                how = stopped_how(status.task_states, await run.folder.cancelled_at())
                print(f"{how}: {missing_text(missing)}")
                print(
                    "finish it with the command that started the run, plus --resume "
                    f"{args.tmp_folder}"
                )
        return EXIT_OK
    if args.command == "cancel":
        await run.cancel()
        print(f"cancelled {run.job_ids}; finish it later with --resume {args.tmp_folder}")
        return EXIT_OK
    await run.wait(progress=None)
    print(f"run {run.name!r} finished: every block is written")
    return EXIT_OK


async def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import default_folder, report_text, run_demo, write_sample_stack

    if args.make_input:
        if os.path.exists(args.make_input):  # a user's file of that name was replaced
            raise InvalidArgumentError(
                f"--make-input {args.make_input} exists; the demo writes its sample stack only "
                "to a new path: remove it or name another"
            )
        shape = await run_blocking(write_sample_stack, args.make_input)
        print(f"wrote a sample stack of shape {shape} to {args.make_input}")
        return EXIT_OK
    print(report_text(await run_demo(args.folder or default_folder())))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "info": cmd_info,
    "convert": cmd_convert,
    "downsample": cmd_downsample,
    "pyramid": cmd_pyramid,
    "status": cmd_run,
    "attach": cmd_run,
    "cancel": cmd_run,
    "demo": cmd_demo,
}
