"""NIfTI sources: nibabel's own test images and files it writes, axes reversed to C order."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

import bioimage_async as ba
from bioimage_async.sources.nifti import NiftiSource


def run(coro):
    return asyncio.run(coro)


# images that ship with nibabel: gzipped 4D int16, big-endian 3D, scaled 4D (slope/intercept)
SHIPPED = ["example4d.nii.gz", "anatomical.nii", "functional.nii", "standard.nii.gz"]


def c_order(image) -> np.ndarray:
    """The reference: nibabel's whole scaled array (fine in a test), axes reversed."""
    return np.asarray(image.dataobj).transpose()


@pytest.mark.parametrize("name", SHIPPED)
def test_images_shipped_with_nibabel_read_voxel_for_voxel(name: str) -> None:
    path = os.path.join(data_path, name)
    expected = c_order(nib.load(path))
    src = run(ba.open_source(path))
    assert isinstance(src, NiftiSource)
    assert src.shape == expected.shape == tuple(reversed(nib.load(path).shape))
    assert src.dtype == expected.dtype.newbyteorder("=") and src.dtype.isnative
    np.testing.assert_array_equal(src[...], expected)
    region = tuple(slice(n // 4, n // 4 + max(1, n // 2)) for n in src.shape)
    np.testing.assert_array_equal(run(src.read(region)), expected[region])
    np.testing.assert_array_equal(src[0], expected[0])
    np.testing.assert_array_equal(src[..., -1], expected[..., -1])


def test_scaled_image_reads_as_float_with_the_header_scaling() -> None:
    path = os.path.join(data_path, "functional.nii")
    image = nib.load(path)
    assert image.dataobj.slope != 1
    src = run(ba.open_source(path))
    assert src.dtype == np.float64
    np.testing.assert_allclose(src[3, 1], image.get_fdata()[:, :, 1, 3].T)


def test_unscaled_big_endian_image_keeps_its_integer_type() -> None:
    src = run(ba.open_source(os.path.join(data_path, "anatomical.nii")))
    assert src.dtype == np.dtype("int16")


@pytest.fixture
def xyz() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, size=(13, 17, 7), dtype=np.uint8)


@pytest.fixture(params=[".nii", ".nii.gz"])
def nifti_path(request, tmp_path: Path, xyz: np.ndarray) -> Path:
    path = tmp_path / f"vol{request.param}"
    nib.save(nib.Nifti1Image(xyz, affine=np.eye(4)), path)
    return path


def test_axes_are_reversed_to_c_order(nifti_path: Path, xyz: np.ndarray) -> None:
    src = run(ba.open_source(nifti_path))
    assert src.shape == (7, 17, 13) and src.dtype == np.uint8
    for z, y, x in [(0, 0, 0), (6, 16, 12), (3, 5, 9)]:
        assert src[z, y, x] == xyz[x, y, z]
    np.testing.assert_array_equal(src[2:5, 1:10, 4], xyz[4, 1:10, 2:5].T)
    data = src[1:3]
    assert data.flags.c_contiguous and data.flags.writeable


def test_reads_never_load_the_whole_image(
    nifti_path: Path, xyz: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("the whole image was loaded")

    monkeypatch.setattr(nib.Nifti1Image, "get_fdata", forbidden)
    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__array__", forbidden)
    src = run(ba.open_source(nifti_path))
    np.testing.assert_array_equal(src[4, 2:6], xyz[:, 2:6, 4].T)


def test_internal_path_data_is_accepted_and_others_list_it(nifti_path: Path) -> None:
    assert run(ba.open_source(nifti_path, "data")).shape == (7, 17, 13)
    with pytest.raises(ba.InternalPathNotFoundError, match="'raw'.*'data'"):
        run(ba.open_source(nifti_path, "raw"))


def test_spec_round_trip(nifti_path: Path, xyz: np.ndarray) -> None:
    src = run(ba.open_source(nifti_path))
    spec = src.to_spec().to_json()
    assert spec == {"kind": "nifti", "params": {"path": str(nifti_path.resolve())}}
    again = run(ba.from_spec(spec))
    np.testing.assert_array_equal(again[6], xyz[:, :, 6].T)


def test_concurrent_reads(nifti_path: Path, xyz: np.ndarray) -> None:
    async def main() -> np.ndarray:
        src = await ba.open_source(nifti_path)
        return np.stack(await asyncio.gather(*(src.read(z) for z in range(7))))

    np.testing.assert_array_equal(run(main()), xyz.T)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.nii"):
        run(ba.open_source(tmp_path / "missing.nii.gz"))


def test_a_file_that_is_not_nifti_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "fake.nii"
    path.write_bytes(b"\x01" * 400)
    with pytest.raises(ba.SourceError, match="cannot read .*fake.nii.* as a NIfTI image"):
        run(ba.open_source(path))


def test_nifti_is_read_only(nifti_path: Path) -> None:
    src = run(ba.open_source(nifti_path))
    assert not src.writable
    with pytest.raises(ba.ReadOnlySourceError, match="NIfTI image .* is read-only"):
        src[0, 0, 0] = 1
    with pytest.raises(ba.ReadOnlySourceError):
        run(src.write(..., np.zeros(src.shape, np.uint8)))
    with pytest.raises(ba.FormatNotSupportedError, match="read-only"):
        run(ba.open_source(nifti_path, mode="r+"))


@pytest.mark.parametrize(
    "index",
    [(7,), (slice(0, 8),), (0, 0, 13), ([0, 1],), (slice(0, 4, 2),), (Ellipsis, Ellipsis)],
    ids=["int-oob", "slice-oob", "x-oob", "list", "step", "two-ellipses"],
)
def test_out_of_bounds_and_fancy_indices_raise(nifti_path: Path, index) -> None:
    src = run(ba.open_source(nifti_path))
    with pytest.raises(ba.InvalidIndexError):
        run(src.read(index))
    with pytest.raises(ba.InvalidIndexError):
        src[index]


def test_missing_nibabel_raises_missing_dependency_naming_the_extra(
    nifti_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {"kind": "nifti", "params": {"path": str(nifti_path)}}
    monkeypatch.setitem(sys.modules, "nibabel", None)
    for call in (lambda: ba.open_source(nifti_path), lambda: ba.from_spec(spec)):
        with pytest.raises(ba.MissingDependencyError, match=r"bioimage-async\[nifti\]") as info:
            run(call())
        assert info.value.extra == "nifti"


def test_a_time_series_reports_spatial_sizes_only(tmp_path: Path) -> None:
    """pixdim[4] is the time step (seconds): not a voxel size of the leading t axis."""
    data = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)  # x y z t
    image = nib.Nifti1Image(data, np.diag([0.7, 0.8, 0.9, 1.0]))
    image.header.set_zooms((0.7, 0.8, 0.9, 2.5))
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, tmp_path / "ts.nii.gz")
    src = run(ba.open_source(tmp_path / "ts.nii.gz"))
    assert src.shape == (5, 4, 3, 2)
    assert src.voxel_size == pytest.approx((1.0, 0.9, 0.8, 0.7)) and src.unit == "millimeter"
    np.testing.assert_array_equal(run(src.read()), data.transpose())


async def test_an_rgb24_image_is_refused_at_open_with_what_to_do(tmp_path):
    """Its structured voxels (R, G, B fields) opened, then every conversion died with a raw
    TypeError from the fill-value check."""
    rgb = np.zeros((6, 5, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "rgb.nii")
    with pytest.raises(ba.FormatNotSupportedError, match=r"fields R, G, B.*structured_to"):
        await ba.open_source(tmp_path / "rgb.nii")
