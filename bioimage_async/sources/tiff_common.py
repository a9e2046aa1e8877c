"""What the TIFF file and TIFF folder sources share: the optional import and decoded segments."""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any, cast

import numpy as np

from .decoded_cache import DecodedCache, Piece
from .indexing import Roi
from .optional import import_optional
from .tiff_segments import PageSegments, ReadRaw


def tifffile_module() -> Any:
    return import_optional("tifffile", "tifffile", "tiff", "the tiff format")


def native(dtype: Any) -> np.dtype:
    return np.dtype(dtype).newbyteorder("=")


class SegmentPlan:
    """The segments one read needs from its pages, decoded through a shared cache.

    Keys are (page or slice number, segment index): one source's cache holds one file's (or one
    folder's) segments, and ``fill`` decodes each missing one once, in the calling thread
    (straight into the read's array where the read takes it whole, see ``DecodedCache.fill``).
    """

    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self._pages: dict[int, tuple[PageSegments, ReadRaw]] = {}
        #: the pieces of one region of one kind of page: the same for every page of a read
        self._layouts: dict[
            tuple[Any, ...], list[tuple[int, tuple[slice, ...], Any, int, int]]
        ] = {}

    def add(
        self,
        number: int,
        segments: PageSegments,
        read_raw: ReadRaw,
        dst: np.ndarray,
        page_roi: Roi,
    ) -> None:
        """Copy ``page_roi`` of page ``number`` into ``dst`` (an array of the region's shape)."""
        self._pages[number] = (segments, read_raw)
        grid = segments.grid
        layout_key = (grid, *((s.start, s.stop) for s in page_roi))
        layout = self._layouts.get(layout_key)
        if layout is None:
            layout = self._layouts[layout_key] = [
                (
                    index,
                    dst_index,
                    src,
                    math.prod(grid.segment_shape(index)) * grid.samples,
                    math.prod(grid.stored_shape(index)),
                )
                for index, dst_index, src in grid.pieces(page_roi)
            ]  # values: an edge tile is partly outside the page
        self.pieces.extend(
            Piece((number, index), dst, dst_index, src, values, stored)
            for index, dst_index, src, values, stored in layout
        )

    def _decode(self, key: Hashable) -> np.ndarray:
        number, index = cast(tuple[int, int], key)
        segments, read_raw = self._pages[number]
        return segments.decode(index, read_raw)

    def _decode_into(self, key: Hashable, target: np.ndarray) -> np.ndarray | None:
        number, index = cast(tuple[int, int], key)
        segments, read_raw = self._pages[number]
        return segments.decode_into(index, read_raw, target)

    def fill(self, cache: DecodedCache) -> None:
        if self.pieces:
            cache.fill(self.pieces, self._decode, self._decode_into)
