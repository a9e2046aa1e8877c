"""The command line, through a real subprocess."""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import zarr

import bioimage_async as ba

CLI = [sys.executable, "-m", "bioimage_async.cli.main"]


def run(*args, cwd=None):
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture
def tiff_file(tmp_path, volume):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, volume)
    return path


def test_convert_tiff_to_zarr_then_info(tmp_path, tiff_file, volume):
    result = run("convert", tiff_file, tmp_path / "o.zarr", "--chunks", "16,32,32", "--no-progress")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "o.zarr"))[:], volume)
    info = run("info", tmp_path / "o.zarr", "--json")
    assert info.returncode == 0
    data = json.loads(info.stdout)
    assert (
        data["shape"] == list(volume.shape)
        and data["chunks"] == [16, 32, 32]
        and data["format"] == "zarr"
    )


def test_convert_to_sharded_zarr3_and_n5(tmp_path, tiff_file, volume):
    assert (
        run(
            "convert",
            tiff_file,
            tmp_path / "o3.zarr",
            "--format",
            "zarr3",
            "--chunks",
            "8,16,16",
            "--shards",
            "16,32,32",
        ).returncode
        == 0
    )
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "o3.zarr"))[:], volume)
    assert (
        run("convert", tiff_file, tmp_path / "o.n5", "--format", "n5", "--out-key", "s0").returncode
        == 0
    )
    assert run("info", tmp_path / "o.n5", "s0").returncode == 0


def test_downsample_and_pyramid(tmp_path, tiff_file):
    assert run("convert", tiff_file, tmp_path / "o.zarr").returncode == 0
    result = run(
        "downsample",
        tmp_path / "o.zarr",
        tmp_path / "s1.zarr",
        "--factor",
        "2",
        "--order",
        "1",
        "--anti-aliasing",
    )
    assert result.returncode == 0, result.stderr
    assert zarr.open_array(str(tmp_path / "s1.zarr")).shape == (23, 35, 42)
    result = run("pyramid", tmp_path / "o.zarr", tmp_path / "p.zarr", "--levels", "3")
    assert result.returncode == 0, result.stderr
    assert "multiscales" in zarr.open_group(str(tmp_path / "p.zarr"), mode="r").attrs["ome"]


def test_bad_arguments_and_bad_input_exit_2_with_one_line(tmp_path, tiff_file):
    missing = run("convert", tmp_path / "nope.tif", tmp_path / "o.zarr")
    assert missing.returncode == 2
    assert "no such" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    assert run("downsample", tiff_file, tmp_path / "x.zarr").returncode == 2  # --factor missing
    assert run("convert", tiff_file, tmp_path / "o.zarr", "--chunks", "a,b").returncode == 2
    unknown = run("info", tmp_path / "file.xyz")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    unsafe = run(
        "convert",
        tiff_file,
        tmp_path / "u.zarr",
        "--chunks",
        "16,32,32",
        "--block-shape",
        "10,10,10",
    )
    assert unsafe.returncode == 2 and "--block-shape 16,32,32" in unsafe.stderr
    debug = run("--debug", "convert", tmp_path / "nope.tif", tmp_path / "o.zarr")
    assert "Traceback" in debug.stderr


def test_existing_output_is_refused_unless_overwrite(tmp_path, tiff_file):
    assert run("convert", tiff_file, tmp_path / "o.zarr").returncode == 0
    again = run("convert", tiff_file, tmp_path / "o.zarr")
    assert (
        again.returncode == 2 and "--overwrite" in again.stderr and "exist_ok" not in again.stderr
    )
    assert run("convert", tiff_file, tmp_path / "o.zarr", "--overwrite").returncode == 0


def test_failed_run_exits_1_with_ids_and_a_rerun_command(tmp_path, volume):
    src = tmp_path / "in.zarr"
    zarr.create_array(
        str(src), shape=volume.shape, chunks=(16, 32, 32), dtype="uint8", zarr_format=2
    )[:] = volume
    (src / "1.0.2").write_bytes(
        b"this is not a blosc chunk"
    )  # block 11 = (1, 0, 2) cannot be decoded
    result = run(
        "convert", src, tmp_path / "out.zarr", "--chunks", "16,32,32", "--block-shape", "16,32,32"
    )
    assert result.returncode == 1, result.stderr
    assert "failed block ids: [11]" in result.stderr
    assert "--resume " in result.stderr and "Traceback" not in result.stderr  # a local journal
    distributed = run(
        "convert",
        src,
        tmp_path / "out2.zarr",
        "--chunks",
        "16,32,32",
        "--block-shape",
        "16,32,32",
        "--job-type",
        "subprocess",
        "--tmp-root",
        tmp_path,
    )
    assert distributed.returncode == 1
    assert "failed block ids: [11]" in distributed.stderr and "--resume" in distributed.stderr


def test_resume_into_an_output_that_is_gone_is_refused(tmp_path, volume):
    """Recreating it would leave every block the run had finished empty, with exit 0."""
    import re
    import shutil

    src = tmp_path / "in.zarr"
    zarr.create_array(
        str(src), shape=volume.shape, chunks=(16, 32, 32), dtype="uint8", zarr_format=2
    )[:] = volume
    good = (src / "1.0.2").read_bytes()
    (src / "1.0.2").write_bytes(b"this is not a blosc chunk")
    args = ["convert", src, tmp_path / "out.zarr", "--chunks", "16,32,32"]
    args += ["--block-shape", "16,32,32", "--tmp-root", tmp_path / "runs"]
    failed = run(*args)
    assert failed.returncode == 1, failed.stderr
    folder = re.search(r"--resume (\S+)", failed.stderr).group(1)
    (src / "1.0.2").write_bytes(good)
    shutil.move(tmp_path / "out.zarr", tmp_path / "moved.zarr")
    refused = run(*args, "--resume", folder)
    assert refused.returncode == 2 and "not there any more" in refused.stderr
    assert not (tmp_path / "out.zarr").exists()
    shutil.move(tmp_path / "moved.zarr", tmp_path / "out.zarr")
    finished = run(*args, "--resume", folder)
    assert finished.returncode == 0, finished.stderr
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[:], volume)


@pytest.mark.parametrize("ids", ["10-5", " ", "0--1"])
def test_block_ids_that_name_no_block_exit_2(tmp_path, tiff_file, ids):
    """A reversed range selected no block: exit 0 with an empty output."""
    result = run("convert", tiff_file, tmp_path / "o.zarr", f"--block-ids={ids}")
    assert result.returncode == 2 and "--block-ids" in result.stderr
    assert not (tmp_path / "o.zarr").exists()


def test_out_of_range_block_ids_exit_2(tmp_path, tiff_file):
    result = run("convert", tiff_file, tmp_path / "o.zarr", "--block-ids", "0,99999")
    assert result.returncode == 2 and "out of range" in result.stderr


def test_demo_runs(tmp_path):
    result = run("demo", tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    assert "matches the TIFF" in result.stdout
    assert "8 blocks of (32, 256, 256)" in result.stdout  # two workers share the blocks


# ---- a new user's first hour (issue #14) ----------------------------------------------------
def one_line_error(result):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "bad,good",
    [
        (["--block-shape", "100,100,100"], ["--block-shape", "64,128,128"]),
        (["--block-ids", "500"], ["--block-ids", "0"]),
        (["--block-shape", "64,64"], []),
        (["--chunks", "64,64"], []),
    ],
)
def test_a_failed_check_leaves_nothing_so_the_corrected_command_works(tmp_path, bad, good):
    stack = tmp_path / "stack.tif"
    assert run("demo", "--make-input", stack).returncode == 0
    out = tmp_path / "bs3.zarr"
    error = one_line_error(run("convert", stack, out, "--no-progress", *bad))
    assert not out.exists(), error
    assert "block_shape" not in error and "block_ids" not in error and "exist_ok" not in error
    fixed = run("convert", stack, out, "--no-progress", *good)
    assert fixed.returncode == 0, fixed.stderr


def test_argument_errors_are_one_line_in_the_clis_words(tmp_path, tiff_file):
    assert "--workers" in one_line_error(
        run("convert", tiff_file, tmp_path / "o.zarr", "--workers", "0")
    )
    assert "3,7,10-12" in one_line_error(
        run("convert", tiff_file, tmp_path / "o.zarr", "--block-ids", "a-b")
    )
    factor = one_line_error(run("downsample", tiff_file, tmp_path / "d.zarr", "--factor", "2,2"))
    assert "--factor" in factor and "scale_factor" not in factor
    group = tmp_path / "g.zarr"
    zarr.open_group(str(group), mode="w").create_array("a/b", shape=(4,), dtype="u1")
    key = one_line_error(run("info", group))
    assert "--key" in key and "internal_path" not in key
    unknown = (
        one_line_error(run("info", tmp_path / "file.xyz"))
        if (tmp_path / "file.xyz").write_text("x")
        else None
    )
    assert "--input-format" in unknown and "format=" not in unknown


def test_every_option_of_every_subcommand_is_documented_with_an_example():
    import argparse

    from bioimage_async.cli.parser import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        assert "examples:" in sub.description, name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.dest)
            takes_value = action.nargs != 0 and action.option_strings
            if takes_value and not action.choices:
                assert "e.g." in action.help, (name, action.option_strings)


def test_info_on_a_pyramid_lists_its_levels_and_a_level_reports_its_own_size(tmp_path, tiff_file):
    assert (
        run(
            "pyramid", tiff_file, tmp_path / "p.ome.zarr", "--levels", "3", "--no-progress"
        ).returncode
        == 0
    )
    listing = run("info", tmp_path / "p.ome.zarr", "--json")
    assert listing.returncode == 0, listing.stderr
    levels = json.loads(listing.stdout)["levels"]
    assert [entry["shape"] for entry in levels] == [[45, 70, 83], [23, 35, 42], [12, 18, 21]]
    assert levels[1]["path"].endswith("p.ome.zarr/1") and levels[1]["voxel_size"] == pytest.approx(
        [45 / 23, 2.0, 83 / 42]
    )
    one = json.loads(run("info", tmp_path / "p.ome.zarr", "1", "--json").stdout)
    assert one["path"].endswith("p.ome.zarr/1") and one["shape"] == [23, 35, 42]
    assert (
        one["disk_bytes"]
        < json.loads(run("info", tmp_path / "p.ome.zarr", "0", "--json").stdout)["disk_bytes"]
    )


def test_a_distributed_convert_reports_its_blocks_and_time_per_gb(tmp_path, tiff_file):
    result = run(
        "convert",
        tiff_file,
        tmp_path / "o.zarr",
        "--chunks",
        "16,32,32",
        "--job-type",
        "subprocess",
        "--tmp-root",
        tmp_path / "tmp",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert "(tiff) -> " in result.stdout and "(zarr)" in result.stdout
    blocks = int(result.stdout.split("; ")[-1].split(" block")[0])
    assert blocks > 0 and "s/GB" in result.stdout


def test_degenerate_pyramid_levels_are_refused_before_writing(tmp_path):
    stack = tmp_path / "stack.tif"
    run("demo", "--make-input", stack)
    error = one_line_error(run("pyramid", stack, tmp_path / "p.zarr", "--levels", "12"))
    assert "--levels 10" in error or "levels=" not in error
    assert not (tmp_path / "p.zarr").exists()


def test_pyramid_labels_inside_an_image_with_voxel_size(tmp_path, tiff_file):
    assert (
        run(
            "pyramid",
            tiff_file,
            tmp_path / "p.ome.zarr",
            "--levels",
            "2",
            "--voxel-size",
            "0.3,0.1,0.1",
            "--unit",
            "um",
            "--no-progress",
        ).returncode
        == 0
    )
    labels = run(
        "pyramid",
        tiff_file,
        tmp_path / "p.ome.zarr",
        "--levels",
        "2",
        "--labels",
        "--name",
        "cells",
        "--method",
        "mode",
        "--no-progress",
    )
    assert labels.returncode == 0, labels.stderr
    attrs = zarr.open_group(str(tmp_path / "p.ome.zarr" / "labels"), mode="r").attrs["ome"]
    assert attrs["labels"] == ["cells"]
    old = run(
        "pyramid",
        tiff_file,
        tmp_path / "v4.zarr",
        "--levels",
        "2",
        "--ngff-version",
        "0.4",
        "--no-progress",
    )
    assert old.returncode == 0 and (tmp_path / "v4.zarr" / ".zattrs").exists()


@pytest.mark.parametrize(("method", "expected"), [("mean", (80.0, 8.0, 8.0)), (None, None)])
def test_downsample_carries_the_voxel_size_like_convert(tmp_path, volume, method, expected):
    """convert keeps the input's voxel size; downsample dropped it."""
    src = tmp_path / "v.n5"
    zarr.create_array(
        str(tmp_path / "in.zarr"),
        shape=volume.shape,
        chunks=(16, 32, 32),
        dtype="uint8",
        zarr_format=2,
    )[:] = volume
    made = run("convert", tmp_path / "in.zarr", src, "--voxel-size", "40,4,4", "--unit", "nm")
    assert made.returncode == 0, made.stderr
    args = ["downsample", src, tmp_path / "d.n5", "--factor", "2"]
    args += ["--method", method] if method else []
    done = run(*args)
    assert done.returncode == 0, done.stderr
    info = json.loads(run("info", tmp_path / "d.n5", "--json").stdout)
    if expected is None:  # spline sampling: the exact ratio of the shapes
        shape = info["shape"]
        expected = tuple(s * n / m for s, n, m in zip((40, 4, 4), volume.shape, shape))
    assert info["voxel_size"] == pytest.approx(list(expected)) and info["unit"] == "nanometer"


def test_pyramid_refuses_block_shape_instead_of_ignoring_it(tmp_path, tiff_file):
    result = run(
        "pyramid", tiff_file, tmp_path / "p.ome.zarr", "--levels", "2", "--block-shape", "3,3,3"
    )
    assert result.returncode == 2 and "--block-shape" in result.stderr
    assert not (tmp_path / "p.ome.zarr").exists()


def test_the_rerun_hint_drops_equals_spellings_and_fits_attach():
    """'--block-ids=3,4' stayed beside the new --resume (refused as both); after attach the
    hint told to run 'attach FOLDER --resume FOLDER', which attach does not take."""
    from bioimage_async.cli.main import rerun_hint
    from bioimage_async.errors import RunnerError

    error = RunnerError("failed", failed_block_ids=[3], tmp_folder="/runs/x")
    hint = rerun_hint(["convert", "a.zarr", "b.zarr", "--block-ids=3,4", "--resume=/old"], error)
    assert hint.endswith("convert a.zarr b.zarr --resume /runs/x")
    attach = rerun_hint(["attach", "/runs/x"], error)
    assert "attach" not in attach and "--resume /runs/x" in attach


def test_labels_inside_a_04_image_report_the_version_written(tmp_path, tiff_file):
    made = run(
        "pyramid", tiff_file, tmp_path / "img.ome.zarr", "--levels", "2", "--ngff-version", "0.4"
    )
    assert made.returncode == 0 and "OME-NGFF 0.4" in made.stdout
    labels = run(
        "pyramid",
        tiff_file,
        tmp_path / "img.ome.zarr",
        "--levels",
        "2",
        "--labels",
        "--name",
        "cells",
    )
    assert labels.returncode == 0, labels.stderr
    assert "OME-NGFF 0.4" in labels.stdout  # the image's version, not the 0.5 default
    assert (tmp_path / "img.ome.zarr" / "labels" / "cells" / ".zattrs").exists()


def test_overwrite_says_that_the_existing_chunks_are_kept(tmp_path, tiff_file):
    """--overwrite writes into the existing array as it is: other --chunks were ignored
    without a word."""
    assert run("convert", tiff_file, tmp_path / "o.zarr", "--chunks", "8,8,8").returncode == 0
    again = run("convert", tiff_file, tmp_path / "o.zarr", "--overwrite", "--chunks", "4,4,4")
    assert again.returncode == 0
    assert "keeps its chunks (8, 8, 8)" in again.stderr and "(4, 4, 4)" in again.stderr
    quiet = run("convert", tiff_file, tmp_path / "o.zarr", "--overwrite", "--chunks", "8,8,8")
    assert "keeps its chunks" not in quiet.stderr


def imagej_channels(path, axes, shape):
    """An ImageJ hyperstack (tifffile imagej=True) whose channels hold unrelated values."""
    data = np.random.default_rng(5).integers(0, 4000, shape, dtype=np.uint16)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes})
    return data


@pytest.mark.parametrize("format", ["zarr", "zarr3", "hdf5"])
def test_a_converted_hyperstack_keeps_its_axis_names_and_its_pyramid_its_channels(tmp_path, format):
    """convert wrote no axis names, so a pyramid of the converted zarr took the channel axis for
    z and averaged the channels together."""
    import bioimage_async as ba

    data = imagej_channels(tmp_path / "c.tif", "CYX", (3, 16, 16))
    out = tmp_path / ("c.h5" if format == "hdf5" else "c.zarr")
    made = run("convert", tmp_path / "c.tif", out, "--format", format, "--no-progress")
    assert made.returncode == 0, made.stderr
    if format == "hdf5":
        import h5py

        with h5py.File(out, "r") as f:
            tags = json.loads(f["data"].attrs["axistags"])["axes"]
        assert [tag["key"] for tag in tags] == ["c", "y", "x"]
    elif format == "zarr3":
        assert zarr.open_array(str(out), mode="r").metadata.dimension_names == ("c", "y", "x")
    else:
        assert zarr.open_array(str(out), mode="r").attrs["_ARRAY_DIMENSIONS"] == ["c", "y", "x"]
    pyramid = tmp_path / "p.ome.zarr"
    made = run("pyramid", out, pyramid, "--levels", "2", "--method", "mean", "--no-progress")
    assert made.returncode == 0, made.stderr
    level1 = zarr.open_array(str(pyramid / "1"), mode="r")[:]
    assert level1.shape == (3, 8, 8)
    for channel in range(3):
        alone = ba.sync.downsample(data[channel], 2, method="mean", progress=False)
        np.testing.assert_array_equal(level1[channel], alone)


def test_a_converted_zcyx_hyperstack_is_refused_by_pyramid_instead_of_blended(tmp_path):
    imagej_channels(tmp_path / "h.tif", "ZCYX", (4, 2, 16, 16))
    made = run("convert", tmp_path / "h.tif", tmp_path / "h.zarr", "--no-progress")
    assert made.returncode == 0, made.stderr
    assert zarr.open_array(str(tmp_path / "h.zarr")).attrs["_ARRAY_DIMENSIONS"] == list("zcyx")
    error = one_line_error(
        run("pyramid", tmp_path / "h.zarr", tmp_path / "p.zarr", "--levels", "2")
    )
    assert "'zcyx'" in error
    assert not (tmp_path / "p.zarr").exists()


@pytest.mark.parametrize(
    "axes, shape, fix",
    [("ZCYX", (4, 3, 16, 18), "--transpose czyx"), ("TZYX", (2, 4, 16, 18), None)],
)
def test_a_hyperstack_whose_axes_precomputed_cannot_take_by_position_is_refused(
    tmp_path, axes, shape, fix
):
    """precomputed takes the axes by position as (c,) z, y, x: a ZCYX hyperstack was written
    with its planes as channels and its channels as z (z's voxel size lost), exit code 0."""
    refused = one_line_error(
        run(
            "convert",
            make_hyperstack(tmp_path, axes, shape),
            tmp_path / "layer",
            "--format",
            "precomputed",
        )
    )
    assert f"'{axes.lower()}'" in refused and "zarr3" in refused
    assert (fix in refused) if fix else ("--transpose" not in refused)
    assert not (tmp_path / "layer").exists()


def test_a_zcyx_hyperstack_transposed_into_precomputed_reads_back_in_cloud_volume(tmp_path):
    cloudvolume = pytest.importorskip("cloudvolume")
    data = np.random.default_rng(6).integers(0, 255, (4, 3, 16, 18), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "h.tif",
        data,
        imagej=True,
        resolution=(1 / 0.3, 1 / 0.4),
        metadata={"spacing": 0.7, "unit": "um", "axes": "ZCYX"},
    )
    made = run(
        "convert",
        tmp_path / "h.tif",
        tmp_path / "layer",
        "--format",
        "precomputed",
        "--transpose",
        "czyx",
        "--no-progress",
    )
    assert made.returncode == 0, made.stderr
    layer = cloudvolume.CloudVolume(f"file://{tmp_path / 'layer'}", progress=False)
    assert layer.num_channels == 3
    assert list(layer.resolution) == pytest.approx([300, 400, 700])
    xyzc = np.asarray(layer[:, :, :])
    np.testing.assert_array_equal(xyzc.transpose(2, 3, 1, 0), data)  # z c y x


def make_hyperstack(tmp_path, axes: str, shape: tuple[int, ...]):
    path = tmp_path / "h.tif"
    tifffile.imwrite(
        path, np.zeros(shape, np.uint8), imagej=True, metadata={"axes": axes, "spacing": 0.7}
    )
    return path


@pytest.mark.parametrize("format, ext", [("precomputed", ""), ("hdf5", ".h5")])
def test_an_input_voxel_size_without_a_unit_is_not_declared_in_the_formats_unit(
    tmp_path, format, ext
):
    """A NIfTI without xyzt_units has sizes but no unit: precomputed recorded them as nm,
    silently; HDF5's refusal named a --voxel-size the user never gave."""
    nibabel = pytest.importorskip("nibabel")
    image = nibabel.Nifti1Image(np.zeros((17, 13, 5), np.int16), np.diag([0.5, 0.75, 2.0, 1]))
    nibabel.save(image, tmp_path / "v.nii")  # xyzt_units: unknown
    out = tmp_path / f"out{ext}"
    for command in (["convert"], ["downsample", "--factor", "2"]):
        refused = one_line_error(run(*command, tmp_path / "v.nii", out, "--format", format))
        assert "voxel size" in refused and "taken from the input has no unit" in refused
        assert "--unit" in refused and not out.exists()
    made = run(
        "convert", tmp_path / "v.nii", out, "--format", format, "--unit", "um", "--no-progress"
    )
    assert made.returncode == 0, made.stderr
    if format == "precomputed":
        info = json.loads((out / "info").read_text())
        assert info["scales"][0]["resolution"] == pytest.approx([500, 750, 2000])
    halved = tmp_path / f"half{ext}"
    made = run(
        "downsample",
        tmp_path / "v.nii",
        halved,
        "--factor",
        "2",
        "--method",
        "mean",
        "--format",
        format,
        "--unit",
        "um",
        "--no-progress",
    )
    assert made.returncode == 0, made.stderr
    if format == "precomputed":
        info = json.loads((halved / "info").read_text())
        assert info["scales"][0]["resolution"] == pytest.approx([1000, 1500, 4000])


# ---- --transpose: an ImageJ ZCYX hyperstack from the command line ---------------------------
def test_a_zcyx_hyperstack_pyramid_with_transpose_keeps_its_channels_apart(tmp_path):
    """The refusal told CLI users to pass input.transpose(...), which only Python can do."""
    import bioimage_async as ba

    data = imagej_channels(tmp_path / "h.tif", "ZCYX", (8, 3, 32, 32))
    refused = one_line_error(
        run("pyramid", tmp_path / "h.tif", tmp_path / "r.zarr", "--levels", "2")
    )
    assert "--transpose czyx" in refused
    out = tmp_path / "out.ome.zarr"
    made = run(
        "pyramid", tmp_path / "h.tif", out, "--levels", "2", "--transpose", "czyx", "--no-progress"
    )
    assert made.returncode == 0, made.stderr
    level1 = zarr.open_array(str(out / "1"), mode="r")[:]
    assert level1.shape == (3, 4, 16, 16)
    api = tmp_path / "api.ome.zarr"
    src = ba.sync.open_source(tmp_path / "h.tif")
    ba.sync.pyramid(src.transpose(1, 0, 2, 3), api, 2, progress=False)
    np.testing.assert_array_equal(level1, zarr.open_array(str(api / "1"), mode="r")[:])
    for channel in range(3):  # smooth, the method of images: linear with anti-aliasing
        alone = ba.sync.downsample(data[:, channel], 2, order=1, anti_aliasing=True, progress=False)
        # the same filter in 3D and 4D: at most a rounding apart (blended channels differ by
        # hundreds: the values are unrelated)
        assert np.abs(level1[channel].astype(np.int64) - alone).max() <= 1
    by_index = tmp_path / "idx.ome.zarr"
    made = run("pyramid", tmp_path / "h.tif", by_index, "--levels", "2", "--transpose", "1,0,2,3")
    assert made.returncode == 0, made.stderr
    np.testing.assert_array_equal(zarr.open_array(str(by_index / "1"), mode="r")[:], level1)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("zyx", "does not match the input's axes 'zcyx'"),
        ("czyy", "e.g. --transpose czyx"),
        ("1,0,2", "each of the input's 4 axes once"),
        ("1,0,2,2", "each of the input's 4 axes once"),
    ],
)
def test_a_transpose_that_does_not_fit_the_input_is_refused(tmp_path, order, expected):
    imagej_channels(tmp_path / "h.tif", "ZCYX", (4, 2, 8, 8))
    out = tmp_path / "o.zarr"
    error = one_line_error(run("convert", tmp_path / "h.tif", out, "--transpose", order))
    assert expected in error and "Traceback" not in error
    assert not out.exists()


def test_transpose_by_letter_needs_an_input_that_records_its_axes(tmp_path, volume):
    tifffile.imwrite(tmp_path / "plain.tif", volume)  # no ImageJ or OME axes
    error = one_line_error(
        run("convert", tmp_path / "plain.tif", tmp_path / "o.zarr", "--transpose", "xyz")
    )
    assert "records no axis names" in error and "--transpose 2,1,0" in error
    made = run("convert", tmp_path / "plain.tif", tmp_path / "o.zarr", "--transpose", "2,1,0")
    assert made.returncode == 0, made.stderr
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "o.zarr"))[:], volume.T)


# ---- HDF5 outputs of a run refused before its first block -------------------------------------
def test_a_refused_run_into_a_new_hdf5_file_leaves_no_file(tmp_path, tiff_file):
    out = tmp_path / "new.h5"
    assert run("convert", tiff_file, out, "--block-ids", "99999").returncode == 2
    assert not out.exists()


@pytest.mark.parametrize("key", [None, "raw", "new/deep/raw"])
def test_a_refused_run_into_an_existing_hdf5_file_removes_only_its_new_dataset(
    tmp_path, tiff_file, key
):
    """The dataset (default 'data', or --out-key) was left behind; the file's other datasets
    and groups must stay as they were."""
    import h5py

    out = tmp_path / "old.h5"
    with h5py.File(out, "w") as f:
        f["keep"] = np.arange(5)
        f.create_group("new")  # an existing group on the way of a nested key
    args = ["convert", tiff_file, out, "--block-shape", "3,3"]
    error = one_line_error(run(*args, *(["--out-key", key] if key else [])))
    assert "--block-shape" in error
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["keep", "new"] and list(f["new"]) == []
        np.testing.assert_array_equal(f["keep"][:], np.arange(5))
    again = run("convert", tiff_file, out, *(["--out-key", key] if key else []))
    assert again.returncode == 0, again.stderr  # the corrected command just works


def test_resume_into_an_hdf5_dataset_finds_the_dataset(tmp_path, volume):
    """--resume looked for the dataset as a folder (file.h5/raw) and refused it as gone."""
    import h5py

    src = tmp_path / "in.zarr"
    zarr.create_array(
        str(src), shape=volume.shape, chunks=(16, 32, 32), dtype="uint8", zarr_format=2
    )[:] = volume
    good = (src / "1.0.2").read_bytes()
    (src / "1.0.2").write_bytes(b"this is not a blosc chunk")
    args = ["convert", src, tmp_path / "out.h5", "--out-key", "raw", "--chunks", "16,32,32"]
    args += ["--block-shape", "16,32,32", "--tmp-root", tmp_path / "runs", "--no-progress"]
    failed = run(*args)
    assert failed.returncode == 1, failed.stderr
    folder = re.search(r"--resume (\S+)", failed.stderr).group(1)
    (src / "1.0.2").write_bytes(good)
    finished = run(*args, "--resume", folder)
    assert finished.returncode == 0, finished.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        np.testing.assert_array_equal(f["raw"][:], volume)


# ---- finding a run again after the process was killed -----------------------------------------
def test_a_failed_convert_left_a_run_folder_and_the_rerun_names_its_resume(tmp_path, volume):
    """Re-running over the half-written output only suggested --overwrite."""
    src = tmp_path / "in.zarr"
    zarr.create_array(
        str(src), shape=volume.shape, chunks=(16, 32, 32), dtype="uint8", zarr_format=2
    )[:] = volume
    good = (src / "1.0.2").read_bytes()
    (src / "1.0.2").write_bytes(b"this is not a blosc chunk")
    runs = tmp_path / "runs"
    args = ["convert", src, tmp_path / "out.zarr", "--chunks", "16,32,32"]
    args += ["--block-shape", "16,32,32", "--tmp-root", runs, "--no-progress"]
    failed = run(*args)
    assert failed.returncode == 1
    folder = re.search(r"--resume (\S+)", failed.stderr).group(1)
    started = failed.stderr.splitlines()[0]  # printed as the run started
    assert folder in started and str(runs) in started
    (src / "1.0.2").write_bytes(good)
    again = one_line_error(run(*args))
    assert f"--resume {folder}" in again and "--overwrite" in again
    elsewhere = one_line_error(run(*args[:-3], "--tmp-root", tmp_path / "other"))
    assert "--tmp-root" in elsewhere and "--resume" in elsewhere  # how to find it
    finished = run(*args, "--resume", folder)
    assert finished.returncode == 0, finished.stderr
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[:], volume)


def stderr_line_matching(process, pattern, timeout=120.0):
    """The match of the first line of ``process``'s stderr that matches ``pattern``, read as
    it is written (a thread reads, so that the run is watched while it goes on)."""
    import queue
    import threading

    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stderr], daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = re.search(pattern, lines.get(timeout=0.05))
        except queue.Empty:
            ended = not reader.is_alive() and lines.empty()
            assert not ended, f"the run ended without a line matching {pattern!r}"
            continue
        if found:
            return found
    raise AssertionError(f"no line matching {pattern!r} after {timeout} s")


def wait_for(condition, what, process, timeout=120.0):
    """Poll ``condition`` (a file the run writes) until it holds; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.005)


def test_a_convert_killed_with_sigkill_is_found_and_resumed(tmp_path):
    """After kill -9 nothing had printed the run folder, and the re-run suggested
    --overwrite: the finished blocks could only be thrown away."""
    import signal

    data = np.random.default_rng(3).integers(0, 256, (64, 256, 256), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", data)
    out, runs = tmp_path / "out.zarr", tmp_path / "runs"
    # thousands of small blocks: a run of seconds, killed once its first blocks are journaled
    args = ["convert", tmp_path / "big.tif", out, "--chunks", "2,16,16"]
    args += ["--block-shape", "2,16,16", "--tmp-root", runs, "--workers", "1", "--no-progress"]
    process = subprocess.Popen(
        [*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        started = stderr_line_matching(process, r"journals finished blocks in (\S+)")
        folder = started.group(1)
        assert folder.startswith(str(runs))
        log = os.path.join(folder, "progress", "local-0.log")
        wait_for(lambda: os.path.exists(log) and os.path.getsize(log) >= 13, "a block", process)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    written = zarr.open_array(str(out), mode="r")
    assert 0 < written.nchunks_initialized < written.nchunks  # killed half-way
    again = one_line_error(run(*args))
    assert f"--resume {folder}" in again
    finished = run(*args, "--resume", folder)
    assert finished.returncode == 0, finished.stderr
    np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[:], data)
    assert not os.path.exists(folder)  # a finished run removes its folder


@pytest.mark.parametrize("job_type", ["subprocess", "local"])
def test_sigterm_stops_the_run_like_ctrl_c_and_its_resume_finishes_it(tmp_path, job_type):
    """SIGTERM ended the CLI on the spot: subprocess workers went on writing into an output that
    no lock guarded any more. A local run stopped before its first block removed the output
    it had created, so the printed --resume failed."""
    import signal

    import psutil

    data = np.random.default_rng(4).integers(0, 256, (64, 256, 256), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", data)
    out, runs = tmp_path / "out.zarr", tmp_path / "runs"
    args = ["convert", tmp_path / "big.tif", out, "--chunks", "2,16,16", "--job-type", job_type]
    args += ["--block-shape", "2,16,16", "--tmp-root", runs, "--workers", "1", "--no-progress"]
    errors = tmp_path / "stderr.txt"
    with open(errors, "w") as sink:
        process = subprocess.Popen([*CLI, *map(str, args)], stderr=sink, text=True)
    try:
        found = []

        def journal_line() -> bool:
            found[:] = re.findall(r"journals? (?:finished blocks )?in (\S+)", errors.read_text())
            return bool(found)

        wait_for(journal_line, "the run folder", process)
        folder = found[0]
        if job_type == "subprocess":  # stopped mid-run, its worker writing
            log = os.path.join(folder, "progress")
            wait_for(lambda: any(os.scandir(log)), "a block", process)
        else:  # status of a local run's folder was an error
            live = run("status", folder)
            assert live.returncode == 0, live.stderr
            assert f"driven by pid {process.pid}" in live.stdout or process.poll() is not None
        workers = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        process.kill()
        process.wait()
    err = errors.read_text()
    assert process.returncode == 143, err
    assert "terminated; finished blocks are written" in err
    psutil.wait_procs(workers, timeout=30)
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    status = run("status", folder)
    assert "not running: cancelled at" in status.stdout, status.stdout + status.stderr
    assert f"--resume {folder}" in status.stdout
    finished = run(*args, "--resume", folder)
    assert finished.returncode == 0, finished.stderr
    np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[:], data)


def test_a_failed_pyramid_names_the_resume_of_its_level_on_the_rerun(tmp_path, volume):
    """The folder of a pyramid's run writes one level, inside the pyramid: found from the
    pyramid's path."""
    src = tmp_path / "in.zarr"
    zarr.create_array(
        str(src), shape=volume.shape, chunks=(16, 32, 32), dtype="uint8", zarr_format=2
    )[:] = volume
    good = (src / "1.0.2").read_bytes()
    (src / "1.0.2").write_bytes(b"this is not a blosc chunk")
    args = ["pyramid", src, tmp_path / "p.ome.zarr", "--levels", "2"]
    args += ["--tmp-root", tmp_path / "runs", "--no-progress"]
    failed = run(*args)
    assert failed.returncode == 1, failed.stderr
    folder = re.search(r"--resume (\S+)", failed.stderr).group(1)
    assert folder in failed.stderr.splitlines()[0]  # printed as the level's run started
    (src / "1.0.2").write_bytes(good)
    again = one_line_error(run(*args))
    assert f"--resume {folder}" in again
    finished = run(*args, "--resume", folder)
    assert finished.returncode == 0, finished.stderr
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "p.ome.zarr" / "0"), mode="r")[:], volume
    )


# ---- smaller review items --------------------------------------------------------------------
def test_info_takes_key_as_the_other_commands_spell_it(tmp_path):
    """info's own error told to pass --key, which info refused as unknown."""
    group = tmp_path / "g.zarr"
    zarr.open_group(str(group), mode="w").create_array("a/b", shape=(4, 6), dtype="u1")
    hint = one_line_error(run("info", group))
    assert "--key" in hint
    result = run("info", group, "--key", "a/b", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["shape"] == [4, 6]
    assert "different arrays" in one_line_error(run("info", group, "a", "--key", "a/b"))


def test_output_piped_into_a_reader_that_quits_exits_quietly(tmp_path, tiff_file):
    """``bioimage-async info ... | head -1``: a BrokenPipeError traceback, exit 1."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        result = subprocess.run(
            [*CLI, "info", str(tiff_file), "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr  # 128 + SIGPIPE, as other tools exit
    assert result.stderr == ""


def test_python_m_bioimage_async_cli_runs_the_cli(tiff_file):
    result = subprocess.run(
        [sys.executable, "-m", "bioimage_async.cli", "info", str(tiff_file), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["shape"] == [45, 70, 83]


def test_pyramid_refuses_block_ids_without_python_words(tmp_path, tiff_file):
    """--block-ids was offered (and documented as re-running failed blocks), then refused
    with a message that mixed a Python call and an option: ba.downsample(..., --block-ids)."""
    result = run("pyramid", tiff_file, tmp_path / "p.zarr", "--levels", "2", "--block-ids", "0")
    error = one_line_error(result)
    assert "--block-ids" in error and "ba.downsample" not in error
    assert not (tmp_path / "p.zarr").exists()
    assert "--block-ids" not in run("pyramid", "--help").stdout
    from bioimage_async.cli.main import rerun_hint
    from bioimage_async.errors import RunnerError

    hint = rerun_hint(["pyramid", "a.zarr", "p.zarr"], RunnerError("failed", failed_block_ids=[3]))
    assert "--block-ids" not in hint and hint.endswith("pyramid a.zarr p.zarr --overwrite")


def start_slow_detached_run(tmp_path) -> str:
    """A detached subprocess run of 16 one-second blocks on one worker; its run folder."""
    import bioimage_async as ba

    zarr.create_array(
        str(tmp_path / "in.zarr"), shape=(16, 8, 8), chunks=(1, 8, 8), dtype="u1", zarr_format=2
    )[:] = 1
    out = ba.sync.create_source(
        tmp_path / "out.zarr", shape=(16, 8, 8), dtype="u1", chunks=(1, 8, 8)
    )

    def slow(block):
        import time

        time.sleep(1.0)
        return block

    handle = ba.sync.map_blocks(
        slow,
        ba.sync.open_source(tmp_path / "in.zarr"),
        out,
        block_shape=(1, 8, 8),
        job_type="subprocess",
        job_config=ba.RunnerConfig(tmp_root=str(tmp_path / "runs")),
        num_workers=1,
        wait=False,
        progress=False,
    )
    return handle.tmp_folder


def test_status_of_a_cancelled_run_says_so_and_lists_the_missing_blocks(tmp_path):
    """status of a cancelled run printed '0 running, 0 pending' and nothing about what was
    left to do."""
    import bioimage_async as ba

    folder = start_slow_detached_run(tmp_path)
    cancelled = run("cancel", folder)
    assert cancelled.returncode == 0, cancelled.stderr
    status = run("status", folder)
    assert status.returncode == 0, status.stderr
    assert "not running: cancelled at " in status.stdout  # recorded by the cancel itself
    missing = ba.sync.missing_blocks(folder)
    assert 0 < len(missing) <= 16
    from bioimage_async.runners.protocol import id_ranges

    assert f"{len(missing)} blocks missing: {id_ranges(missing, sep=',')}" in status.stdout
    assert f"--resume {folder}" in status.stdout


def test_status_of_a_run_whose_workers_were_killed_says_killed_not_cancelled(tmp_path):
    """Without a recorded cancel, workers that vanished were killed: status must not claim
    the run was cancelled (someone may be waiting on it)."""
    import signal

    import psutil

    folder = start_slow_detached_run(tmp_path)
    workers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if folder in (p.info["cmdline"] or [])
        and "bioimage_async.runners.worker" in p.info["cmdline"]
    ]
    assert workers
    for worker in workers:
        os.kill(worker.pid, signal.SIGKILL)
    psutil.wait_procs(workers, timeout=10)
    status = run("status", folder)
    assert status.returncode == 0, status.stderr
    assert "not running: killed" in status.stdout and "cancelled at" not in status.stdout
    assert f"--resume {folder}" in status.stdout


def test_messages_name_commands_not_python_calls_on_the_command_line():
    """The CLI printed 'ba.sync.missing_blocks(...) lists them', 'await ba.attach(...)' and
    '--resume/tmp/...' (a path after an unquoted resume_from= lost its space)."""
    from bioimage_async.cli.words import cli_words

    folder = "/tmp/runs/bioimage_async_copy_1"
    cancelled = cli_words(
        f"Finish it with resume_from={folder!r}; ba.sync.missing_blocks({folder!r}) lists them."
    )
    assert (
        cancelled == f"Finish it with --resume {folder}; bioimage-async status {folder} lists them."
    )
    live = cli_words(
        f"Wait for it: await (await ba.attach({folder!r})).wait(); or stop it first: await "
        f"(await ba.attach({folder!r})).cancel(), then resume"
    )
    assert "ba." not in live and f"bioimage-async cancel {folder}" in live
    assert cli_words(f"resume_from={folder}: still alive") == f"--resume {folder}: still alive"
    hint = cli_words(
        f"pick it up with: await ba.attach({folder!r}) (or: bioimage-async attach {folder})"
    )
    assert hint == f"pick it up with: bioimage-async attach {folder}"


def test_convert_says_when_the_input_position_is_not_kept(tmp_path, volume):
    """An MRC origin (as mrcfile writes it) places the map; a plain zarr copy starts at 0, which
    a viewer shows shifted: the command says so, and says nothing for a file without one."""
    mrcfile = pytest.importorskip("mrcfile")
    placed, plain = tmp_path / "placed.mrc", tmp_path / "plain.mrc"
    for path in (placed, plain):
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(volume.astype(np.int16))
            mrc.voxel_size = (1.5, 2.5, 3.5)
            if path == placed:
                mrc.header.origin = (100.0, 200.0, 300.0)
    warned = run("convert", placed, tmp_path / "placed.zarr", "--no-progress")
    assert warned.returncode == 0, warned.stderr
    assert "records no such position" in warned.stderr
    assert "bioimage-async pyramid" in warned.stderr
    quiet = run("convert", plain, tmp_path / "plain.zarr", "--no-progress")
    assert quiet.returncode == 0, quiet.stderr
    assert "position" not in quiet.stderr
    downsampled = run(
        "downsample", placed, tmp_path / "half.zarr", "--factor", "2", "--no-progress"
    )
    assert downsampled.returncode == 0, downsampled.stderr
    assert "records no such position" in downsampled.stderr
    # a window's centre is half a window minus half a voxel from its first voxel: said too
    # (the output recorded the larger voxels but not where the first one sits)
    windows = run(
        "downsample",
        plain,
        tmp_path / "mean.zarr",
        "--factor",
        "2",
        "--method",
        "mean",
        "--no-progress",
    )
    assert windows.returncode == 0, windows.stderr
    assert "centre of the input's first window" in windows.stderr
    assert "(1.75, 1.25, 0.75) angstrom" in windows.stderr  # z, y, x: half of 3.5, 2.5, 1.5
    strided = run(
        "downsample",
        plain,
        tmp_path / "stride.zarr",
        "--factor",
        "2",
        "--method",
        "stride",
        "--no-progress",
    )
    assert strided.returncode == 0 and "position" not in strided.stderr


def test_convert_to_precomputed_keeps_a_whole_voxel_position(tmp_path, volume):
    """precomputed records where a layer sits (voxel_offset, whole voxels): an MRC origin of
    whole voxels is kept there, read back by cloud-volume at those bounds; another origin is
    dropped with the warning."""
    mrcfile = pytest.importorskip("mrcfile")
    cloudvolume = pytest.importorskip("cloudvolume")
    data = volume.astype(np.int16)
    for name, origin in (("whole", (15.0, 50.0, 105.0)), ("half", (16.0, 50.0, 105.0))):
        with mrcfile.new(tmp_path / f"{name}.mrc", overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = (1.5, 2.5, 3.5)  # x, y, z in angstrom
            mrc.header.origin = origin
    source = ba.sync.open_source(str(tmp_path / "whole.mrc"))
    kept = run("convert", tmp_path / "whole.mrc", f"precomputed://{tmp_path / 'whole'}",
               "--no-progress")  # fmt: skip
    assert kept.returncode == 0, kept.stderr
    assert "position" not in kept.stderr
    layer = cloudvolume.CloudVolume(f"file://{tmp_path / 'whole'}", progress=False)
    # where the reader places voxel 0 (y counts from the map's far edge: IMOD orientation)
    zyx = [round(t / v) for t, v in zip(source.translation, source.voxel_size)]
    assert zyx[0] == 30 and zyx[2] == 10  # origin / voxel size
    x, y, z = list(layer.voxel_offset)
    assert [z, y, x] == zyx
    assert list(layer.resolution) == pytest.approx([0.15, 0.25, 0.35])
    cutout = np.asarray(layer[x : x + data.shape[2], y : y + data.shape[1], z : z + data.shape[0]])
    np.testing.assert_array_equal(cutout[..., 0].transpose(2, 1, 0), source[...])
    reopened = ba.sync.open_source(f"precomputed://{tmp_path / 'whole'}")
    assert reopened.translation == pytest.approx(tuple(v / 10 for v in source.translation))
    dropped = run("convert", tmp_path / "half.mrc", f"precomputed://{tmp_path / 'half'}",
                  "--no-progress")  # fmt: skip
    assert dropped.returncode == 0, dropped.stderr
    assert "records no such position" in dropped.stderr
    assert list(cloudvolume.CloudVolume(f"file://{tmp_path / 'half'}").voxel_offset) == [0, 0, 0]


def test_pyramid_refuses_fewer_voxel_sizes_than_spatial_axes(tmp_path, tiff_file):
    """--voxel-size 4,4 on a z, y, x volume recorded z as an invented 1 nm."""
    refused = one_line_error(
        run("pyramid", tiff_file, tmp_path / "p.ome.zarr", "--levels", "2", "--voxel-size", "4,4")
    )
    assert "one positive size per spatial axis (3: zyx)" in refused
    assert not (tmp_path / "p.ome.zarr").exists()


def test_demo_make_input_does_not_replace_an_existing_file(tmp_path):
    precious = tmp_path / "stack.tif"
    precious.write_bytes(b"my own data")
    refused = one_line_error(run("demo", "--make-input", precious))
    assert "exists" in refused and precious.read_bytes() == b"my own data"


def test_a_path_the_command_cannot_use_is_a_one_line_error(tmp_path, tiff_file):
    """A pyramid under a file, or --tmp-root a file, gave a traceback and exit 1 (which says
    'a run failed, with block ids')."""
    a_file = tmp_path / "plain.txt"
    a_file.write_text("")
    under_a_file = run("pyramid", tiff_file, a_file / "p.ome.zarr", "--levels", "2")
    assert "Not a directory" in one_line_error(under_a_file)
    tmp_root_a_file = run("convert", tiff_file, tmp_path / "o.zarr", "--tmp-root", a_file)
    assert "cannot use" in one_line_error(tmp_root_a_file)
