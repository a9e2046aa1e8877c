"""pyramid: an OME-Zarr multiscale image (NGFF 0.5 by default, 0.4 on request), level by level.

Level 0 is a copy of the input (the only pass that reads it); every further level is computed
from the level just written, which is ``factor**ndim`` times smaller, so the input is read once.
Images are smoothed (Gaussian anti-aliasing + linear sampling); label volumes take the mode of
each window, which keeps thin objects and boundaries that nearest-neighbour sampling drops.

Physical space: each level's ``scale`` is the input's voxel size (read from its format, or
``voxel_size=``) times the cumulative factor, and its ``translation`` keeps the level on the same
physical space as level 0: window reductions (mode, mean, min, max) represent the centre of their
window, ``(F - 1) / 2`` voxels of level 0 in, F the cumulative factor (``f**k``, where an axis
already one voxel wide counts no further factor: its window covers that voxel); the spline path samples level-0 positions
``i * n0 / nk`` (the seed's corner-aligned semantics), so its translation is 0 and its scale the
exact ratio of the shapes.

A pyramid is several runs in dependency order, so its execution options are derived per level,
explicitly: a level runs only after the one above it is complete. ``wait=False`` and
``block_ids`` are refused (they name one run's blocks); ``resume_from`` finishes the level whose
run folder it is and then builds the levels below it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Unpack

import numpy as np

from ..errors import InvalidArgumentError, PayloadMismatchError, RunnerError, SourceExistsError
from ..kernels.reductions import METHODS as REDUCTIONS
from ..kernels.resample import downscale_shape
from ..pipeline.stats import RunStats
from ..runners.options import ExecKwargs, ExecOptions
from ..runners.protocol import data_spec
from ..runners.registry import runner_backend
from ..sources import ome_zarr
from ..sources.base import Source
from ..sources.formats import format_for_extension, format_for_prefix, load_format_backends
from ..sources.location import Location
from ..sources.physical import check_unit, for_axes, positive_sizes, sizes_in_unit
from ..sources.registry import as_source, create_source, open_source
from ._exec import exec_options, refuse_empty
from .copy import copy, positive_int_tuple
from .downsample import downsample, normalize_factors

logger = logging.getLogger("bioimage_async")

#: spline methods -> (order, anti-aliasing)
SPLINES = {"nearest": (0, False), "linear": (1, False), "smooth": (1, True), "cubic": (3, True)}
NGFF_VERSIONS = ("0.5", "0.4")
#: what a shard of a level should hold (a few tens of MiB: few, large objects in a bucket)
SHARD_BYTES = 32 * 1024 * 1024


def choose_method(method: str, dtype: np.dtype, labels: bool) -> str:
    """'auto': mode for label-like data (labels=True, bool, 32/64-bit integers), else smooth."""
    if method == "auto":
        label_like = labels or dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize >= 4)
        return "mode" if label_like else "smooth"
    if method not in SPLINES and method not in REDUCTIONS:
        raise InvalidArgumentError(
            f"method must be 'auto' or one of {sorted(SPLINES) + list(REDUCTIONS)}, got {method!r}"
        )
    if labels and method not in ("mode", "nearest", "min", "max"):
        raise InvalidArgumentError(
            f"method={method!r} invents values, which a label image must not hold; use 'mode' "
            "(or 'nearest', 'min', 'max') with labels=True"
        )
    return method


def level_shapes(
    shape: tuple[int, ...], factors: tuple[int, ...], levels: int
) -> list[tuple[int, ...]]:
    """The shape of every level; refuses levels that would not shrink the volume any more."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise InvalidArgumentError(f"levels must be an integer >= 1, got {levels!r}")
    shapes = [tuple(shape)]
    for level in range(1, levels):
        below = downscale_shape(shapes[-1], factors)
        if below == shapes[-1]:
            raise InvalidArgumentError(
                f"levels={levels} on shape {tuple(shape)} with factor {factors}: level {level} "
                f"would be {below}, the same as level {level - 1}; at most {level} levels shrink "
                f"this volume (pass levels={level} or fewer)"
            )
        shapes.append(below)
    return shapes


def default_axes(ndim: int) -> str:
    if not 2 <= ndim <= 5:
        raise InvalidArgumentError(f"an OME-Zarr image has 2 to 5 axes, the input has {ndim}")
    return "tczyx"[-ndim:]


def check_axes(axes: str | None, ndim: int) -> str:
    axes = axes or default_axes(ndim)
    if not axes_in_order(axes, ndim):
        raise InvalidArgumentError(
            f"axes must name each of the {ndim} axes once, from t, c, z, y, x in that order "
            f"(e.g. {default_axes(ndim)!r}), got {axes!r}"
        )
    return axes


def input_axes(src: Source) -> str | None:
    """The input's own axes (OME-Zarr, TIFF, NIfTI), refused with the fix when they are not
    in t, c, z, y, x order: labelling them otherwise would average channels or colours, or
    put the z spacing on a channel axis."""
    axes = src.axes
    if axes is None or axes_in_order(axes, src.ndim):
        return axes
    ordered = "".join(a for a in "tczyx" if a in axes)
    if sorted(ordered) == sorted(axes):
        order = tuple(axes.index(a) for a in ordered)
        fix = (
            f"pass the input as input.transpose{order} (axes {ordered!r}), a lazy view that "
            f"reads it in that order (on the command line: --transpose {ordered})"
        )
    else:
        fix = "name them yourself with axes= (each of t, c, z, y, x at most once, in order)"
    raise InvalidArgumentError(
        f"the input's axes are {axes!r} ({src.describe()}), but an OME-Zarr image keeps its "
        f"axes in t, c, z, y, x order: {fix}"
    )


def axes_in_order(axes: str, ndim: int) -> bool:
    in_order = "".join(a for a in "tczyx" if a in axes) == axes
    return len(axes) == ndim and len(set(axes)) == ndim and in_order


def shard_shape(
    shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int, target: int = SHARD_BYTES
) -> tuple[int, ...]:
    """Chunks doubled along the smallest axis until a shard holds about ``target`` bytes (but
    never beyond the level, rounded up to whole chunks)."""
    shard = list(chunks)
    limit = [math.ceil(n / c) * c for n, c in zip(shape, chunks)]
    while math.prod(shard) * itemsize < target:
        growable = [a for a in range(len(shard)) if shard[a] < limit[a]]
        if not growable:
            break
        axis = min(growable, key=lambda a: shard[a])
        shard[axis] = min(shard[axis] * 2, limit[axis])
    return tuple(shard)


def physical_levels(
    shapes: list[tuple[int, ...]],
    factors: tuple[int, ...],
    voxel_size: tuple[float, ...],
    origin: tuple[float, ...],
    reduces: bool,
    centred: bool = True,
) -> list[tuple[list[float], list[float]]]:
    """(scale, translation) of every level (see the module docstring); ``centred`` False for
    windows represented by their first voxel (nearest), which keeps level 0's translation."""
    result = []
    cumulative = [1] * len(factors)
    for level, shape in enumerate(shapes):
        if level:  # an axis already 1 voxel wide stays as it is: its window covers that voxel
            below = shapes[level - 1]
            cumulative = [c * (f if n > 1 else 1) for c, f, n in zip(cumulative, factors, below)]
        if reduces:
            scale = [s * c for s, c in zip(voxel_size, cumulative)]
            shift = [
                o + s * (c - 1) / 2 if centred else o
                for o, s, c in zip(origin, voxel_size, cumulative)
            ]
        else:
            scale = [s * n0 / n for s, n0, n in zip(voxel_size, shapes[0], shape)]
            shift = list(origin)
        result.append((scale, shift))
    return result


async def _existing_levels(root: Location, specs: list[dict[str, Any]], version: str) -> list[bool]:
    """Whether each level's array is in the output (its zarr metadata file exists)."""
    meta = "zarr.json" if version == "0.5" else ".zarray"
    return [await root.exists(f"{spec['internal_path']}/{meta}") for spec in specs]


async def _resumed_level(options: ExecOptions, outputs: list[Source | None], root: Location) -> int:
    """The level whose run folder ``options.resume_from`` is (its output spec tells); refused
    when that level, or one above it (which the failed run had finished), is no longer in the
    output: a resume would build on fill values."""
    assert options.resume_from is not None and options.job_config is not None
    backend = runner_backend(options.job_type)
    manifest = await backend.read_manifest(options.job_config, options.resume_from)
    wanted = data_spec(manifest["sources"]["output"])
    for level, out in enumerate(outputs):
        if out is not None and data_spec(out.to_spec().to_json()) == wanted:
            if all(outputs[k] is not None for k in range(level)):
                return level
            break  # a level above it is gone
    gone = [k for k, out in enumerate(outputs) if out is None]
    if gone:
        raise PayloadMismatchError(
            f"resume_from={options.resume_from!r}: level(s) {gone} of {str(root)!r} are no "
            "longer there (removed since the run failed?), so the blocks and levels the run "
            "finished are gone and a resume would build the next levels from unwritten "
            "voxels. Build the pyramid anew: without resume_from (exist_ok=True, or remove "
            "the output first)",
            tmp_folder=options.resume_from,
        )
    raise InvalidArgumentError(
        f"resume_from={options.resume_from!r} is not a run of this pyramid's levels (its output "
        "is none of them); pass the tmp_folder of the RunnerError that this pyramid raised"
    )


async def _write_group(root: Location, key: str, attributes: dict[str, Any], version: str) -> None:
    """Group metadata at ``key``: zarr v3's zarr.json (0.5), or .zgroup + .zattrs (0.4)."""
    here = root.join(key)
    if version == "0.5":
        document = {"zarr_format": 3, "node_type": "group", "attributes": attributes}
        await here.write("zarr.json", json.dumps(document, indent=1).encode())
    else:
        await here.write(".zgroup", b'{"zarr_format": 2}')
        await here.write(".zattrs", json.dumps(attributes, indent=1).encode())


async def pyramid(
    input: Any,
    output_path: str | os.PathLike[str],
    levels: int,
    *,
    factor: Any = 2,
    method: str = "auto",
    ngff_version: str = "0.5",
    labels: bool = False,
    name: str | None = None,
    voxel_size: Any = None,
    unit: str | None = None,
    chunks: Any = None,
    shards: Any = None,
    axes: str | None = None,
    exist_ok: bool = False,
    **exec_kwargs: Unpack[ExecKwargs],
) -> list[Source]:
    """Write ``levels`` resolution levels of ``input`` as an OME-Zarr multiscale image.

    ``factor`` is per level (int or per axis). ``method``: 'auto' (mode for label-like inputs,
    smooth otherwise), 'mode', 'mean', 'min', 'max' (window reductions), 'smooth' (linear +
    anti-aliasing), 'nearest', 'linear' or 'cubic'. ``ngff_version`` '0.5' (zarr v3, sharded,
    ``dimension_names``) or '0.4' (zarr v2). ``labels=True`` writes a label image: inside an
    existing image pyramid at ``output_path`` as ``labels/<name>``, else at ``output_path``.
    ``voxel_size``/``unit`` override what the input's format records (``unit`` alone converts
    the recorded sizes and translation into it; ``voxel_size`` drops the input's translation). ``axes`` default to the input's (OME-Zarr), else
    'tczyx''s last letters; an integer ``factor`` downsamples the spatial axes only, and the
    channel axis is never downsampled. ``chunks`` and (0.5)
    ``shards`` set level 0's layout (default 64 per spatial axis, shards of ~32 MiB).
    Returns the level sources, finest first. Every argument is checked before anything is
    created.
    """
    options = await exec_options(exec_kwargs)
    if not options.wait:
        raise InvalidArgumentError(
            "pyramid runs one level after the other, so wait=False is not available; run it in "
            "a background task instead (asyncio.create_task(ba.pyramid(...)))"
        )
    if options.block_ids is not None:
        raise InvalidArgumentError(
            "block_ids name the blocks of one level's grid, and a pyramid runs several levels; "
            "re-run a level with ba.downsample(level_above, factor, level, block_ids=...)"
        )
    if ngff_version not in NGFF_VERSIONS:
        raise InvalidArgumentError(
            f"ngff_version must be one of {NGFF_VERSIONS}, got {ngff_version!r}"
        )
    src = as_source(input)
    refuse_empty(src, "pyramid")
    if options.distributed and not src.reopenable:
        raise InvalidArgumentError(
            f"the input ({src.describe()}) lives in this process's memory and cannot be "
            f"reopened by {options.job_type} workers; write it to zarr/n5 first or use "
            "job_type='local'"
        )
    axes = check_axes(axes or input_axes(src), src.ndim)  # the input's own axes first
    factors = level_factors(factor, axes)
    shapes = level_shapes(src.shape, factors, levels)
    chosen = choose_method(method, src.dtype, labels)
    # nearest takes each window's first voxel: level k's voxel i is level 0's i * f**k on any
    # shape (chained spline sampling at i * n0 / nk drifted from its metadata on odd shapes)
    reduces = chosen in REDUCTIONS or chosen == "nearest"
    reduction = "stride" if chosen == "nearest" else chosen
    # the input's translation, in the unit of the sizes; another voxel_size= is another space
    translation = None if voxel_size is not None else src.translation
    sizes, unit = _physical(src, voxel_size, unit, axes)
    if translation is not None and len(translation) == src.ndim:
        spatial = [a in ome_zarr.SPATIAL for a in axes]
        translation = sizes_in_unit(translation, src.unit, unit, spatial)
    origin = _origin_for(translation, src.ndim)
    level_chunks = _chunks(chunks, src, axes)
    root = Location.parse(output_path)
    await _check_output_format(root)
    base = ""
    if labels:
        name = name or "labels"
        image = await ome_zarr.group_attributes(root, "")
        image_levels = ome_zarr.multiscale_levels(image or {})
        if image is not None and image_levels:
            base = f"labels/{name}"  # inside the image, in the image's own version
            ngff_version = "0.5" if image.get("version") == "0.5" else "0.4"
            sizes, unit, origin = _in_image_space(
                src, image_levels[0], axes, sizes, unit, origin, own_sizes=voxel_size is not None
            )
    name = name or root.name
    resuming = options.resume_from is not None
    specs: list[dict[str, Any]] = []
    for level, shape in enumerate(shapes):
        level_chunk = tuple(min(c, n) for c, n in zip(level_chunks, shape))
        shard = None
        if ngff_version == "0.5":
            shard = (
                tuple(
                    min(s, math.ceil(n / c) * c)
                    for s, c, n in zip(positive_int_tuple(shards, "shards"), level_chunk, shape)
                )
                if shards is not None
                else shard_shape(shape, level_chunk, src.dtype.itemsize)
            )
        specs.append(
            dict(
                shape=shape,
                dtype=src.dtype,
                chunks=level_chunk,
                format="zarr3" if ngff_version == "0.5" else "zarr",
                shards=shard if shard != level_chunk else None,
                internal_path="/".join(p for p in (base, str(level)) if p),
                exist_ok=exist_ok or resuming,
                dimension_names=tuple(axes) if ngff_version == "0.5" else None,
                # OME-NGFF 0.4 allows '/' chunk keys only
                dimension_separator=None if ngff_version == "0.5" else "/",
            )
        )
    first = 0
    opened: list[Source | None] = [None] * len(specs)
    if resuming:
        # the levels the failed run wrote must still be there: one created anew here reads as
        # its fill value, and the levels below would be built from it without a word
        found = await _existing_levels(root, specs, ngff_version)
        try:
            opened = [
                await create_source(str(root), **spec) if there else None
                for spec, there in zip(specs, found)
            ]
        except SourceExistsError as error:  # a level of another shape: another factor or input
            raise PayloadMismatchError(
                f"resume_from={options.resume_from!r}: {error} (a level of the pyramid the "
                "failed run was building has another shape than this call's: another factor, "
                "input or level count). Resume with the same arguments as the failed run, or "
                "build the pyramid anew without resume_from",
                tmp_folder=options.resume_from,
            ) from error
        first = await _resumed_level(options, opened, root)
    outputs: list[Source] = []
    for level, spec in enumerate(specs):
        ready = opened[level]
        outputs.append(ready if ready is not None else await create_source(str(root), **spec))
    total = options.stats
    order, anti_aliasing = SPLINES.get(chosen, (0, False))
    for level, out in enumerate(outputs):
        if level < first:
            continue  # written by the run that failed at level ``first``
        stats = RunStats()
        step = options.replace(
            resume_from=options.resume_from if level == first else None, stats=stats
        )
        try:
            if level == 0:
                await copy(src, out, **step.as_kwargs())
            elif reduces:
                await downsample(
                    outputs[level - 1], factors, out, method=reduction, **step.as_kwargs()
                )
            else:
                await downsample(
                    outputs[level - 1],
                    factors,
                    out,
                    order=order,
                    anti_aliasing=anti_aliasing,
                    **step.as_kwargs(),
                )
        except RunnerError as error:
            _name_the_level(error, level, len(outputs), root)
            raise
        if total is not None:
            total.merge(stats)
    await _write_metadata(
        root,
        base,
        name,
        axes,
        unit,
        shapes,
        factors,
        sizes,
        origin,
        chosen,
        reduces,
        labels,
        ngff_version,
    )
    await _say_stale_levels(root, base, len(outputs), ngff_version)
    # reopened from what was written: the handles made before the metadata know no voxel
    # size, unit or translation
    written = str(root.join(base)) if base else str(root)
    return [
        await open_source(written, level=k, mode="r+", storage=root.storage)
        for k in range(len(outputs))
    ]


async def _say_stale_levels(root: Location, base: str, levels: int, version: str) -> None:
    """A pyramid written over one with more levels (exist_ok) leaves the old deeper level
    arrays on disk, unlisted in the metadata but still an array to zarr-python and to a viewer
    that lists arrays: say which, with the fix."""
    from ..sources.ts_drivers import DRIVERS

    driver = DRIVERS["zarr3" if version == "0.5" else "zarr"]
    here = root.join(base) if base else root
    stale: list[int] = []
    while len(stale) < 64 and await driver.node(here, str(levels + len(stale))) == "array":
        stale.append(levels + len(stale))
    if stale:
        logger.warning(
            "%s: level(s) %s of an earlier pyramid stay on disk beside this one's %d (unlisted in "
            "the metadata, holding the earlier image); remove them",
            here,
            ", ".join(map(str, stale)),
            levels,
        )


def _name_the_level(error: RunnerError, level: int, levels: int, root: Location) -> None:
    """Say which level of which pyramid failed, that the levels below it were not built (never
    from this level's missing blocks), and how to finish: the same call with ``resume_from``."""
    below = (
        f"levels {level + 1}-{levels - 1} were not built"
        if level + 1 < levels - 1
        else f"level {level + 1} was not built"
        if level + 1 < levels
        else "it is the last level"
    )
    how = (
        f"call ba.pyramid again with the same arguments and resume_from={error.tmp_folder!r}"
        if error.tmp_folder is not None
        else "re-run the pyramid (its input lives in memory, so there is no run folder)"
    )
    message = (
        f"pyramid {str(root)!r}: level {level} of {levels} is missing blocks "
        f"{error.failed_block_ids[:10]}{' ...' if len(error.failed_block_ids) > 10 else ''} "
        f"(block ids of level {level}'s grid); {below}. To finish, {how}"
    )
    error.args = (f"{error.args[0]}\n{message}" if error.args else message, *error.args[1:])


async def _refresh_consolidated_metadata(root: Location, base: str, levels: int) -> None:
    """An image's consolidated metadata (ngff-zarr writes it) lists its nodes, and zarr-python
    trusts that list: labels added beside it were invisible ("'labels' not found in
    consolidated metadata"). zarr v3: the list is dropped (readers walk the store); zarr v2:
    the label's groups and arrays are added to ``.zmetadata``."""
    meta = await root.read_json("zarr.json")
    if meta is not None and meta.get("consolidated_metadata") is not None:
        meta.pop("consolidated_metadata")
        await root.write("zarr.json", json.dumps(meta, indent=1).encode())
    consolidated = await root.read_json(".zmetadata")
    if consolidated is None or not isinstance(consolidated.get("metadata"), dict):
        return
    keys = ["labels/.zgroup", "labels/.zattrs", f"{base}/.zgroup", f"{base}/.zattrs"]
    keys += [f"{base}/{level}/{name}" for level in range(levels) for name in (".zarray", ".zattrs")]
    for key in keys:
        document = await root.read_json(key)
        if document is not None:
            consolidated["metadata"][key] = document
    await root.write(".zmetadata", json.dumps(consolidated, indent=1).encode())


async def _check_output_format(root: Location) -> None:
    """A pyramid is an OME-Zarr: an output named as another format (``precomputed://out``,
    ``out.n5``) got an OME-Zarr written there without a word, which no reader of that format
    finds."""
    await load_format_backends()
    named = (
        format_for_prefix(root.prefix)
        if root.prefix is not None
        else format_for_extension(root.name)
    )
    if named is not None and named.name not in ("zarr", "zarr3"):
        raise InvalidArgumentError(
            f"pyramid writes an OME-Zarr image (zarr), but {str(root)!r} names the {named.name} "
            "format; give a zarr path (e.g. 'image.ome.zarr' or 'zarr://...'). A precomputed "
            "layer's scales are written with create_source(layer, internal_path=<scale key>, "
            "...) and ba.downsample"
        )


def level_factors(factor: Any, axes: str) -> tuple[int, ...]:
    """Per-axis factors: an integer applies to the spatial axes only (averaging channels or
    time points together would mix unrelated images); channels are never downsampled."""
    if isinstance(factor, (int, np.integer)) and not isinstance(factor, bool):
        factor = tuple(int(factor) if a in ome_zarr.SPATIAL else 1 for a in axes)
    factors = normalize_factors(factor, len(axes))
    if "c" in axes and factors[axes.index("c")] != 1:
        raise InvalidArgumentError(
            f"factor {factors} downsamples the channel axis c of axes {axes!r}, which would "
            "average different channels together; give 1 for c"
        )
    return factors


def _in_image_space(
    src: Source,
    image: Any,
    axes: str,
    sizes: tuple[float, ...],
    unit: str | None,
    origin: tuple[float, ...],
    *,
    own_sizes: bool,
) -> tuple[tuple[float, ...], str | None, tuple[float, ...]]:
    """Level 0's (sizes, unit, origin) of labels drawn on the image whose level 0 is
    ``image``: labels without a voxel size of their own take the image's, converted into
    ``unit=`` when given (not relabelled); labels without a translation of their own take the
    image's, converted likewise, when their voxels are the image's (also when the caller passed
    the image's voxel size, as the docs advise for arrays)."""
    spatial = [a in ome_zarr.SPATIAL for a in axes]
    if image.voxel_size and not own_sizes and src.voxel_size is None:
        wanted = unit if unit is not None else image.unit
        image_sizes = for_axes(image.voxel_size, src.ndim)
        sizes = sizes_in_unit(image_sizes, image.unit, wanted, spatial)
        unit = wanted
    if src.translation is None and image.translation and image.voxel_size:
        image_sizes = sizes_in_unit(for_axes(image.voxel_size, src.ndim), image.unit, unit, spatial)
        if all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(image_sizes, sizes)):
            placed = _origin_for(image.translation, src.ndim)
            origin = sizes_in_unit(placed, image.unit, unit, spatial)
    return sizes, unit, origin


def _origin_for(translation: Any, ndim: int) -> tuple[float, ...]:
    """Level 0's translation (where voxel 0 sits), 0 where nothing records one."""
    if translation is None:
        return (0.0,) * ndim
    values = tuple(float(v) for v in translation)
    return (0.0,) * (ndim - len(values)) + values[-ndim:]


def _physical(
    src: Source, voxel_size: Any, unit: str | None, axes: str
) -> tuple[tuple[float, ...], str | None]:
    """Level 0's voxel size and unit: the arguments, else what the input's format records,
    else 1 (and no unit)."""
    if voxel_size is not None:
        sizes = positive_sizes(voxel_size)
        spatial_count = sum(a in ome_zarr.SPATIAL for a in axes)
        if sizes is None or len(sizes) not in (src.ndim, spatial_count):
            # fewer sizes were taken for the last axes, the others made up as 1 (4,4 on z, y, x
            # recorded z as 1 nm)
            raise InvalidArgumentError(
                f"voxel_size must hold one positive size per spatial axis ({spatial_count}: "
                f"{''.join(a for a in axes if a in ome_zarr.SPATIAL)}) or per axis of the input "
                f"(axes {axes}, shape {src.shape}), got {voxel_size!r}"
            )
        return for_axes(sizes, src.ndim), check_unit(unit)
    if src.voxel_size is not None and len(src.voxel_size) == src.ndim:
        if unit is None:
            return tuple(src.voxel_size), src.unit
        wanted = check_unit(unit)  # the recorded sizes, converted (not relabelled)
        spatial = [a in ome_zarr.SPATIAL for a in axes]
        return sizes_in_unit(src.voxel_size, src.unit, wanted, spatial), wanted
    return (1.0,) * src.ndim, check_unit(unit)


def _chunks(chunks: Any, src: Source, axes: str) -> tuple[int, ...]:
    if chunks is not None:
        given = positive_int_tuple(chunks, "chunks")
        if len(given) != src.ndim:
            raise InvalidArgumentError(
                f"chunks {given} must have one entry per axis of the input (shape {src.shape})"
            )
        return given
    return tuple(min(n, 64) if a in ome_zarr.SPATIAL else 1 for a, n in zip(axes, src.shape))


async def _write_metadata(
    root: Location,
    base: str,
    name: str,
    axes: str,
    unit: str | None,
    shapes: list[tuple[int, ...]],
    factors: tuple[int, ...],
    sizes: tuple[float, ...],
    origin: tuple[float, ...],
    method: str,
    reduces: bool,
    labels: bool,
    version: str,
) -> None:
    transforms = physical_levels(shapes, factors, sizes, origin, reduces, method != "nearest")
    datasets = [
        ome_zarr.dataset_json(str(level), scale, shift)
        for level, (scale, shift) in enumerate(transforms)
    ]
    order, anti_aliasing = SPLINES.get(method, (None, None))
    details: dict[str, Any] = {"method": method, "factors": list(factors)}
    if method == "nearest":
        details["sampling"] = "stride"  # each window's first voxel, x[::f]
    elif order is not None:
        details.update(order=order, anti_aliasing=anti_aliasing)
    multiscale = ome_zarr.multiscale_json(name, axes, unit, datasets, method, details, version)
    if labels:
        await _write_group(root, base, ome_zarr.label_attributes(multiscale, version), version)
        if base:  # inside an image: list the label in labels/
            existing = ome_zarr.labels_in(await ome_zarr.group_attributes(root, "labels"))
            names = existing + [name] if name not in existing else existing
            await _write_group(
                root, "labels", ome_zarr.labels_group_attributes(names, version), version
            )
            await _refresh_consolidated_metadata(root, base, len(shapes))
    else:
        await _write_group(root, base, ome_zarr.image_attributes(multiscale, version), version)
