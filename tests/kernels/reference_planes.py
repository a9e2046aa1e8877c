"""The anti-aliased plane kernel as it was before the fast rewrite: the reference that
``bioimage_async.kernels.resample_planes`` must equal bit for bit.

A verbatim copy of ``resample_planes.py`` and of ``Resampling._planes`` / ``_to_dtype`` from
``resample.py`` at commit 2faeb87 (kept here, not imported, so the reference cannot drift).
"""

from __future__ import annotations

import numpy as np

from bioimage_async.kernels.resample import Resampling

_TRUNCATE = 4.0


def gaussian_weights(sigma: float) -> np.ndarray:
    """scipy.ndimage's Gaussian kernel (truncate 4), as float32; [1] for sigma 0."""
    if sigma <= 0:
        return np.ones(1, np.float32)
    radius = int(_TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (x / sigma) ** 2)
    return (weights / weights.sum()).astype(np.float32)


def _filter_axis(
    src: np.ndarray, dst: np.ndarray, tmp: np.ndarray, axis: int, step: int, weights: np.ndarray
) -> None:
    """dst[i] = sum_k weights[k] * src[step * i + k] along ``axis`` (src padded by the radius)."""
    radius, n = len(weights) // 2, dst.shape[axis]

    def taps(offset: int) -> np.ndarray:
        index = [slice(None)] * src.ndim
        index[axis] = slice(offset, offset + step * (n - 1) + 1, step)
        return src[tuple(index)]

    np.multiply(taps(radius), weights[radius], out=dst, dtype=np.float32)
    for k in range(1, radius + 1):  # symmetric kernel: pair the taps, one multiply per pair
        np.add(taps(radius - k), taps(radius + k), out=tmp, dtype=np.float32)
        tmp *= weights[radius + k]
        dst += tmp


def smooth_sample_planes(
    padded: np.ndarray,
    out_shape: tuple[int, int, int],
    steps: tuple[int, int, int],
    weights: list[np.ndarray],
) -> np.ndarray:
    """The separable Gaussian of ``padded`` at positions ``step * i``, plane by plane.

    ``padded`` holds, per axis, ``radius`` samples before position 0 and after the last one
    (mirror-padded where the block touches the volume border).
    """
    (nz, ny, nx), (sz, sy, sx) = out_shape, steps
    wz, wy, wx = weights
    rz = len(wz) // 2
    py, px = padded.shape[1], padded.shape[2]
    plane, plane_tmp = np.empty((py, px), np.float32), np.empty((py, px), np.float32)
    rows, rows_tmp = np.empty((ny, px), np.float32), np.empty((ny, px), np.float32)
    out_tmp = np.empty((ny, nx), np.float32)
    out = np.empty(out_shape, np.float32)
    for i in range(nz):
        center = sz * i + rz
        np.multiply(padded[center], wz[rz], out=plane, dtype=np.float32)
        for k in range(1, rz + 1):
            np.add(padded[center - k], padded[center + k], out=plane_tmp, dtype=np.float32)
            plane_tmp *= wz[rz + k]
            plane += plane_tmp
        _filter_axis(plane, rows, rows_tmp, 0, sy, wy)
        _filter_axis(rows, out[i], out_tmp, 1, sx, wx)
    return out


def crop_or_mirror(
    data: np.ndarray,
    have: list[tuple[int, int]],
    need: list[tuple[int, int]],
    shape: tuple[int, ...],
) -> np.ndarray:
    """``data`` (covering the ``have`` ranges) cut or mirror-padded to exactly ``need``."""
    crop, pad = [], []
    for (h0, _), (n0, n1), n in zip(have, need, shape):
        crop.append(slice(max(n0, 0) - h0, min(n1, n) - h0))
        pad.append((max(0, -n0), max(0, n1 - n)))
    data = data[tuple(crop)]
    if any(p != (0, 0) for p in pad):
        data = np.pad(data, pad, mode="reflect")  # numpy 'reflect' is scipy's 'mirror'
    return data


def _to_dtype(result: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Back to the input dtype: round and clip for integers, threshold for booleans."""
    if result.dtype == dtype:
        return result
    if dtype.kind == "b":
        return result > 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(result), info.min, info.max).astype(dtype)
    return result.astype(dtype)


def reference_compute(
    resampling: Resampling, out_roi: tuple[slice, ...], data: np.ndarray
) -> np.ndarray:
    """``Resampling.compute`` of the integer-factor anti-aliased path, as it was."""
    steps = resampling.integer_steps
    assert steps is not None and resampling.anti_aliasing and resampling.order <= 1
    weights = [gaussian_weights(sigma) for sigma in resampling.sigmas]
    have = [(s.start, s.stop) for s in resampling.input_roi(out_roi)]
    need = [
        (step * s.start - len(w) // 2, step * (s.stop - 1) + len(w) // 2 + 1)
        for step, s, w in zip(steps, out_roi, weights)
    ]
    padded = crop_or_mirror(data, have, need, resampling.in_shape)
    z, y, x = steps
    nz, ny, nx = (s.stop - s.start for s in out_roi)
    result = smooth_sample_planes(padded, (nz, ny, nx), (z, y, x), weights)
    return _to_dtype(result, np.dtype(resampling.dtype))
