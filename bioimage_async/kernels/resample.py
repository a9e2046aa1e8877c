"""Resampling kernels with the seed's semantics, computed block by block.

Per axis the scale is s = in/out; output index i samples input coordinate x = i*s (corner
aligned, no half-pixel shift) with a spline of order ``order``; anti-aliasing first smooths with
a Gaussian of sigma max(0, (s-1)/2) (mode 'mirror', truncated at 4 sigma). Each block reads its
input region with a halo that covers the Gaussian and the spline support, so block-wise results
equal whole-array results (bit for bit for orders 0 and 1; orders 2..5 to the float64 rounding
of scipy's prefilter, ~1e-14 of the value range: see ``_SPLINE_IIR_HALO``). Upsampling samples
the last outputs past the last input voxel (7 -> 20: x = 19 * 0.35 = 6.65): orders 0 and 1 take
the edge voxel there (scipy's mode 'nearest'), and so do orders 2..5 when an axis upsamples
(their spline extends the edge; scipy's default 'constant' blended zeros in). Orders 2..5
compute non-finite inputs as 0 and set NaN on the outputs whose footprint (Gaussian radius plus
the spline's support, around the nearest input voxel) holds one: the prefilter, an IIR filter,
would spread a NaN along the whole line of a block, so the NaN region would depend on the
block shape.

Orders 0 and 1 are separable and computed axis by axis on positions known in global
coordinates, smoothing only what is then sampled: for a factor-2 anti-aliased downsample most of
the work is done on already-halved data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .casting import float_bounds

Roi = tuple[slice, ...]

_TRUNCATE = 4.0
#: Voxels of input beyond a spline's support that a block reads so that the prefilter (an IIR
#: filter over the whole axis) is the whole array's there: its largest pole |z| decays as |z|**k,
#: and these are the first k with |z|**k < 1e-13 (scipy's poles; measured: the block-vs-whole
#: difference then reaches the float64 rounding floor, ~1e-14 of the value range). With the
#: 12 voxels used before, order 5 differed by 2e-8 of the range: uint16 voxels near a .5 tie
#: rounded differently with the block shape (~0.1% of them by 1).
_SPLINE_IIR_HALO = {
    order: math.ceil(math.log(1e-13) / math.log(abs(pole)))
    for order, pole in {
        2: math.sqrt(8.0) - 3.0,
        3: math.sqrt(3.0) - 2.0,
        4: math.sqrt(664.0 - math.sqrt(438976.0)) + math.sqrt(304.0) - 19.0,
        5: math.sqrt(67.5 - math.sqrt(4436.25)) + math.sqrt(26.25) - 6.5,
    }.items()
}


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
    #: what results are returned as: "" the input dtype (rounded and clipped for integers);
    #: "float" float64 unrounded (an integer or a less precise float input into a float output:
    #: float16 values computed in float32 are not rounded back to float16); "round" rounded
    #: but still float (a float input into an integer output, whose range the checked cast tests)
    result: str = ""

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
        spline = 1 if self.order <= 1 else self.order + 1 + _SPLINE_IIR_HALO[self.order]
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
        dtype = np.dtype(self.dtype)
        if (
            steps is not None
            and self.anti_aliasing
            and self.order <= 1
            and data.ndim == 3
            and _work_dtype(dtype) == np.float32
            and (not self.result or (self.result == "float" and dtype.kind == "f"))
        ):  # the plane kernels work in float32: 32/64-bit integers and float64 would round
            # a float16 input's float32 values stay float32 on their way to a wider output
            result = self._planes(
                out_roi, data, steps, np.dtype(np.float32) if self.result else dtype
            )
        else:
            start = tuple(s.start for s in self.input_roi(out_roi))
            if self.order <= 1:
                result = self._separable(out_roi, data, start)
            else:
                result = self._spline(out_roi, data, start)
        if self.result == "float":
            return result.astype(np.float64, copy=False)
        if self.result == "round":
            return np.rint(result)
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
            # upsampling rounds up to n past the last voxel (7 -> 20: 19 * 0.35 = 6.65 -> 7):
            # the edge voxel, as order 1 takes there
            index = np.minimum(np.floor(positions + 0.5), n - 1)[:, None]
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
                contribution = np.multiply(taps, factor, dtype=work)
                unused = weight[:, tap] == 0
                if unused.any():  # positions sampled exactly at a voxel: their neighbour's
                    # NaN or inf (0 * NaN) must not reach them, on any block shape
                    contribution = np.where(unused.reshape(shape), work.type(0), contribution)
                if result is None:
                    result = contribution
                else:
                    result += contribution
            assert result is not None
            array = result
        return np.ascontiguousarray(array)

    def _planes(
        self, out_roi: Roi, data: np.ndarray, steps: tuple[int, ...], dtype: np.dtype
    ) -> np.ndarray:
        from .resample_planes import gaussian_weights, smooth_sample

        weights = [gaussian_weights(sigma) for sigma in self.sigmas]
        have = [(s.start, s.stop) for s in self.input_roi(out_roi)]
        need = [
            (step * s.start - len(w) // 2, step * (s.stop - 1) + len(w) // 2 + 1)
            for step, s, w in zip(steps, out_roi, weights)
        ]
        z, y, x = steps
        nz, ny, nx = (s.stop - s.start for s in out_roi)
        return smooth_sample(
            data, have, need, self.in_shape, (nz, ny, nx), (z, y, x), weights, dtype
        )

    # ---- orders 2..5: scipy's spline on the block with a prefilter halo ----------------------
    def _spline(self, out_roi: Roi, data: np.ndarray, start: tuple[int, ...]) -> np.ndarray:
        from scipy.ndimage import affine_transform, gaussian_filter

        work = data.astype(np.float64)
        bad = ~np.isfinite(work)
        if bad.any():  # the prefilter would spread them along whole lines, as far as the block
            work[bad] = 0.0
        if any(sig > 0 for sig in self.sigmas):
            work = gaussian_filter(work, self.sigmas, mode="mirror", truncate=_TRUNCATE)
        offset = [s.start * scale - st for s, scale, st in zip(out_roi, self.scales, start)]
        out_shape = tuple(s.stop - s.start for s in out_roi)
        # upsampling samples past the last voxel (19 * 7/20 = 6.65 > 6): scipy's default
        # 'constant' blends zeros in there, so the edge is extended as orders 0 and 1 do;
        # downsampling never leaves the volume and keeps the seed's (bioimage-py's) values
        mode = "nearest" if any(scale < 1 for scale in self.scales) else "constant"
        result = affine_transform(
            work, self.scales, offset=offset, output_shape=out_shape, order=self.order, mode=mode
        )
        if bad.any():
            result[self._near_non_finite(out_roi, bad, start)] = np.nan
        return result

    def _near_non_finite(self, out_roi: Roi, bad: np.ndarray, start: tuple[int, ...]) -> np.ndarray:
        """Which outputs have a NaN or infinite input voxel within their footprint: the
        Gaussian's radius plus the spline's half-support around the nearest input voxel.

        scipy's prefilter is an IIR filter over the whole axis, so one NaN turns a whole line of
        the result NaN, in a block as far as the block reaches: which outputs became NaN depended
        on the block shape. Non-finite voxels are computed as 0 and the outputs whose footprint
        holds one are NaN, a rule on global positions that every block shape gives alike."""
        from scipy.ndimage import maximum_filter

        spline_reach = (self.order + 2) // 2
        size = [2 * (gaussian_radius(sigma) + spline_reach) + 1 for sigma in self.sigmas]
        near = maximum_filter(bad, size=size, mode="constant", cval=False)
        nearest = [
            np.minimum(np.floor(np.arange(s.start, s.stop) * scale + 0.5), n - 1).astype(np.intp)
            - first
            for s, scale, n, first in zip(out_roi, self.scales, self.in_shape, start)
        ]
        return near[np.ix_(*nearest)]


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
        low, high = float_bounds(dtype)  # float(2**63 - 1) is 2**63: int64 would wrap
        return np.clip(np.rint(result), low, high).astype(dtype)
    return result.astype(dtype)
