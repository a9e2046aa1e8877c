"""Compressed TIFFs decode only the strips or tiles a read needs, each once per conversion.

Every layout and codec is written by tifffile and converted block-wise with ba.copy, with blocks
smaller than a page and not aligned to its segments; the result must equal tifffile.imread and
the source's decode_count must equal the file's number of segments (so each was decoded once).
Codecs that tifffile can only write with imagecodecs are skipped where it is not installed.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

import bioimage_async as ba
from bioimage_async.sources import parallel_read, tiff_segments
from bioimage_async.sources.inflate import pick_inflate
from bioimage_async.sources.tiff import TiffFolderSource, TiffSource
from bioimage_async.sources.tiff_segments import FastDeflate

from .copy_check import copy_checked


def run(coro):
    return asyncio.run(coro)


def smooth(shape: tuple[int, ...], dtype, seed: int = 0) -> np.ndarray:
    """Compressible data (random walks along x), like microscopy more than pure noise."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(-2, 3, shape)
    values = np.cumsum(steps, axis=-1) + rng.integers(0, 200, shape[:-1] + (1,))
    if np.dtype(dtype).kind == "f":
        return (values / 7.0).astype(dtype)
    return np.clip(values, 0, np.iinfo(dtype).max).astype(dtype)


#: kind -> (shape, block shapes): whole volume, blocks smaller than a page and not aligned to
#: strips or tiles, partial rows and partial columns
KINDS = {
    "gray": ((5, 37, 45), [(5, 37, 45), (2, 7, 11), (3, 16, 45), (1, 37, 13), (4, 10, 44)]),
    "rgb": ((4, 29, 35, 3), [(4, 29, 35, 3), (2, 7, 11, 2), (1, 10, 35, 3), (3, 29, 8, 1)]),
    "planes": ((4, 3, 29, 35), [(4, 3, 29, 35), (1, 2, 7, 11), (2, 1, 29, 8)]),
}

#: name -> (kind, dtype, tifffile.imwrite keywords, needs imagecodecs to write)
LAYOUTS = {
    "deflate-strips": ("gray", "u2", {"compression": "zlib", "rowsperstrip": 5}, False),
    "deflate-32946": ("gray", "u2", {"compression": "deflate", "rowsperstrip": 8}, False),
    "deflate-tiles": ("gray", "u2", {"compression": "zlib", "tile": (16, 32)}, False),
    "wide-tiles": ("gray", "u2", {"compression": "zlib", "tile": (32, 48)}, False),
    "uncompressed-tiles": ("gray", "u2", {"tile": (16, 16)}, False),
    "predictor": (
        "gray",
        "u2",
        {"compression": "zlib", "predictor": True, "rowsperstrip": 6},
        False,
    ),
    "big-endian": (
        "gray",
        "u2",
        {"compression": "zlib", "byteorder": ">", "rowsperstrip": 7},
        False,
    ),
    "bigtiff": ("gray", "u1", {"compression": "zlib", "bigtiff": True, "tile": (16, 16)}, False),
    "float32": ("gray", "f4", {"compression": "zlib", "rowsperstrip": 9}, False),
    "rgb-strips": (
        "rgb",
        "u1",
        {"compression": "zlib", "photometric": "rgb", "rowsperstrip": 4},
        False,
    ),
    "rgb-tiles": (
        "rgb",
        "u2",
        {"compression": "zlib", "photometric": "rgb", "tile": (16, 16)},
        False,
    ),
    "rgb-separate": (
        "planes",
        "u1",
        {
            "compression": "zlib",
            "photometric": "rgb",
            "planarconfig": "separate",
            "rowsperstrip": 8,
        },
        False,
    ),
    "lzw": ("gray", "u2", {"compression": "lzw", "rowsperstrip": 5}, True),
    "zstd-tiles": ("gray", "u2", {"compression": "zstd", "tile": (16, 16)}, True),
    "jpeg": ("gray", "u1", {"compression": "jpeg", "rowsperstrip": 16}, True),
    "jpeg-rgb-tiles": (
        "rgb",
        "u1",
        {"compression": "jpeg", "photometric": "rgb", "tile": (16, 16)},
        True,
    ),
    "float-predictor": (
        "gray",
        "f4",
        {"compression": "zlib", "predictor": 3, "rowsperstrip": 5},
        True,
    ),
    "float-predictor-big-endian": (
        "gray",
        "f4",
        {"compression": "zlib", "predictor": 3, "byteorder": ">", "tile": (16, 16)},
        True,
    ),
}

CASES = [(name, block) for name, (kind, *_) in LAYOUTS.items() for block in KINDS[kind][1]]


def write(path: Path, name: str) -> np.ndarray:
    """Write layout ``name``; returns what tifffile reads back (JPEG is lossy)."""
    kind, dtype, kwargs, needs_imagecodecs = LAYOUTS[name]
    if needs_imagecodecs:
        pytest.importorskip("imagecodecs")
    tifffile.imwrite(path, smooth(KINDS[kind][0], dtype), **kwargs)
    return tifffile.imread(path)


def segment_count(path: Path) -> int:
    with tifffile.TiffFile(path) as tif:
        return sum(len(page.dataoffsets) for page in tif.series[0].pages)


@pytest.mark.parametrize(("name", "block"), CASES, ids=[f"{n}-{b}" for n, b in CASES])
def test_blockwise_conversion_equals_tifffile_and_decodes_each_segment_once(
    tmp_path: Path, name: str, block: tuple[int, ...]
) -> None:
    path = tmp_path / f"{name}.tif"
    expected = write(path, name)

    async def main() -> tuple[np.ndarray, TiffSource]:
        src = await ba.open_source(path)
        return await ba.copy(src, block_shape=block, num_workers=2), src

    result, src = run(main())
    assert isinstance(src, TiffSource) and not src.memory_mapped
    assert result.dtype == expected.dtype.newbyteorder("=")
    np.testing.assert_array_equal(result, expected)
    assert src.decode_count == segment_count(path)


DEFLATE_LAYOUTS = [
    "deflate-strips",
    "deflate-32946",
    "predictor",
    "big-endian",
    "deflate-tiles",
    "wide-tiles",
    "rgb-tiles",
    "rgb-separate",
    "float32",
]


@pytest.mark.parametrize("name", DEFLATE_LAYOUTS)
def test_deflate_segments_decode_the_same_through_tifffile_without_libdeflate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(tiff_segments, "inflate", None)
    path = tmp_path / f"{name}.tif"
    expected = write(path, name)

    async def main() -> tuple[np.ndarray, TiffSource]:
        src = await ba.open_source(path)
        return await ba.copy(src, block_shape=KINDS[LAYOUTS[name][0]][1][1]), src

    result, src = run(main())
    np.testing.assert_array_equal(result, expected)
    assert src.decode_count == segment_count(path)


@pytest.mark.parametrize("library", ["imagecodecs", "deflate"])
@pytest.mark.parametrize("name", DEFLATE_LAYOUTS)
def test_deflate_segments_use_libdeflate_when_it_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, library: str
) -> None:
    pytest.importorskip(library)
    monkeypatch.setattr(tiff_segments, "inflate", pick_inflate((library,)))
    monkeypatch.setattr(tiff_segments, "inflate_into", None)  # each segment through decode
    path = tmp_path / f"{name}.tif"
    expected = write(path, name)
    fast: list[np.ndarray | None] = []
    original = FastDeflate.decode

    def recording(self, raw, shape):
        fast.append(original(self, raw, shape))
        return fast[-1]

    monkeypatch.setattr(FastDeflate, "decode", recording)
    np.testing.assert_array_equal(run(ba.open_source(path))[...], expected)
    assert len(fast) == segment_count(path) and all(s is not None for s in fast)


@pytest.mark.parametrize("name", DEFLATE_LAYOUTS)
def test_segments_a_block_takes_whole_are_decoded_straight_into_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Whole-page blocks take each segment alone: libdeflate decodes every one without a new
    array; the result is tifffile's, each segment decoded once."""
    pytest.importorskip("imagecodecs")
    path = tmp_path / f"{name}.tif"
    expected = write(path, name)
    into: list[bool] = []
    original = FastDeflate.decode_into

    def recording(self, raw, target):
        into.append(original(self, raw, target))
        return into[-1]

    monkeypatch.setattr(FastDeflate, "decode_into", recording)
    kind = LAYOUTS[name][0]
    shape = KINDS[kind][0]
    page = (1, *shape[1:])

    async def main() -> tuple[np.ndarray, TiffSource]:
        src = await ba.open_source(path)
        return await ba.copy(src, block_shape=page, num_workers=2), src

    result, src = run(main())
    np.testing.assert_array_equal(result, expected)
    assert src.decode_count == segment_count(path)
    # every segment is needed by one block alone: strips straight into it, tiles (whose rows
    # are not contiguous in a wider block) through the thread's scratch buffer
    assert len(into) == segment_count(path) and all(into)


def test_direct_decoding_fills_a_pooled_buffer_that_held_another_block(tmp_path: Path) -> None:
    """Blocks read into reused buffers: a segment decoded straight into one must overwrite
    what the previous block left there (a short strip, an unwritten segment included)."""
    pytest.importorskip("imagecodecs")
    data = smooth((12, 50, 40), "u2", seed=3)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, data, compression="zlib", rowsperstrip=16)  # 16, 16, 16, 2 rows

    async def main() -> np.ndarray:
        src = await ba.open_source(path)
        out = await ba.create_source(
            tmp_path / "o.zarr", shape=data.shape, dtype="u2", chunks=(1, 50, 40)
        )
        await ba.copy(src, out, block_shape=(1, 50, 40), num_workers=2)
        return await out.read()

    np.testing.assert_array_equal(run(main()), data)


@pytest.mark.parametrize(
    ("name", "chunks"),
    [
        ("deflate-strips", (1, 5, 45)),
        ("deflate-tiles", (1, 16, 32)),
        ("rgb-strips", (1, 4, 35, 3)),
        ("rgb-separate", (1, 1, 8, 35)),
    ],
)
def test_chunks_are_one_strip_or_tile(tmp_path: Path, name: str, chunks) -> None:
    path = tmp_path / f"{name}.tif"
    write(path, name)
    assert run(ba.open_source(path)).chunks == chunks


def test_conversion_with_default_blocks_decodes_each_strip_once(tmp_path: Path) -> None:
    path = tmp_path / "strips.tif"
    data = smooth((8, 64, 96), "u1")
    tifffile.imwrite(path, data, compression="zlib", rowsperstrip=16)

    async def main() -> tuple[np.ndarray, TiffSource]:
        src = await ba.open_source(path)
        return await ba.copy(src), src

    result, src = run(main())
    np.testing.assert_array_equal(result, data)
    assert src.decode_count == 8 * 4


@pytest.mark.parametrize("known_segments", [1 << 18, 1])
def test_each_page_table_is_read_once_per_conversion_within_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, known_segments: int
) -> None:
    """Blocks narrower than a page read each page several times; its strips' offsets are
    looked up once (a bound of 1 segment keeps one page: tables are read again, values stay)."""
    from bioimage_async.sources import tiff as tiff_module

    monkeypatch.setattr(tiff_module, "KNOWN_SEGMENTS", known_segments)
    path = tmp_path / "strips.tif"
    data = smooth((6, 64, 96), "u1")
    tifffile.imwrite(path, data, compression="zlib", rowsperstrip=16)
    described: list[int] = []
    original = tiff_segments.PageSegments.of.__func__

    def counting(cls, page, *args, **kwargs):
        described.append(page.index)
        return original(cls, page, *args, **kwargs)

    monkeypatch.setattr(tiff_segments.PageSegments, "of", classmethod(counting))

    src = run(ba.open_source(path))
    np.testing.assert_array_equal(run(ba.copy(src, block_shape=(2, 16, 32), num_workers=2)), data)
    if known_segments > 1:
        assert sorted(described) == list(range(6))
    else:
        assert len(described) > 6  # re-read, never wrong
    assert src._page_segments  # kept while the source is open
    src.close()  # the tables (their decode functions hold the parsed file) go with the file
    assert not src._page_segments and len(src.segment_cache) == 0


def test_a_default_copy_takes_whole_strips_so_no_strip_is_kept_or_decoded_twice(
    tmp_path: Path,
) -> None:
    """Page-wide strips and chunked output: the default blocks span whole strips (8 MiB here,
    within the copy's 32 MiB), so every strip goes to one block and the decoded-segment cache
    never holds one (2 MiB blocks would share each strip between four blocks)."""
    path = tmp_path / "strips.tif"
    data = smooth((64, 64, 1024), "u2")
    tifffile.imwrite(path, data, compression="zlib", rowsperstrip=64)
    out_path = tmp_path / "out.zarr"

    async def main() -> TiffSource:
        src = await ba.open_source(path)
        out = await ba.create_source(
            out_path, shape=data.shape, dtype=data.dtype, chunks=(64, 32, 64)
        )
        await ba.copy(src, out, num_workers=2)
        np.testing.assert_array_equal(await out.read(...), data)
        return src

    src = run(main())
    assert src.decode_count == 64 and src.segment_cache.peak_bytes == 0


def test_default_copy_blocks_hold_whole_input_chunks_up_to_their_limit() -> None:
    from bioimage_async.blocking.defaults import ALIGNED_COPY_BLOCK_BYTES, default_block_shape

    strips = (1, 256, 1024)
    assert default_block_shape(
        (128, 1024, 1024), 2, (64, 64, 64), strips, align_bytes=32 << 20
    ) == (
        64,
        256,
        1024,
    )
    # without the copy's allowance (compute blocks) a block stays small and shares strips
    assert default_block_shape((128, 1024, 1024), 2, (64, 64, 64), strips)[2] < 1024
    # strips too wide for the limit: not aligned on that axis
    wide = (1, 256, 8192)
    block = default_block_shape(
        (128, 1024, 8192), 2, (64, 64, 64), wide, align_bytes=ALIGNED_COPY_BLOCK_BYTES
    )
    assert block[2] < 8192 and 2 * block[0] * block[1] * block[2] <= ALIGNED_COPY_BLOCK_BYTES


def test_a_large_read_is_split_over_threads_and_still_decodes_each_segment_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.tif"
    data = smooth((6, 40, 50), "u2")
    tifffile.imwrite(path, data, compression="zlib", rowsperstrip=6)
    monkeypatch.setattr(parallel_read, "PART_BYTES", 1024)  # split anything
    parts: list[tuple[slice, ...]] = []
    original = TiffSource._fill

    def recording(self, out, roi):
        parts.append(roi)
        return original(self, out, roi)

    monkeypatch.setattr(TiffSource, "_fill", recording)
    src = run(ba.open_source(path))
    np.testing.assert_array_equal(src[...], data)
    assert len(parts) > 1  # several parts, one per pool thread
    assert src.decode_count == segment_count(path)


def test_repeated_reads_of_one_region_soon_stop_decoding(tmp_path: Path) -> None:
    path = tmp_path / "z.tif"
    data = smooth((3, 40, 50), "u2")
    tifffile.imwrite(path, data, compression="zlib", rowsperstrip=10, photometric="minisblack")
    src = run(ba.open_source(path))
    counts = []
    for _ in range(5):
        np.testing.assert_array_equal(src[1, 5:25, 3:30], data[1, 5:25, 3:30])
        counts.append(src.decode_count)
    # strips 0-2 of page 1; a strip whose values have all been taken once leaves the cache (reads
    # that do not overlap never need it again) and, read once more, makes the cache keep strips
    # by recency alone: at most one decode more per strip, then none
    assert counts[0] == 3 and counts[-1] == counts[-3] <= 6
    assert src.segment_cache.overlapping


# ---- folders of compressed slices -----------------------------------------------------------
@pytest.mark.parametrize("block", [(12, 40, 50), (5, 7, 11), (3, 40, 9)])
def test_folder_of_compressed_slices_decodes_each_segment_once(
    tmp_path: Path, block: tuple[int, ...]
) -> None:
    data = smooth((12, 40, 50), "u2")
    folder = tmp_path / "slices"
    folder.mkdir()
    for z, plane in enumerate(data):
        tifffile.imwrite(folder / f"s{z}.tif", plane, compression="zlib", rowsperstrip=8)

    async def main() -> tuple[np.ndarray, TiffFolderSource]:
        src = await ba.open_source(folder)
        return await ba.copy(src, block_shape=block, num_workers=2), src

    result, src = run(main())
    assert isinstance(src, TiffFolderSource) and src.chunks == (1, 8, 50)
    np.testing.assert_array_equal(result, data)
    assert src.decode_count == 12 * 5  # 5 strips per slice


def test_folder_of_tiled_rgb_slices_reads_exactly(tmp_path: Path) -> None:
    data = smooth((4, 20, 30, 3), "u1")
    folder = tmp_path / "rgb"
    folder.mkdir()
    for z, plane in enumerate(data):
        tifffile.imwrite(
            folder / f"c_{z}.tiff", plane, photometric="rgb", compression="zlib", tile=(16, 16)
        )
    src = run(ba.open_source(folder))
    assert src.chunks == (1, 16, 16, 3)
    np.testing.assert_array_equal(src[1:4, 3:19, 10:29, 1:], data[1:4, 3:19, 10:29, 1:])
    assert src.decode_count == 3 * 4


def test_a_compressed_slice_rewritten_after_opening_is_an_error_not_stale_data(
    tmp_path: Path,
) -> None:
    data = smooth((4, 40, 50), "u2")
    folder = tmp_path / "slices"
    folder.mkdir()
    for z, plane in enumerate(data):
        tifffile.imwrite(folder / f"s{z}.tif", plane, compression="zlib", rowsperstrip=8)
    src = run(ba.open_source(folder))
    np.testing.assert_array_equal(src[0], data[0])
    tifffile.imwrite(folder / "s2.tif", data[2][::-1].copy(), compression="zlib", rowsperstrip=4)
    np.testing.assert_array_equal(src[1], data[1])
    with pytest.raises(ba.SourceError, match="s2.tif changed since"):
        src[2]


# ---- memory --------------------------------------------------------------------------------
def test_memory_stays_bounded_on_a_file_eight_times_the_cache_budget(tmp_path: Path) -> None:
    path = tmp_path / "big.tif"
    data = smooth((64, 256, 512), "u1")  # 8 MiB decoded, 16 strips per page
    tifffile.imwrite(path, data, compression="zlib", rowsperstrip=16)
    budget = data.nbytes // 8
    out_path = tmp_path / "out.zarr"

    async def main() -> TiffSource:
        src = await ba.open_source(path, cache_bytes=budget)
        out = await ba.create_source(
            out_path, shape=data.shape, dtype=data.dtype, chunks=(4, 40, 200)
        )
        tracemalloc.start()
        try:
            await ba.copy(src, out, block_shape=(4, 40, 200), num_workers=2)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        src.peak_traced = peak
        return src

    src = run(main())
    assert src.segment_cache.peak_bytes <= budget
    assert src.peak_traced < data.nbytes // 2, "a conversion held half the decoded file"
    np.testing.assert_array_equal(run(run(ba.open_source(out_path)).read(...)), data)


def test_tiles_aligned_blocks_keep_no_tile_even_at_the_image_edges(tmp_path: Path) -> None:
    path = tmp_path / "tiles.tif"
    data = smooth((4, 50, 70), "u1")  # 16 x 32 tiles: the last row and column stick out
    tifffile.imwrite(path, data, compression="zlib", tile=(16, 32))
    src = run(copy_checked(path, None, data, tmp_path / "out.zarr", (1, 16, 32), (2, 16, 32)))
    assert src.decode_count == 4 * 4 * 3
    assert src.segment_cache.peak_bytes == 0 and not src.segment_cache.overlapping


@pytest.mark.parametrize("name", ["deflate-strips", "deflate-tiles", "big-endian", "predictor"])
def test_a_downsample_reads_compressed_pages_into_reused_block_buffers(
    tmp_path: Path, name: str
) -> None:
    """Downsampling reads each block into one of a few pooled buffers (read_roi_into):
    decoded segments must fill every voxel of a buffer that held the previous block."""
    path = tmp_path / f"{name}.tif"
    expected = write(path, name)

    async def main() -> tuple[np.ndarray, np.ndarray, int]:
        src = await ba.open_source(path)
        stats = ba.RunStats()
        result = await ba.downsample(src, 2, method="mean", block_shape=(2, 8, 8), stats=stats)
        in_memory = await ba.downsample(expected, 2, method="mean", block_shape=(2, 8, 8))
        return result, in_memory, stats.blocks_total

    result, in_memory, blocks = run(main())
    assert blocks > 8  # more blocks than buffers: buffers are reused
    np.testing.assert_array_equal(result, in_memory)
    window = expected[:2, :2, :2].astype(np.float64).mean()
    assert abs(float(result[0, 0, 0]) - window) <= 0.5  # and it is the mean
