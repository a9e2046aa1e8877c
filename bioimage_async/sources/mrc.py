"""MRC volumes through mrcfile, memory-mapped and read-only, in IMOD orientation.

As in bioimage-py (and IMOD's 3dmod), the y axis is flipped relative to the order in the file:
row 0 of a read is the file's last row. The flip is done per read on the memory map, so a read
touches only the requested rows. Reads of a memory map are thread-safe and run in parallel.
"""

from __future__ import annotations

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

    @property
    def voxel_size(self) -> tuple[float, ...] | None:
        """The header's voxel size (Angstrom; x y z in the file), in C order."""
        return self._voxel_size

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
