"""MRC volumes through mrcfile, memory-mapped and read-only, in IMOD orientation.

As in bioimage-py (and IMOD's 3dmod), the y axis is flipped relative to the order in the file:
row 0 of a read is the file's last row. The flip is done per read on the memory map, so a read
touches only the requested rows. Reads of a memory map are thread-safe and run in parallel.

Position (``translation``, Angstrom, C order): the file's first voxel sits where ChimeraX, EMAN
and MRC2014 writers put it: at the header ORIGIN (x, y, z, in Angstrom) when that is set, else at
NXSTART/NYSTART/NZSTART (the first column, row and section, in voxels along the axes MAPC/MAPR/MAPS
name) times the voxel size. When both are set, ORIGIN wins, as in ChimeraX: it is MRC2000's
floating-point successor of the integer starts, and IMOD does not use the starts at all. IMOD
writes ORIGIN with the opposite sign (the offset from the first voxel to the coordinate origin);
its ``alterheader`` inverts it for files meant for ChimeraX, and for this reader.
Because y is flipped, the presented y axis runs against the file's: its coordinate is the file's
y negated (y grows down the screen, as 3dmod shows the file growing up). That is the one placement
with positive voxel sizes under which files that record a position, each flipped on its own,
line up with each other (tiles, subvolumes with their starts). A file that records none (ORIGIN
and the starts all 0, most files) gets no translation rather than an invented -(ny - 1) * vy.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np

from ..context import run_blocking
from ..errors import FormatNotSupportedError, SourceError
from .base import Source, SourceSpec
from .formats import FormatBackend, LocalFileFormat
from .indexing import Roi
from .optional import SINGLE_ARRAY_KEY as DEFAULT_KEY
from .optional import import_optional, refuse_write_mode, single_array_file
from .physical import for_axes, positive_sizes
from .threaded import ThreadedSource


def _mrcfile() -> Any:
    return import_optional("mrcfile", "mrcfile", "mrc", "the mrc format")


class MrcSource(ThreadedSource):
    """The data block of an MRC file, with the y axis (the second-to-last axis) flipped."""

    kind = "mrc"
    serialize_calls = False  # slicing a read-only memory map is thread-safe

    def __init__(self, path: str, mrc: Any) -> None:
        super().__init__()
        self.path = path
        self._mrc = mrc
        data = mrc.data
        if imod_unsigned_bytes(mrc):
            data = data.view(np.uint8)
        order = _zyx_order(mrc, path, data.ndim)
        self._data = data if order is None else data.transpose(order)  # a view, still mapped
        data = self._data
        self._shape = tuple(int(n) for n in data.shape)
        self._dtype = np.dtype(data.dtype).newbyteorder("=")
        #: The flipped axis: y, the second-to-last (none for 1D data).
        self._y_axis = len(self._shape) - 2 if len(self._shape) >= 2 else None
        self._voxel_size = _mrc_voxel_size(mrc, len(self._shape))
        self._translation = _mrc_translation(mrc, self._shape, self._voxel_size)

    @property
    def voxel_size(self) -> tuple[float, ...] | None:
        """The header's voxel size (Angstrom; x y z in the file), in C order."""
        return self._voxel_size

    @property
    def translation(self) -> tuple[float, ...] | None:
        """Where voxel 0 of the flipped array sits (Angstrom, C order; y negated, see the module
        docstring), so a pyramid of it keeps its place; None without a voxel size or a recorded
        position."""
        return self._translation

    @property
    def unit(self) -> str | None:
        return "angstrom" if self._voxel_size is not None else None

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def read_only_reason(self) -> str:
        return f"{self.describe()} is read-only (MRC is an input format here)"

    def describe(self) -> str:
        return f"MRC file {self.path}"

    def read_blocking(self, roi: Roi) -> np.ndarray:
        axis = self._y_axis
        if axis is None:
            return np.array(self._data[roi], dtype=self._dtype)
        ny, y = self._shape[axis], roi[axis]
        file_roi = list(roi)
        file_roi[axis] = slice(ny - y.stop, ny - y.start)
        data = np.flip(self._data[tuple(file_roi)], axis=axis)
        return np.array(data, dtype=self._dtype, order="C")

    def close(self) -> None:
        """Release the memory map and the file."""
        self._data = None
        self._mrc.close()

    def to_spec(self) -> SourceSpec:
        return SourceSpec(self.kind, {"path": self.path})

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> MrcSource:
        return await open_mrc(params["path"])


#: "IMOD" at header byte 152 (imodStamp); imodFlags at 156, bit 0: bytes are signed
IMOD_STAMP = 1146047817


def imod_unsigned_bytes(mrc: Any) -> bool:
    """Whether mode 0 holds IMOD's unsigned bytes: IMOD wrote only unsigned bytes before
    4.2.23 and since marks signed ones with imodFlags bit 0. mrcfile reads mode 0 as int8 as
    MRC2014 says, so a voxel of 200 in such a file read as -56."""
    if int(mrc.header.mode) != 0:
        return False
    extra = mrc.header.extra2.tobytes()  # header bytes 112-195: the stamp is at 152
    stamp = int(np.frombuffer(extra[40:44], dtype=mrc.header.mode.dtype)[0])
    flags = int(np.frombuffer(extra[44:48], dtype=mrc.header.mode.dtype)[0])
    return stamp == IMOD_STAMP and not flags & 1


def _zyx_order(mrc: Any, path: str, ndim: int) -> tuple[int, ...] | None:
    """The transpose that puts a volume's data axes in z, y, x order, or None if they are.

    MAPC/MAPR/MAPS say which spatial axis (1 x, 2 y, 3 z) the file's columns, rows and sections
    run along. Most EM files use 1, 2, 3; crystallographic (CCP4) maps often do not, and reading
    those as z, y, x would transpose the volume silently.
    """
    if ndim < 3:
        return None
    header = mrc.header
    try:
        axes = (int(header.maps), int(header.mapr), int(header.mapc))  # data axes 0, 1, 2
    except (AttributeError, TypeError, ValueError):
        return None
    if axes in ((3, 2, 1), (0, 0, 0)):  # standard, or never set (old writers)
        return None
    if sorted(axes) != [1, 2, 3]:
        raise SourceError(
            f"the MRC file {path!r} has an invalid axis order MAPC/MAPR/MAPS = "
            f"{axes[2]}/{axes[1]}/{axes[0]} (each of 1, 2, 3 once); fix the header, e.g. "
            "with mrcfile or IMOD's alterheader"
        )
    lead = ndim - 3
    return tuple(range(lead)) + tuple(lead + axes.index(spatial) for spatial in (3, 2, 1))


def _mrc_voxel_size(mrc: Any, ndim: int) -> tuple[float, ...] | None:
    try:
        size = mrc.voxel_size
        xyz = (float(size.x), float(size.y), float(size.z))
    except (AttributeError, TypeError, ValueError):
        return None
    sizes = positive_sizes(tuple(reversed(xyz))[-ndim:] if ndim < 3 else tuple(reversed(xyz)))
    return None if sizes is None else for_axes(sizes, ndim)


def _mrc_translation(
    mrc: Any, shape: tuple[int, ...], voxel_size: tuple[float, ...] | None
) -> tuple[float, ...] | None:
    """Voxel 0's position in C order: the file's first voxel (x, y, z), with y moved to the
    file's last row and negated, since that row is the presented array's first."""
    if voxel_size is None or len(shape) < 2:
        return None
    try:
        size = mrc.voxel_size
        step = (float(size.x), float(size.y), float(size.z))
        x, y, z = _header_origin(mrc.header, step) or _start_position(mrc.header, step, shape)
    except (AttributeError, TypeError, ValueError):
        return None
    if not any((x, y, z)):
        return None  # no position recorded: none invented (a flipped y would give -(ny-1)*vy)
    flipped_y = 0.0 - (y + (shape[-2] - 1) * step[1])  # 0.0 - 0.0 is 0.0, not -0.0
    zyx = (z, flipped_y, x)[-min(len(shape), 3) :]
    return (0.0,) * (len(shape) - len(zyx)) + zyx


def _header_origin(header: Any, step: tuple[float, ...]) -> tuple[float, ...] | None:
    """ORIGIN (Angstrom, x y z) where it is set and usable, as ChimeraX reads it: only with the
    MRC2000 'MAP ' stamp (older files keep other values there), not all zero, and not so large
    that neighbouring voxels share a coordinate (Relion 2.0 left such garbage)."""
    if bytes(header.map) != b"MAP ":
        return None
    origin = (float(header.origin.x), float(header.origin.y), float(header.origin.z))
    if not any(origin):
        return None
    if not all(math.isfinite(o) and o + s != o for o, s in zip(origin, step)):
        return None
    return origin


def _start_position(
    header: Any, step: tuple[float, ...], shape: tuple[int, ...]
) -> tuple[float, ...]:
    """NXSTART/NYSTART/NZSTART times the voxel size, on x, y, z. The starts are per column,
    row and section, so MAPC/MAPR/MAPS say which axis each belongs to. Starts beyond ten
    times the grid are taken as never set (0), as ChimeraX does."""
    starts = (int(header.nxstart), int(header.nystart), int(header.nzstart))
    axes = (int(header.mapc), int(header.mapr), int(header.maps))
    if sorted(axes) != [1, 2, 3]:
        axes = (1, 2, 3)  # never set (old writers): the standard order
    xyz = [0, 0, 0]
    for start, axis in zip(starts, axes):
        xyz[axis - 1] = start
    limit = 10 * max(int(header.mx), int(header.my), int(header.mz), *shape)
    if any(abs(s) > limit for s in xyz):
        return (0.0, 0.0, 0.0)
    return tuple(float(s) * d for s, d in zip(xyz, step))


def _open_blocking(path: str) -> MrcSource:
    mrcfile = _mrcfile()
    try:
        mrc = mrcfile.mmap(path, mode="r")
    except ValueError as err:
        # Files from old SerialEM versions carry an invalid machine stamp (and other header
        # slips); permissive mode reads them as bioimage-py does, with a warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                mrc = mrcfile.mmap(path, mode="r", permissive=True)
            except (ValueError, OSError):
                mrc = None
        if mrc is None or mrc.data is None:
            if mrc is not None:
                mrc.close()
            raise SourceError(f"cannot read {path!r} as an MRC file: {err}") from err
        warnings.warn(f"{path}: invalid MRC header ({err}); read in permissive mode", stacklevel=2)
    if mrc.data is None:
        mrc.close()
        raise SourceError(f"the MRC file {path!r} holds no data block")
    return MrcSource(path, mrc)


async def open_mrc(
    path: str | os.PathLike[str],
    internal_path: str | None = None,
    *,
    mode: str = "r",
) -> MrcSource:
    """Open an MRC file (.mrc/.rec/.map) read-only, with the y axis flipped (IMOD orientation).

    ``internal_path`` may be None or 'data' (the key bioimage-py uses); anything else is an error.
    """
    refuse_write_mode("mrc", mode)
    _mrcfile()
    absolute = single_array_file(path, internal_path, DEFAULT_KEY, "MRC")
    return await run_blocking(_open_blocking, absolute)


class MrcFormat(LocalFileFormat):
    name = "mrc"
    description = "MRC, .mrc/.rec/.map (y axis flipped to IMOD's orientation)"
    extensions = (".mrc", ".rec", ".map", ".mrc.gz", ".rec.gz", ".map.gz")
    requires = "mrcfile"
    extra = "mrc"

    async def open_local(
        self, path: str, internal_path: str | None, *, mode: str, **options: Any
    ) -> Source:
        if path.lower().endswith(".gz"):
            raise FormatNotSupportedError(
                f"{path} is a gzip'd MRC file, which cannot be memory-mapped or read region by "
                "region; decompress it first (gunzip -k), then open the .mrc"
            )
        return await open_mrc(path, internal_path, mode=mode, **options)


FORMAT_BACKENDS: tuple[FormatBackend, ...] = (MrcFormat(),)
