"""Axis names recorded on an array, read as ``Source.axes`` letters and written back.

Each chunked format has its own place for them:

- zarr v3: ``dimension_names`` in the array's metadata (zarr-python, tensorstore, OME-NGFF 0.5);
- zarr v2: no place of its own; xarray's ``_ARRAY_DIMENSIONS`` attribute (in ``.zattrs``) is
  the convention zarr-python users and xarray read;
- n5: ``axes`` in ``attributes.json``, fastest axis first like ``dimensions`` (tensorstore,
  neuroglancer).

tensorstore shows zarr v3 and n5 names as dimension labels, and labels take part in its index
alignment: a labelled region written into a differently labelled (or a labelled into an
unlabelled one) fails with "Error aligning dimensions". Sources therefore keep the names as
``axes`` and present their store unlabelled, so every copy pairs axes by position, as numpy does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorstore as ts

#: zarr v2's attribute for axis names (xarray's convention)
ZARR_V2_ATTRIBUTE = "_ARRAY_DIMENSIONS"

_LETTERS = frozenset("tczyx")


def axes_from_names(names: Sequence[Any] | None, ndim: int) -> str | None:
    """The "tczyx" letters of recorded axis names ("c", "y", "x" -> "cyx"), any case; None
    when there is no name for every axis, or a name is not one of t, c, z, y, x once."""
    if names is None or isinstance(names, str) or len(names) != ndim or ndim == 0:
        return None
    letters = [str(name).lower() if isinstance(name, str) else "" for name in names]
    if not all(letter in _LETTERS for letter in letters) or len(set(letters)) != ndim:
        return None
    return "".join(letters)


def unlabelled(store: ts.TensorStore) -> ts.TensorStore:
    """``store`` without dimension labels (the same voxels, paired with others by position)."""
    if store.ndim == 0 or not any(store.domain.labels):
        return store
    return store[ts.d[:].label[("",) * store.ndim]]


def store_axes(store: ts.TensorStore) -> str | None:
    """The letters of a store's dimension labels (zarr v3 ``dimension_names``, n5 ``axes``)."""
    return axes_from_names(store.domain.labels, store.ndim)
