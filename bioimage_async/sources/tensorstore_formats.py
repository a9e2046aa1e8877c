"""The four tensorstore formats as registered backends: zarr (v2 created, v2/v3 opened),
zarr3, n5 and neuroglancer precomputed, locally or in object storage."""

from __future__ import annotations

from typing import Any

from ..errors import (
    InvalidArgumentError,
)
from .base import Source
from .formats import CreateRequest, FormatBackend
from .location import Location
from .tensorstore_open import create_tensorstore, open_tensorstore
from .ts_drivers import DRIVERS, Driver


# ---------------------------------------------------------------------------------------------
# the four format backends
# ---------------------------------------------------------------------------------------------
class TensorStoreFormat(FormatBackend):
    """A chunked format served by tensorstore, locally or in object storage."""

    writable = True
    creatable = True
    remote = True
    records_voxel_size = True
    #: zarr v3 ``dimension_names``, zarr v2 ``_ARRAY_DIMENSIONS``, n5 ``axes``
    records_axis_names = True
    driver_name = ""

    @property
    def driver(self) -> Driver:
        return DRIVERS[self.driver_name]

    async def detect(self, location: Location) -> bool:
        return await self.driver.node(location, "") is not None

    async def open(
        self,
        location: Location,
        internal_path: str | None,
        *,
        mode: str,
        scale_index: int | None = None,
        level: int | None = None,
        **options: Any,
    ) -> Source:
        if options:
            raise InvalidArgumentError(
                f"unexpected keyword argument(s) for {self.name}: {sorted(options)}"
            )
        if scale_index is not None and self.name != "precomputed":
            raise InvalidArgumentError(
                f"scale_index= applies to precomputed layers, not {self.name}"
            )
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise InvalidArgumentError(f"level must be an integer, got {level!r}")
        if scale_index is not None and (
            isinstance(scale_index, bool) or not isinstance(scale_index, int)
        ):
            raise InvalidArgumentError(f"scale_index must be an integer, got {scale_index!r}")
        return await open_tensorstore(
            location,
            internal_path,
            driver=self.driver,
            mode=mode,
            scale_index=scale_index,
            level=level,
        )

    async def create(self, location: Location, request: CreateRequest) -> Source:
        return await create_tensorstore(location, request, driver=self.driver)


class ZarrFormat(TensorStoreFormat):
    name = "zarr"
    description = "zarr v2 (created) or v3 (auto-detected on open), .zarr"
    extensions = (".zarr",)
    url_prefixes = ("zarr", "zarr2")
    driver_name = "zarr"

    async def detect(self, location: Location) -> bool:
        for version in ("zarr", "zarr3"):
            if await DRIVERS[version].node(location, "") is not None:
                return True
        return False


class Zarr3Format(TensorStoreFormat):
    name = "zarr3"
    description = "zarr v3, incl. sharding"
    url_prefixes = ("zarr3",)
    driver_name = "zarr3"

    async def detect(self, location: Location) -> bool:
        return False  # zarr detects both versions


class N5Format(TensorStoreFormat):
    name = "n5"
    description = "n5 (z5py/BigDataViewer axis order), .n5"
    extensions = (".n5",)
    url_prefixes = ("n5",)
    driver_name = "n5"


class PrecomputedFormat(TensorStoreFormat):
    name = "precomputed"
    description = "neuroglancer precomputed, precomputed://... or a folder with 'info'"
    url_prefixes = ("precomputed",)
    driver_name = "precomputed"
    records_axis_names = False  # its axes are (c,) z, y, x by definition
    records_translation = True  # the scale's voxel_offset

    async def detect(self, location: Location) -> bool:
        return await location.read_json("info") is not None


FORMAT_BACKENDS: tuple[FormatBackend, ...] = (
    PrecomputedFormat(),
    ZarrFormat(),
    Zarr3Format(),
    N5Format(),
)
