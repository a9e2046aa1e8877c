"""NIfTI images through nibabel, read-only, with the axes reversed to C order.

NIfTI stores (x, y, z, ...) with x fastest; as in bioimage-py the source presents the reversed
axes (..., z, y, x), the numpy C order the rest of the library uses. A read slices nibabel's
array proxy (``img.dataobj``), which reads only the requested region of an uncompressed file and
applies the header's scaling (scl_slope/scl_inter) to it; the whole image is never loaded.
A gzipped file (.nii.gz) is decompressed from its start up to the region, unless the optional
``indexed_gzip`` package is installed, which nibabel then uses for seeking.

Position (``translation``): the header's affine maps voxel (i, j, k) to world x, y, z at voxel
centres, as OME-Zarr places voxels. nibabel takes the sform, else the qform, whichever the header
marks as set; its offset is voxel 0's position (reversed to C order, in the space unit) when that
affine only scales each axis by its pixdim. An affine that rotates, shears or flips an axis cannot
be written as OME-Zarr's scale + translation with the pixdim sizes, so its offset is not carried
(and a warning says so) rather than placing voxels where the scanner did not put them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from ..context import run_blocking
from ..errors import SourceError
from .base import Source, SourceSpec
from .formats import FormatBackend, LocalFileFormat
from .indexing import Roi
from .optional import SINGLE_ARRAY_KEY as DEFAULT_KEY
from .optional import import_optional, refuse_write_mode, single_array_file
from .physical import for_axes, positive_sizes
from .threaded import ThreadedSource

logger = logging.getLogger("bioimage_async")


def _nibabel() -> Any:
    return import_optional("nibabel", "nibabel", "nifti", "the nifti format")


class NiftiSource(ThreadedSource):
    """A NIfTI image in C order (axes reversed); values scaled as the header says."""

    kind = "nifti"

    def __init__(self, path: str, image: Any) -> None:
        super().__init__()
        self.path = path
        self.image = image
        self._shape = tuple(int(n) for n in reversed(image.shape))
        # The dtype of what slicing the proxy returns: the stored dtype, or the float type the
        # header's scaling promotes it to. An empty slice computes it without reading voxels.
        empty = image.dataobj[(slice(0, 0),) * len(image.shape)]
        self._dtype = np.dtype(empty.dtype).newbyteorder("=")
        self._voxel_size, self._unit = _nifti_voxel_size(image, len(self._shape))
        self._translation, self._not_carried = (
            _nifti_translation(image, len(self._shape))
            if self._voxel_size is not None
            else (None, None)
        )

    @property
    def voxel_size(self) -> tuple[float, ...] | None:
        """``pixdim`` in C order (reversed from x y z)."""
        return self._voxel_size

    @property
    def translation(self) -> tuple[float, ...] | None:
        """The affine's offset in C order (in ``unit``) where the affine only scales by pixdim;
        else None, with one warning naming why (see the module docstring)."""
        if self._not_carried is not None:
            logger.warning(
                "%s: %s, so its position is not carried as a translation (it starts at 0)",
                self.path,
                self._not_carried,
            )
            self._not_carried = None
        return self._translation

    @property
    def unit(self) -> str | None:
        return self._unit

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def axes(self) -> str | None:
        """NIfTI's x, y, z, t, then u (vector components, as channels), reversed."""
        return "ctzyx"[-self.ndim :] if 2 <= self.ndim <= 5 else None

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def read_only_reason(self) -> str:
        return f"{self.describe()} is read-only (NIfTI is an input format here)"

    def describe(self) -> str:
        return f"NIfTI image {self.path}"

    def read_blocking(self, roi: Roi) -> np.ndarray:
        data = self.image.dataobj[roi[::-1]]
        return np.array(np.asarray(data).T, dtype=self._dtype, order="C")

    def to_spec(self) -> SourceSpec:
        return SourceSpec(self.kind, {"path": self.path})

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> NiftiSource:
        return await open_nifti(params["path"])


def _nifti_voxel_size(image: Any, ndim: int) -> tuple[tuple[float, ...] | None, str | None]:
    """Sizes of the (reversed) axes from pixdim: the first three are x, y, z in the space
    unit; the fourth is time (seconds) and later ones are not spatial, so they read as 1.0."""
    try:
        # pixdim is float32: its shortest decimal form (0.9, not 0.8999999761581421)
        zooms = tuple(float(str(np.float32(z))) for z in image.header.get_zooms())[:ndim]
        space_unit = image.header.get_xyzt_units()[0]
    except (AttributeError, TypeError, ValueError):
        return None, None
    spatial = positive_sizes(tuple(reversed(zooms[:3])))
    unit = {"mm": "millimeter", "micron": "micrometer", "meter": "meter"}.get(space_unit)
    if spatial is None or len(zooms) != ndim:
        return None, unit
    return for_axes(spatial, ndim), unit


def _nifti_translation(image: Any, ndim: int) -> tuple[tuple[float, ...] | None, str | None]:
    """(voxel 0's world position in C order, or None; why it is not carried, where the header
    has an affine whose offset would misplace the voxels)."""
    try:
        coded = _coded_affine(image.header)
        zooms = tuple(float(z) for z in image.header.get_zooms())
    except (AttributeError, TypeError, ValueError):
        return None, None
    if coded is None or ndim < 2:
        return None, None
    name, affine = coded
    spatial = min(ndim, 3)
    reason = _not_scale_only(affine[:3, :3], zooms[:spatial], spatial)
    if reason is not None:
        return None, f"its {name} affine {reason} ({affine[:3].tolist()})"
    zyx = tuple(float(str(np.float32(v))) for v in affine[2::-1, 3])[-spatial:]
    return (0.0,) * (ndim - spatial) + zyx, None


def _coded_affine(header: Any) -> tuple[str, np.ndarray] | None:
    """The sform, else the qform, where the header's code marks it as set (nibabel's order).
    Without either, nibabel's affine is a guess centred on the volume, not a recorded place."""
    for name, get in (("sform", header.get_sform), ("qform", header.get_qform)):
        affine, code = get(coded=True)
        if affine is not None and int(code) > 0:
            return name, np.asarray(affine, dtype=np.float64)
    return None


def _not_scale_only(linear: np.ndarray, zooms: tuple[float, ...], spatial: int) -> str | None:
    """Why ``linear`` (the affine's 3x3) is not a plain positive scale by pixdim, or None."""
    scales = np.diag(linear)
    tolerance = 1e-6 * float(np.abs(linear).max())
    if not np.allclose(linear, np.diag(scales), rtol=0.0, atol=tolerance):
        return "rotates or shears the axes"
    if np.any(scales[:spatial] <= 0):
        return "flips an axis (a negative scale)"
    if len(zooms) < spatial or not np.allclose(scales[:spatial], zooms, rtol=1e-5):
        return f"scales by {scales[:spatial].tolist()}, not by pixdim {list(zooms)}"
    return None


def _open_blocking(path: str) -> NiftiSource:
    nibabel = _nibabel()
    try:
        image = nibabel.load(path)
    except (
        nibabel.filebasedimages.ImageFileError,
        nibabel.spatialimages.HeaderDataError,
        ValueError,
        OSError,
        EOFError,
    ) as err:
        raise SourceError(f"cannot read {path!r} as a NIfTI image: {err}") from err
    if not hasattr(image, "dataobj") or not hasattr(image.dataobj, "__getitem__"):
        raise SourceError(f"{path!r} loads as {type(image).__name__}, not a sliceable image")
    return NiftiSource(path, image)


async def open_nifti(
    path: str | os.PathLike[str],
    internal_path: str | None = None,
    *,
    mode: str = "r",
) -> NiftiSource:
    """Open a NIfTI image (.nii/.nii.gz) read-only, axes reversed to C order.

    ``internal_path`` may be None or 'data' (the key bioimage-py uses); anything else is an error.
    """
    refuse_write_mode("nifti", mode)
    _nibabel()
    absolute = single_array_file(path, internal_path, DEFAULT_KEY, "NIfTI")
    return await run_blocking(_open_blocking, absolute)


class NiftiFormat(LocalFileFormat):
    name = "nifti"
    description = "NIfTI, .nii/.nii.gz (axes reversed to C order)"
    extensions = (".nii", ".nii.gz")
    requires = "nibabel"
    extra = "nifti"

    async def open_local(
        self, path: str, internal_path: str | None, *, mode: str, **options: Any
    ) -> Source:
        return await open_nifti(path, internal_path, mode=mode, **options)


FORMAT_BACKENDS: tuple[FormatBackend, ...] = (NiftiFormat(),)
