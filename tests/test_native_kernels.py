"""`pip install` builds the compiled kernels where a C compiler is: a silent fallback to their
numpy twins would cost ~2x in downsample and pyramid."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from bioimage_async.kernels import reductions, resample_planes


def test_the_compiled_kernels_are_built_where_a_c_compiler_is():
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here")
    if os.environ.get("BIOIMAGE_ASYNC_NO_NATIVE", "") not in ("", "0"):
        pytest.skip("switched off by BIOIMAGE_ASYNC_NO_NATIVE")
    built = {"_smooth": resample_planes._NATIVE, "_mode": reductions._NATIVE}
    missing = [name for name, library in built.items() if library is None]
    assert not missing, f"{missing} not built: reinstall with `pip install -e .`"


def test_the_mode_kernel_reads_views_in_place_with_any_strides(monkeypatch):
    """Flipped, transposed and stepped views give the mode of the view, not of its base."""
    if reductions._NATIVE is None:
        pytest.skip("not built")
    rng = np.random.default_rng(1)
    base = rng.integers(0, 3, size=(9, 10, 11)).astype(np.uint64) + 2**60
    compiled = reductions._NATIVE
    for view in [base[::-1], base.transpose(2, 0, 1), base[::2, 1::3, ::-2], base[4]]:
        monkeypatch.setattr(reductions, "_NATIVE", compiled)
        got = reductions._native_mode(view, (2,) * view.ndim, tuple(-(-n // 2) for n in view.shape))
        monkeypatch.setattr(reductions, "_NATIVE", None)  # the numpy twin
        expected = reductions.reduce_windows(np.ascontiguousarray(view), (2,) * view.ndim, "mode")
        assert got is not None and got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("name", ["_smooth", "_mode"])
def test_the_c_sources_compile_without_a_warning(name, tmp_path):
    """setup.py builds them as optional extensions, so a compile error would only show as a
    slower numpy twin (or a stale .so in a developer's tree): compile them here, strictly."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler here")
    source = Path(reductions.__file__).parent / f"{name}.c"
    include = sysconfig.get_paths()["include"]
    command = [compiler, "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", f"-I{include}"]
    result = subprocess.run(
        [*command, str(source), "-o", str(tmp_path / f"{name}.so")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
