"""Checked casting: values meet an output dtype without being silently wrapped.

numpy's ``astype`` stores 300.0 into uint8 as 44, -5 as 251, NaN as 0 and NaN into bool as
True, with at most a warning. A voxel changed that way is the worst kind of defect (nothing
says it happened), so by default a value the output cannot hold is an error naming the region,
the offending range and the fix. ``casting="clip"`` clips to the output's range (NaN to 0, so
False for bool) and ``casting="unsafe"`` is numpy's own ``astype``, for users who want exactly
that.

The check costs one min and one max over the block, and only when the conversion can lose
values (a "safe" cast in numpy's sense, e.g. uint8 to uint16, is never checked). Fractions are
truncated toward zero when floats go into integers, as numpy does; that is a rounding, not a
wrap, and is documented rather than refused.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import CastingError, InvalidArgumentError

CASTINGS = ("checked", "unsafe", "clip")


def _range_text(dtype: np.dtype) -> str:
    if dtype.kind == "b":
        return "False/True (0 or 1)"
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return f"{info.min}..{info.max}"
    info_f = np.finfo(dtype)
    return f"{float(info_f.min):.4g}..{float(info_f.max):.4g}"


def float_bounds(dtype: np.dtype) -> tuple[float, float]:
    """The widest float64 range that converts into integer ``dtype`` without overflow
    (float(2**63 - 1) rounds up to 2**63, which int64 cannot hold)."""
    info = np.iinfo(dtype)
    lo, hi = float(info.min), float(info.max)
    if int(hi) > info.max:
        hi = float(np.nextafter(hi, 0.0))
    return lo, hi


def float_bounds_in(dtype: np.dtype, source: np.dtype) -> tuple[np.floating, np.floating]:
    """``float_bounds`` as values of the float dtype ``source`` that still fit ``dtype``.

    Comparisons and clips of a float32 array against the Python float 2147483647.0 happen in
    float32 (numpy 2), where that bound is 2**31: a float32 2**31 passed the check and was
    stored into int32 as -2**31. Bounds held in the source dtype are exact.
    """
    kind = np.dtype(source).type
    bounds = []
    for bound in float_bounds(dtype):
        with np.errstate(over="ignore"):  # int32's bounds are beyond float16: inf, stepped back
            held = kind(bound)
        if not np.isfinite(held) or abs(float(held)) > abs(bound):  # rounded away from 0
            held = np.nextafter(held, kind(0))
        bounds.append(held)
    return bounds[0], bounds[1]


def lossless(source: np.dtype, dtype: np.dtype) -> bool:
    """Whether every value of ``source`` is held exactly by ``dtype``: numpy's "safe" casts,
    less the integers too wide for the float's mantissa (int64 into float64 is "safe" to numpy,
    yet 2**53 + 1 becomes 2**53)."""
    source, dtype = np.dtype(source), np.dtype(dtype)
    if not np.can_cast(source, dtype, "safe"):
        return False
    if source.kind in "iu" and dtype.kind in "fc":
        float_kind = dtype if dtype.kind == "f" else np.dtype(f"f{dtype.itemsize // 2}")
        magnitude_bits = source.itemsize * 8 - (source.kind == "i")
        return magnitude_bits <= np.finfo(float_kind).nmant + 1
    return True


def _exact_in_float(value: np.ndarray, dtype: np.dtype, low: Any, high: Any) -> bool:
    """Whether the integers of ``value`` (between ``low`` and ``high``) are all held exactly by
    the float ``dtype``; only those beyond its mantissa are looked at."""
    limit = 2 ** (np.finfo(dtype).nmant + 1)
    if -limit <= int(low) and int(high) <= limit:
        return True
    wide = (
        value[(value > limit) | (value < -limit)]
        if value.dtype.kind == "i"
        else value[value > limit]
    )
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = wide.astype(dtype)
        info = np.iinfo(value.dtype)
        # 2**63 (int64's max rounded) does not cast back: it is no value of the input anyway
        inside = (rounded >= float(info.min)) & (rounded < float(info.max) + 1.0)
        back = np.where(inside, rounded, 0).astype(value.dtype)
    return bool((inside & (back == wide)).all())


def _fits(value: np.ndarray, dtype: np.dtype) -> tuple[bool, str]:
    """Whether every value of ``value`` is representable in ``dtype``, and the value range."""
    if value.size == 0:
        return True, "no values"
    if value.dtype.kind == "c":
        if dtype.kind == "c":  # each part into a float of half the size (1e300+0j was inf)
            part = np.dtype(f"f{dtype.itemsize // 2}")
            real, real_shown = _fits(np.ascontiguousarray(value.real), part)
            imag, imag_shown = _fits(np.ascontiguousarray(value.imag), part)
            return real and imag, f"real parts {real_shown}, imaginary parts {imag_shown}"
        return False, "complex values"
    if dtype.kind == "c":  # a real value goes into the real part: a float of half the size
        return _fits(value, np.dtype(f"f{dtype.itemsize // 2}"))
    low, high = value.min(), value.max()
    nan = ""
    if value.dtype.kind == "f" and (np.isnan(low) or np.isnan(high)):
        if dtype.kind != "f":
            return False, "NaN values"
        # NaN fits a float; the other values must still be checked (float64 [nan, 1e39]
        # was written into float32 as [nan, inf])
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN block
            low, high = np.nanmin(value), np.nanmax(value)
        if np.isnan(low):
            return True, "NaN values"
        nan = " and NaN"
    shown = f"values from {low} to {high}{nan}"
    if dtype.kind == "b":
        return bool(low >= 0 and high <= 1 and np.isin(value, (0, 1)).all()), shown
    if dtype.kind in "iu":
        if value.dtype.kind == "f":
            if not (np.isfinite(low) and np.isfinite(high)):
                return False, shown
            lo, hi = float_bounds_in(dtype, value.dtype)
            return bool(low >= lo and high <= hi), shown
        info = np.iinfo(dtype)
        return bool(int(low) >= info.min and int(high) <= info.max), shown
    if dtype.kind == "f":
        if value.dtype.kind in "iub":  # exact, or the nearest float: refused, as an overflow
            with np.errstate(over="ignore"):  # float16: 65520 and up become inf
                ends = np.asarray([low, high]).astype(dtype)
            if not np.isfinite(ends).all():
                return False, shown
            if value.dtype.kind != "b" and not _exact_in_float(value, dtype, low, high):
                bits = np.finfo(dtype).nmant + 1
                return False, f"{shown}, integers beyond 2**{bits} that {dtype} rounds"
            return True, shown
        finfo = np.finfo(dtype)
        if not (np.isfinite(low) and np.isfinite(high)):
            # an infinite end hides the finite values beyond the range on its side ([inf,
            # 1e39] into float32 was written as [inf, inf]): look at the finite ones
            finite = value[np.isfinite(value)]
            if finite.size == 0:
                return True, shown
            low, high = finite.min(), finite.max()
        return bool(low >= finfo.min and high <= finfo.max), shown
    return True, shown


def cast_checked(
    value: np.ndarray,
    dtype: np.dtype,
    casting: str = "checked",
    where: str = "the region",
    *,
    inside: np.ndarray | None = None,
) -> np.ndarray:
    """``value`` as ``dtype`` under ``casting`` ("checked", "clip" or "unsafe").

    ``inside`` (a boolean array of ``value``'s shape, a block's mask) limits the check to the
    voxels that will be written: the others keep the output's old values, so a NaN background
    there must not fail the block. They are cast as numpy's ``astype`` does, to be dropped.
    """
    dtype = np.dtype(dtype)
    if value.dtype == dtype:
        return value
    if casting == "unsafe" or lossless(value.dtype, dtype):
        return value.astype(dtype)
    if casting == "clip":
        return clip_cast(value, dtype)
    if casting != "checked":
        raise InvalidArgumentError(f"casting must be one of {CASTINGS}, got {casting!r}")
    partial = inside is not None and not inside.all()
    fits, shown = _fits(value[inside] if partial else value, dtype)
    if not fits and shown.endswith("rounds"):
        raise CastingError(
            f"{where}: {shown} ({value.dtype} into {dtype}): writing them would store other "
            "numbers (the nearest float), which for labels are other labels. Write into an "
            "integer dtype that holds them, or pass casting='unsafe' (or 'clip') to accept "
            "the rounding"
        )
    if not fits:
        raise CastingError(
            f"{where}: {shown} ({value.dtype}) do not fit the output dtype {dtype} "
            f"({_range_text(dtype)}); writing them would store wrapped values. Pass "
            "casting='clip' to clip them to the range (NaN to 0), casting='unsafe' for numpy's "
            "wrapping, or write into a dtype that holds them"
        )
    if partial:  # NaN or out-of-range values outside the mask: cast, never written
        with np.errstate(invalid="ignore", over="ignore"):
            return value.astype(dtype)
    return value.astype(dtype)


def clip_cast(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Clip to ``dtype``'s range, then cast. Into integers and bool NaN becomes 0 and inf the
    range's ends; into floats, which hold them, inf and NaN stay."""
    if dtype.kind == "b":  # NaN is 0 here too: False, where numpy's NaN != 0 says True
        result = value != 0
        if value.dtype.kind in "fc":
            result &= ~np.isnan(value)  # a bool temporary, not a float copy
        return result
    if value.dtype.kind == "c":
        value = value.real
    if dtype.kind in "iu":
        if value.dtype.kind == "f":
            value = value.astype(np.float64, copy=False)  # so +inf clips to 2**31 - 1 exactly
            lo, hi = float_bounds(dtype)
            value = np.nan_to_num(value, nan=0.0, posinf=hi, neginf=lo)
            return np.clip(value, lo, hi).astype(dtype)
        if value.dtype.kind == "b":
            return value.astype(dtype)
        info, own = np.iinfo(dtype), np.iinfo(value.dtype)
        lo_i, hi_i = max(info.min, own.min), min(info.max, own.max)
        return np.clip(value, value.dtype.type(lo_i), value.dtype.type(hi_i)).astype(dtype)
    finfo = np.finfo(dtype)  # finite values clip to its range; inf and NaN stay what they are
    clipped = np.clip(value, finfo.min, finfo.max)
    if value.dtype.kind == "f":
        infinite = np.isinf(value)
        if infinite.any():
            clipped[infinite] = value[infinite]
    return clipped.astype(dtype)


def exact_fill_value(value: object, dtype: np.dtype) -> object:
    """``value`` when ``dtype`` holds it exactly (floats: to the nearest float), else an error.

    A fill value is what every unwritten voxel reads as: h5py clamps 300 into uint8 as 255 and
    numpy wraps -1 to 255 or NaN to 0, so an out-of-range or fractional fill would become a
    different value in every missing chunk without a word.
    """
    if value is None:
        return None
    dtype = np.dtype(dtype)
    try:
        held = np.asarray(value)
    except (OverflowError, TypeError, ValueError):
        held = np.asarray(None)
    if held.shape != () or held.dtype.kind not in "biuf":
        raise InvalidArgumentError(
            f"fill_value must be one number (or None), got {value!r}; it is what unwritten "
            f"voxels of the {dtype} array read as"
        )
    with np.errstate(all="ignore"):
        converted = held.astype(dtype)
    if dtype.kind == "f":  # the nearest float is a rounding; overflowing to inf is not
        as_float = held.astype(np.float64)
        exact = bool(
            np.isnan(as_float) == np.isnan(converted) and np.isinf(as_float) == np.isinf(converted)
        )
    else:
        exact = bool(converted == held)
    if not exact:
        raise InvalidArgumentError(
            f"fill_value {value!r} does not fit dtype {dtype} ({_range_text(dtype)}) exactly; "
            f"it would be stored as {converted.item()!r}. Pass a fill value the dtype holds"
        )
    return converted.item()
