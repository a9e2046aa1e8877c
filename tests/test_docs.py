"""Every Python sample in docs/ and README.md runs, and the docs build with warnings as errors."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "usage.md",
    "formats.md",
    "block-functions.md",
    "pyramids.md",
    "failures.md",
    "install.md",
    "slurm.md",
    "from-bioimage-py.md",
]
API_PAGES = [
    "api-sources.md",
    "api-ops.md",
    "api-execution.md",
    "api-errors.md",
    "api-configuration.md",
]
FENCE = re.compile(r"```python\n(.*?)```", re.S)


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text())


def test_every_page_with_python_samples_is_exercised():
    with_samples = {p.name for p in (ROOT / "docs").glob("*.md") if python_blocks(p)}
    assert with_samples <= set(PAGES), with_samples - set(PAGES)


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [p.name for p in (ROOT / "docs").glob("*.md") if f": {p.name}" not in nav]
    assert not missing, f"pages missing from the nav of mkdocs.yml: {missing}"


def test_api_reference_covers_every_public_name():
    """Each name of ``bioimage_async.__all__`` is documented on one of the API pages."""
    import bioimage_async

    text = "\n".join((ROOT / "docs" / page).read_text() for page in API_PAGES)
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    missing = sorted(set(bioimage_async.__all__) - words - {"__version__"})
    assert not missing, f"public names without an API reference entry: {missing}"


def test_docs_samples_run_in_order(tmp_path):
    """The pages share one namespace and one folder, like a reader following the guide."""
    script = "\n\n".join(block for page in PAGES for block in python_blocks(ROOT / "docs" / page))
    (tmp_path / "samples.py").write_text(script)
    env = dict(os.environ, BIOIMAGE_ASYNC_NO_CONFIG="1")
    result = subprocess.run(
        [sys.executable, "samples.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_readme_tour_runs(tmp_path):
    import numpy as np
    import tifffile

    tifffile.imwrite(
        tmp_path / "stack.tif",
        np.random.default_rng(0).integers(0, 255, (128, 512, 512), dtype=np.uint8),
    )
    blocks = python_blocks(ROOT / "README.md")
    script = "\n\n".join(blocks) + "\n\nimport asyncio\nasyncio.run(main())\n"
    (tmp_path / "tour.py").write_text(script)
    result = subprocess.run(
        [sys.executable, "tour.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
