"""The resampling kernels as they were before the anti-aliased plane kernel was rewritten.

A verbatim copy of ``bioimage_async/kernels/resample.py`` and ``resample_planes.py`` at commit
2faeb87 (the plane functions inlined below the class), for bench_smooth.py's before/after row:
its child replaces ``ops.downsample``'s ``Resampling`` with this one. Not used by the library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Roi = tuple[slice, ...]

_TRUNCATE = 4.0
_SPLINE_IIR_HALO = 12  # spline prefilter poles decay below 1e-6 within this many voxels


def downscale_shape(shape: tuple[int, ...], factors: tuple[int, ...]) -> tuple[int, ...]:
    """Output shape of a downsample: ceil(shape / factor) (ceil mode, no voxel dropped)."""
    return tuple(math.ceil(n / f) for n, f in zip(shape, factors))


def gaussian_radius(sigma: float) -> int:
    return int(_TRUNCATE * sigma + 0.5) if sigma > 0 else 0


@dataclass(frozen=True)
class Resampling:
    """Resample ``in_shape`` to ``out_shape``; regions are given in the output space."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    order: int = 0
    anti_aliasing: bool = False
    dtype: str = "uint8"

    @property
    def scales(self) -> tuple[float, ...]:
        return tuple(i / o for i, o in zip(self.in_shape, self.out_shape))

    @property
    def sigmas(self) -> tuple[float, ...]:
        if not self.anti_aliasing:
            return (0.0,) * len(self.in_shape)
        return tuple(max(0.0, (s - 1) / 2) for s in self.scales)

    @property
    def interpolates(self) -> bool:
        """Whether output values are computed (smoothing or interpolation), not just sampled."""
        return self.order > 0 or self.anti_aliasing

    def _halo(self, axis: int) -> int:
        spline = 1 if self.order <= 1 else self.order + 1 + _SPLINE_IIR_HALO
        return gaussian_radius(self.sigmas[axis]) + spline

    def input_roi(self, out_roi: Roi) -> Roi:
        """The input region that output region ``out_roi`` needs (with the filter's halo)."""
        roi = []
        for axis, (s, n, scale) in enumerate(zip(out_roi, self.in_shape, self.scales)):
            halo = self._halo(axis) if (self.order or self.anti_aliasing) else 0
            first = math.floor(s.start * scale)
            last = math.floor((s.stop - 1) * scale) + 1  # nearest rounding may go one up
            roi.append(slice(max(0, first - halo), min(n, last + 1 + halo)))
        return tuple(roi)

    @property
    def integer_steps(self) -> tuple[int, ...] | None:
        """The factors when in == factor * out on every axis (sampling at integer positions)."""
        steps = tuple(i // o for i, o in zip(self.in_shape, self.out_shape))
        exact = all(i == s * o for i, s, o in zip(self.in_shape, steps, self.out_shape))
        return steps if exact else None

    def compute(self, out_roi: Roi, data: np.ndarray) -> np.ndarray:
        """Output region ``out_roi`` from ``data``, the input over ``input_roi(out_roi)``."""
        steps = self.integer_steps
        if steps is not None and self.anti_aliasing and self.order <= 1 and data.ndim == 3:
            return _to_dtype(self._planes(out_roi, data, steps), np.dtype(self.dtype))
        start = tuple(s.start for s in self.input_roi(out_roi))
        if self.order <= 1:
            result = self._separable(out_roi, data, start)
        else:
            result = self._spline(out_roi, data, start)
        return _to_dtype(result, np.dtype(self.dtype))

    # ---- orders 0 and 1: axis by axis, as gathered taps ------------------------------------
    def axis_taps(self, axis: int, out_start: int, out_stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Global input indices and weights of every output position along one axis.

        Smoothing (a Gaussian with 'mirror' borders) followed by nearest/linear sampling is a
        linear map along the axis; each output voxel needs only a few input voxels, so it is
        computed as a weighted sum of gathered slices, and only at the positions that are kept.
        Indices and weights depend on the global position alone, so blocks equal the whole.
        """
        n, scale = self.in_shape[axis], self.scales[axis]
        positions = np.arange(out_start, out_stop, dtype=np.float64) * scale
        if self.order == 0:
            index = np.floor(positions + 0.5)[:, None]
            weight = np.ones_like(index)
        else:
            lower = np.floor(positions)
            frac = positions - lower
            if not frac.any():
                index, weight = lower[:, None], np.ones((lower.size, 1))
            else:
                index = np.stack([lower, np.minimum(lower + 1, n - 1)], axis=1)
                weight = np.stack([1.0 - frac, frac], axis=1)
        sigma = self.sigmas[axis]
        if sigma > 0:
            radius = gaussian_radius(sigma)
            offsets = np.arange(-radius, radius + 1, dtype=np.float64)
            kernel = np.exp(-0.5 / sigma**2 * offsets**2)
            kernel /= kernel.sum()
            index = (index[:, :, None] + offsets[None, None, :]).reshape(index.shape[0], -1)
            weight = (weight[:, :, None] * kernel[None, None, :]).reshape(weight.shape[0], -1)
            period = 2 * (n - 1) if n > 1 else 1
            index = np.abs(np.mod(index, period))  # mirror about the edge voxels
            index = np.where(index > n - 1, period - index, index)
        return index.astype(np.intp), weight

    def _separable(self, out_roi: Roi, data: np.ndarray, start: tuple[int, ...]) -> np.ndarray:
        array: np.ndarray = data
        work = _work_dtype(data.dtype)
        for axis, s in enumerate(out_roi):
            index, weight = self.axis_taps(axis, s.start, s.stop)
            index = index - start[axis]
            if index.shape[1] == 1 and (weight == 1.0).all():
                array = _gather(array, index[:, 0], axis)
                continue
            shape = [1] * array.ndim
            shape[axis] = -1
            result: np.ndarray | None = None
            for tap in range(index.shape[1]):
                taps = _gather(array, index[:, tap], axis)
                factor = weight[:, tap].astype(work).reshape(shape)
                if result is None:
                    result = np.multiply(taps, factor, dtype=work)
                else:
                    result += taps * factor
            assert result is not None
            array = result
        return np.ascontiguousarray(array)

    def _planes(self, out_roi: Roi, data: np.ndarray, steps: tuple[int, ...]) -> np.ndarray:
        weights = [gaussian_weights(sigma) for sigma in self.sigmas]
        have = [(s.start, s.stop) for s in self.input_roi(out_roi)]
        need = [
            (step * s.start - len(w) // 2, step * (s.stop - 1) + len(w) // 2 + 1)
            for step, s, w in zip(steps, out_roi, weights)
        ]
        padded = crop_or_mirror(data, have, need, self.in_shape)
        z, y, x = steps
        nz, ny, nx = (s.stop - s.start for s in out_roi)
        return smooth_sample_planes(padded, (nz, ny, nx), (z, y, x), weights)

    # ---- orders 2..5: scipy's spline on the block with a prefilter halo ----------------------
    def _spline(self, out_roi: Roi, data: np.ndarray, start: tuple[int, ...]) -> np.ndarray:
        from scipy.ndimage import affine_transform, gaussian_filter

        work = data.astype(np.float64)
        if any(sig > 0 for sig in self.sigmas):
            work = gaussian_filter(work, self.sigmas, mode="mirror", truncate=_TRUNCATE)
        offset = [s.start * scale - st for s, scale, st in zip(out_roi, self.scales, start)]
        out_shape = tuple(s.stop - s.start for s in out_roi)
        return affine_transform(
            work, self.scales, offset=offset, output_shape=out_shape, order=self.order
        )


def _gather(array: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
    """``np.take`` along ``axis``, as a strided view (no copy) when the indices are regular."""
    if index.size > 1:
        step = int(index[1] - index[0])
        if step > 0 and np.array_equal(np.diff(index), np.full(index.size - 1, step)):
            view = [slice(None)] * array.ndim
            view[axis] = slice(int(index[0]), int(index[-1]) + 1, step)
            return array[tuple(view)]
    return np.take(array, index, axis=axis)


def _work_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "f" and dtype.itemsize >= 8 or (dtype.kind in "iu" and dtype.itemsize >= 4):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


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


# ---- resample_planes.py at 2faeb87 ----------------------------------------------------------


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
