"""KNOSSOS cube datasets through open_knossos / open_source.

The .raw cubes are written with webknossos' KNOSSOS writer (webknossos.cli.convert_knossos)
where webknossos is installed, else in the same documented layout by ``_write_raw_cube``; reads
are compared with the data written and, with webknossos, with what its reader returns. The
.png/.jpg cubes are written here with Pillow in the layout bioimage-py reads and compared with
bioimage-py's reader.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.sources.knossos import KnossosSource, open_knossos

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # webknossos warns about optional readers at import
        from webknossos.cli import convert_knossos
except ImportError:
    convert_knossos = None

EDGE = 128
BOUNDARY = (250, 200, 100)  # Mag(1) XYZ, not a multiple of the cube edge
MISSING_CUBE = (1, 1, 0)  # XYZ cube index that is never written
#: key -> (XYZ shape of the source, XYZ grid of cubes written)
MAGS = {
    "mag1": (BOUNDARY, (2, 2, 1)),
    "mag2": ((125, 100, 50), (1, 1, 1)),
    "mag4": ((128,) * 3, (1, 1, 1)),
}


def _write_raw_cube(mag_folder: Path, index_xyz, cube_xyz: np.ndarray) -> None:
    """One .raw cube: 128**3 voxels, x fastest, at x####/y####/z####/<name>.raw."""
    if convert_knossos is not None:
        convert_knossos.KnossosDataset(mag_folder, cube_xyz.dtype).write_cube(index_xyz, cube_xyz)
        return
    x, y, z = index_xyz
    folder = mag_folder / f"x{x:04d}" / f"y{y:04d}" / f"z{z:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    cube_xyz.ravel(order="F").tofile(folder / f"cube_x{x:04d}_y{y:04d}_z{z:04d}.raw")


def _write_conf(folder: Path, mag: int) -> None:
    """A knossos.conf as knossos_utils writes one into every mag folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "knossos.conf").write_text(
        f'experiment name "test_mag{mag}";\n'
        + "".join(f"boundary {a} {b};\n" for a, b in zip("xyz", BOUNDARY))
        + "scale x 10.00;\nscale y 10.00;\nscale z 25.00;\n"
        + f"magnification {mag};"
    )


@functools.cache
def _cubes_xyz() -> dict[str, np.ndarray]:
    """key -> the XYZ voxels of all cubes of that mag as written (the absent cube as zeros)."""
    full = np.random.default_rng(3).integers(1, 255, (256, 256, 128), dtype=np.uint8)
    x, y, _ = MISSING_CUBE
    full[x * EDGE : (x + 1) * EDGE, y * EDGE : (y + 1) * EDGE] = 0
    coarse = np.zeros((EDGE,) * 3, dtype=np.uint8)
    coarse[:, :, :64] = full[::2, ::2, ::2]
    return {"mag1": full, "mag2": coarse, "mag4": coarse}


def _expected_zyx(key: str) -> np.ndarray:
    shape_xyz = MAGS[key][0]
    return _cubes_xyz()[key][: shape_xyz[0], : shape_xyz[1], : shape_xyz[2]].transpose(2, 1, 0)


@pytest.fixture(scope="module")
def raw_dataset(tmp_path_factory):
    """mag1 (2x2x1 cubes, one absent), mag2 (one cube), mag4 (one cube, no knossos.conf)."""
    root = tmp_path_factory.mktemp("knossos") / "raw"
    for key, (_, grid) in MAGS.items():
        volume = _cubes_xyz()[key]
        for x, y, z in np.ndindex(*grid):
            if key == "mag1" and (x, y, z) == MISSING_CUBE:
                continue
            cube = volume[
                x * EDGE : (x + 1) * EDGE, y * EDGE : (y + 1) * EDGE, z * EDGE : (z + 1) * EDGE
            ]
            _write_raw_cube(root / key, (x, y, z), np.ascontiguousarray(cube))
    _write_conf(root / "mag1", 1)
    _write_conf(root / "mag2", 2)
    return root


# ---- reading ---------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("key", list(MAGS))
async def test_raw_cubes_read_voxel_for_voxel(raw_dataset, key):
    source = await open_knossos(raw_dataset, key)
    assert source.shape == MAGS[key][0][::-1]
    assert source.dtype == np.uint8
    assert source.chunks == (EDGE,) * 3
    np.testing.assert_array_equal(await source.read(...), _expected_zyx(key))


@pytest.mark.asyncio
@pytest.mark.skipif(convert_knossos is None, reason="needs webknossos' KNOSSOS reader")
@pytest.mark.parametrize("key", list(MAGS))
async def test_raw_cubes_read_as_webknossos_reads_them(raw_dataset, key):
    reader = convert_knossos.KnossosDataset(raw_dataset / key, np.uint8)
    shape_xyz, grid = MAGS[key]
    cubes = np.zeros(tuple(n * EDGE for n in grid), dtype=np.uint8)
    for x, y, z in np.ndindex(*grid):
        region = np.s_[
            x * EDGE : (x + 1) * EDGE, y * EDGE : (y + 1) * EDGE, z * EDGE : (z + 1) * EDGE
        ]
        cubes[region] = reader.read_cube((x, y, z))
    expected = cubes[: shape_xyz[0], : shape_xyz[1], : shape_xyz[2]].transpose(2, 1, 0)
    source = await open_knossos(raw_dataset, key)
    np.testing.assert_array_equal(await source.read(...), expected)


@pytest.mark.asyncio
async def test_regions_across_cube_borders_and_int_indices_read_like_numpy(raw_dataset):
    source = await open_knossos(raw_dataset)
    expected = _expected_zyx("mag1")
    for index in [
        np.s_[10:90, 100:160, 120:140],
        np.s_[50, 127:129, :],
        np.s_[..., 249],
        np.s_[-1, -1, -1],
        np.s_[3:3],
    ]:
        np.testing.assert_array_equal(await source.read(index), expected[index])


@pytest.mark.asyncio
async def test_an_absent_cube_reads_as_zeros(raw_dataset):
    source = await open_knossos(raw_dataset, "mag1")
    x, y, _ = MISSING_CUBE
    region = np.s_[:, y * EDGE : BOUNDARY[1], x * EDGE : BOUNDARY[0]]
    assert not (await source.read(region)).any()
    assert (await source.read(np.s_[:, : y * EDGE, : x * EDGE])).all()


@pytest.mark.asyncio
async def test_open_source_infers_knossos_and_defaults_to_mag1(raw_dataset):
    source = await ba.open_source(raw_dataset)
    assert isinstance(source, KnossosSource)
    assert source.key == "mag1"
    mag2 = await ba.open_source(str(raw_dataset), "mag2")
    assert mag2.shape == (50, 100, 125)
    by_mag_folder = await ba.open_source(raw_dataset / "mag2")
    assert (by_mag_folder.root, by_mag_folder.key) == (raw_dataset, "mag2")
    np.testing.assert_array_equal(await by_mag_folder.read(...), await mag2.read(...))


@pytest.mark.asyncio
async def test_spec_round_trips_through_json(raw_dataset):
    source = await open_knossos(raw_dataset, "mag2")
    spec = json.loads(json.dumps(source.to_spec().to_json()))
    reopened = await ba.from_spec(spec)
    assert isinstance(reopened, KnossosSource)
    assert reopened.shape == source.shape
    np.testing.assert_array_equal(await reopened.read(...), await source.read(...))


@pytest.mark.asyncio
async def test_raw_cubes_of_another_dtype_need_dtype(tmp_path):
    cube = np.arange(EDGE**3, dtype=np.uint16).reshape((EDGE,) * 3)  # XYZ
    _write_raw_cube(tmp_path / "mag1", (0, 0, 0), cube)
    source = await open_knossos(tmp_path, dtype="uint16")
    np.testing.assert_array_equal(await source.read(...), cube.transpose(2, 1, 0))
    spec = source.to_spec().to_json()
    np.testing.assert_array_equal(await (await ba.from_spec(spec)).read(np.s_[5]), cube[..., 5].T)
    with pytest.raises(ba.SourceError, match="dtype="):
        await (await open_knossos(tmp_path)).read(np.s_[0, 0, 0])


@pytest.mark.asyncio
@pytest.mark.parametrize("extension", ["png", "jpg"])
async def test_image_cubes_read_as_bioimage_py_reads_them(tmp_path, extension):
    Image = pytest.importorskip("PIL.Image")
    knossos_wrapper = pytest.importorskip("bioimage_py.io.knossos_wrapper")
    root = tmp_path / "images"
    rng = np.random.default_rng(5)
    volume = rng.integers(0, 255, (EDGE, 2 * EDGE, 2 * EDGE), dtype=np.uint8)  # ZYX
    for y, x in np.ndindex(2, 2):
        folder = root / "mag1" / f"x{x:04d}" / f"y{y:04d}" / "z0000"
        folder.mkdir(parents=True)
        cube = volume[:, y * EDGE : (y + 1) * EDGE, x * EDGE : (x + 1) * EDGE]
        name = f"images_mag1_x{x:04d}_y{y:04d}_z0000.{extension}"
        Image.fromarray(np.ascontiguousarray(cube).reshape(EDGE * EDGE, EDGE)).save(folder / name)
    source = await open_knossos(root)
    assert source.shape == volume.shape  # no knossos.conf: the extent of the cube folders
    reference = knossos_wrapper.KnossosFile(str(root), load_png=extension == "png")["mag1"]
    data = await source.read(...)
    np.testing.assert_array_equal(data, reference[:, :, :])
    if extension == "png":
        np.testing.assert_array_equal(data, volume)
    np.testing.assert_array_equal(await source.read(np.s_[9, 100:200, 3]), reference[9, 100:200, 3])


@pytest.mark.asyncio
async def test_without_knossos_conf_the_extent_covers_cubes_beyond_the_first_folders(tmp_path):
    """Sparse datasets: x0000 holds only y0000/z0000, the other cubes lie under x0001."""
    rng = np.random.default_rng(8)
    written = {
        (0, 0, 0): rng.integers(1, 255, (EDGE,) * 3, dtype=np.uint8),
        (1, 2, 0): rng.integers(1, 255, (EDGE,) * 3, dtype=np.uint8),
        (1, 0, 1): rng.integers(1, 255, (EDGE,) * 3, dtype=np.uint8),
    }
    for index, cube in written.items():
        _write_raw_cube(tmp_path / "mag1", index, cube)
    source = await open_knossos(tmp_path)
    assert source.shape == (2 * EDGE, 3 * EDGE, 2 * EDGE)  # ZYX from the XYZ grid (2, 3, 2)
    data = await source.read(...)
    expected = np.zeros((2 * EDGE, 3 * EDGE, 2 * EDGE), dtype=np.uint8)
    for (x, y, z), cube in written.items():
        region = np.s_[
            z * EDGE : (z + 1) * EDGE, y * EDGE : (y + 1) * EDGE, x * EDGE : (x + 1) * EDGE
        ]
        expected[region] = cube.transpose(2, 1, 0)
    np.testing.assert_array_equal(data, expected)


# ---- errors ----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_knossos_is_read_only(raw_dataset):
    source = await open_knossos(raw_dataset)
    assert not source.writable
    with pytest.raises(ba.ReadOnlySourceError):
        await source.write(np.s_[0:2, 0:2, 0:2], 1)
    with pytest.raises(ba.FormatNotSupportedError, match="read-only"):
        await ba.open_source(raw_dataset, mode="r+")
    with pytest.raises(ba.FormatNotSupportedError, match="read-only"):
        await open_knossos(raw_dataset, mode="a")


@pytest.mark.asyncio
async def test_an_unknown_mag_names_the_mags_there(raw_dataset):
    with pytest.raises(ba.InternalPathNotFoundError, match="'mag4'"):
        await open_knossos(raw_dataset, "mag8")


@pytest.mark.asyncio
async def test_out_of_bounds_indices_are_invalid(raw_dataset):
    source = await open_knossos(raw_dataset)
    with pytest.raises(ba.InvalidIndexError):
        await source.read(np.s_[0:101])


@pytest.mark.asyncio
async def test_a_truncated_cube_is_an_error_naming_the_file(tmp_path):
    folder = tmp_path / "mag1" / "x0000" / "y0000" / "z0000"
    folder.mkdir(parents=True)
    (folder / "t_mag1_x0000_y0000_z0000.raw").write_bytes(b"\0" * 1000)
    source = await open_knossos(tmp_path)
    with pytest.raises(ba.SourceError, match="t_mag1_x0000_y0000_z0000.raw"):
        await source.read(np.s_[0, 0, 0])


@pytest.mark.asyncio
async def test_a_missing_folder_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        await open_knossos(tmp_path / "nothing")
