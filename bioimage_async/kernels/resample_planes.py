"""Fast path of the anti-aliased downsample for exact integer factors on 3D volumes.

When in == factor * out on every axis, output index i samples input position factor * i: an
integer, so orders 0 and 1 agree and the result is the Gaussian-smoothed input taken at those
positions. It is evaluated axis by axis (z, then y, then x), only at the sampled positions, in
float32.

Every output value goes through the same float32 operations, on the same operands and in the
same order, as the plane-by-plane kernel this replaced (pinned bit for bit by
tests/kernels/test_resample_planes.py): per axis, the centre tap times its weight, then each
symmetric pair of taps added, weighted and accumulated, moving outward. The order of the axes
is part of that (x first changes ~60% of the float32 values and ~1e-5 of the uint8 ones). What
changed is the data layout and the size of each numpy call: the cost was numpy's per-call
overhead, its casting and strided loops, copies and cache traffic, not the arithmetic.

- The input is cast to float32 once, a group of output planes at a time, instead of inside
  every tap of mixed uint8/float32 ufuncs (those cost 1.3x the cast-once form).
- Rows are stored phase by phase (even rows, then odd ones for a factor 2), so each y tap is
  one contiguous run of rows (row-strided taps cost 1.6x).
- After the y pass, x is split into its phases with a common pitch, so each x tap is one
  shifted flat run (the few junk columns this computes per row are dropped); a factor 2 splits
  by reading float pairs as uint64 (2.3x faster than a strided copy).
- Each numpy call covers a group of output planes, sized so the float32 copy of its input stays
  near ``GROUP_BYTES`` (one plane per call paid ~20 calls of overhead per plane).
- Voxels outside the volume are mirrored while casting, from views of ``data``: no mirrored
  copy of the block (most blocks of a volume touch a border; fresh memory costs ~2 us a page).
- Integers are rounded into the preallocated output, clipped only where that can matter.

On (128, 128, 64)-voxel output blocks of uint8 (the default for a 2x downsample of 64^3
chunks) this takes ~0.5-0.6x the CPU time of the plane-by-plane kernel inside a run, and
~5.5 MiB of work memory instead of ~20 MiB. Work memory is bounded by a few ``GROUP_BYTES``
whatever the block shape: planes too large for one group are cut into tiles of rows.

For uint8, uint16, int16 and float32 a compiled version of the same arithmetic (``_smooth.c``,
built by ``pip install`` where a C compiler is, reached through ctypes so blocks run in
parallel threads) does each output plane in one pass over a ring of input planes: ~2.3x faster
again than the numpy kernel, same bits. ``BIOIMAGE_ASYNC_NO_NATIVE=1`` switches it off.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .native import load_library

_TRUNCATE = 4.0
_F32 = np.float32

#: Target size of the float32 copy of the input one group of output planes reads. Measured on
#: (128, 128, 64)-voxel output blocks: 2 MiB beats 0.5 and 1 MiB (more calls) and 4 MiB (more
#: cache misses).
GROUP_BYTES = 2 * 1024 * 1024

#: (destination start, destination stop, source slice): a regular run of an index array.
Run = tuple[int, int, slice]


def gaussian_weights(sigma: float) -> np.ndarray:
    """scipy.ndimage's Gaussian kernel (truncate 4), as float32; [1] for sigma 0."""
    if sigma <= 0:
        return np.ones(1, np.float32)
    radius = int(_TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (x / sigma) ** 2)
    return (weights / weights.sum()).astype(np.float32)


def mirror_index(have: tuple[int, int], need: tuple[int, int], size: int) -> np.ndarray:
    """Indices into data covering ``have`` of positions ``need[0]..need[1]-1`` of an axis of
    ``size`` voxels, mirrored about the edge voxels outside it (numpy 'reflect', scipy 'mirror')."""
    start, stop = need
    index = np.arange(max(start, 0), min(stop, size)) - have[0]
    before, after = max(0, -start), max(0, stop - size)
    if before or after:
        index = np.pad(index, (before, after), mode="reflect")
    return index


def regular_runs(index: np.ndarray) -> list[Run]:
    """``index`` cut into runs with a constant nonzero step, each as a slice of the source.

    Inside the volume an axis is one run; a mirrored border adds one or two descending runs.
    Copying run by run reads views of the input, never a mirrored copy of the whole block.
    """
    runs: list[Run] = []
    values = index.tolist()
    start = 0
    while start < len(values):
        stop, step = start + 1, 1
        if start + 1 < len(values) and values[start + 1] != values[start]:
            step = values[start + 1] - values[start]
            stop = start + 2
            while stop < len(values) and values[stop] - values[stop - 1] == step:
                stop += 1
        first, last = values[start], values[stop - 1]
        end = last + step if last + step >= 0 else None  # a descending run may end at 0
        runs.append((start, stop, slice(first, end, step)))
        start = stop
    return runs


def _identity(weights: np.ndarray) -> bool:
    return len(weights) == 1 and bool(weights[0] == 1)


def _weighted_sum(
    taps: Sequence[np.ndarray], weights: np.ndarray, out: np.ndarray, tmp: np.ndarray
) -> np.ndarray:
    """``out = sum_k weights[k] * taps[k]`` in the reference's float32 order: the centre tap
    first, then each symmetric pair added before it is weighted. A lone weight of 1 is the
    identity (x * 1.0 == x exactly), so that tap is returned as is."""
    if _identity(weights):
        return taps[0]
    radius = len(weights) // 2
    np.multiply(taps[radius], weights[radius], out=out)
    for k in range(1, radius + 1):
        np.add(taps[radius - k], taps[radius + k], out=tmp)
        np.multiply(tmp, weights[radius + k], out=tmp)
        np.add(out, tmp, out=out)
    return out


def _store(result: np.ndarray, scratch: np.ndarray, out: np.ndarray, *, clip: bool) -> None:
    """``result`` (a view into the float32 ``scratch``) into ``out`` as the reference's
    ``_to_dtype`` does: rint and clip for integers, > 0.5 for booleans, a cast otherwise.
    Integers are rounded in place in ``scratch`` (junk columns included, never read back);
    ``clip=False`` where the caller knows clipping changes nothing."""
    kind = out.dtype.kind
    if kind == "b":
        np.greater(result, 0.5, out=out)
        return
    if kind in "iu":
        np.rint(scratch, out=scratch)
        if clip:
            info = np.iinfo(out.dtype)
            np.clip(scratch, info.min, info.max, out=scratch)
    np.copyto(out, result, casting="unsafe")


def _clip_needed(dtype: np.dtype, weights: Sequence[np.ndarray]) -> bool:
    """Whether rounded results can leave an integer dtype's range (clipping costs ~2%).

    Not for integers of at most 16 bits under positive weights summing to 1 within 1e-6: a
    pass then stays within its inputs' range widened by less than 1.3e-6 relative (the sum's
    tolerance and four float32 roundings), so after three passes |value| <= 65535 moves by
    less than 0.3 and rint cannot step outside the range.
    """
    if dtype.kind not in "iu" or dtype.itemsize > 2:
        return True
    return not all(
        bool((w > 0).all()) and abs(float(w.sum(dtype=np.float64)) - 1) < 1e-6 for w in weights
    )


def _group_size(plane_bytes: int, step: int, radius: int, count: int) -> int:
    """Outputs per group along an axis: as many as keep their float32 input near GROUP_BYTES."""
    planes = GROUP_BYTES // max(1, plane_bytes)
    return max(1, min(count, (planes - 2 * radius - 1) // step + 1))


def _cast_input(
    data: np.ndarray, z_runs: list[Run], y_runs: list[Run], x_runs: list[Run], f: np.ndarray
) -> None:
    """The input voxels the runs select, cast to float32 into ``f``: one copy per run (one per
    row phase inside the volume), each from a view of ``data``."""
    for za, zb, zs in z_runs:
        for ya, yb, ys in y_runs:
            for xa, xb, xs in x_runs:
                np.copyto(f[za:zb, ya:yb, xa:xb], data[zs, ys, xs])


def _split_phases(lines: np.ndarray, phases: np.ndarray, phase_len: list[int]) -> None:
    """Column phases of ``lines`` side by side: phase p's row r is ``phases[p]`` at r * pitch."""
    step = len(phase_len)
    for p, filled in enumerate(phase_len):
        split = phases[p].reshape(lines.shape[0], -1)
        np.copyto(split[:, :filled], lines[:, p::step])


def _split_pairs(flat: np.ndarray, even: np.ndarray, odd: np.ndarray) -> None:
    """Even and odd float32 columns of ``flat`` (rows of even length, plus one float of padding)
    without strided loops: each pair of floats read as one uint64 whose low half is the first
    (little-endian), so each phase is one contiguous truncating cast (2.3x the strided copy)."""
    np.copyto(even.view(np.uint32), flat[:-1].view(np.uint64), casting="unsafe")
    np.copyto(odd.view(np.uint32), flat[1:].view(np.uint64), casting="unsafe")


def _load_native() -> ctypes.CDLL | None:
    """The compiled kernel (``_smooth.c``) with its signature, or None (see kernels/native)."""
    library = load_library("_smooth")
    if library is None:
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    argtypes: list[Any] = [ctypes.c_int, ptr, i64, i64, i64]  # kind, data and its strides
    argtypes += [ptr, ptr, i64, ptr, i64]  # zi, yi, py, xi, px
    argtypes += [i64] * 6  # output shape, steps
    argtypes += [ptr, i64] * 3  # weights and their lengths
    argtypes += [ptr] * 2 + [ctypes.c_double] * 2 + [ptr]  # work, range, out
    library.smooth_sample.argtypes = argtypes
    library.smooth_sample.restype = ctypes.c_int
    return library


_NATIVE = _load_native()
#: input dtypes the compiled kernel reads, by its kind code
_NATIVE_KINDS = {
    np.dtype(np.uint8): 0,
    np.dtype(np.uint16): 1,
    np.dtype(np.int16): 2,
    np.dtype(np.float32): 3,
}
#: the most z taps the compiled kernel's ring holds
_NATIVE_MAX_TAPS = 64


_THREAD_WORK = threading.local()


def _work_buffer(size: int) -> np.ndarray:
    """This thread's float32 work memory of at least ``size`` values, kept between calls: fresh
    memory costs a page fault (~2 us) per 4 KiB, ~10% of the compiled kernel's time per block.
    Bounded by the row tiles (a few GROUP_BYTES per thread)."""
    buffer: np.ndarray | None = getattr(_THREAD_WORK, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = _THREAD_WORK.buffer = np.empty(size, _F32)
    return buffer[:size]


def _native_sample(
    data: np.ndarray,
    indices: Sequence[np.ndarray],
    out_shape: tuple[int, int, int],
    steps: tuple[int, int, int],
    weights: Sequence[np.ndarray],
    dtype: np.dtype,
) -> np.ndarray | None:
    """The compiled kernel's result, or None where it does not apply (dtypes, or not built).

    Reads ``data`` in place through the index arrays (no padded copy); tiles of output rows
    keep its ring of input planes near GROUP_BYTES, as the numpy kernel's groups are.
    """
    kind = _NATIVE_KINDS.get(np.dtype(data.dtype))
    if _NATIVE is None or kind is None or np.dtype(dtype) != np.dtype(data.dtype):
        return None
    if not data.flags.aligned or data.dtype.byteorder not in "=|":
        return None
    zi, yi, xi = (np.ascontiguousarray(i, np.int64) for i in indices)
    wz, wy, wx = (np.ascontiguousarray(w, _F32) for w in weights)
    if wz.size > _NATIVE_MAX_TAPS:
        return None
    (nz, ny, nx), (sz, sy, sx) = out_shape, steps
    strides = [s // data.itemsize for s in data.strides]
    px, ly = xi.size, wy.size
    rows = _group_size(px * 4, sy, ly // 2, ny)
    band = sy * (rows - 1) + ly  # input rows of one tile
    work = _work_buffer(band * px + 2 * px)
    plane = work[: band * px]  # one output plane's z pass
    smoothed = work[band * px :]  # one row filtered along y, then along x
    lo, hi = (0.0, 0.0) if kind == 3 else (float(np.iinfo(dtype).min), float(np.iinfo(dtype).max))
    out = np.empty(out_shape, dtype)
    tile = out if rows == ny else np.empty((nz, rows, nx), dtype)
    for j0 in range(0, ny, rows):
        n = min(rows, ny - j0)
        tile_yi = np.ascontiguousarray(yi[sy * j0 : sy * (j0 + n - 1) + ly])
        target = tile if n == rows else np.empty((nz, n, nx), dtype)
        code = _NATIVE.smooth_sample(
            kind,
            data.ctypes.data,
            *strides,
            zi.ctypes.data,
            tile_yi.ctypes.data,
            tile_yi.size,
            xi.ctypes.data,
            px,
            nz,
            n,
            nx,
            sz,
            sy,
            sx,
            wz.ctypes.data,
            wz.size,
            wy.ctypes.data,
            ly,
            wx.ctypes.data,
            wx.size,
            plane.ctypes.data,
            smoothed.ctypes.data,
            lo,
            hi,
            target.ctypes.data,
        )
        if code:
            return None
        if target is not out:
            out[:, j0 : j0 + n] = target
    return out


def smooth_sample(
    data: np.ndarray,
    have: Sequence[tuple[int, int]],
    need: Sequence[tuple[int, int]],
    in_shape: tuple[int, ...],
    out_shape: tuple[int, int, int],
    steps: tuple[int, int, int],
    weights: Sequence[np.ndarray],
    dtype: np.dtype,
) -> np.ndarray:
    """The separable Gaussian of the input at positions ``step * i``, as ``dtype``.

    ``data`` covers the input ranges ``have``; ``need`` are, per axis, the positions from
    ``radius`` before the first sampled one to ``radius`` after the last (mirrored where they
    leave the volume of shape ``in_shape``).
    """
    (nz, ny, nx), (sz, sy, sx) = out_shape, steps
    wz, wy, wx = (np.asarray(w, _F32) for w in weights)
    rz, ry = len(wz) // 2, len(wy) // 2
    zi, yi, xi = (mirror_index(h, n, size) for h, n, size in zip(have, need, in_shape))
    native = _native_sample(data, (zi, yi, xi), out_shape, steps, (wz, wy, wx), dtype)
    if native is not None:
        return native
    x_runs = regular_runs(xi)
    px = xi.size
    pairs = sx == 2 and sys.byteorder == "little"
    width = px + px % 2 if pairs else px  # float32 row length: whole pairs for _split_pairs
    pitch = -(-px // sx)  # x phases side by side in rows of this length
    phase_len = [len(range(p, px, sx)) for p in range(sx)]
    x_shift = (len(wx) - 1) // sx  # the largest offset of an x tap within its phase

    group = _group_size(yi.size * width * 4, sz, rz, nz)
    rows = ny
    if group == 1:  # one plane exceeds the budget: tiles of rows
        rows = _group_size((2 * rz + 1) * width * 4, sy, ry, ny)
    in_plane = (sy * (rows - 1) + 2 * ry + 1) * width
    # np.empty, not np.zeros: calloc maps fresh pages, and a page fault costs ~2 us here
    work = np.empty((sz * (group - 1) + 2 * rz + 1) * in_plane, _F32)
    work.reshape(-1, width)[:, px:] = 0  # the pad column, never written by the casts
    smoothed_z = np.empty(group * in_plane, _F32)
    tmp = np.empty(group * in_plane, _F32)
    smoothed_y = np.empty(group * rows * width + 1, _F32)
    phases = np.empty((sx, group * rows * pitch), _F32)
    for p, filled in enumerate(phase_len):  # junk columns the phase copies never write
        phases[p].reshape(-1, pitch)[:, filled:] = 0
    smoothed_x = np.empty(group * rows * pitch, _F32)
    out = np.empty((nz, ny, nx), dtype)
    clip = _clip_needed(out.dtype, (wz, wy, wx))

    with np.errstate(invalid="ignore", over="ignore"):  # junk columns may mix inf and -inf
        for j0 in range(0, ny, rows):
            nrows = min(rows, ny - j0)
            tile = yi[sy * j0 : sy * (j0 + nrows - 1) + 2 * ry + 1]
            starts = np.cumsum([0] + [tile[p::sy].size for p in range(sy)]).tolist()
            y_runs = [
                (starts[p] + a, starts[p] + b, rows_)
                for p in range(sy)
                for a, b, rows_ in regular_runs(tile[p::sy])
            ]
            for i0 in range(0, nz, group):
                n = min(group, nz - i0)
                planes = zi[sz * i0 : sz * (i0 + n - 1) + 2 * rz + 1]
                f = work[: planes.size * tile.size * width].reshape(planes.size, tile.size, width)
                _cast_input(data, regular_runs(planes), y_runs, x_runs, f)

                z_taps = [f[k : k + sz * (n - 1) + 1 : sz] for k in range(len(wz))]
                size = n * tile.size * width
                z_sum = _weighted_sum(
                    z_taps,
                    wz,
                    smoothed_z[:size].reshape(n, tile.size, width),
                    tmp[:size].reshape(n, tile.size, width),
                )
                first_rows = [starts[k % sy] + k // sy for k in range(len(wy))]
                y_taps = [z_sum[:, first : first + nrows] for first in first_rows]
                size = n * nrows * width
                lines = smoothed_y[:size].reshape(n, nrows, width)
                y_sum = _weighted_sum(y_taps, wy, lines, tmp[:size].reshape(n, nrows, width))
                total = n * nrows * pitch
                if pairs:
                    if y_sum is not lines:
                        np.copyto(lines, y_sum)
                    _split_pairs(smoothed_y[: size + 1], phases[0, :total], phases[1, :total])
                else:
                    _split_phases(y_sum.reshape(n * nrows, width), phases[:, :total], phase_len)
                length = total - x_shift
                x_taps = [phases[k % sx, k // sx : k // sx + length] for k in range(len(wx))]
                scratch = _weighted_sum(x_taps, wx, smoothed_x[:length], tmp[:length])
                grid = phases[0, :total] if _identity(wx) else smoothed_x[:total]
                _store(
                    grid.reshape(n, nrows, pitch)[:, :, :nx],
                    scratch,
                    out[i0 : i0 + n, j0 : j0 + nrows],
                    clip=clip,
                )
    return out
