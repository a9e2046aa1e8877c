"""Physical voxel size and unit: read from each writer's convention, written in OME-NGFF's.

A pyramid that loses the voxel size (4 x 4 x 40 nm for serial-section EM, 0.1 x 0.1 x 0.3 um
for light sheet) is wrong in every viewer, and each tool stores it its own way: precomputed
``resolution`` (nm, x y z), n5 ``resolution`` / ``pixelResolution`` / ImageJ's ``pixelWidth``
(x y z), ImageJ TIFF ``spacing`` and resolution tags, MRC's voxel size (Angstrom, x y z), NIfTI
``pixdim`` (x y z, usually mm), HDF5 ``element_size_um`` (z y x, vigra/ilastik) and OME-Zarr's
coordinate transformations. Sources present it in their own axis order (C order) as
``voxel_size`` with one ``unit``, spelled as OME-NGFF spells units (UDUNITS-2 names). Files
that give each axis its own unit (OME-Zarr axes, tensorstore's n5 ``units``) are converted to
one: see ``common_unit``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidArgumentError

logger = logging.getLogger("bioimage_async")

#: Spellings seen in the wild -> OME-NGFF's unit name.
_UNITS = {
    "angstrom": "angstrom",
    "a": "angstrom",
    "å": "angstrom",
    "\u212b": "angstrom",
    "nanometer": "nanometer",
    "nm": "nanometer",
    "nanometre": "nanometer",
    "micrometer": "micrometer",
    "um": "micrometer",
    "µm": "micrometer",
    "\u03bcm": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "micrometre": "micrometer",
    "\\u00b5m": "micrometer",
    "millimeter": "millimeter",
    "mm": "millimeter",
    "millimetre": "millimeter",
    "centimeter": "centimeter",
    "cm": "centimeter",
    "meter": "meter",
    "m": "meter",
    "metre": "meter",
}

#: One unit in nanometers (for precomputed, whose resolution is always nm).
NANOMETERS = {
    "angstrom": 0.1,
    "nanometer": 1.0,
    "micrometer": 1e3,
    "millimeter": 1e6,
    "centimeter": 1e7,
    "meter": 1e9,
}


def normalize_unit(unit: Any) -> str | None:
    """OME-NGFF's name for a unit spelling ('um' -> 'micrometer'); None for none/pixels."""
    if unit is None:
        return None
    text = str(unit).strip().lower()
    if text in ("", "pixel", "pixels", "px", "none", "unknown"):
        return None
    return _UNITS.get(text, text)


def check_unit(unit: str | None) -> str | None:
    """A unit given by the user: normalised, or an error listing the known ones."""
    normalized = normalize_unit(unit)
    if normalized is not None and normalized not in NANOMETERS:
        raise InvalidArgumentError(
            f"unknown unit {unit!r}; use one of {', '.join(sorted(NANOMETERS))} (or the usual "
            "abbreviations: nm, um, mm)"
        )
    return normalized


def positive_sizes(values: Any, ndim: int | None = None) -> tuple[float, ...] | None:
    """Finite positive floats, or None when the values are missing or meaningless (0, NaN)."""
    if values is None:
        return None
    try:
        sizes = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    if not sizes or any(not math.isfinite(v) or v <= 0 for v in sizes):
        return None
    if ndim is not None and len(sizes) != ndim:
        return None
    return sizes


def for_axes(spatial_zyx: Sequence[float], ndim: int, fill: float = 1.0) -> tuple[float, ...]:
    """A per-axis tuple for an ``ndim`` array whose last axes are (..., z, y, x): ``fill`` (a
    size of 1.0, a position of 0.0) for the leading non-spatial axes (channels, time)."""
    spatial = tuple(spatial_zyx)[-min(ndim, len(spatial_zyx)) :]
    return (fill,) * (ndim - len(spatial)) + spatial


def on_spatial_axes(
    sizes: Sequence[float], ndim: int, axes: str | None, fill: float = 1.0
) -> tuple[float, ...]:
    """Sizes (or, with ``fill=0.0``, positions) given for the spatial axes only, on an ``ndim``
    array: on the axes ``axes`` names z, y, x where it names as many (an ImageJ 'zcyx'
    hyperstack keeps its channel axis at ``fill``), else on the last axes (``for_axes``)."""
    sizes = tuple(float(v) for v in sizes)
    if len(sizes) == ndim or axes is None or len(axes) != ndim:
        return for_axes(sizes, ndim, fill)
    spatial = [a for a in range(ndim) if axes[a] in "zyx"]
    if len(spatial) != len(sizes):
        return for_axes(sizes, ndim, fill)
    placed = [fill] * ndim
    for axis, size in zip(spatial, sizes):
        placed[axis] = size
    return tuple(placed)


def n5_voxel_size(
    attributes: dict[str, Any], ndim: int
) -> tuple[tuple[float, ...], str | None] | None:
    """(voxel size in C order, unit) from n5 attributes in the N5-viewer, saalfeld
    ``resolution`` or n5-ij (ImageJ) conventions, all stored fastest axis first. A ``units``
    list (tensorstore's, one unit per axis) is converted to one unit (``common_unit``); None
    where its spatial units cannot be."""
    unit: Any = None
    sizes = None
    pixel = attributes.get("pixelResolution")
    if isinstance(pixel, dict):
        sizes = positive_sizes(pixel.get("dimensions"))
        unit = pixel.get("unit")
    elif isinstance(pixel, list):
        sizes = positive_sizes(pixel)
    if sizes is None and "resolution" in attributes:
        sizes = positive_sizes(attributes.get("resolution"))
        unit = attributes.get("unit") or attributes.get("units")
    if sizes is None and "pixelWidth" in attributes:
        sizes = positive_sizes(
            [attributes.get(k, 1.0) for k in ("pixelWidth", "pixelHeight", "pixelDepth")][:ndim]
        )
        unit = attributes.get("pixelUnit")
    if sizes is None:
        return None
    factors = positive_sizes(attributes.get("downsamplingFactors"))
    if factors is not None and len(factors) == len(sizes):
        sizes = tuple(s * f for s, f in zip(sizes, factors))
    zyx = tuple(reversed(sizes))
    if isinstance(unit, list):
        converted = _n5_in_one_unit(zyx, unit, attributes.get("axes"))
        if converted is None:
            return None
        zyx, unit = converted
    return for_axes(zyx, ndim), normalize_unit(unit)


def _n5_in_one_unit(
    zyx: tuple[float, ...], units: list[Any], labels: Any
) -> tuple[tuple[float, ...], str | None] | None:
    """Sizes (C order) whose per-axis ``units`` (fastest first, as stored) become one unit; the
    ``axes`` labels (tensorstore's) say which axes are spatial, else the last three are."""
    named = [normalize_unit(u) for u in reversed(units)]
    if len(named) != len(zyx):  # not one unit per size: usable only if they agree
        agreed = {u for u in named if u is not None}
        if len(agreed) <= 1:
            return zyx, next(iter(agreed), None)
        logger.warning(
            "n5 'units' %s do not pair with 'resolution' %s: the voxel size is left unknown",
            units,
            list(reversed(zyx)),
        )
        return None
    letters = "".join(str(a).lower() for a in reversed(labels or [])) or None
    if not isinstance(labels, list) or not _tczyx(letters, len(zyx)):
        letters = None
    names = list(letters) if letters else [f"axis {i}" for i in range(len(zyx))]
    found = common_unit(named, spatial_axes(len(zyx), letters), names)
    if found is None:
        return None
    unit, factors = found
    return tuple(s * f for s, f in zip(zyx, factors)), unit


def _tczyx(letters: str | None, ndim: int) -> bool:
    """Whether ``letters`` name ``ndim`` axes, each once, with letters of "tczyx"."""
    return (
        letters is not None
        and len(letters) == ndim
        and len(set(letters)) == ndim
        and set(letters) <= set("tczyx")
    )


def common_unit(
    units: Sequence[str | None], spatial: Sequence[bool], names: Sequence[str]
) -> tuple[str | None, tuple[float, ...]] | None:
    """The one unit for axes that each carry their own (``units``, normalised, C order), and
    the factor that brings each axis's values (sizes, translations) into it.

    The unit is x's, the fastest spatial axis's (the last one with a unit), as the OME-TIFF
    reader converts every PhysicalSize to PhysicalSizeX's unit and n5 ``units`` list x first.
    Only spatial axes convert: a time axis in seconds or a channel axis keeps its values. A
    spatial axis without a unit takes the common one as is. Where the spatial units differ
    and one is not a length known here, nothing is converted or mixed: None, with a warning
    naming the axes (the caller then leaves the voxel size unknown, as for TIFF).
    """
    found = [normalize_unit(u) if s else None for u, s in zip(units, spatial)]
    given = [u for u in found if u is not None]
    if not given:
        return None, (1.0,) * len(found)
    unit = given[-1]
    if all(u == unit for u in given):
        return unit, (1.0,) * len(found)
    strange = sorted({u for u in given if u not in NANOMETERS})
    if strange:
        listed = ", ".join(f"{n}: {u!r}" for n, u, s in zip(names, found, spatial) if s)
        logger.warning(
            "the spatial axes have different units (%s) and %s %s not a length unit "
            "bioimage_async converts (%s): their voxel size and translation are left unknown "
            "rather than mixed; give the sizes with voxel_size= and unit= (ba.pyramid, "
            "--voxel-size/--unit), or record one length unit on every spatial axis",
            listed,
            ", ".join(repr(u) for u in strange),
            "is" if len(strange) == 1 else "are",
            ", ".join(sorted(NANOMETERS)),
        )
        return None
    factors = tuple(NANOMETERS[u] / NANOMETERS[unit] if u is not None else 1.0 for u in found)
    return unit, factors


def pixel_resolution(voxel_size: Sequence[float], unit: str | None) -> dict[str, Any]:
    """N5-viewer's ``pixelResolution`` (fastest axis first, with its unit), which n5 datasets
    and plain zarr arrays carry here (the N5 API reads zarr through n5-zarr the same way)."""
    return {"dimensions": [float(v) for v in reversed(voxel_size)], "unit": unit or "pixel"}


def zarr_voxel_size(
    attributes: dict[str, Any], ndim: int
) -> tuple[tuple[float, ...] | None, str | None]:
    """(voxel size in C order, unit) of a plain zarr array: its ``pixelResolution`` attribute
    only (as ``create_source`` writes it). A bare ``resolution`` is not read on zarr arrays:
    tools write it in either axis order there."""
    pixel = attributes.get("pixelResolution")
    found = n5_voxel_size({"pixelResolution": pixel}, ndim) if isinstance(pixel, dict) else None
    if found is None or len(found[0]) != ndim:
        return None, None
    return found


def microns(
    voxel_size: Sequence[float], unit: str | None, spatial: Sequence[bool]
) -> tuple[float, ...]:
    """``voxel_size`` in micrometres on its spatial axes (HDF5's ``element_size_um``)."""
    return sizes_in_unit(voxel_size, unit, "micrometer", spatial)


def spatial_axes(ndim: int, axes: str | None) -> list[bool]:
    """Which axes hold a physical size: those named z, y or x, else the last three."""
    if axes is not None and len(axes) == ndim:
        return [a in "zyx" for a in axes]
    return [a >= ndim - 3 for a in range(ndim)]


def in_nanometers(sizes: Sequence[float], unit: str | None) -> list[float]:
    """Sizes converted to nm (precomputed's unit); sizes without a unit are taken as nm."""
    factor = NANOMETERS.get(unit or "nanometer", 1.0)
    return [converted(float(v), factor) for v in sizes]


def sizes_in_unit(
    sizes: Sequence[float], from_unit: str | None, to_unit: str | None, spatial: Sequence[bool]
) -> tuple[float, ...]:
    """``sizes`` (in ``from_unit``) expressed in ``to_unit`` on the spatial axes.

    Naming another unit for recorded sizes is a conversion, not a relabelling: 0.1 um called
    nm would make the volume 1000 times smaller. Sizes without a unit take ``to_unit`` as is.
    """
    if from_unit is None or to_unit is None or from_unit == to_unit:
        return tuple(float(s) for s in sizes)
    factor = NANOMETERS[from_unit] / NANOMETERS[to_unit]
    return tuple(
        converted(float(s), factor) if is_spatial else float(s)
        for s, is_spatial in zip(sizes, spatial)
    )


def converted(value: float, factor: float) -> float:
    """``value * factor`` without the binary noise of the unit factor (0.3 um is 300 nm, not
    300.00000000000006), kept to 15 significant digits: what a decimal value written into
    metadata carries."""
    return float(f"{value * factor:.15g}")


def voxel_centre(
    offset: Sequence[float], sizes: Sequence[float], base: Sequence[float]
) -> tuple[float, ...]:
    """Where the centre of voxel ``offset`` of a level with voxel ``sizes`` sits, taking the
    finest level's (``base``) voxel centres as the origin, as OME-Zarr pyramids place
    downsampled levels: a voxel 2x the base's size is centred half a base voxel further on."""
    return tuple(float(o) * s + (s - b) / 2 for o, s, b in zip(offset, sizes, base))
