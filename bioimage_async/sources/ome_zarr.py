"""OME-Zarr (OME-NGFF 0.4 and 0.5) multiscale metadata: read when opening, built for pyramids.

0.4 keeps its metadata in a zarr v2 group's ``.zattrs`` (``multiscales[].version == "0.4"``);
0.5 in a zarr v3 group's ``zarr.json`` under ``attributes.ome`` (``ome.version == "0.5"``), with
``dimension_names`` on the arrays. Each dataset (level) has a ``scale`` and optionally a
``translation`` transform; the multiscale may add a global transform. Voxel i of a level sits at
``translation + i * scale`` in physical space (pixel centres). Each axis has its own unit;
a source has one, so spatial axes in different length units are converted to x's (see
``physical.common_unit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError
from .location import Location
from .physical import common_unit, positive_sizes

SPATIAL = ("z", "y", "x")
AXIS_TYPES = {"t": "time", "c": "channel"}


async def group_attributes(location: Location, key: str) -> dict[str, Any] | None:
    """The attributes of a zarr v2 or v3 group at ``key`` (v3: ``ome`` unwrapped), or None."""
    here = location.join(key)
    meta = await here.read_json("zarr.json")
    if meta is not None:
        if meta.get("node_type") != "group":
            return None
        attributes = dict(meta.get("attributes") or {})
        ome = attributes.get("ome")
        return {**attributes, **ome} if isinstance(ome, dict) else attributes
    if await here.exists(".zgroup"):
        return await here.read_json(".zattrs") or {}
    return None


@dataclass(frozen=True)
class Level:
    """One dataset of a multiscale: its path, voxel size, translation and unit (C order)."""

    path: str
    voxel_size: tuple[float, ...] | None
    translation: tuple[float, ...] | None
    unit: str | None
    #: the axes' names as letters of "tczyx" ("czyx"), or None when they are not all such
    axes: str | None = None


def _transform(transforms: Any, kind: str) -> tuple[float, ...] | None:
    for transform in transforms or []:
        if isinstance(transform, dict) and transform.get("type") == kind:
            values = transform.get(kind)
            if not isinstance(values, (list, tuple)):
                return None
            try:
                return tuple(float(v) for v in values)
            except (TypeError, ValueError):
                return None
    return None


def multiscale_levels(attributes: dict[str, Any]) -> list[Level] | None:
    """The levels of the first multiscale in group attributes, or None without one. Sizes and
    translations are in one spatial unit; where the axes' units cannot be made one, both are
    None (with a warning) rather than mixed."""
    multiscales = attributes.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales:
        return None
    first = multiscales[0]
    axes = [a for a in first.get("axes", []) if isinstance(a, dict)]
    names = "".join(str(a.get("name", "")) for a in axes)
    letters = names if len(names) == len(axes) and len(set(names)) == len(names) else None
    if letters is not None and not set(letters) <= set("tczyx"):
        letters = None
    # a time axis's "second" is not the unit of the voxel size, nor converted to it
    found = common_unit(
        [a.get("unit") for a in axes],
        [_is_spatial(a) for a in axes],
        [str(a.get("name", i)) for i, a in enumerate(axes)],
    )
    unit, factors = found if found is not None else (None, None)
    global_scale = _transform(first.get("coordinateTransformations"), "scale")
    global_shift = _transform(first.get("coordinateTransformations"), "translation")
    levels = []
    for dataset in first.get("datasets", []):
        scale = _transform(dataset.get("coordinateTransformations"), "scale")
        shift = _transform(dataset.get("coordinateTransformations"), "translation")
        if scale is not None and global_scale is not None and len(scale) == len(global_scale):
            scale = tuple(a * b for a, b in zip(scale, global_scale))
            if shift is not None:
                shift = tuple(a * b for a, b in zip(shift, global_scale))
        if global_shift is not None:
            shift = tuple(a + b for a, b in zip(shift or (0.0,) * len(global_shift), global_shift))
        if found is None:  # units that cannot be made one: unknown, not mixed
            scale = shift = None
        levels.append(
            Level(
                str(dataset.get("path")),
                positive_sizes(_in_unit(scale, factors)),
                _in_unit(shift, factors),
                unit,
                letters,
            )
        )
    return levels


def _in_unit(
    values: tuple[float, ...] | None, factors: tuple[float, ...] | None
) -> tuple[float, ...] | None:
    """Per-axis ``values`` times each axis's factor into the common unit; None where they
    need converting but do not pair up with the axes (better unknown than wrong)."""
    if values is None or factors is None or all(f == 1.0 for f in factors):
        return values
    if len(values) != len(factors):
        return None
    return tuple(v * f for v, f in zip(values, factors))


def _is_spatial(axis: dict[str, Any]) -> bool:
    kind = axis.get("type")
    return kind == "space" if kind is not None else axis.get("name") in SPATIAL


def pick_level(levels: list[Level], level: int | None, where: str) -> Level:
    index = 0 if level is None else level
    if not 0 <= index < len(levels):
        raise InvalidArgumentError(
            f"level={level} is out of range: the multiscale at {where} has {len(levels)} "
            f"levels (0..{len(levels) - 1}: {', '.join(lv.path for lv in levels)})"
        )
    return levels[index]


# ---- writing ------------------------------------------------------------------------------
def axes_json(axes: str, unit: str | None) -> list[dict[str, Any]]:
    return [
        {
            "name": a,
            "type": AXIS_TYPES.get(a, "space"),
            **({"unit": unit} if unit and a in SPATIAL else {}),
        }
        for a in axes
    ]


def dataset_json(path: str, scale: Sequence[float], translation: Sequence[float]) -> dict[str, Any]:
    transforms: list[dict[str, Any]] = [{"type": "scale", "scale": [float(v) for v in scale]}]
    if any(translation):
        transforms.append({"type": "translation", "translation": [float(v) for v in translation]})
    return {"path": path, "coordinateTransformations": transforms}


def multiscale_json(
    name: str,
    axes: str,
    unit: str | None,
    datasets: list[dict[str, Any]],
    method: str,
    details: dict[str, Any],
    version: str,
) -> dict[str, Any]:
    """One ``multiscales`` entry (0.4 carries its version inside, 0.5 at the ``ome`` level)."""
    entry: dict[str, Any] = {
        "name": name,
        "axes": axes_json(axes, unit),
        "datasets": datasets,
        "type": method,
        "metadata": details,
    }
    if version == "0.4":
        entry = {"version": "0.4", **entry}
    return entry


def image_attributes(multiscale: dict[str, Any], version: str) -> dict[str, Any]:
    """The group attributes of an image (0.5: under ``ome``)."""
    if version == "0.4":
        return {"multiscales": [multiscale]}
    return {"ome": {"version": "0.5", "multiscales": [multiscale]}}


def label_attributes(multiscale: dict[str, Any], version: str) -> dict[str, Any]:
    """The attributes of ``labels/<name>``: a multiscale plus ``image-label``."""
    if version == "0.4":
        return {
            "multiscales": [multiscale],
            "image-label": {"version": "0.4", "source": {"image": "../../"}},
        }
    return {
        "ome": {
            "version": "0.5",
            "multiscales": [multiscale],
            "image-label": {"source": {"image": "../../"}},
        }
    }


def labels_group_attributes(names: list[str], version: str) -> dict[str, Any]:
    if version == "0.4":
        return {"labels": names}
    return {"ome": {"version": "0.5", "labels": names}}


def labels_in(attributes: dict[str, Any] | None) -> list[str]:
    """The label names an existing ``labels`` group lists (either version)."""
    if not attributes:
        return []
    names = attributes.get("labels")
    return [str(n) for n in names] if isinstance(names, list) else []
