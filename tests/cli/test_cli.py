"""The command line, through a real subprocess."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import zarr

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
    assert unsafe.returncode == 2 and "block_shape=(16, 32, 32)" in unsafe.stderr
    debug = run("--debug", "convert", tmp_path / "nope.tif", tmp_path / "o.zarr")
    assert "Traceback" in debug.stderr


def test_existing_output_is_refused_unless_overwrite(tmp_path, tiff_file):
    assert run("convert", tiff_file, tmp_path / "o.zarr").returncode == 0
    again = run("convert", tiff_file, tmp_path / "o.zarr")
    assert again.returncode == 2 and "exist_ok" in again.stderr
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


def test_out_of_range_block_ids_exit_2(tmp_path, tiff_file):
    result = run("convert", tiff_file, tmp_path / "o.zarr", "--block-ids", "0,99999")
    assert result.returncode == 2 and "out of range" in result.stderr


def test_demo_runs(tmp_path):
    result = run("demo", tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    assert "matches the TIFF" in result.stdout
