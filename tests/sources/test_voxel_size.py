"""Voxel sizes read from the files other tools write, carried into pyramids, and written back."""

import json

import numpy as np
import pytest

import bioimage_async as ba

DATA = (np.arange(4 * 6 * 8) % 200).astype(np.uint8).reshape(4, 6, 8)


def imagej_tiff(path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(
        path,
        DATA,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.1),
        metadata={"spacing": 0.5, "unit": "um", "axes": "ZYX"},
    )
    return (0.5, 0.1, 0.2), "micrometer"


def mrc_file(path):
    mrcfile = pytest.importorskip("mrcfile")
    with mrcfile.new(path) as mrc:
        mrc.set_data(DATA.astype(np.int8))
        mrc.voxel_size = (1.5, 2.5, 3.5)  # x, y, z in Angstrom
    return (3.5, 2.5, 1.5), "angstrom"


def nifti_file(path):
    nibabel = pytest.importorskip("nibabel")
    image = nibabel.Nifti1Image(DATA.transpose(), np.diag([0.7, 0.8, 0.9, 1.0]))
    image.header.set_xyzt_units("mm")
    nibabel.save(image, path)
    return (0.9, 0.8, 0.7), "millimeter"


def hdf5_file(path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=DATA).attrs["element_size_um"] = [3.0, 2.0, 1.0]
    return (3.0, 2.0, 1.0), "micrometer"


def cloudvolume_layer(path):
    cloudvolume = pytest.importorskip("cloudvolume")
    info = cloudvolume.CloudVolume.create_new_info(
        num_channels=1,
        layer_type="image",
        data_type="uint8",
        encoding="raw",
        resolution=[4, 4, 40],
        voxel_offset=[0, 0, 0],
        volume_size=[8, 6, 4],
        chunk_size=[8, 6, 4],
    )
    volume = cloudvolume.CloudVolume(f"file://{path}", info=info, compress=False, progress=False)
    volume.commit_info()
    volume[:, :, :] = DATA.transpose()[..., None]
    return (40.0, 4.0, 4.0), "nanometer"


def n5_viewer(path):
    z5py = pytest.importorskip("z5py")
    f = z5py.File(str(path), "w")
    dataset = f.create_dataset("setup0/timepoint0/s0", data=DATA, chunks=(4, 6, 8))
    dataset.attrs["pixelResolution"] = {"unit": "um", "dimensions": [0.25, 0.25, 1.0]}
    return (1.0, 0.25, 0.25), "micrometer"


CASES = {
    "a.tif": (imagej_tiff, None),
    "a.mrc": (mrc_file, None),
    "a.nii": (nifti_file, None),
    "a.h5": (hdf5_file, "data"),
    "layer": (cloudvolume_layer, None),
    "bdv.n5": (n5_viewer, "setup0/timepoint0/s0"),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_each_writers_voxel_size_is_read_and_carried_into_the_pyramid(tmp_path, name):
    make, key = CASES[name]
    voxel_size, unit = make(tmp_path / name)
    src = await ba.open_source(tmp_path / name, key)
    assert src.voxel_size == pytest.approx(voxel_size) and src.unit == unit
    levels = await ba.pyramid(src, tmp_path / "p.ome.zarr", 2, factor=(1, 2, 2), method="mean")
    multiscale = json.loads((tmp_path / "p.ome.zarr" / "zarr.json").read_text())["attributes"][
        "ome"
    ]["multiscales"][0]
    level1 = multiscale["datasets"][1]["coordinateTransformations"][0]["scale"]
    assert level1 == pytest.approx([voxel_size[0], 2 * voxel_size[1], 2 * voxel_size[2]])
    assert multiscale["axes"][0]["unit"] == unit
    reopened = await ba.open_source(tmp_path / "p.ome.zarr", level=1)
    assert reopened.voxel_size == pytest.approx(level1) and levels[1].shape == reopened.shape


async def test_an_explicit_voxel_size_overrides_the_file(tmp_path):
    hdf5_file(tmp_path / "a.h5")
    src = await ba.open_source(tmp_path / "a.h5", "data")
    await ba.pyramid(src, tmp_path / "p.zarr", 1, voxel_size=(40, 4, 4), unit="nm")
    multiscale = json.loads((tmp_path / "p.zarr" / "zarr.json").read_text())["attributes"]["ome"][
        "multiscales"
    ][0]
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"] == [40.0, 4.0, 4.0]
    assert multiscale["axes"][2]["unit"] == "nanometer"


async def test_create_source_writes_the_voxel_size_where_the_format_has_a_place(tmp_path):
    pre = await ba.create_source(
        f"precomputed://{tmp_path / 'pre'}",
        shape=(4, 6, 8),
        dtype="uint8",
        chunks=(4, 6, 8),
        voxel_size=(0.04, 0.004, 0.004),
        unit="um",
    )
    info = json.loads((tmp_path / "pre" / "info").read_text())
    assert info["scales"][0]["resolution"] == pytest.approx([4.0, 4.0, 40.0])  # nm, x y z
    assert pre.voxel_size == (0.04, 0.004, 0.004)
    reopened = await ba.open_source(tmp_path / "pre")
    assert reopened.voxel_size == pytest.approx((40.0, 4.0, 4.0)) and reopened.unit == "nanometer"
    await ba.create_source(
        tmp_path / "o.n5",
        shape=(4, 6, 8),
        dtype="uint8",
        chunks=(4, 6, 8),
        voxel_size=(1.0, 0.25, 0.25),
        unit="micrometer",
    )
    attributes = json.loads((tmp_path / "o.n5" / "attributes.json").read_text())
    assert attributes["resolution"] == [0.25, 0.25, 1.0]
    n5 = await ba.open_source(tmp_path / "o.n5")
    assert n5.voxel_size == (1.0, 0.25, 0.25) and n5.unit == "micrometer"
    with pytest.raises(ba.InvalidArgumentError, match="unknown unit"):
        await ba.create_source(
            tmp_path / "x.n5",
            shape=(4,),
            dtype="uint8",
            chunks=(4,),
            voxel_size=(1,),
            unit="furlong",
        )


@pytest.mark.parametrize(
    "shape, axes, expected",
    [
        ((3, 2, 6, 8), "ZCYX", (0.5, 1.0, 0.1, 0.2)),
        ((2, 3, 6, 8), "TZYX", (1.0, 0.5, 0.1, 0.2)),
        ((6, 8, 3), "YXS", (0.1, 0.2, 1.0)),
        ((4, 6, 8, 3), "ZYXS", (0.5, 0.1, 0.2, 1.0)),
    ],
)
async def test_imagej_hyperstack_sizes_go_to_their_axes(tmp_path, shape, axes, expected):
    """The sizes follow the axis letters: channels, time and RGB samples are not spatial."""
    tifffile = pytest.importorskip("tifffile")
    data = (np.arange(int(np.prod(shape))) % 250).astype(np.uint8).reshape(shape)
    kwargs = {"photometric": "rgb"} if axes.endswith("S") else {}
    tifffile.imwrite(
        tmp_path / "h.tif",
        data,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.1),
        metadata={"spacing": 0.5, "unit": "um", "axes": axes},
        **kwargs,
    )
    with tifffile.TiffFile(tmp_path / "h.tif") as tif:
        assert tif.series[0].axes == axes and tif.series[0].shape == shape
    src = await ba.open_source(tmp_path / "h.tif")
    assert src.shape == shape
    assert src.voxel_size == pytest.approx(expected) and src.unit == "micrometer"
    np.testing.assert_array_equal(await src.read(), data)


async def test_n5_viewer_levels_take_their_factors_from_the_groups_scales(tmp_path):
    """N5-viewer's layout: the root holds pixelResolution and one entry of ``scales`` per sN,
    whose own attributes hold no downsamplingFactors (every level read as s0's size)."""
    z5py = pytest.importorskip("z5py")
    f = z5py.File(str(tmp_path / "viewer.n5"), "w")
    for level in range(3):
        n = 2**level
        f.create_dataset(
            f"c0/s{level}", shape=(32 // n, 64 // n, 64 // n), chunks=(8, 16, 16), dtype="uint8"
        )
    f.attrs["scales"] = [[1, 1, 1], [2, 2, 2], [4, 4, 4]]
    f.attrs["pixelResolution"] = {"unit": "um", "dimensions": [0.1, 0.2, 0.5]}  # x y z
    for level in range(3):
        src = await ba.open_source(tmp_path / "viewer.n5", f"c0/s{level}")
        n = 2**level
        assert src.voxel_size == pytest.approx((0.5 * n, 0.2 * n, 0.1 * n))
        assert src.unit == "micrometer"


async def test_a_unit_alone_converts_the_recorded_sizes_instead_of_relabelling_them(tmp_path):
    """element_size_um 3, 2, 1 asked for in nm are 3000, 2000, 1000 nm, not 3, 2, 1 nm."""
    import subprocess
    import sys

    hdf5_file(tmp_path / "a.h5")
    src = await ba.open_source(tmp_path / "a.h5", "data")
    await ba.pyramid(src, tmp_path / "p.ome.zarr", 2, unit="nm", method="mean")
    written = json.loads((tmp_path / "p.ome.zarr" / "zarr.json").read_text())
    multiscale = written["attributes"]["ome"]["multiscales"][0]
    scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx([3000.0, 2000.0, 1000.0])
    assert {a["unit"] for a in multiscale["axes"]} == {"nanometer"}
    cli = [sys.executable, "-m", "bioimage_async.cli.main"]
    convert = [*cli, "convert", tmp_path / "a.h5", tmp_path / "u.n5", "--key", "data"]
    subprocess.run([*map(str, convert), "--unit", "nm"], check=True, capture_output=True)
    converted = await ba.open_source(tmp_path / "u.n5")
    assert converted.voxel_size == pytest.approx((3000.0, 2000.0, 1000.0))
    assert converted.unit == "nanometer"


async def test_an_ome_tiff_gives_its_physical_sizes_in_one_unit(tmp_path):
    """PhysicalSizeX/Y/Z of the OME-XML win over the resolution tags; Z in nm joins X's µm."""
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(
        tmp_path / "a.ome.tif",
        np.zeros((4, 6, 8), np.uint8),
        ome=True,
        resolution=(1e4, 1e4),
        resolutionunit="CENTIMETER",
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.25,
            "PhysicalSizeY": 0.5,
            "PhysicalSizeZ": 2000.0,
            "PhysicalSizeZUnit": "nm",
        },
    )
    src = await ba.open_source(tmp_path / "a.ome.tif")
    assert src.voxel_size == pytest.approx((2.0, 0.5, 0.25)) and src.unit == "micrometer"


async def test_a_depth_no_metadata_records_is_unknown_not_one_unit(tmp_path):
    """Outside ImageJ files nothing says how thick a slice is: 1 cm (ImageJ's default depth
    in the file's unit) was invented for a stack of 1 µm pixels."""
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(
        tmp_path / "plain.tif",
        np.zeros((4, 6, 8), np.uint8),
        photometric="minisblack",
        resolution=(1e4, 1e4),
        resolutionunit="CENTIMETER",
    )
    src = await ba.open_source(tmp_path / "plain.tif")
    assert src.voxel_size is None
    single = tmp_path / "plane.tif"  # one plane: x and y are all there is
    tifffile.imwrite(single, np.zeros((6, 8), np.uint8), resolution=(1e4, 2e4), resolutionunit=3)
    plane = await ba.open_source(single)
    assert plane.voxel_size == pytest.approx((0.5e-4, 1e-4)) and plane.unit == "centimeter"


async def test_each_tiff_series_has_its_own_pixel_size(tmp_path):
    """Series 1 was given series 0's (the file's first page's) resolution."""
    tifffile = pytest.importorskip("tifffile")
    with tifffile.TiffWriter(tmp_path / "two.tif") as tif:
        for size in (0.1, 0.2):
            tif.write(
                np.zeros((6, 8), np.uint8),
                resolution=(1 / size, 1 / size),
                resolutionunit="CENTIMETER",
                photometric="minisblack",
            )
    first = await ba.open_source(tmp_path / "two.tif", "0")
    second = await ba.open_source(tmp_path / "two.tif", "1")
    assert first.voxel_size == pytest.approx((0.1, 0.1))
    assert second.voxel_size == pytest.approx((0.2, 0.2))


@pytest.mark.parametrize("format", ["zarr", "zarr3"])
async def test_a_plain_zarr_array_keeps_the_voxel_size_it_was_created_with(tmp_path, format):
    """zarr kept voxel_size= on the returned source only: reopened, the array had none."""
    zarr = pytest.importorskip("zarr")
    out = await ba.create_source(
        tmp_path / "o.zarr",
        format=format,
        internal_path="raw",
        shape=(4, 6, 8),
        dtype="uint8",
        chunks=(4, 6, 8),
        voxel_size=(40, 4, 4),
        unit="nm",
    )
    attributes = zarr.open_array(str(tmp_path / "o.zarr" / "raw"), mode="r").attrs
    assert attributes["pixelResolution"] == {"dimensions": [4.0, 4.0, 40.0], "unit": "nanometer"}
    reopened = await ba.open_source(tmp_path / "o.zarr", "raw")
    assert reopened.voxel_size == out.voxel_size == (40.0, 4.0, 4.0)
    assert reopened.unit == out.unit == "nanometer"


@pytest.mark.parametrize(
    ("voxel_size", "unit", "element_size_um"),
    [((0.3, 0.1, 0.1), "um", (0.3, 0.1, 0.1)), ((40, 4, 4), "nm", (0.04, 0.004, 0.004))],
)
async def test_an_hdf5_output_records_element_size_um(tmp_path, voxel_size, unit, element_size_um):
    """HDF5 outputs had no element_size_um, the attribute ilastik, Fiji and vigra read."""
    h5py = pytest.importorskip("h5py")
    out = await ba.create_source(
        tmp_path / "o.h5",
        shape=(4, 6, 8),
        dtype="uint8",
        chunks=(4, 6, 8),
        voxel_size=voxel_size,
        unit=unit,
    )
    await out.write(..., DATA)
    out.close()
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert tuple(f["data"].attrs["element_size_um"]) == pytest.approx(element_size_um)
    reopened = await ba.open_source(tmp_path / "o.h5", "data")
    assert reopened.voxel_size == pytest.approx(element_size_um)
    assert reopened.unit == "micrometer"
    assert out.voxel_size == reopened.voxel_size and out.unit == reopened.unit


async def test_an_hdf5_output_refuses_a_voxel_size_without_a_unit(tmp_path):
    with pytest.raises(ba.InvalidArgumentError, match=r"hdf5.*element_size_um.*unit="):
        await ba.create_source(
            tmp_path / "o.h5",
            shape=(4, 6, 8),
            dtype="uint8",
            chunks=(4, 6, 8),
            voxel_size=(2, 1, 1),
        )
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize("output", ["o.zarr", "o.h5"])
def test_convert_stores_the_voxel_size_given_on_the_command_line(tmp_path, output):
    """--voxel-size was silently not stored for zarr (and HDF5) outputs."""
    import subprocess
    import sys

    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "in.tif", DATA, photometric="minisblack")
    cli = [sys.executable, "-m", "bioimage_async.cli.main"]
    convert = [*cli, "convert", tmp_path / "in.tif", tmp_path / output, "--no-progress"]
    made = subprocess.run(
        [*map(str, convert), "--voxel-size", "400,40,40", "--unit", "nm"],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    info = subprocess.run(
        [*map(str, cli), "info", str(tmp_path / output), "--json"], capture_output=True, text=True
    )
    reported = json.loads(info.stdout)
    if output.endswith(".h5"):
        assert reported["voxel_size"] == pytest.approx([0.4, 0.04, 0.04])
        assert reported["unit"] == "micrometer"
    else:
        assert reported["voxel_size"] == pytest.approx([400.0, 40.0, 40.0])
        assert reported["unit"] == "nanometer"
