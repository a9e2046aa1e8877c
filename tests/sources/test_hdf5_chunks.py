"""Chunked HDF5 datasets decode raw chunks outside h5py, each once, and read exactly as h5py.

Every file is written by h5py (the blosc, zstd and lz4 filters through hdf5plugin, skipped where
it is not installed), with shapes that are not chunk multiples, converted block-wise with blocks
aligned and not aligned to the chunks, and compared with h5py's own read.
"""

from __future__ import annotations

import asyncio
import math
import tracemalloc
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.sources import hdf5_chunks
from bioimage_async.sources.hdf5 import Hdf5Source
from bioimage_async.sources.inflate import pick_inflate

from .copy_check import copy_checked

SHAPE, CHUNKS = (21, 45, 51), (8, 16, 16)
NUM_CHUNKS = math.prod(math.ceil(n / c) for n, c in zip(SHAPE, CHUNKS))
BLOCKS = [SHAPE, (5, 7, 11), (8, 16, 16), (16, 45, 20)]


def run(coro):
    return asyncio.run(coro)


def smooth(shape: tuple[int, ...], dtype: Any, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.cumsum(rng.integers(-3, 4, shape), axis=-1) + 1000
    return values.astype(dtype)


def hdf5plugin_filter(name: str) -> dict[str, Any]:
    hdf5plugin = pytest.importorskip("hdf5plugin")
    return dict(
        getattr(hdf5plugin, name)()
        if name != "Blosc"
        else hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)
    )


#: name -> (h5py create_dataset keywords, or a name of an hdf5plugin filter; file dtype)
FILTERS: dict[str, tuple[dict[str, Any] | str, str]] = {
    "gzip": ({"compression": "gzip"}, "<u2"),
    "gzip-shuffle": ({"compression": "gzip", "shuffle": True}, "<u2"),
    "gzip-big-endian": ({"compression": "gzip", "shuffle": True}, ">f4"),
    "gzip-int64": ({"compression": "gzip", "compression_opts": 9}, "<i8"),
    "no-filter": ({}, "<u2"),
    "shuffle-only": ({"shuffle": True}, ">i4"),
    "blosc": ("Blosc", "<u2"),
    "zstd": ("Zstd", "<u2"),
    "lz4": ("LZ4", "<f8"),
}
#: what h5py reads and we leave to it: no Python decoder, or a filter we do not decode
FALLBACKS: dict[str, tuple[dict[str, Any] | str, str]] = {
    "lzf": ({"compression": "lzf"}, "<u2"),
    "fletcher32": ({"compression": "gzip", "fletcher32": True}, "<u2"),
    "scaleoffset": ({"scaleoffset": 0}, "<u2"),
    "bitshuffle": ("Bitshuffle", "<u2"),
}


def write(path: Path, name: str, spec: dict[str, Any] | str, dtype: str) -> np.ndarray:
    kwargs = hdf5plugin_filter(spec) if isinstance(spec, str) else spec
    data = smooth(SHAPE, dtype)
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=data, chunks=CHUNKS, **kwargs)
    with h5py.File(path, "r") as f:
        return f[name][...]


def convert(path: Path, key: str, block: tuple[int, ...], **open_kwargs: Any):
    async def main() -> tuple[np.ndarray, Hdf5Source]:
        src = await ba.open_source(path, key, **open_kwargs)
        return await ba.copy(src, block_shape=block, num_workers=2), src

    return run(main())


CASES = [(name, block) for name in FILTERS for block in BLOCKS]


@pytest.mark.parametrize(("name", "block"), CASES, ids=[f"{n}-{b}" for n, b in CASES])
def test_blockwise_conversion_equals_h5py_and_decodes_each_chunk_once(
    tmp_path: Path, name: str, block: tuple[int, ...]
) -> None:
    path = tmp_path / f"{name}.h5"
    expected = write(path, name, *FILTERS[name])
    result, src = convert(path, name, block)
    assert src.decodes_chunks
    assert result.dtype == expected.dtype.newbyteorder("=")
    np.testing.assert_array_equal(result, expected)
    assert src.decode_count == NUM_CHUNKS


@pytest.mark.parametrize("name", list(FALLBACKS))
def test_filters_without_a_decoder_here_are_read_by_h5py(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.h5"
    expected = write(path, name, *FALLBACKS[name])
    result, src = convert(path, name, (5, 7, 11))
    assert not src.decodes_chunks and src.decode_count == 0
    np.testing.assert_array_equal(result, expected)


def test_unwritten_chunks_read_as_the_fill_value_like_h5py(tmp_path: Path) -> None:
    path = tmp_path / "partial.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "p",
            shape=SHAPE,
            dtype=">f4",
            chunks=CHUNKS,
            compression="gzip",
            shuffle=True,
            fillvalue=-1.5,
        )
        ds[3:9, 20:30, 5:40] = 2.5  # a few chunks, partly
        ds[20, 44, 50] = 7  # the corner chunk
        allocated = ds.id.get_num_chunks()
    with h5py.File(path, "r") as f:
        expected = f["p"][...]
    assert allocated < NUM_CHUNKS
    for block in BLOCKS:
        result, src = convert(path, "p", block)
        assert src.decodes_chunks and src.decode_count == NUM_CHUNKS
        np.testing.assert_array_equal(result, expected)


def test_a_dataset_that_never_writes_its_fill_value_is_read_by_h5py(tmp_path: Path) -> None:
    """fill_time='never': unallocated chunks are not the fill value, h5py's read is the truth."""
    path = tmp_path / "never.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "n",
            shape=SHAPE,
            dtype="<u2",
            chunks=CHUNKS,
            compression="gzip",
            fillvalue=7,
            fill_time="never",
        )
        ds[0:8, 0:16, 0:16] = 3
    with h5py.File(path, "r") as f:
        expected = f["n"][...]
    assert (expected[0:8, 0:16, 0:16] == 3).all()
    result, src = convert(path, "n", (5, 7, 11))
    assert not src.decodes_chunks
    np.testing.assert_array_equal(result, expected)


def test_a_chunk_stored_with_a_filter_skipped_is_decoded_per_its_filter_mask(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mask.h5"
    data = smooth(SHAPE, "<u2")
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("m", data=data, chunks=CHUNKS, compression="gzip", shuffle=True)
        # chunk (0, 0, 0): shuffled but not deflated (mask bit 1: the second filter skipped)
        chunk = np.full(CHUNKS, 4242, dtype="<u2")
        shuffled = chunk.view(np.uint8).reshape(-1, 2).T.tobytes()
        ds.id.write_direct_chunk((0, 0, 0), shuffled, filter_mask=0b10)
        # chunk (8, 16, 16): stored raw, both filters skipped
        ds.id.write_direct_chunk(
            (8, 16, 16), np.arange(math.prod(CHUNKS), dtype="<u2").tobytes(), filter_mask=0b11
        )
    with h5py.File(path, "r") as f:
        expected = f["m"][...]
    assert expected[0, 0, 0] == 4242 and expected[8, 16, 17] == 1  # h5py honours the masks
    result, src = convert(path, "m", (5, 7, 11))
    assert src.decodes_chunks
    np.testing.assert_array_equal(result, expected)


def test_writable_and_contiguous_datasets_are_read_through_h5py(tmp_path: Path) -> None:
    path = tmp_path / "w.h5"
    data = smooth(SHAPE, "<u2")
    with h5py.File(path, "w") as f:
        f.create_dataset("chunked", data=data, chunks=CHUNKS, compression="gzip")
        f.create_dataset("contiguous", data=data)
    writable = run(ba.open_source(path, "chunked", mode="r+"))
    assert not writable.decodes_chunks  # a decoded-chunk cache would go stale on writes
    writable[0, 0, 0:3] = 9
    np.testing.assert_array_equal(writable[0, 0, 0:4], [9, 9, 9, data[0, 0, 3]])
    writable.close()
    contiguous = run(ba.open_source(path, "contiguous"))
    assert not contiguous.decodes_chunks
    np.testing.assert_array_equal(contiguous[2:5, 7], data[2:5, 7])


def test_an_h5py_dataset_of_a_read_only_file_decodes_its_chunks(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.h5"
    expected = write(path, "gzip", *FILTERS["gzip"])
    with h5py.File(path, "r") as f:
        src = ba.as_source(f["gzip"])
        assert src.decodes_chunks
        np.testing.assert_array_equal(src[3:19, 1:40, 2:50], expected[3:19, 1:40, 2:50])


def test_repeated_reads_of_one_region_soon_stop_decoding(tmp_path: Path) -> None:
    path = tmp_path / "c.h5"
    expected = write(path, "gzip", *FILTERS["gzip"])
    src = run(ba.open_source(path, "gzip"))
    counts = []
    for _ in range(6):
        np.testing.assert_array_equal(src[1:8, 3:20, 0:16], expected[1:8, 3:20, 0:16])
        counts.append(src.decode_count)
    # chunks (0, 0, 0) and (0, 16, 0); once reads have taken as many values as a chunk holds it
    # leaves the cache, and the re-read that follows makes the cache keep chunks by recency
    assert counts[0] == 2 and counts[-1] == counts[-3] <= 4
    assert src.chunk_cache.overlapping


def test_memory_stays_bounded_on_a_dataset_eight_times_the_cache_budget(tmp_path: Path) -> None:
    path = tmp_path / "big.h5"
    data = smooth((64, 256, 512), "u1")  # 8 MiB decoded
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=data, chunks=(16, 32, 64), compression="gzip")
    budget = data.nbytes // 8
    out_path = tmp_path / "out.zarr"

    async def main() -> tuple[Hdf5Source, int]:
        src = await ba.open_source(path, "d", cache_bytes=budget)
        out = await ba.create_source(
            out_path, shape=data.shape, dtype=data.dtype, chunks=(8, 40, 100)
        )
        tracemalloc.start()
        try:
            await ba.copy(src, out, block_shape=(8, 40, 100), num_workers=2)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return src, peak

    src, peak = run(main())
    assert src.decodes_chunks and src.chunk_cache.peak_bytes <= budget
    assert peak < data.nbytes // 2, "a conversion held half the decoded dataset"
    np.testing.assert_array_equal(run(run(ba.open_source(out_path)).read(...)), data)


@pytest.mark.parametrize("library", ["imagecodecs", "deflate", None])
@pytest.mark.parametrize("name", ["gzip", "gzip-shuffle", "gzip-int64"])
def test_gzip_chunks_decode_with_libdeflate_from_either_package_or_zlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, library: str | None
) -> None:
    """libdeflate comes with the deflate package or imagecodecs; without either, zlib."""
    if library is not None:
        pytest.importorskip(library)
    fast_calls: list[int] = []
    chosen = pick_inflate((library,)) if library is not None else None

    def recording() -> Any:
        if chosen is None:
            return None

        def inflate(raw: Any, nbytes: int) -> Any:
            fast_calls.append(nbytes)
            return chosen(raw, nbytes)

        return inflate

    monkeypatch.setattr(hdf5_chunks, "pick_inflate", recording)
    path = tmp_path / f"{name}.h5"
    expected = write(path, name, *FILTERS[name])
    result, src = convert(path, name, (8, 16, 16))
    np.testing.assert_array_equal(result, expected)
    assert src.decode_count == NUM_CHUNKS
    assert len(fast_calls) == (NUM_CHUNKS if library is not None else 0)


def test_blocks_aligned_to_chunks_keep_no_chunk_even_at_the_dataset_edges(tmp_path: Path) -> None:
    """Edge chunks decode whole but lie partly outside the dataset; a block that takes their
    inside takes all of them, so a chunk-aligned copy leaves nothing in the cache."""
    path = tmp_path / "edges.h5"
    data = smooth((40, 50, 70), "u2")
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=data, chunks=(16, 16, 32), compression="gzip")
    src = run(copy_checked(path, "d", data, tmp_path / "out.zarr", (16, 16, 32), (16, 32, 64)))
    assert src.decode_count == 3 * 4 * 3
    assert src.chunk_cache.peak_bytes == 0 and not src.chunk_cache.overlapping
