"""pyramid: an OME-Zarr (NGFF 0.4) multiscale image, level by level from the level above.

Level 0 is a copy of the input (the only pass that reads it); every further level is a
downsample of the level just written, which is ``factor**ndim`` times smaller, so the input is
read once and the total extra reading is a fraction of it.

A pyramid is several runs in dependency order, so its execution options are derived per level,
explicitly: a level runs only after the one above it is complete. ``wait=False`` and
``block_ids`` are refused (they name one run's blocks); ``resume_from`` finishes the level whose
run folder it is and then builds the levels below it.
"""

from __future__ import annotations

import json
import os
from numbers import Integral
from typing import Any, Unpack

import numpy as np

from ..context import run_blocking
from ..errors import InvalidArgumentError
from ..kernels.resample import downscale_shape
from ..pipeline.stats import RunStats
from ..runners.options import ExecKwargs, ExecOptions
from ..runners.registry import runner_backend
from ..sources.base import Source
from ..sources.registry import as_source, create_source
from ._exec import exec_options
from .copy import copy
from .downsample import downsample, normalize_factors

#: method -> (spline order, anti-aliasing)
METHODS = {"nearest": (0, False), "linear": (1, False), "smooth": (1, True), "cubic": (3, True)}


def choose_method(method: str, dtype: np.dtype) -> str:
    """'auto': nearest for 32/64-bit integers and booleans (labels), smooth for the rest."""
    if method != "auto":
        if method not in METHODS:
            raise InvalidArgumentError(
                f"method must be 'auto' or one of {sorted(METHODS)}, got {method!r}"
            )
        return method
    if dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize >= 4):
        return "nearest"
    return "smooth"


def level_shapes(
    shape: tuple[int, ...], factors: tuple[int, ...], levels: int
) -> list[tuple[int, ...]]:
    """The shape of every level; refuses levels that would not shrink the volume any more."""
    if isinstance(levels, bool) or not isinstance(levels, Integral) or levels < 1:
        raise InvalidArgumentError(f"levels must be an integer >= 1, got {levels!r}")
    shapes = [tuple(shape)]
    for level in range(1, int(levels)):
        below = downscale_shape(shapes[-1], factors)
        if below == shapes[-1]:
            raise InvalidArgumentError(
                f"levels={levels} on shape {tuple(shape)} with factor {factors}: level {level} "
                f"would be {below}, the same as level {level - 1}; at most {level} levels shrink "
                f"this volume (pass levels={level} or fewer)"
            )
        shapes.append(below)
    return shapes


def ngff_metadata(
    name: str, ndim: int, factors: tuple[int, ...], levels: int, axes: str | None = None
) -> dict[str, Any]:
    axis_names = list(axes) if axes else ["t", "c", "z", "y", "x"][-ndim:] if ndim <= 5 else None
    if axis_names is None or len(axis_names) != ndim:
        raise InvalidArgumentError(f"axes must name each of the {ndim} axes, e.g. 'zyx'")
    spatial = {"z", "y", "x"}
    datasets = []
    for level in range(levels):
        scale = [float(f**level) if a in spatial else 1.0 for a, f in zip(axis_names, factors)]
        datasets.append(
            {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    kinds = {"t": "time", "c": "channel"}
    return {
        "multiscales": [
            {
                "version": "0.4",
                "name": name,
                "axes": [
                    {
                        "name": a,
                        "type": kinds.get(a, "space"),
                        **({"unit": "micrometer"} if a in spatial else {}),
                    }
                    for a in axis_names
                ],
                "datasets": datasets,
                "type": "gaussian" if name else None,
            }
        ]
    }


async def _resumed_level(options: ExecOptions, outputs: list[Source]) -> int:
    """The level whose run folder ``options.resume_from`` is (its output spec tells)."""
    assert options.resume_from is not None and options.job_config is not None
    backend = runner_backend(options.job_type)
    manifest = await backend.read_manifest(options.job_config, options.resume_from)
    wanted = manifest["sources"]["output"]
    for level, out in enumerate(outputs):
        if out.to_spec().to_json() == wanted:
            return level
    raise InvalidArgumentError(
        f"resume_from={options.resume_from!r} is not a run of this pyramid's levels (its output "
        "is none of them); pass the tmp_folder of the RunnerError that this pyramid raised"
    )


async def pyramid(
    input: Any,
    output_path: str | os.PathLike[str],
    levels: int,
    *,
    factor: Any = 2,
    method: str = "auto",
    chunks: tuple[int, ...] | None = None,
    axes: str | None = None,
    exist_ok: bool = False,
    **exec_kwargs: Unpack[ExecKwargs],
) -> list[Source]:
    """Write ``levels`` resolution levels of ``input`` as an OME-Zarr group at ``output_path``.

    ``factor`` is per level (int or per axis); ``method`` is 'auto' (nearest for label-like
    integer data, smooth otherwise), 'nearest', 'linear', 'smooth' (linear + anti-aliasing) or
    'cubic'. Returns the level sources, finest first. Every argument is checked before anything
    is created.
    """
    options = exec_options(exec_kwargs)
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
    src = as_source(input)
    if options.distributed and not src.reopenable:
        raise InvalidArgumentError(
            f"the input ({src.describe()}) lives in this process's memory and cannot be "
            f"reopened by {options.job_type} workers; write it to zarr/n5 first or use "
            "job_type='local'"
        )
    factors = normalize_factors(factor, src.ndim)
    shapes = level_shapes(src.shape, factors, levels)
    chosen = choose_method(method, src.dtype)
    order, anti_aliasing = METHODS[chosen]
    path = os.fspath(output_path)
    name = os.path.basename(path.rstrip("/"))
    attrs = ngff_metadata(name, src.ndim, factors, len(shapes), axes)
    # a chunked store's chunks carry over; page-wise chunks of a TIFF (1, Y, X) would not suit
    level_chunks = (
        chunks
        or (src.chunks if src.tensorstore() is not None else None)
        or tuple(min(n, 64) for n in src.shape)
    )
    resuming = options.resume_from is not None
    outputs = [
        await create_source(
            path,
            shape=shape,
            dtype=src.dtype,
            format="zarr",
            chunks=tuple(min(c, n) for c, n in zip(level_chunks, shape)),
            internal_path=str(level),
            exist_ok=exist_ok or resuming,
        )
        for level, shape in enumerate(shapes)
    ]
    first = await _resumed_level(options, outputs) if resuming else 0
    total = options.stats
    for level, out in enumerate(outputs):
        if level < first:
            continue  # written by the run that failed at level ``first``
        stats = RunStats()
        step = options.replace(
            resume_from=options.resume_from if level == first else None, stats=stats
        )
        step_kwargs = step.as_kwargs()
        if level == 0:
            await copy(src, out, **step_kwargs)
        else:
            await downsample(
                outputs[level - 1],
                factors,
                out,
                order=order,
                anti_aliasing=anti_aliasing,
                **step_kwargs,
            )
        if total is not None:
            total.merge(stats)
    attrs["multiscales"][0]["type"] = chosen
    attrs["multiscales"][0]["metadata"] = {
        "method": chosen,
        "order": order,
        "anti_aliasing": anti_aliasing,
    }
    await run_blocking(_write_json, os.path.join(path, ".zattrs"), attrs)
    return outputs


def _write_json(path: str, data: dict[str, Any]) -> None:
    with open(path, "w") as handle:
        json.dump(data, handle, indent=1)
