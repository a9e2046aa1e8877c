"""pyramid: an OME-Zarr (NGFF 0.4) multiscale image, level by level from the level above.

Level 0 is a copy of the input (the only pass that reads it); every further level is a
downsample of the level just written, which is ``factor**ndim`` times smaller, so the input is
read once and the total extra reading is a fraction of it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..context import run_blocking
from ..sources.base import Source
from ..sources.registry import as_source, create_source
from .copy import copy
from .downsample import downsample, normalize_factors
from .resample import downscale_shape

#: method -> (spline order, anti-aliasing)
METHODS = {"nearest": (0, False), "linear": (1, False), "smooth": (1, True), "cubic": (3, True)}


def choose_method(method: str, dtype: np.dtype) -> str:
    """'auto': nearest for 32/64-bit integers and booleans (labels), smooth for the rest."""
    if method != "auto":
        if method not in METHODS:
            raise ValueError(f"method must be 'auto' or one of {sorted(METHODS)}, got {method!r}")
        return method
    if dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize >= 4):
        return "nearest"
    return "smooth"


def ngff_metadata(
    name: str, ndim: int, factors: tuple[int, ...], levels: int, axes: str | None = None
) -> dict[str, Any]:
    axis_names = list(axes) if axes else ["t", "c", "z", "y", "x"][-ndim:] if ndim <= 5 else None
    if axis_names is None or len(axis_names) != ndim:
        raise ValueError(f"axes must name each of the {ndim} axes, e.g. 'zyx'")
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
    **exec_kwargs: Any,
) -> list[Source]:
    """Write ``levels`` resolution levels of ``input`` as an OME-Zarr group at ``output_path``.

    ``factor`` is per level (int or per axis); ``method`` is 'auto' (nearest for label-like
    integer data, smooth otherwise), 'nearest', 'linear', 'smooth' (linear + anti-aliasing) or
    'cubic'. Returns the level sources, finest first.
    """
    src = as_source(input)
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    factors = normalize_factors(factor, src.ndim)
    chosen = choose_method(method, src.dtype)
    order, anti_aliasing = METHODS[chosen]
    path = os.fspath(output_path)
    os.makedirs(path, exist_ok=True)
    # a chunked store's chunks carry over; page-wise chunks of a TIFF (1, Y, X) would not suit
    level_chunks = (
        chunks
        or (src.chunks if src.kind == "tensorstore" else None)
        or tuple(min(n, 64) for n in src.shape)
    )
    outputs: list[Source] = []
    shape = src.shape
    for level in range(levels):
        if level:
            shape = downscale_shape(shape, factors)
        out = await create_source(
            path,
            shape=shape,
            dtype=src.dtype,
            chunks=tuple(min(c, n) for c, n in zip(level_chunks, shape)),
            internal_path=str(level),
            exist_ok=exist_ok,
        )
        if level == 0:
            await copy(src, out, **exec_kwargs)
        else:
            await downsample(
                outputs[-1], factors, out, order=order, anti_aliasing=anti_aliasing, **exec_kwargs
            )
        outputs.append(out)
    attrs = ngff_metadata(os.path.basename(path.rstrip("/")), src.ndim, factors, levels, axes)
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
