"""TIFF sources: files and folders of slices written by tifffile, compared voxel for voxel."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage
import tifffile

import bioimage_async as ba
from bioimage_async.sources.tiff import TiffFolderSource, TiffSource, natural_key, page_number
from bioimage_async.sources.tiff_common import SegmentPlan

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def stack() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 65535, size=(9, 37, 45), dtype=np.uint16)


# written the ways microscopes and tools write TIFFs: contiguous (memory-mappable), compressed
# strips, tiles, and an ImageJ hyperstack
WRITERS = {
    "contiguous": {},
    "zlib": {"compression": "zlib"},
    "tiled": {"tile": (16, 16)},
    "zlib-predictor": {"compression": "zlib", "predictor": True},
}
#: chunks: one page when memory-mapped, else one strip (tifffile writes one 37-row strip here)
#: or one tile, so default block shapes follow the segments
CHUNKS = {
    "contiguous": (1, 37, 45),
    "zlib": (1, 37, 45),
    "tiled": (1, 16, 16),
    "zlib-predictor": (1, 37, 45),
}


@pytest.fixture(params=list(WRITERS))
def tiff_file(request, tmp_path: Path, stack: np.ndarray) -> Path:
    path = tmp_path / f"{request.param}.tif"
    tifffile.imwrite(path, stack, **WRITERS[request.param])
    return path


def writer_of(path: Path) -> str:
    return path.stem


REGIONS = [
    (slice(None),),
    (slice(2, 5),),
    (4,),
    (slice(3, 8), slice(5, 30), slice(1, 44)),
    (Ellipsis, 12),
    (slice(-2, None), 0, slice(0, 1)),
]


@pytest.mark.parametrize("index", REGIONS, ids=str)
def test_reads_match_tifffile_voxel_for_voxel(tiff_file: Path, stack: np.ndarray, index) -> None:
    src = run(ba.open_source(tiff_file))
    assert isinstance(src, TiffSource)
    assert src.shape == stack.shape and src.dtype == stack.dtype
    assert src.chunks == CHUNKS[writer_of(tiff_file)]
    np.testing.assert_array_equal(run(src.read(index)), stack[index])
    np.testing.assert_array_equal(src[index], stack[index])


def test_uncompressed_files_are_memory_mapped_and_compressed_ones_decoded(
    tmp_path: Path, stack: np.ndarray
) -> None:
    for name, kwargs, mapped in [("u.tif", {}, True), ("z.tif", {"compression": "zlib"}, False)]:
        tifffile.imwrite(tmp_path / name, stack, **kwargs)
        assert run(ba.open_source(tmp_path / name)).memory_mapped is mapped


@pytest.mark.parametrize(
    "kwargs, parses", [({"compression": "zlib"}, 1), ({"tile": (16, 16)}, 1), ({}, 2)]
)
def test_a_file_that_cannot_be_mapped_is_parsed_once_on_open(
    tmp_path: Path, stack: np.ndarray, monkeypatch: pytest.MonkeyPatch, kwargs, parses
) -> None:
    # tifffile.memmap parses the file a second time only to refuse a compressed or tiled series
    # (~5 ms for 128 pages); the series' own data offset says so first. A mappable file is
    # still opened by tifffile.memmap, which parses it again.
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, stack, **kwargs)
    opened: list[str] = []
    original = tifffile.TiffFile.__init__

    def counting(self, arg, *args, **kw):
        opened.append(str(arg))
        original(self, arg, *args, **kw)

    monkeypatch.setattr(tifffile.TiffFile, "__init__", counting)
    src = run(ba.open_source(path))
    assert len(opened) == parses
    assert src.memory_mapped is (parses == 2)
    np.testing.assert_array_equal(src[2:5, 3:20], stack[2:5, 3:20])


def test_reading_a_page_range_decodes_only_the_segments_of_those_pages(
    tmp_path: Path, stack: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, stack, compression="zlib", rowsperstrip=8)  # 5 strips per page
    src = run(ba.open_source(path))
    decoded: list[tuple[int, int]] = []
    original = SegmentPlan._decode

    def counting(self, key):
        decoded.append(key)
        return original(self, key)

    monkeypatch.setattr(SegmentPlan, "_decode", counting)
    np.testing.assert_array_equal(src[3:5, 2:4], stack[3:5, 2:4])  # rows 2-3: the first strip
    assert sorted(decoded) == [(3, 0), (4, 0)]
    np.testing.assert_array_equal(src[4, 10:20], stack[4, 10:20])  # strips 1 and 2
    assert sorted(decoded) == [(3, 0), (4, 0), (4, 1), (4, 2)]


def test_pages_stored_apart_are_mapped_page_by_page(tmp_path: Path, stack: np.ndarray) -> None:
    # one page per write call: IFDs sit between the pages, so the series is not one block
    path = tmp_path / "apart.tif"
    with tifffile.TiffWriter(path) as writer:
        for page in stack:
            writer.write(page, contiguous=False, metadata=None)
    src = run(ba.open_source(path))
    assert src.shape == stack.shape and src.memory_mapped
    np.testing.assert_array_equal(src[2:7, 10:20, 3], stack[2:7, 10:20, 3])


def test_concurrent_reads_of_one_compressed_file(tmp_path: Path, stack: np.ndarray) -> None:
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, stack, compression="zlib")

    async def main() -> np.ndarray:
        src = await ba.open_source(path)
        parts = await asyncio.gather(*(src.read(slice(z, z + 1)) for z in range(stack.shape[0])))
        return np.concatenate(parts)

    np.testing.assert_array_equal(run(main()), stack)


def test_multipage_tiff_shipped_with_scikit_image() -> None:
    path = SKIMAGE_DATA / "multipage.tif"
    expected = tifffile.imread(path)
    src = run(ba.open_source(path))
    assert src.shape == expected.shape == (2, 15, 10)
    np.testing.assert_array_equal(src[...], expected)
    np.testing.assert_array_equal(run(src.read((1, slice(3, 9)))), expected[1, 3:9])


def test_multipage_rgb_tiff_shipped_with_scikit_image() -> None:
    path = SKIMAGE_DATA / "multipage_rgb.tif"
    expected = tifffile.imread(path)
    src = run(ba.open_source(path))
    assert src.shape == expected.shape and src.dtype == expected.dtype
    np.testing.assert_array_equal(src[...], expected)
    np.testing.assert_array_equal(src[1, 2, 4:8, 1:9], expected[1, 2, 4:8, 1:9])


def test_single_2d_page(tmp_path: Path, stack: np.ndarray) -> None:
    path = tmp_path / "plane.tiff"
    tifffile.imwrite(path, stack[0], compression="zlib")
    src = run(ba.open_source(path))
    assert src.shape == (37, 45) and src.chunks == (37, 45)
    np.testing.assert_array_equal(src[5:9, 40:], stack[0, 5:9, 40:])


def test_rgb_pages_keep_their_samples_axis(tmp_path: Path) -> None:
    data = np.random.default_rng(3).random((4, 10, 12, 3)).astype(">f4")
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, data, photometric="rgb", byteorder=">")
    src = run(ba.open_source(path))
    assert src.shape == data.shape and src.dtype == np.float32 and src.dtype.isnative
    assert src.chunks == (1, 10, 12, 3)
    np.testing.assert_array_equal(src[1:3, 2:5, :, 1], data[1:3, 2:5, :, 1])


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_imagej_hyperstack_keeps_its_shape(tmp_path: Path, compression) -> None:
    data = np.random.default_rng(4).integers(0, 999, (2, 3, 4, 11, 13), dtype=np.uint16)
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, data, imagej=True, compression=compression)
    src = run(ba.open_source(path))
    assert src.shape == data.shape and src.chunks == (1, 1, 1, 11, 13)
    np.testing.assert_array_equal(src[1, 1:3, 2, 4:9], data[1, 1:3, 2, 4:9])
    np.testing.assert_array_equal(src[...], data)


@pytest.mark.parametrize("shape", [(6, 37, 45), (2, 3, 4, 11, 13)], ids=["stack", "hyperstack"])
def test_imagej_stack_with_one_ifd_is_memory_mapped_whole(tmp_path: Path, shape) -> None:
    # ImageJ saves stacks over 4 GiB with one IFD and the planes back to back after it;
    # tifffile's truncate=True writes the same layout
    data = np.random.default_rng(6).integers(0, 60000, shape, dtype=np.uint16)
    path = tmp_path / "truncated.tif"
    tifffile.imwrite(path, data, imagej=True, truncate=True)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1  # one IFD for every plane
    src = run(ba.open_source(path))
    assert src.shape == data.shape and src.memory_mapped
    np.testing.assert_array_equal(src[...], data)
    np.testing.assert_array_equal(src[-1, ..., 3:9, 2], data[-1, ..., 3:9, 2])


def test_second_series_by_internal_path(tmp_path: Path, stack: np.ndarray) -> None:
    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(stack)
        writer.write(stack[:2, :10, :10] + 1)
    src = run(ba.open_source(path, "1"))
    assert src.shape == (2, 10, 10)
    np.testing.assert_array_equal(src[...], stack[:2, :10, :10] + 1)
    again = run(ba.from_spec(src.to_spec().to_json()))
    np.testing.assert_array_equal(again[1], stack[1, :10, :10] + 1)
    with pytest.raises(ba.InternalPathNotFoundError, match="'2'.*'0', '1'"):
        run(ba.open_source(path, "2"))
    with pytest.raises(ba.InternalPathNotFoundError, match="'raw'"):
        run(ba.open_source(path, "raw"))


def test_file_spec_round_trip(tiff_file: Path, stack: np.ndarray) -> None:
    src = run(ba.open_source(tiff_file))
    spec = src.to_spec().to_json()
    assert spec == {"kind": "tiff", "params": {"path": str(tiff_file.resolve()), "series": 0}}
    again = run(ba.from_spec(spec))
    np.testing.assert_array_equal(again[2:4, 7], stack[2:4, 7])


# ---- folders of slices -----------------------------------------------------------------------
def write_slices(folder: Path, stack: np.ndarray, name: str = "slice{}.tif", **kwargs) -> None:
    folder.mkdir(exist_ok=True)
    for z, plane in enumerate(stack):
        tifffile.imwrite(folder / name.format(z), plane, **kwargs)


@pytest.fixture
def big_stack() -> np.ndarray:  # more than 10 slices, so natural and lexical order differ
    return np.random.default_rng(5).integers(0, 255, size=(12, 19, 23), dtype=np.uint8)


def test_natural_order() -> None:
    names = ["slice10.tif", "slice2.tif", "Slice1.tif", "slice1.tif", "a.tif"]
    assert sorted(names, key=natural_key) == [
        "a.tif",
        "Slice1.tif",
        "slice1.tif",
        "slice2.tif",
        "slice10.tif",
    ]


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_folder_stacks_slices_in_natural_order(
    tmp_path: Path, big_stack: np.ndarray, compression
) -> None:
    folder = tmp_path / "slices"
    write_slices(folder, big_stack, compression=compression)
    src = run(ba.open_source(folder, pattern="slice*.tif"))
    assert isinstance(src, TiffFolderSource)
    assert src.shape == big_stack.shape and src.chunks == (1, 19, 23)
    assert [Path(f).name for f in src.files[:3]] == ["slice0.tif", "slice1.tif", "slice2.tif"]
    np.testing.assert_array_equal(src[...], big_stack)
    np.testing.assert_array_equal(
        run(src.read((slice(8, 12), slice(3, 9), 4))), big_stack[8:12, 3:9, 4]
    )


def test_folder_without_pattern_uses_all_tiffs(tmp_path: Path, big_stack: np.ndarray) -> None:
    folder = tmp_path / "slices"
    write_slices(folder, big_stack[:5], name="z{}.tiff")
    (folder / "notes.txt").write_text("not a slice")
    src = run(ba.open_source(folder))
    assert src.shape == (5, 19, 23) and src.pattern is None
    np.testing.assert_array_equal(src[...], big_stack[:5])
    # bioimage-py keys an image stack by its pattern: internal_path works as the pattern
    keyed = run(ba.open_source(folder, "z[0-2].tiff", format="tiff"))
    np.testing.assert_array_equal(keyed[...], big_stack[:3])


def test_default_folder_pattern_matches_tif_and_tiff_in_any_case_in_natural_order(
    tmp_path: Path, big_stack: np.ndarray
) -> None:
    folder = tmp_path / "camera"
    folder.mkdir()
    names = ["IMG_0010.TIF", "img_0002.tiff", "IMG_0001.TIF", "IMG_0003.TIFF", "img_0004.tif"]
    for z, name in enumerate(names):
        tifffile.imwrite(folder / name, big_stack[z], compression="zlib")
    for other in ("notes.txt", "IMG_0005.TIF.bak", "thumbs.tiffany"):
        (folder / other).write_bytes(b"not a slice")
    src = run(ba.open_source(folder))
    order = ["IMG_0001.TIF", "img_0002.tiff", "IMG_0003.TIFF", "img_0004.tif", "IMG_0010.TIF"]
    assert [Path(f).name for f in src.files] == order
    expected = np.stack([big_stack[names.index(name)] for name in order])
    np.testing.assert_array_equal(src[...], expected)
    again = run(ba.from_spec(src.to_spec().to_json()))
    assert again.files == src.files


def test_folder_reads_only_the_slices_of_the_region(
    tmp_path: Path, big_stack: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "slices"
    write_slices(folder, big_stack)
    src = run(ba.open_source(folder, pattern="*.tif"))
    opened: list[str] = []
    original = tifffile.memmap

    def counting(file, *args, **kwargs):
        opened.append(Path(file).name)
        return original(file, *args, **kwargs)

    monkeypatch.setattr(tifffile, "memmap", counting)
    np.testing.assert_array_equal(src[9:11, 2:5], big_stack[9:11, 2:5])
    assert opened == ["slice9.tif", "slice10.tif"]


def test_folder_spec_round_trip(tmp_path: Path, big_stack: np.ndarray) -> None:
    folder = tmp_path / "slices"
    write_slices(folder, big_stack, compression="zlib")
    src = run(ba.open_source(folder, pattern="slice*.tif"))
    spec = src.to_spec().to_json()
    assert spec["kind"] == "tiff_folder"
    assert spec["params"]["folder"] == str(folder.resolve())
    assert spec["params"]["pattern"] == "slice*.tif"
    again = run(ba.from_spec(spec))
    assert again.shape == src.shape and again.dtype == src.dtype
    np.testing.assert_array_equal(again[10:12, 1], big_stack[10:12, 1])
    tifffile.imwrite(folder / "slice12.tif", big_stack[0])
    with pytest.raises(ba.SourceError, match="now holds 13 slices.*spec was made with 12"):
        run(ba.from_spec(spec))


def test_folder_with_no_matching_file_names_folder_and_pattern(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"empty'.*pattern '\*\.tif'"):
        run(ba.open_source(folder, pattern="*.tif"))


def test_folder_with_slices_of_another_shape_names_the_odd_file(
    tmp_path: Path, big_stack: np.ndarray
) -> None:
    folder = tmp_path / "slices"
    write_slices(folder, big_stack[:4])
    tifffile.imwrite(folder / "slice4.tif", big_stack[4, :10])
    with pytest.raises(ba.SourceError, match=r"differ.*slice4.tif has shape \(10, 23\)"):
        run(ba.open_source(folder, pattern="*.tif"))


def test_folder_with_slices_of_another_dtype_names_the_odd_file(
    tmp_path: Path, big_stack: np.ndarray
) -> None:
    folder = tmp_path / "slices"
    write_slices(folder, big_stack[:4])
    tifffile.imwrite(folder / "slice2.tif", big_stack[2].astype(np.uint16))
    with pytest.raises(ba.SourceError, match="slice2.tif has shape .* dtype uint16"):
        run(ba.open_source(folder, pattern="*.tif"))


def test_a_slice_replaced_after_opening_is_caught_on_read(
    tmp_path: Path, big_stack: np.ndarray
) -> None:
    folder = tmp_path / "slices"
    write_slices(folder, big_stack[:4])
    src = run(ba.open_source(folder, pattern="*.tif"))
    tifffile.imwrite(folder / "slice3.tif", big_stack[3, :5])
    np.testing.assert_array_equal(src[:3], big_stack[:3])
    with pytest.raises(ba.SourceError, match="slice3.tif has shape \\(5, 23\\)"):
        src[3]


def test_pattern_on_a_file_is_an_error(tmp_path: Path, stack: np.ndarray) -> None:
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, stack)
    with pytest.raises(ValueError, match="selects slices in a folder"):
        run(ba.open_source(path, pattern="*.tif"))


# ---- errors ------------------------------------------------------------------------------------
def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        run(ba.open_source(tmp_path / "missing.tif"))


def test_a_file_that_is_not_a_tiff_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "fake.tif"
    path.write_bytes(b"definitely not a tiff" * 20)
    with pytest.raises(ba.SourceError, match="cannot read .*fake.tif.* as a TIFF"):
        run(ba.open_source(path))


def test_tiff_is_read_only(tmp_path: Path, stack: np.ndarray) -> None:
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, stack)
    src = run(ba.open_source(path))
    assert not src.writable
    with pytest.raises(ba.ReadOnlySourceError, match="TIFF file .*f.tif is read-only"):
        src[0] = np.zeros((37, 45), np.uint16)
    with pytest.raises(ba.ReadOnlySourceError):
        run(src.write((0, 0, 0), 1))
    with pytest.raises(ba.FormatNotSupportedError, match="read-only.*mode='r\\+'"):
        run(ba.open_source(path, mode="r+"))
    from bioimage_async.sources.tiff import open_tiff

    with pytest.raises(ba.FormatNotSupportedError, match="read-only"):
        run(open_tiff(path, mode="a"))


@pytest.mark.parametrize(
    "index",
    [(9,), (slice(0, 10),), (0, 37), ([1, 2],), (slice(None, None, 2),), (None,)],
    ids=["int-oob", "slice-oob", "y-oob", "list", "step", "newaxis"],
)
def test_out_of_bounds_and_fancy_indices_raise(tmp_path: Path, stack: np.ndarray, index) -> None:
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, stack, compression="zlib")
    src = run(ba.open_source(path))
    with pytest.raises(ba.InvalidIndexError):
        run(src.read(index))
    with pytest.raises(ba.InvalidIndexError):
        src[index]


def test_missing_tifffile_raises_missing_dependency_naming_the_extra(
    tmp_path: Path, stack: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, stack)
    spec = {"kind": "tiff", "params": {"path": str(path), "series": 0}}
    monkeypatch.setitem(sys.modules, "tifffile", None)
    for call in (lambda: ba.open_source(path), lambda: ba.from_spec(spec)):
        with pytest.raises(ba.MissingDependencyError, match=r"bioimage-async\[tiff\]") as info:
            run(call())
        assert info.value.extra == "tiff"


def test_page_numbers_count_pages_in_c_order_over_the_leading_axes() -> None:
    rng = np.random.default_rng(3)
    for lead_shape in [(), (7,), (3, 5), (2, 3, 4), (4, 1, 6, 2)]:
        for _ in range(20):
            starts = [int(rng.integers(0, n)) for n in lead_shape]
            stops = [int(rng.integers(a, n)) + 1 for a, n in zip(starts, lead_shape)]
            lead_roi = tuple(slice(a, b) for a, b in zip(starts, stops))
            for pos in np.ndindex(*(b - a for a, b in zip(starts, stops))):
                expected = (
                    int(np.ravel_multi_index([a + p for a, p in zip(starts, pos)], lead_shape))
                    if lead_shape
                    else 0
                )
                assert page_number(lead_roi, pos, lead_shape) == expected


# ---- a stack written page by page: one series per page -----------------------------------------
@pytest.mark.parametrize("compression", [None, "zlib"])
async def test_a_stack_written_page_by_page_opens_whole_with_pages_and_warns_without(
    tmp_path, caplog, compression
):
    """tifffile reads a stack appended page by page as one series per page: its first plane
    was opened as the whole file, silently."""
    path = tmp_path / "appended.tif"
    data = np.random.default_rng(3).integers(0, 255, (5, 13, 17), dtype=np.uint8)
    for plane in data:
        tifffile.imwrite(path, plane, append=True, compression=compression)
    assert len(tifffile.TiffFile(path).series) == 5
    with caplog.at_level(logging.WARNING, logger="bioimage_async"):
        first = await ba.open_source(path)
    assert first.shape == (13, 17)
    assert "holds 5 series" in caplog.text and "internal_path='pages'" in caplog.text
    src = await ba.open_source(path, "pages")
    assert src.shape == (5, 13, 17) and "all pages" in src.describe()
    np.testing.assert_array_equal(await src.read(), tifffile.imread(path, key=slice(None)))
    out = await ba.copy(src, block_shape=(2, 8, 8))
    np.testing.assert_array_equal(out, data)
    reopened = await ba.from_spec(src.to_spec())
    np.testing.assert_array_equal(
        await reopened.read_roi(np.s_[1:4, 2:9, 3:11]), data[1:4, 2:9, 3:11]
    )


async def test_pages_of_different_shapes_are_not_stacked(tmp_path):
    path = tmp_path / "mixed.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), append=True)
    tifffile.imwrite(path, np.zeros((8, 9), np.uint8), append=True)
    with pytest.raises(ba.FormatNotSupportedError, match="page 1 has shape"):
        await ba.open_source(path, "pages")
