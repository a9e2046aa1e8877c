"""Every kernel test runs twice: on the compiled kernels (``_smooth.c``, ``_mode.c``) where they
were built, and on their numpy twins, which must give the same results."""

from __future__ import annotations

import pytest

from bioimage_async.kernels import reductions, resample_planes

COMPILED = {"smooth": resample_planes._NATIVE, "mode": reductions._NATIVE}


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "compiled":
        if None in COMPILED.values():
            pytest.skip("the compiled kernels were not built (no C compiler at install time)")
    else:
        monkeypatch.setattr(resample_planes, "_NATIVE", None)
        monkeypatch.setattr(reductions, "_NATIVE", None)
    return str(request.param)
