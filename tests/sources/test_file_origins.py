"""Where MRC and NIfTI files put their first voxel, read as the writing tools mean it, and
carried into the OME-Zarr multiscales of a pyramid. Files are written by mrcfile and nibabel."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

import bioimage_async as ba

mrcfile = pytest.importorskip("mrcfile")
nibabel = pytest.importorskip("nibabel")

#: MRC voxel size, x y z in Angstrom (distinct, so a swapped axis shows).
VOXEL_XYZ = (1.5, 2.5, 3.5)


def write_mrc(path: Path, data: np.ndarray, **header: int) -> Path:
    """An MRC file of ``data`` (sections, rows, columns) with ``VOXEL_XYZ`` and header values."""
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = VOXEL_XYZ
        for name, value in header.items():
            setattr(mrc.header, name, value)
    return path


def with_origin(path: Path, origin_xyz: tuple[float, float, float]) -> Path:
    with mrcfile.open(path, mode="r+") as mrc:
        mrc.header.origin = origin_xyz
    return path


def level_transforms(store: Path) -> list[dict[str, list[float]]]:
    """{'scale': ..., 'translation': ...} of each level, read back from the NGFF 0.5 zarr.json."""
    group = json.loads((store / "zarr.json").read_text())
    datasets = group["attributes"]["ome"]["multiscales"][0]["datasets"]
    return [
        {t["type"]: t[t["type"]] for t in level["coordinateTransformations"]} for level in datasets
    ]


def write_nifti(path: Path, affine: np.ndarray, *, form: str = "sform") -> Path:
    """A (x, y, z) = (8, 6, 4) NIfTI image in mm whose ``form`` ('sform' or 'qform') is ``affine``."""
    image = nibabel.Nifti1Image(np.zeros((8, 6, 4), np.float32), affine)  # pixdim from it
    image.header.set_xyzt_units("mm")
    if form == "sform":
        image.set_sform(affine, code="scanner")
        image.set_qform(None, code="unknown")
    else:
        image.set_sform(None, code="unknown")
        image.set_qform(affine, code="scanner")
    nibabel.save(image, path)
    return path


def scale_translate(scales_xyz, offset_xyz) -> np.ndarray:
    affine = np.diag([*scales_xyz, 1.0])
    affine[:3, 3] = offset_xyz
    return affine


# ---- MRC ------------------------------------------------------------------------------------


def test_mrc_origin_places_the_first_voxel_where_chimerax_does_with_y_negated(tmp_path):
    """A marked voxel at file (x, y, z) = (2, 1, 3) sits at ORIGIN + index * voxel size
    (ChimeraX's reading); the flipped array puts it at translation + i * voxel_size with y
    negated, the same place for any height of file."""
    data = np.zeros((4, 6, 8), np.float32)
    data[3, 1, 2] = 1.0  # section 3, row 1, column 2
    origin = (100.0, 200.0, 300.0)
    path = with_origin(write_mrc(tmp_path / "o.mrc", data), origin)
    src = ba.sync.open_source(path)
    index = np.unravel_index(np.argmax(src[...]), src.shape)
    placed = np.asarray(src.translation) + np.asarray(index) * np.asarray(src.voxel_size)
    x, y, z = (o + i * s for o, i, s in zip(origin, (2, 1, 3), VOXEL_XYZ))
    assert placed == pytest.approx([z, -y, x])
    assert src.translation == pytest.approx((300.0, -(200.0 + 5 * 2.5), 100.0))
    assert src.unit == "angstrom"


def test_mrc_without_a_recorded_position_gets_no_invented_translation(tmp_path):
    src = ba.sync.open_source(write_mrc(tmp_path / "plain.mrc", np.zeros((4, 6, 8), np.int8)))
    assert src.translation is None


def test_mrc_nxstart_counts_voxels_of_the_voxel_size(tmp_path):
    data = np.zeros((4, 6, 8), np.float32)
    path = write_mrc(tmp_path / "start.mrc", data, nxstart=5, nystart=6, nzstart=7)
    src = ba.sync.open_source(path)
    x, y, z = 5 * 1.5, 6 * 2.5, 7 * 3.5
    assert src.translation == pytest.approx((z, -(y + 5 * 2.5), x))


def test_mrc_origin_wins_over_nxstart_when_both_are_set(tmp_path):
    data = np.zeros((4, 6, 8), np.float32)
    path = write_mrc(tmp_path / "both.mrc", data, nxstart=5, nystart=6, nzstart=7)
    src = ba.sync.open_source(with_origin(path, (-10.0, 20.0, 40.0)))
    assert src.translation == pytest.approx((40.0, -(20.0 + 5 * 2.5), -10.0))


def test_mrc_starts_follow_mapc_mapr_maps_onto_x_y_z(tmp_path):
    """Columns run along y and rows along x (MAPC=2, MAPR=1): NXSTART (the first column) is
    a y start, NYSTART an x start, and the presented array is (z, y, x) = (4, 8, 6)."""
    data = np.zeros((4, 6, 8), np.float32)  # sections, rows (x), columns (y)
    path = write_mrc(
        tmp_path / "crs.mrc", data, mapc=2, mapr=1, maps=3, nxstart=5, nystart=6, nzstart=7
    )
    src = ba.sync.open_source(path)
    assert src.shape == (4, 8, 6)
    x, y, z = 6 * 1.5, 5 * 2.5, 7 * 3.5
    assert src.translation == pytest.approx((z, -(y + 7 * 2.5), x))


def test_mrc_pyramid_multiscales_carry_the_header_origin(tmp_path):
    data = np.zeros((4, 6, 8), np.float32)
    path = with_origin(write_mrc(tmp_path / "o.mrc", data), (100.0, 200.0, 300.0))
    out = tmp_path / "o.ome.zarr"
    ba.sync.pyramid(ba.sync.open_source(path), out, 2, method="mean", progress=False)
    level0, level1 = level_transforms(out)
    assert level0["scale"] == pytest.approx([3.5, 2.5, 1.5])
    assert level0["translation"] == pytest.approx([300.0, -212.5, 100.0])
    # a mean of 2 voxels represents their centre, half a level-0 voxel on
    assert level1["translation"] == pytest.approx([301.75, -211.25, 100.75])
    reopened = ba.sync.open_source(out)
    assert reopened.translation == pytest.approx((300.0, -212.5, 100.0))
    assert reopened.unit == "angstrom"


# ---- NIfTI ----------------------------------------------------------------------------------


def test_nifti_sform_offset_is_the_translation_in_c_order(tmp_path):
    affine = scale_translate((0.7, 0.8, 0.9), (10.0, -20.0, 30.5))
    src = ba.sync.open_source(write_nifti(tmp_path / "s.nii", affine))
    assert src.voxel_size == pytest.approx((0.9, 0.8, 0.7)) and src.unit == "millimeter"
    assert src.translation == pytest.approx((30.5, -20.0, 10.0))


def test_nifti_qform_offset_is_used_when_only_the_qform_is_set(tmp_path, caplog):
    affine = scale_translate((2.0, 2.0, 3.0), (-90.0, 126.0, -72.0))
    src = ba.sync.open_source(write_nifti(tmp_path / "q.nii.gz", affine, form="qform"))
    assert src.translation == pytest.approx((-72.0, 126.0, -90.0))
    image = nibabel.load(tmp_path / "q.nii.gz")
    image.set_qform(None, code="unknown")  # neither form set: nibabel's affine is a guess
    nibabel.save(image, tmp_path / "none.nii")
    with caplog.at_level(logging.WARNING, logger="bioimage_async"):
        assert ba.sync.open_source(tmp_path / "none.nii").translation is None
    assert not caplog.records


def test_nifti_pyramid_multiscales_carry_the_affine_offset(tmp_path):
    affine = scale_translate((2.0, 2.0, 2.0), (100.0, 200.0, 300.0))
    src = ba.sync.open_source(write_nifti(tmp_path / "s.nii", affine))
    out = tmp_path / "s.ome.zarr"
    ba.sync.pyramid(src, out, 2, method="mean", progress=False)
    level0, level1 = level_transforms(out)
    assert level0["scale"] == pytest.approx([2.0, 2.0, 2.0])
    assert level0["translation"] == pytest.approx([300.0, 200.0, 100.0])
    assert level1["translation"] == pytest.approx([301.0, 201.0, 101.0])
    assert ba.sync.open_source(out).unit == "millimeter"


@pytest.mark.parametrize(
    ("name", "linear", "why"),
    [
        ("rotated", [[0.0, -2.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 2.0]], "rotates"),
        ("flipped", np.diag([-2.0, 2.0, 2.0]), "flips an axis"),
    ],
)
def test_nifti_affine_beyond_scale_gives_no_translation_and_says_why(
    tmp_path, caplog, name, linear, why
):
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = (100.0, 200.0, 300.0)
    src = ba.sync.open_source(write_nifti(tmp_path / f"{name}.nii", affine))
    with caplog.at_level(logging.WARNING, logger="bioimage_async"):
        assert src.translation is None
        assert src.translation is None  # said once
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and why in messages[0] and f"{name}.nii" in messages[0]
    out = tmp_path / f"{name}.ome.zarr"
    ba.sync.pyramid(src, out, 1, progress=False)
    assert "translation" not in level_transforms(out)[0]
