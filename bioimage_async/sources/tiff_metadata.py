"""What a TIFF series says about its axes and voxel sizes, and nothing it does not say.

tifffile names a series' axes with letters (ImageJ hyperstacks are ZCYX or TZCYX, RGB files
end in S, files without metadata start with Q). Those letters decide which axes are spatial, so
a pyramid never averages channels or colours; a size the file does not record is unknown
(None), never ImageJ's default depth of 1 unit outside ImageJ files.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from typing import Any

from .physical import NANOMETERS, normalize_unit, positive_sizes

#: tifffile's axis letters that name one of "tczyx" (S: samples of a pixel, e.g. RGB)
_OME_LETTERS = {"T": "t", "C": "c", "S": "c", "Z": "z", "Y": "y", "X": "x"}
#: axes whose size is 1.0 whatever the file says: not spatial
_NOT_SPATIAL = frozenset("TCS")


def layout_axes(series: Any, shape: tuple[int, ...], page_shape: tuple[int, ...]) -> str:
    """The tifffile letters of ``shape``: the series' own, or for pages stacked along leading
    axes the page's letters after unknown ('Q') leading ones."""
    axes = str(getattr(series, "axes", ""))
    if len(axes) == len(shape) and tuple(int(n) for n in series.shape) == shape:
        return axes
    page_axes = str(getattr(series.keyframe, "axes", ""))
    if len(page_axes) != len(page_shape):
        return "Q" * len(shape)
    return "Q" * (len(shape) - len(page_shape)) + page_axes


def source_axes(letters: str) -> str | None:
    """The "tczyx" letters of tifffile's ``letters``; None when the file names none but Y and
    X (a plain stack: the default axes apply). Unknown letters (Q, I, ...) take the letters of
    the default axes that the file leaves unused, in order, so 'QYXS' is 'zyxc', which a
    pyramid refuses instead of reading the colours as x."""
    known = [_OME_LETTERS.get(letter) for letter in letters]
    if all(letter is None for letter in known[:-2]) and known[-2:] == ["y", "x"]:
        return None
    default = "tczyx"[-len(letters) :] if len(letters) <= 5 else None
    if any(letter is None for letter in known):
        if default is None:
            return None
        spare = iter(a for a in default if a not in known)
        known = [letter if letter is not None else next(spare, "?") for letter in known]
    result = "".join(str(letter) for letter in known)
    return None if "?" in result else result


def tiff_voxel_size(
    tif: Any, series: Any, series_index: int, axes: str
) -> tuple[tuple[float, ...] | None, str | None]:
    """Per-axis sizes of one series, placed by its axis letters (channel, sample and time axes
    read 1.0), from the OME-XML's PhysicalSize* where the file has it, else from its first
    page's X/YResolution tags with ImageJ's ``unit`` and ``spacing``. A Z (or unnamed leading)
    axis without a recorded size makes the whole voxel size unknown: ImageJ's own default depth
    of 1.0 applies to ImageJ files only. None where the file has no physical size."""
    if "Y" not in axes or "X" not in axes:
        return None, None
    try:
        sizes, unit = _ome_sizes(tif, series_index) if tif.is_ome else (None, None)
        if sizes is None:
            sizes, unit = _tag_sizes(tif, series)
    except (AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError):
        return None, None
    if sizes is None or unit is None:
        return None, None
    per_axis = []
    for axis in axes:
        if axis in _NOT_SPATIAL:
            per_axis.append(1.0)
        elif axis in sizes:
            per_axis.append(sizes[axis])
        else:
            return None, None  # a depth the file does not record: unknown, not 1 unit
    if positive_sizes(per_axis) is None:
        return None, None
    return tuple(per_axis), unit


def _tag_sizes(tif: Any, series: Any) -> tuple[dict[str, float] | None, str | None]:
    """X/Y from the series' own resolution tags (pixels per unit); Z from ImageJ's spacing."""
    tags = series.keyframe.tags
    sizes: dict[str, float] = {}
    for axis, name in (("Y", "YResolution"), ("X", "XResolution")):
        tag = tags.get(name)
        if tag is None:
            return None, None
        numerator, denominator = tag.value
        sizes[axis] = float(denominator) / float(numerator) if numerator else 0.0
    metadata = tif.imagej_metadata if tif.is_imagej else None
    if metadata is not None:
        unit = normalize_unit(metadata.get("unit"))
        spacing = metadata.get("spacing")
        sizes["Z"] = float(spacing) if spacing is not None else 1.0  # ImageJ's own default
        return sizes, unit
    resolution_unit = int(getattr(tags.get("ResolutionUnit"), "value", 1))
    return sizes, {3: "centimeter"}.get(resolution_unit)  # 2 (inch) or none: no physical size


def _ome_sizes(tif: Any, series_index: int) -> tuple[dict[str, float] | None, str | None]:
    """PhysicalSizeX/Y/Z of the series' OME Image, in X's unit (OME's default: micrometer)."""
    root = ElementTree.fromstring(tif.ome_metadata)
    images = [e for e in root if e.tag.endswith("}Image") or e.tag == "Image"]
    if len(images) != len(tif.series) and len(images) != 1:
        return None, None  # which Image is this series: not told apart, so not guessed
    image = images[series_index if len(images) > 1 else 0]
    pixels = next((e for e in image if e.tag.endswith("Pixels")), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib:
        return None, None
    unit = normalize_unit(pixels.get("PhysicalSizeXUnit", "µm"))
    if unit not in NANOMETERS:
        return None, None
    sizes: dict[str, float] = {}
    for axis in "XYZ":
        value = pixels.get(f"PhysicalSize{axis}")
        axis_unit = normalize_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if value is None or axis_unit not in NANOMETERS:
            continue
        size = float(value) * NANOMETERS[axis_unit] / NANOMETERS[unit]
        if math.isfinite(size):
            sizes[axis] = size
    return (sizes, unit) if "Y" in sizes else (None, None)
