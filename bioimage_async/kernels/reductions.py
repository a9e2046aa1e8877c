"""Window reductions for integer-factor downsampling: mode, mean, min and max.

Output voxel i covers input ``[i*f, min((i+1)*f, n))`` along each axis, so the output shape is
``ceil(shape / factors)`` and windows clipped at the far border use only the voxels they have
(no padding value ever votes). Every output voxel depends on its own window alone (not on the
block around it, nor on the order of evaluation), so reducing blocks whose origins are multiples
of the factors and stitching the results equals reducing the whole array, bit for bit.

Speed comes from vectorised numpy alone. The array is cut into regions of one window shape (the
full windows, then those clipped at the far borders) and these into slabs of about
``_SLAB_BYTES`` of input, small enough to stay in the CPU caches while they are worked on; this
also bounds the temporary memory to a few slabs. Per slab:

- min, max and mean fold one axis at a time over strided views (outer axes first), no gather;
- mode compares the voxels of each window with its first voxel in the same way, which settles
  the uniform windows (most windows of a label volume) with a copy. The other windows are
  gathered as columns (one row per position in the window) and reduced in batches: those that
  hold two values (object borders) by their min, max and counts, the rest by a sorting network
  of ``np.minimum``/``np.maximum`` over the rows (``np.sort`` above ``_NETWORK_MAX`` voxels)
  and the first longest run of equal sorted values: the smallest of the most frequent values.
  Where most windows of a slab are mixed (noise-like data), the whole slab goes the second way.

Windows of up to 8 voxels (2x2x2, 1x2x2, ...) of integer (and bool, and float-key) arrays of
up to 3 axes go to a compiled twin of the mode (``_mode.c``, same results): uniform tests as
vector compares over a row of windows, a sorting network for the mixed ones. On realistic uint32
labels it takes ~0.6x the numpy path's time (~1.0x tinybrain's), reading views in place.

Limits: windows hold at most 2**30 voxels. Mode compares floats by bit pattern (-0.0 and 0.0
are different values; NaNs with the same bits are equal) and copies a float input, or one with
negative strides (a flipped view), once; boxes cut out of a larger array are read in place.
Mean sums integers exactly: in int64 for integers up to 32 bits and bool, in two 32-bit halves
for 64-bit integers (any values, no 2**53 limit); a float output of the mean of 64-bit integers
is ``float64(floor) + remainder / k``, within an ulp of the exact mean. Floats are summed in
float64, axis by axis, and rounded once to the output dtype. That is not exact (each addition
rounds), but a float32 or float16 window keeps what a float32 accumulation such as tensorstore's
driver loses (1e8 + 1 - 1e8 is 1 here, 0 there): the two can differ by more than the last bit
where values cancel, and float64 sums in another order differ in the last bits. Non-native
byte order is converted once.
"""

from __future__ import annotations

import ctypes
import itertools
import math
from collections.abc import Callable, Iterator
from functools import cache

import numpy as np

from ..errors import InvalidArgumentError
from .native import load_library

__all__ = ["METHODS", "reduce_windows"]

#: The reductions ``reduce_windows`` knows.
METHODS = ("mode", "mean", "min", "max")

#: Input bytes per slab: small enough that a slab and its temporaries stay in the CPU caches.
_SLAB_BYTES = 1 << 21
#: Bytes of gathered mixed windows reduced together (see ``_MixedBatch``).
_BATCH_BYTES = 1 << 20
#: Largest window (in voxels) sorted by a sorting network; larger ones use ``np.sort``.
_NETWORK_MAX = 100
#: Above this fraction of mixed windows, gathering the whole slab beats gathering a subset.
_DENSE_FRACTION = 0.5
#: Largest window: keeps the exact integer sums of ``mean`` inside int64/uint64.
_MAX_WINDOW = 1 << 30
_MASK32 = (1 << 32) - 1

_Reducer = Callable[[np.ndarray, tuple[int, ...]], np.ndarray]


def reduce_windows(
    data: np.ndarray,
    factors: tuple[int, ...],
    method: str,
    *,
    out_dtype: np.dtype | None = None,
) -> np.ndarray:
    """Reduce each ``factors``-sized window of ``data`` to one value, ``ceil(shape / factors)``.

    ``method``:

    - ``"mode"``: the most frequent value; ties go to the smallest value. Exact for every
      integer dtype (never through float) and bool, so it is the label-safe choice.
    - ``"mean"``: the arithmetic mean. Integer outputs are rounded to nearest, ties to even
      (``np.rint``), computed exactly; for bool that makes True mean "more than half True".
    - ``"min"``, ``"max"``: NaN propagates, as in ``np.min``/``np.max``.

    ``out_dtype`` (default: the input dtype) is what the result is cast to, numpy's unsafe cast
    after the rounding above. A factor of 1 leaves that axis as it is. The result is a new
    C-ordered array; ``data`` is never written to.
    """
    data = np.asarray(data)
    factors = _check_factors(data, factors)
    kind = data.dtype.kind
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}")
    if kind not in "biufc" or (kind == "c" and method == "mode"):
        raise InvalidArgumentError(f"{method!r} does not support dtype {data.dtype}")
    target = np.dtype(out_dtype) if out_dtype is not None else data.dtype
    if not data.dtype.isnative:  # mode reads float bits as integers: native byte order only
        data = data.astype(data.dtype.newbyteorder("="))
    out_shape = tuple(-(-n // f) for n, f in zip(data.shape, factors, strict=True))
    if method == "mode":
        return np.ascontiguousarray(_mode(data, factors, out_shape)).astype(target, copy=False)
    if method == "mean":
        return _mean(data, factors, out_shape, target)
    ufunc = np.minimum if method == "min" else np.maximum
    out = np.empty(out_shape, data.dtype)
    _apply(data, factors, out, lambda x, w: _separable(x, w, ufunc))
    return out.astype(target, copy=False)


def _check_factors(data: np.ndarray, factors: tuple[int, ...]) -> tuple[int, ...]:
    if data.ndim == 0:
        raise InvalidArgumentError("data must have at least one axis")
    factors = tuple(factors)
    if len(factors) != data.ndim:
        raise InvalidArgumentError(
            f"factors {factors} has {len(factors)} entries, data has {data.ndim} axes"
        )
    for f in factors:
        if isinstance(f, bool | np.bool_) or not isinstance(f, int | np.integer) or f < 1:
            raise InvalidArgumentError(f"factors must be positive integers, got {factors}")
    checked = tuple(int(f) for f in factors)
    if math.prod(checked) > _MAX_WINDOW:
        raise InvalidArgumentError(f"windows of {math.prod(checked)} voxels exceed {_MAX_WINDOW}")
    return checked


# ---- slabs and regions ---------------------------------------------------------------------


def _boxes(
    shape: tuple[int, ...], factors: tuple[int, ...], itemsize: int
) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...], tuple[slice, ...]]]:
    """(window shape, output box, input box) of each slab, region by region.

    A region is a box of windows of one shape: the full windows, or the windows clipped at the
    far border of one or more axes. A slab is a cache-sized box of a region's windows.
    """
    per_axis = []
    for n, f in zip(shape, factors, strict=True):
        parts = [(0, n // f, f)] if n // f else []  # (first window, window count, window size)
        if n % f:
            parts.append((n // f, 1, n % f))
        per_axis.append(parts)
    for region in itertools.product(*per_axis):
        window = tuple(size for _, _, size in region)
        grid = tuple(count for _, count, _ in region)
        origin = tuple(first for first, _, _ in region)
        for slab in _slabs(grid, math.prod(window) * itemsize):
            out_box = tuple(
                slice(o + s.start, o + s.stop) for o, s in zip(origin, slab, strict=True)
            )
            in_box = tuple(
                slice(o * f + s.start * w, o * f + s.stop * w)
                for o, f, s, w in zip(origin, factors, slab, window, strict=True)
            )
            yield window, out_box, in_box


def _apply(data: np.ndarray, factors: tuple[int, ...], out: np.ndarray, reducer: _Reducer) -> None:
    """Write ``reducer(slab, window shape)`` into ``out``, slab by slab."""
    for window, out_box, in_box in _boxes(data.shape, factors, data.itemsize):
        out[out_box] = reducer(data[in_box], window)


def _slabs(grid: tuple[int, ...], window_bytes: int) -> Iterator[tuple[slice, ...]]:
    """Boxes of about ``_SLAB_BYTES`` input bytes covering a grid of windows, in C order."""
    per_slab = max(1, _SLAB_BYTES // window_bytes)
    axis = 0
    while math.prod(grid[axis + 1 :]) > per_slab:
        axis += 1
    step = max(1, per_slab // math.prod(grid[axis + 1 :]))
    tail = tuple(slice(0, n) for n in grid[axis + 1 :])
    for lead in itertools.product(*(range(n) for n in grid[:axis])):
        head = tuple(slice(i, i + 1) for i in lead)
        for start in range(0, grid[axis], step):
            yield (*head, slice(start, min(start + step, grid[axis])), *tail)


def _strided(axis: int, offset: int, step: int) -> tuple[slice, ...]:
    return (slice(None),) * axis + (slice(offset, None, step),)


# ---- min, max, mean: one axis at a time ----------------------------------------------------


def _separable(
    x: np.ndarray, window: tuple[int, ...], ufunc: np.ufunc, dtype: type | None = None
) -> np.ndarray:
    """Fold ``ufunc`` over each window, one axis at a time, outer axes first (views of whole
    planes and rows; the strided last axis then only sees already reduced data). ``dtype`` is
    the accumulator; the result is always a new array."""
    acc = x
    for axis, f in enumerate(window):
        if f == 1:
            continue
        first = acc[_strided(axis, 0, f)].astype(dtype or acc.dtype, copy=True)
        for j in range(1, f):
            ufunc(first, acc[_strided(axis, j, f)], out=first)
        acc = first
    return acc.astype(dtype or acc.dtype, copy=acc is x)


def _mean(
    data: np.ndarray, factors: tuple[int, ...], out_shape: tuple[int, ...], target: np.dtype
) -> np.ndarray:
    out = np.empty(out_shape, target)
    _apply(data, factors, out, lambda x, w: _window_mean(x, w, target.kind in "biu"))
    return out


def _window_mean(x: np.ndarray, window: tuple[int, ...], to_int: bool) -> np.ndarray:
    """Mean of each window; rounded to nearest, ties to even, where ``to_int``."""
    k = math.prod(window)
    if x.dtype.kind == "c":  # real and imaginary parts summed in float64 each
        return _separable(x, window, np.add, np.complex128) / k
    if x.dtype.kind == "f":
        mean = _separable(x, window, np.add, np.float64) / k
        return np.rint(mean) if to_int else mean
    if x.dtype.itemsize < 8:
        total = _separable(x, window, np.add, np.int64)
        return _round_quotient(total, k) if to_int else total / k
    quotient, remainder = _divmod_sum64(x, window)
    return _round_up(quotient, remainder, k) if to_int else quotient + remainder / k


def _round_quotient(total: np.ndarray, k: int) -> np.ndarray:
    """``rint(total / k)`` in exact integer arithmetic (int64 sums of up to 32-bit values)."""
    quotient, remainder = np.divmod(total, k)
    return _round_up(quotient, remainder, k)


def _round_up(quotient: np.ndarray, remainder: np.ndarray, k: int) -> np.ndarray:
    """Given ``sum = quotient * k + remainder`` (0 <= remainder < k), round the mean to nearest
    with ties to even. The mean lies between the window's min and max, so ``quotient + 1``
    cannot overflow where it is taken."""
    twice = remainder * 2
    up = (twice > k) | ((twice == k) & (quotient % 2 == 1))
    quotient += up.astype(quotient.dtype)
    return quotient


def _divmod_sum64(x: np.ndarray, window: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Floor quotient and remainder of each window's exact sum of 64-bit integers by its size.

    The values are split into a signed high half (``x >> 32``) and an unsigned low half, whose
    sums fit 64 bits for windows below 2**31 voxels: sum = H * 2**32 + L. With H = qh*k + rh,
    sum = qh*k*2**32 + (rh*2**32 + L), and rh*2**32 + L < 2k * 2**32 fits as well.
    """
    k = math.prod(window)
    high = _separable(x >> 32, window, np.add)
    low = _separable(x & x.dtype.type(_MASK32), window, np.add)
    qh, rh = np.divmod(high, k)
    ql, remainder = np.divmod(rh * (1 << 32) + low, k)
    return qh * (1 << 32) + ql, remainder


# ---- mode -----------------------------------------------------------------------------------


def _mode(data: np.ndarray, factors: tuple[int, ...], out_shape: tuple[int, ...]) -> np.ndarray:
    kind = data.dtype.kind
    if kind == "b":
        return _mode(data.view(np.uint8), factors, out_shape).view(np.bool_)
    if kind == "f":
        return _from_float_keys(_mode(_float_keys(data), factors, out_shape), data.dtype)
    native = _native_mode(data, factors, out_shape)
    if native is not None:
        return native
    if data.flags.f_contiguous and not data.flags.c_contiguous:
        # windows are axis-aligned and ties go by value: the transposed problem is the same one
        return _mode(data.T, factors[::-1], out_shape[::-1]).T
    if data.size and any(s <= 0 or s % data.itemsize for s in data.strides):
        data = np.ascontiguousarray(data)  # flipped or odd strides: the flat gather needs a copy
    out = np.empty(out_shape, data.dtype)
    batch = _MixedBatch(data, out)
    for window, out_box, in_box in _boxes(data.shape, factors, data.itemsize):
        x = data[in_box]
        if math.prod(window) <= 2:  # one value, or two: equal, or a tie going to the smaller
            out[out_box] = _separable(x, window, np.minimum)
            continue
        flags, corner = _mixed_windows(x, window)
        mixed = np.flatnonzero(flags)
        if mixed.size > _DENSE_FRACTION * flags.size:
            out[out_box] = _mode_columns(_window_columns(x, window)).reshape(flags.shape)
            continue
        out[out_box] = corner
        if mixed.size:
            batch.add(mixed, window, out_box, in_box)
    batch.flush()
    return out


def _load_native() -> ctypes.CDLL | None:
    """The compiled mode kernel (``_mode.c``) with its signature, or None (see kernels/native)."""
    library = load_library("_mode")
    if library is not None:
        ptr = ctypes.c_void_p
        library.mode_windows.argtypes = [ctypes.c_int, ptr, ptr, ptr, ptr, ptr]
        library.mode_windows.restype = ctypes.c_int
    return library


_NATIVE = _load_native()
#: integer dtypes the compiled mode kernel reads, by its kind code
_NATIVE_KINDS = {
    np.dtype(t): code
    for code, t in enumerate(
        [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]
    )
}


def compiled_mode_applies(dtype: np.dtype, ndim: int, factors: tuple[int, ...]) -> bool:
    """Whether the compiled kernel computes the mode of these windows (integers, bool and
    floats, up to 3 axes, windows of up to 8 voxels, the kernel built)."""
    dtype = np.dtype(dtype)
    keyed = dtype == np.bool_ or dtype.kind == "f" or dtype in _NATIVE_KINDS
    return _NATIVE is not None and keyed and ndim <= 3 and math.prod(factors) <= 8


def _native_mode(
    data: np.ndarray, factors: tuple[int, ...], out_shape: tuple[int, ...]
) -> np.ndarray | None:
    """The compiled kernel's mode of integer data of up to 3 axes (read in place, any strides),
    or None where it does not apply (more axes, windows of more than 8 voxels, not built)."""
    kind = _NATIVE_KINDS.get(data.dtype)
    if _NATIVE is None or kind is None or data.ndim > 3 or not data.flags.aligned:
        return None
    out = np.empty(out_shape, data.dtype)
    if data.size == 0:
        return out
    pad = 3 - data.ndim  # leading axes of length 1
    as_i64 = ctypes.c_int64 * 3
    strides = as_i64(*([0] * pad + [s // data.itemsize for s in data.strides]))
    shape = as_i64(*([1] * pad + list(data.shape)))
    window = as_i64(*([1] * pad + list(factors)))
    code = _NATIVE.mode_windows(kind, data.ctypes.data, strides, shape, window, out.ctypes.data)
    return out if code == 0 else None


class _MixedBatch:
    """Windows whose voxels differ, gathered slab by slab while the slab is in the cache, and
    reduced together once they fill about ``_BATCH_BYTES``: numpy calls on a few thousand
    windows at a time would cost more in call overhead than in work."""

    def __init__(self, data: np.ndarray, out: np.ndarray) -> None:
        # a flat view of the memory from data's first to its last element (data may be a box of
        # a larger array: positive strides that are multiples of the item size are enough)
        last = sum((n - 1) * s for n, s in zip(data.shape, data.strides, strict=True))
        span = last // data.itemsize + 1 if data.size else 0
        self.data = np.lib.stride_tricks.as_strided(
            data, shape=(span,), strides=(data.itemsize,), writeable=False
        )
        self.out = out.reshape(-1)
        self.in_strides = tuple(s // data.itemsize for s in data.strides)
        self.out_strides = tuple(s // out.itemsize for s in out.strides)
        self.window: tuple[int, ...] = ()
        self.inside = np.zeros((1, 1), np.intp)
        self.columns: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        self.nbytes = 0

    def add(
        self,
        mixed: np.ndarray,
        window: tuple[int, ...],
        out_box: tuple[slice, ...],
        in_box: tuple[slice, ...],
    ) -> None:
        """Gather windows ``mixed`` (C-order flat indices into the slab's grid of windows)."""
        if window != self.window:
            self.flush()
            self.window = window
            # flat offsets of the voxels of one window from its first voxel, as a column
            self.inside = _grid_offsets(window, self.in_strides, 0).reshape(-1, 1)
        grid = tuple(s.stop - s.start for s in out_box)
        in_steps = tuple(w * s for w, s in zip(window, self.in_strides, strict=True))
        # flat index = (offset of the window's row of the grid) + (its column) * step
        rows = mixed // grid[-1]
        column = mixed - rows * grid[-1]
        in_rows = _grid_offsets(grid[:-1], in_steps[:-1], _flat_start(in_box, self.in_strides))
        starts = in_rows.reshape(-1).take(rows)
        starts += column * in_steps[-1]
        # mode='wrap' skips numpy's bounds check (~20%); every index is in range by construction
        columns = self.data.take(self.inside + starts, mode="wrap")
        out_rows = _grid_offsets(
            grid[:-1], self.out_strides[:-1], _flat_start(out_box, self.out_strides)
        )
        targets = out_rows.reshape(-1).take(rows)
        targets += column * self.out_strides[-1]
        self.columns.append(columns)
        self.targets.append(targets)
        self.nbytes += columns.nbytes
        if self.nbytes >= _BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.columns:
            columns = np.concatenate(self.columns, axis=1)
            self.out[np.concatenate(self.targets)] = _mode_mixed(columns)
        self.columns, self.targets, self.nbytes = [], [], 0


def _flat_start(box: tuple[slice, ...], strides: tuple[int, ...]) -> int:
    return sum(s.start * stride for s, stride in zip(box, strides, strict=True))


def _grid_offsets(grid: tuple[int, ...], steps: tuple[int, ...], offset: int) -> np.ndarray:
    """``offset + sum(i_a * steps[a])`` for every index of ``grid``, as an array of that shape."""
    result = np.full(grid, offset, dtype=np.intp)
    for axis, n in enumerate(grid):
        result += (np.arange(n) * steps[axis]).reshape((n,) + (1,) * (len(grid) - axis - 1))
    return result


def _mode_mixed(columns: np.ndarray) -> np.ndarray:
    """Mode of each column of a (window size, count) array of windows that are not uniform.

    In label volumes most such windows sit on the border of two objects and hold two values:
    those are settled with their min, max and two counts; the rest goes to ``_mode_columns``.
    """
    k, count = columns.shape
    low = np.minimum.reduce(columns, axis=0)
    high = np.maximum.reduce(columns, axis=0)
    counter = np.min_scalar_type(k)
    n_low = np.zeros(count, counter)
    n_high = np.zeros(count, counter)
    equal = np.empty(count, np.bool_)
    as_count = equal.view(np.uint8)
    for row in columns:
        np.equal(row, low, out=equal)
        n_low += as_count
        np.equal(row, high, out=equal)
        n_high += as_count
    # low, or high where it is more frequent (ties go to the smaller value); arithmetic rather
    # than np.where/np.copyto, whose data-dependent branches cost ~10x more on mixed masks
    result = np.subtract(high, low)  # wraps around for signed extremes, and so does the add
    result *= (n_low < n_high).view(np.uint8)
    result += low
    n_low += n_high
    rest = np.flatnonzero(n_low != k)  # windows with a third value
    if rest.size:
        result[rest] = _mode_columns(columns[:, rest])
    return result


def _mixed_windows(x: np.ndarray, window: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Which windows hold more than one value, and each window's first voxel (a new array).

    Axis by axis: the voxels at offsets 1..f-1 along an axis are compared with offset 0, and the
    flags of the axes before are OR-ed over the window along this axis. The first voxels along
    the last reduced axis are copied before that comparison: one strided read less.
    """
    last = max(axis for axis, f in enumerate(window) if f > 1)  # k > 2: some factor exceeds 1
    corner = x
    flags: np.ndarray | None = None
    for axis, f in enumerate(window):
        if f == 1:
            continue
        first = corner[_strided(axis, 0, f)]
        if axis == last:
            first = first.copy()
        differ = corner[_strided(axis, 1, f)] != first
        for j in range(2, f):
            differ |= corner[_strided(axis, j, f)] != first
        if flags is not None:
            differ |= _any_along(flags, axis, f)
        flags = differ
        corner = first
    assert flags is not None
    return flags, corner


def _any_along(flags: np.ndarray, axis: int, f: int) -> np.ndarray:
    """OR of ``flags`` over consecutive groups of ``f`` along ``axis``."""
    if axis == flags.ndim - 1 and f in (2, 4, 8) and flags.flags.c_contiguous:
        # f contiguous bools (0 or 1 bytes) hold a True iff they read nonzero as one integer
        return flags.view(np.dtype(f"u{f}")) != 0
    result = flags[_strided(axis, 0, f)] | flags[_strided(axis, 1, f)]
    for j in range(2, f):
        result |= flags[_strided(axis, j, f)]
    return result


def _window_columns(x: np.ndarray, window: tuple[int, ...]) -> np.ndarray:
    """All windows of ``x`` as a (window size, window count) array: one row per position inside
    the window, so that the sorting network works on contiguous rows."""
    grid = tuple(n // w for n, w in zip(x.shape, window, strict=True))
    split = x.reshape(tuple(itertools.chain.from_iterable(zip(grid, window, strict=True))))
    order = tuple(range(1, 2 * x.ndim, 2)) + tuple(range(0, 2 * x.ndim, 2))
    # always a copy (ascontiguousarray would return a view of one window): it gets sorted in place
    return split.transpose(order).copy().reshape(math.prod(window), -1)


def _mode_columns(columns: np.ndarray) -> np.ndarray:
    """Smallest most frequent value of each column of a (window size, count) array, which it
    overwrites."""
    k, count = columns.shape
    if k > _NETWORK_MAX:
        rows_sorted = np.ascontiguousarray(columns.T)
        rows_sorted.sort(axis=1)
        return _mode_sorted_rows(rows_sorted)
    rows = list(columns)  # views: the network sorts the caller's (fresh) array in place
    where = list(range(k))  # row of `columns` that holds sorted position t; -1: `spare`
    spare, spare_at = np.empty(count, columns.dtype), -1
    for i, j in _sorting_network(k):
        np.minimum(rows[i], rows[j], out=spare)
        np.maximum(rows[i], rows[j], out=rows[j])
        rows[i], spare = spare, rows[i]
        where[i], spare_at = spare_at, where[i]
    if spare_at >= 0:  # one position ended up in `spare`: move it into the free row
        t = where.index(-1)
        columns[spare_at] = rows[t]
        rows[t], where[t] = columns[spare_at], spare_at
    # first longest run of sorted values: `run` counts the equal values before position t, and
    # `last` is the last position of the longest run so far (positions only grow: a max of
    # t * longer replaces a masked copy, which branches per element)
    run = np.zeros(count, np.uint8)
    best = np.zeros(count, np.uint8)
    last = np.zeros(count, np.uint8)
    equal = np.empty(count, np.bool_)
    longer = np.empty(count, np.bool_)
    at_t = np.empty(count, np.uint8)
    for t in range(1, k):
        np.equal(rows[t], rows[t - 1], out=equal)
        run += 1
        run *= equal.view(np.uint8)
        np.greater(run, best, out=longer)
        np.maximum(run, best, out=best)
        np.multiply(longer.view(np.uint8), t, out=at_t)
        np.maximum(last, at_t, out=last)
    index = np.asarray(where, dtype=np.intp).take(last)
    index *= count
    index += np.arange(count)
    return columns.reshape(-1).take(index, mode="wrap")  # in range: see _MixedBatch.add


def _mode_sorted_rows(rows: np.ndarray) -> np.ndarray:
    """Smallest most frequent value of each row of a row-wise sorted (count, k) array."""
    count, k = rows.shape
    values = rows.reshape(-1)
    starts = np.ones(rows.shape, np.bool_)
    np.not_equal(rows[:, 1:], rows[:, :-1], out=starts[:, 1:])
    run_starts = np.flatnonzero(starts)  # every row starts a run, so runs never span rows
    lengths = np.diff(run_starts, append=values.size)
    run_row = run_starts // k
    first_run = np.searchsorted(run_starts, np.arange(count) * k)
    longest = np.maximum.reduceat(lengths, first_run)
    candidates = np.flatnonzero(lengths == longest[run_row])
    candidate_row = run_row[candidates]
    first = np.ones(candidates.size, np.bool_)
    np.not_equal(candidate_row[1:], candidate_row[:-1], out=first[1:])
    return values[run_starts[candidates[first]]]


@cache
def _sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort for the next power of two, without the comparators that
    touch positions >= n (as if those held +inf: such a comparator leaves its pair unchanged)."""
    size = 1 << max(0, (n - 1).bit_length())
    pairs = []
    p = 1
    while p < size:
        step = p
        while step >= 1:
            for j in range(step % p, size - step, 2 * step):
                for i in range(min(step, size - j - step)):
                    if (i + j) // (2 * p) == (i + j + step) // (2 * p) and i + j + step < n:
                        pairs.append((i + j, i + j + step))
            step //= 2
        p *= 2
    return tuple(pairs)


def _float_keys(data: np.ndarray) -> np.ndarray:
    """Unsigned integers that sort like the floats (by bit pattern: -0.0 < 0.0, NaNs outside):
    negative floats get all bits flipped, the others only the sign bit. One new array."""
    bits = 8 * data.itemsize
    keys = data.view(np.dtype(f"i{data.itemsize}")) >> (bits - 1)  # -1 where negative, else 0
    keys = keys.view(np.dtype(f"u{data.itemsize}"))
    keys |= keys.dtype.type(1 << (bits - 1))
    keys ^= data.view(keys.dtype)
    return keys


def _from_float_keys(keys: np.ndarray, dtype: np.dtype) -> np.ndarray:
    bits = 8 * keys.itemsize
    flip = ~(keys.view(np.dtype(f"i{keys.itemsize}")) >> (bits - 1))  # 0 where the key's top bit
    flip = flip.view(keys.dtype)
    flip |= keys.dtype.type(1 << (bits - 1))
    flip ^= keys
    return flip.view(dtype)
