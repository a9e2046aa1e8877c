"""MRC sources: files written by mrcfile, read in IMOD orientation (y flipped) as bioimage-py."""

from __future__ import annotations

import asyncio
import sys
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.sources.mrc import MrcSource


def run(coro):
    return asyncio.run(coro)


def peer_orientation(data: np.ndarray) -> np.ndarray:
    """bioimage-py's MRC view, as its wrapper builds it: swap first/last axes, fliplr, swap back."""
    return np.swapaxes(np.fliplr(np.swapaxes(data, 0, -1)), 0, -1)


def write_mrc(path: Path, data: np.ndarray) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
    return path


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((11, 23, 17)).astype(np.float32)


@pytest.fixture
def mrc_path(tmp_path: Path, volume: np.ndarray) -> Path:
    return write_mrc(tmp_path / "tomo.mrc", volume)


REGIONS = [
    (slice(None),),
    (slice(2, 9), slice(0, 5), slice(3, 17)),
    (4, slice(20, 23)),
    (Ellipsis, 7),
    (slice(-3, None), 22),
    (0, 0, 0),
]


@pytest.mark.parametrize("index", REGIONS, ids=str)
def test_reads_are_the_file_with_y_flipped(mrc_path: Path, volume: np.ndarray, index) -> None:
    src = run(ba.open_source(mrc_path))
    expected = np.flip(volume, axis=1)
    assert src.shape == volume.shape and src.dtype == np.float32
    np.testing.assert_array_equal(run(src.read(index)), expected[index])
    np.testing.assert_array_equal(src[index], expected[index])


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((11, 23, 17), np.float32),
        ((6, 9, 8), np.int16),
        ((13, 21), np.uint16),
        ((4, 5, 6), np.int8),
    ],
)
def test_orientation_matches_bioimage_py(tmp_path: Path, shape, dtype) -> None:
    data = np.random.default_rng(1).integers(-100, 100, shape).astype(dtype)
    src = run(ba.open_source(write_mrc(tmp_path / "x.mrc", data)))
    np.testing.assert_array_equal(src[...], peer_orientation(data))
    np.testing.assert_array_equal(src[1:4, 2:5], peer_orientation(data)[1:4, 2:5])


def test_volume_stack_flips_y_the_second_to_last_axis(tmp_path: Path) -> None:
    data = np.random.default_rng(2).integers(0, 200, (3, 4, 5, 6)).astype(np.uint8)
    path = tmp_path / "stack.mrc"
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.header.ispg = 401  # a stack of volumes
    src = run(ba.open_source(path))
    assert src.shape == (3, 4, 5, 6)
    np.testing.assert_array_equal(src[...], np.flip(data, axis=2))
    np.testing.assert_array_equal(src[1, 2:4, 0:2], np.flip(data, axis=2)[1, 2:4, 0:2])


@pytest.mark.parametrize("suffix", [".rec", ".map"])
def test_other_mrc_extensions(tmp_path: Path, volume: np.ndarray, suffix: str) -> None:
    src = run(ba.open_source(write_mrc(tmp_path / f"x{suffix}", volume)))
    assert isinstance(src, MrcSource)
    np.testing.assert_array_equal(src[3], np.flip(volume, axis=1)[3])


def test_concurrent_reads(mrc_path: Path, volume: np.ndarray) -> None:
    async def main() -> np.ndarray:
        src = await ba.open_source(mrc_path)
        parts = await asyncio.gather(*(src.read(slice(z, z + 1)) for z in range(volume.shape[0])))
        return np.concatenate(parts)

    np.testing.assert_array_equal(run(main()), np.flip(volume, axis=1))


def test_reads_are_copies_not_views_of_the_file(mrc_path: Path) -> None:
    src = run(ba.open_source(mrc_path))
    data = src[2:4]
    assert data.flags.c_contiguous and data.flags.writeable and data.flags.owndata
    data[...] = 0  # must not touch the file
    assert np.any(src[2:4] != 0)


def test_internal_path_data_is_accepted_and_others_list_it(mrc_path: Path) -> None:
    assert run(ba.open_source(mrc_path, "data")).shape == (11, 23, 17)
    with pytest.raises(ba.InternalPathNotFoundError, match="'raw'.*'data'"):
        run(ba.open_source(mrc_path, "raw"))


def test_spec_round_trip(mrc_path: Path, volume: np.ndarray) -> None:
    src = run(ba.open_source(mrc_path, "data"))
    spec = src.to_spec().to_json()
    assert spec == {"kind": "mrc", "params": {"path": str(mrc_path.resolve())}}
    again = run(ba.from_spec(spec))
    np.testing.assert_array_equal(again[5, 1:4], np.flip(volume, axis=1)[5, 1:4])


def test_header_with_a_bad_machine_stamp_is_read_permissively(
    tmp_path: Path, volume: np.ndarray
) -> None:
    path = write_mrc(tmp_path / "serialem.mrc", volume)
    raw = bytearray(path.read_bytes())
    raw[212:216] = b"\x44\x00\x00\x00"  # the stamp old SerialEM versions wrote
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError):
        mrcfile.mmap(path, mode="r")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = run(ba.open_source(path))
    assert any("permissive" in str(w.message) for w in caught)
    np.testing.assert_array_equal(src[...], np.flip(volume, axis=1))


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.mrc"):
        run(ba.open_source(tmp_path / "missing.mrc"))


def test_a_file_that_is_not_mrc_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "fake.mrc"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ba.SourceError, match="cannot read .*fake.mrc.* as an MRC file"):
        run(ba.open_source(path))


def test_mrc_is_read_only(mrc_path: Path) -> None:
    src = run(ba.open_source(mrc_path))
    assert not src.writable
    with pytest.raises(ba.ReadOnlySourceError, match="MRC file .*tomo.mrc is read-only"):
        src[0, 0, 0] = 1.0
    with pytest.raises(ba.ReadOnlySourceError):
        run(src.write(..., np.zeros(src.shape, np.float32)))
    with pytest.raises(ba.FormatNotSupportedError, match="read-only"):
        run(ba.open_source(mrc_path, mode="r+"))


@pytest.mark.parametrize(
    "index",
    [(11,), (slice(0, 12),), (0, -24), ([0, 1],), (slice(0, 4, 2),), (0.5,)],
    ids=["int-oob", "slice-oob", "neg-oob", "list", "step", "float"],
)
def test_out_of_bounds_and_fancy_indices_raise(mrc_path: Path, index) -> None:
    src = run(ba.open_source(mrc_path))
    with pytest.raises(ba.InvalidIndexError):
        run(src.read(index))
    with pytest.raises(ba.InvalidIndexError):
        src[index]


def test_missing_mrcfile_raises_missing_dependency_naming_the_extra(
    mrc_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {"kind": "mrc", "params": {"path": str(mrc_path)}}
    monkeypatch.setitem(sys.modules, "mrcfile", None)
    for call in (lambda: ba.open_source(mrc_path), lambda: ba.from_spec(spec)):
        with pytest.raises(ba.MissingDependencyError, match=r"bioimage-async\[mrc\]") as info:
            run(call())
        assert info.value.extra == "mrc"


async def test_a_gzipped_mrc_file_is_refused_with_the_fix(tmp_path):
    import gzip

    (tmp_path / "a.mrc.gz").write_bytes(gzip.compress(b"not read"))
    with pytest.raises(ba.FormatNotSupportedError, match="decompress it first"):
        await ba.open_source(tmp_path / "a.mrc.gz")


@pytest.mark.parametrize("mapc_mapr_maps", [(3, 2, 1), (2, 1, 3), (2, 3, 1), (3, 1, 2)])
def test_a_file_with_another_axis_order_reads_as_the_standard_one(
    tmp_path: Path, volume: np.ndarray, mapc_mapr_maps
) -> None:
    """CCP4-style maps store columns/rows/sections along other axes (MAPC/MAPR/MAPS)."""
    mapc, mapr, maps = mapc_mapr_maps
    position = {3: 0, 2: 1, 1: 2}  # where z, y, x are in the (z, y, x) volume
    stored = np.ascontiguousarray(volume.transpose(position[maps], position[mapr], position[mapc]))
    with mrcfile.new(tmp_path / "map.mrc", overwrite=True) as mrc:
        mrc.set_data(stored)
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = mapc, mapr, maps
    standard = run(ba.open_source(write_mrc(tmp_path / "std.mrc", volume)))
    permuted = run(ba.open_source(tmp_path / "map.mrc"))
    assert permuted.shape == volume.shape
    np.testing.assert_array_equal(run(permuted.read()), run(standard.read()))
    np.testing.assert_array_equal(
        run(permuted.read(np.s_[2:9, 0:5, 3:17])), run(standard.read(np.s_[2:9, 0:5, 3:17]))
    )


def test_an_invalid_axis_order_is_refused_naming_it(tmp_path: Path, volume: np.ndarray) -> None:
    with mrcfile.new(tmp_path / "bad.mrc", overwrite=True) as mrc:
        mrc.set_data(volume)
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 1, 1, 3
    with pytest.raises(ba.SourceError, match="MAPC/MAPR/MAPS = 1/1/3"):
        run(ba.open_source(tmp_path / "bad.mrc"))


@pytest.mark.parametrize(("flags", "expected_dtype"), [(0, np.uint8), (1, np.int8)])
def test_imod_mode_0_bytes_follow_the_imod_flag(tmp_path: Path, flags, expected_dtype) -> None:
    """IMOD's bytes are unsigned unless imodFlags bit 0 says signed (IMOD before 4.2.23 wrote
    only unsigned ones): read as int8, a voxel of 200 was -56. mrcfile writes the data; the
    IMOD stamp is set in its header as IMOD writes it (mrcfile ignores it when reading)."""
    stored = np.array([[[0, 100, 200, 255]]], np.uint8)
    path = tmp_path / "imod.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(stored.view(np.int8))  # mode 0
        extra = bytearray(mrc.header.extra2.tobytes())
        extra[40:44] = np.int32(1146047817).tobytes()  # imodStamp, header byte 152
        extra[44:48] = np.int32(flags).tobytes()  # imodFlags, header byte 156
        mrc.header.extra2 = np.frombuffer(bytes(extra), dtype=mrc.header.extra2.dtype)
    source = ba.sync.open_source(path)
    assert source.dtype == expected_dtype
    np.testing.assert_array_equal(source[...], stored.view(expected_dtype))


def test_mode_0_without_the_imod_stamp_stays_signed(tmp_path: Path) -> None:
    with mrcfile.new(tmp_path / "plain.mrc") as mrc:
        mrc.set_data(np.array([[[-5, 100]]], np.int8))
    source = ba.sync.open_source(tmp_path / "plain.mrc")
    assert source.dtype == np.int8 and source[...].ravel().tolist() == [-5, 100]
