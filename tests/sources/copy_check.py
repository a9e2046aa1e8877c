"""A test helper: copy a file other tools wrote into a new zarr, and check the copy's values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import bioimage_async as ba


async def copy_checked(
    path: Path,
    key: str | None,
    expected: np.ndarray,
    out_path: Path,
    chunks: tuple[int, ...],
    block_shape: tuple[int, ...],
) -> Any:
    """Open ``path`` (``key`` inside it), copy it block-wise to a zarr with ``chunks``, check the
    copy equals ``expected`` (the writing tool's data); returns the opened source."""
    src = await ba.open_source(path, key)
    out = await ba.create_source(
        out_path, shape=expected.shape, dtype=expected.dtype, chunks=chunks
    )
    await ba.copy(src, out, block_shape=block_shape, num_workers=2)
    np.testing.assert_array_equal(await out.read(...), expected)
    return src
