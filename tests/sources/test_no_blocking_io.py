"""The async open/create paths do no filesystem work on the event loop's thread."""

import builtins
import os
import threading

import numpy as np
import pytest

import bioimage_async as ba


@pytest.fixture
def loop_thread_io(monkeypatch, tmp_path):
    """Records filesystem calls on the test's data made from the thread of its event loop
    (imports stat files too; only calls on paths under tmp_path count)."""
    loop_thread = threading.get_ident()
    calls: list[str] = []

    def spy(name, fn):
        def wrapper(*args, **kwargs):
            if (
                threading.get_ident() == loop_thread
                and args
                and str(args[0]).startswith(str(tmp_path))
            ):
                calls.append(f"{name}{args[:1]}")
            return fn(*args, **kwargs)

        return wrapper

    for module, name in (
        (builtins, "open"),
        (os, "stat"),
        (os, "scandir"),
        (os, "listdir"),
        (os, "makedirs"),
        (os, "mkdir"),
        (os, "walk"),
        (os.path, "exists"),
        (os.path, "isdir"),
        (os.path, "isfile"),
    ):
        monkeypatch.setattr(module, name, spy(name, getattr(module, name)))
    return calls


@pytest.mark.parametrize(
    "fmt,name,key",
    [
        ("zarr", "a.zarr", "g/level0"),
        ("zarr3", "b.zarr", None),
        ("n5", "c.n5", "s0"),
        ("precomputed", "d", None),
        ("hdf5", "e.h5", "data"),
    ],
)
async def test_create_and_open_touch_no_file_on_the_event_loop(
    tmp_path, loop_thread_io, fmt, name, key
):
    data = np.arange(4 * 6 * 8, dtype=np.uint16).reshape(4, 6, 8)
    out = await ba.create_source(
        tmp_path / name,
        shape=data.shape,
        dtype="uint16",
        chunks=(2, 3, 4),
        format=fmt,
        internal_path=key,
    )
    await out.write(..., data)
    src = await ba.open_source(
        tmp_path / name, key, format=None if fmt != "precomputed" else "precomputed"
    )
    np.testing.assert_array_equal(await src.read(), data)
    assert loop_thread_io == []


async def test_errors_listing_a_container_list_it_off_the_loop(tmp_path, loop_thread_io):
    await ba.create_source(
        tmp_path / "g.zarr", shape=(4,), dtype="uint8", chunks=(2,), internal_path="x/y"
    )
    with pytest.raises(ba.InternalPathNotFoundError, match="x/y"):
        await ba.open_source(tmp_path / "g.zarr")
    assert loop_thread_io == []


async def test_the_spy_sees_io_on_the_loop(tmp_path, loop_thread_io):
    os.path.exists(tmp_path)
    assert loop_thread_io  # the fixture would catch a blocking call


def test_a_format_library_first_imported_by_open_is_imported_off_the_event_loop(tmp_path):
    """A backend's library is imported on first use; importing nibabel takes ~50 ms, a stall
    of the event loop if it ran there. A fresh interpreter records which thread imports it."""
    import subprocess
    import sys

    nib = pytest.importorskip("nibabel")
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4)), path)
    script = f"""
import asyncio, sys, threading
threads = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "nibabel":
            threads.append(threading.current_thread() is threading.main_thread())
        return None
sys.meta_path.insert(0, Spy())
import bioimage_async as ba
assert "nibabel" not in sys.modules
src = asyncio.run(ba.open_source({str(path)!r}))
print(src.shape, threads)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["(4,", "3,", "2)", "[False]"], done.stdout  # zyx
