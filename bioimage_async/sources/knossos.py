"""KNOSSOS datasets as read-only (z, y, x) sources.

A KNOSSOS dataset is a folder of magnification folders (``mag1``, ``mag2``, ...), each holding
cubes of 128**3 voxels at ``x{X:04d}/y{Y:04d}/z{Z:04d}/<name>_x{X:04d}_y{Y:04d}_z{Z:04d}.<ext>``
where X, Y, Z count cubes. A cube is one of:

- ``.raw``: the 128**3 voxels uncompressed, x fastest, i.e. C order in (z, y, x); uint8 unless
  ``dtype=`` says otherwise;
- ``.png`` / ``.jpg``: a grayscale uint8 image of the 128 z-slices stacked vertically (128*128
  rows of 128), as bioimage-py and elf read them.

The volume's extent comes from ``boundary x/y/z`` (Mag(1) voxels, ``magnification N``) in the mag
folder's ``knossos.conf`` (or the dataset folder's); without one, from the cube folders present.
Cubes that are absent read as zeros, as in KNOSSOS itself (datasets are often sparse).
"""

from __future__ import annotations

import os
import re
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from ..context import run_blocking
from ..errors import (
    FormatNotSupportedError,
    InternalPathNotFoundError,
    InvalidArgumentError,
    MissingDependencyError,
    SourceError,
    SourceNotFoundError,
)
from .base import Source, SourceSpec
from .formats import FormatBackend, LocalFileFormat
from .indexing import Roi
from .location import Location
from .threaded import ThreadedSource

CUBE_EDGE = 128
CUBE_SHAPE = (CUBE_EDGE,) * 3
DEFAULT_KEY = "mag1"
CUBE_EXTENSIONS = (".raw", ".png", ".jpg", ".jpeg")

_MAG_FOLDER = re.compile(r"mag(\d+)$")
_CONF_LINE = re.compile(r'^\s*([A-Za-z][A-Za-z _]*)(?:"([^"]*)"|([-+]?[0-9.]+))\s*;')
_GRID_FOLDER = {axis: re.compile(rf"{axis}(\d+)$") for axis in "xyz"}


def _parse_conf(path: Path) -> dict[str, str]:
    """``knossos.conf`` as {key: value}: lines like ``boundary x 1024;`` or ``name "a";``."""
    entries: dict[str, str] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return entries
    for line in text.splitlines():
        match = _CONF_LINE.match(line)
        if match:
            value = match.group(2) if match.group(2) is not None else match.group(3)
            entries[" ".join(match.group(1).split())] = value.strip()
    return entries


def _grid_indices(folder: Path, axis: str) -> list[int]:
    """The cube indices of the ``x0000``-style subfolders of ``folder``, sorted."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    pattern = _GRID_FOLDER[axis]
    found = []
    for name in names:
        match = pattern.match(name)
        if match and (folder / name).is_dir():
            found.append(int(match.group(1)))
    return sorted(found)


def _find_cube(folder: Path) -> tuple[tuple[int, int, int], str] | None:
    """The first cube (its XYZ index and extension) below a mag folder, or None if empty."""
    for x in _grid_indices(folder, "x"):
        x_dir = folder / f"x{x:04d}"
        for y in _grid_indices(x_dir, "y"):
            y_dir = x_dir / f"y{y:04d}"
            for z in _grid_indices(y_dir, "z"):
                for name in sorted(os.listdir(y_dir / f"z{z:04d}")):
                    extension = os.path.splitext(name)[1].lower()
                    if extension in CUBE_EXTENSIONS:
                        return (x, y, z), extension
    return None


def _grid_extent(folder: Path) -> tuple[int, int, int]:
    """XYZ number of cubes from the folder names, over every x and y folder: datasets written
    sparsely (or cropped) have x folders with fewer y folders and y folders with fewer z folders
    than others, and looking at the first ones only would drop the cubes beyond them."""
    xs = _grid_indices(folder, "x")
    y_end = z_end = 0
    for x in xs:
        x_dir = folder / f"x{x:04d}"
        for y in _grid_indices(x_dir, "y"):
            y_end = max(y_end, y + 1)
            zs = _grid_indices(x_dir / f"y{y:04d}", "z")
            if zs:
                z_end = max(z_end, zs[-1] + 1)
    return ((xs[-1] + 1) if xs else 0, y_end, z_end)


class KnossosSource(ThreadedSource):
    """One magnification of a KNOSSOS dataset, read-only, in (z, y, x) with 128**3 chunks."""

    kind = "knossos"
    serialize_calls = False  # cube files are opened per read; no shared handle

    def __init__(
        self,
        root: str | os.PathLike[str],
        key: str,
        *,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        extension: str,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.key = key
        self.extension = extension
        self._shape = tuple(int(n) for n in shape)
        self._dtype = np.dtype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        return CUBE_SHAPE

    @property
    def read_only_reason(self) -> str:
        return f"{self.describe()} is read-only (KNOSSOS cubes are never written here)"

    def describe(self) -> str:
        return f"KNOSSOS {self.key} of {self.root}"

    # ---- I/O (in worker threads) ------------------------------------------------------------
    def _cube_path(self, x: int, y: int, z: int) -> Path | None:
        folder = self.root / self.key / f"x{x:04d}" / f"y{y:04d}" / f"z{z:04d}"
        try:
            names = [n for n in os.listdir(folder) if n.lower().endswith(self.extension)]
        except FileNotFoundError:
            return None
        if len(names) > 1:
            raise SourceError(
                f"the KNOSSOS cube folder {folder} holds {len(names)} {self.extension} files "
                f"({', '.join(sorted(names))}); a cube folder must hold one"
            )
        return folder / names[0] if names else None

    def _read_cube(self, path: Path, region: tuple[slice, ...]) -> np.ndarray:
        """The ``region`` (z, y, x, inside one cube) of the cube file at ``path``."""
        if self.extension == ".raw":
            expected = CUBE_EDGE**3 * self._dtype.itemsize
            found = path.stat().st_size
            if found != expected:
                raise SourceError(
                    f"the KNOSSOS cube {path} has {found} bytes, not the {expected} of a "
                    f"{CUBE_EDGE}**3 cube of {self._dtype}; the file is truncated or the "
                    "dtype= is wrong"
                )
            cube = np.memmap(path, dtype=self._dtype, mode="r", shape=CUBE_SHAPE)
            try:
                return np.array(cube[region])
            finally:
                del cube
        image = np.asarray(_pillow().open(path))
        if image.size != CUBE_EDGE**3 or image.dtype != np.uint8:
            raise SourceError(
                f"the KNOSSOS cube {path} is an image of shape {image.shape} and dtype "
                f"{image.dtype}; a cube image is grayscale uint8 of {CUBE_EDGE**2}x{CUBE_EDGE}"
            )
        return image.reshape(CUBE_SHAPE)[region]

    def read_blocking(self, roi: Roi) -> np.ndarray:
        out = np.zeros(tuple(s.stop - s.start for s in roi), dtype=self._dtype)
        ranges = [range(s.start // CUBE_EDGE, (s.stop - 1) // CUBE_EDGE + 1) for s in roi]
        for cz, cy, cx in product(*ranges):
            path = self._cube_path(cx, cy, cz)
            if path is None:
                continue  # an absent cube is empty
            cube_region, out_region = [], []
            for s, c in zip(roi, (cz, cy, cx)):
                lo, hi = max(s.start, c * CUBE_EDGE), min(s.stop, (c + 1) * CUBE_EDGE)
                cube_region.append(slice(lo - c * CUBE_EDGE, hi - c * CUBE_EDGE))
                out_region.append(slice(lo - s.start, hi - s.start))
            out[tuple(out_region)] = self._read_cube(path, tuple(cube_region))
        return out

    # ---- spec --------------------------------------------------------------------------------
    def to_spec(self) -> SourceSpec:
        return SourceSpec(
            self.kind,
            {"path": str(self.root), "internal_path": self.key, "dtype": self._dtype.name},
        )

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> KnossosSource:
        return await open_knossos(
            params["path"], params.get("internal_path"), dtype=params.get("dtype")
        )


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError("pillow", "knossos", "KNOSSOS png/jpg cubes") from None
    return Image


def _open_blocking(path: str, internal_path: str | None, dtype: Any) -> KnossosSource:
    root = Path(os.path.abspath(os.path.expanduser(path)))
    if not root.is_dir():
        raise SourceNotFoundError(f"no KNOSSOS dataset folder at {str(root)!r}")
    mag_folders = sorted(
        p.name for p in root.iterdir() if p.is_dir() and _MAG_FOLDER.search(p.name)
    )
    if internal_path is None and not mag_folders and _MAG_FOLDER.search(root.name):
        root, key = root.parent, root.name  # the path is a mag folder itself
    else:
        key = (internal_path or DEFAULT_KEY).strip("/")
    folder = root / key
    if not folder.is_dir():
        raise InternalPathNotFoundError(str(root), key, mag_folders)

    conf = _parse_conf(folder / "knossos.conf")
    match = _MAG_FOLDER.search(key)
    mag = int(float(conf.get("magnification") or (match.group(1) if match else 1)))
    if not all(f"boundary {a}" in conf for a in "xyz"):
        conf = _parse_conf(root / "knossos.conf")  # the Mag(1) boundary of the dataset

    first = _find_cube(folder)
    extension = first[1] if first is not None else ".raw"
    if all(f"boundary {a}" in conf for a in "xyz"):
        boundary = tuple(int(float(conf[f"boundary {a}"])) for a in "xyz")
        size_xyz = tuple(-(-b // mag) for b in boundary)
    elif first is not None:
        size_xyz = tuple(n * CUBE_EDGE for n in _grid_extent(folder))
    else:
        raise SourceError(
            f"the KNOSSOS folder {folder} holds no cubes and no knossos.conf with its boundary"
        )

    if extension == ".raw":
        resolved = np.dtype(dtype if dtype is not None else np.uint8)
    else:
        resolved = np.dtype(np.uint8)
        if dtype is not None and np.dtype(dtype) != resolved:
            raise InvalidArgumentError(
                f"the KNOSSOS cubes of {folder} are {extension} images, which hold uint8; "
                f"dtype={np.dtype(dtype)} applies to .raw cubes only"
            )
    shape_zyx = (size_xyz[2], size_xyz[1], size_xyz[0])
    return KnossosSource(root, key, shape=shape_zyx, dtype=resolved, extension=extension)


async def open_knossos(
    path: str | os.PathLike[str],
    internal_path: str | None = None,
    *,
    mode: str = "r",
    dtype: Any = None,
) -> KnossosSource:
    """Open one magnification of a KNOSSOS dataset as a read-only (z, y, x) source.

    Args:
        path: the dataset folder (holding ``mag1``, ``mag2``, ...), or a mag folder itself.
        internal_path: the magnification folder; default ``"mag1"``.
        mode: only ``"r"``: KNOSSOS datasets are read, never written.
        dtype: the voxel type of ``.raw`` cubes (default uint8); image cubes are uint8.
    """
    if mode != "r":
        raise FormatNotSupportedError(
            f"KNOSSOS datasets are read-only here, so mode={mode!r} is not possible; open with "
            "mode='r' and copy into a writable format (zarr, zarr3, n5, precomputed, hdf5)"
        )
    return await run_blocking(_open_blocking, os.fspath(path), internal_path, dtype)


class KnossosFormat(LocalFileFormat):
    name = "knossos"
    open_options = ("dtype",)
    description = "KNOSSOS cubes, a folder of mag folders"

    async def detect(self, location: Location) -> bool:
        names = await location.list_names(1000)
        return "knossos.conf" in names or any(n.startswith("mag") for n in names)

    async def open_local(
        self, path: str, internal_path: str | None, *, mode: str, **options: Any
    ) -> Source:
        return await open_knossos(path, internal_path, mode=mode, **options)


FORMAT_BACKENDS: tuple[FormatBackend, ...] = (KnossosFormat(),)
