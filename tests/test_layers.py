"""No import points up the layers of DESIGN.md (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bioimage_async"

#: Bottom to top. Modules outside these folders are the foundation (errors, context, the
#: background loop, the version), importable from every layer, or the package root (top).
LAYERS = ["kernels", "sources", "blocking", "pipeline", "runners", "ops", "sync", "cli"]
FOUNDATION = {"errors", "context", "_loop", "_version", "_registry"}


def layer_of(module: str) -> int | None:
    """The layer index of a dotted module name inside the package (None: foundation)."""
    parts = module.split(".")
    if parts[0] != "bioimage_async":
        return None
    if len(parts) == 1:
        return LAYERS.index("cli")  # the public API, for the CLI only
    head = parts[1]
    if head in FOUNDATION:
        return None
    return LAYERS.index(head) if head in LAYERS else len(LAYERS)


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None:  # "from . import x": each name is a module
                found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, target))
    return found


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = layer_of(module_name(path))
        if own is None:
            continue
        for line, target in imported_modules(path):
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not upward, "imports pointing up the layers:\n" + "\n".join(upward)


def test_the_foundation_imports_no_layer():
    for name in FOUNDATION:
        path = PACKAGE / f"{name}.py"
        for line, target in imported_modules(path):
            assert layer_of(target) is None, f"{path.name}:{line} imports {target}"


def test_sources_never_call_the_sync_machinery_except_the_blocking_conveniences():
    """Only Source.__getitem__/__setitem__ (DESIGN's blocking conveniences) may run a loop."""
    users = [
        str(path.relative_to(PACKAGE))
        for path in (PACKAGE / "sources").rglob("*.py")
        if any(target == "bioimage_async._loop" for _, target in imported_modules(path))
    ]
    assert users == ["sources/base.py"], users


def test_the_checker_sees_an_upward_import(tmp_path):
    """The walk resolves relative imports, also inside functions (so the tests above can fail)."""
    fake = PACKAGE / "sources" / "wrappers.py"
    tree = imported_modules(fake)
    assert all(isinstance(line, int) for line, _ in tree)
    assert layer_of("bioimage_async.ops.copy") > layer_of("bioimage_async.sources.base")
    source = "def f():\n    from ..ops.resample import X\n"
    probe = PACKAGE / "sources" / "_layer_probe_tmp.py"
    probe.write_text(source)
    try:
        assert (2, "bioimage_async.ops.resample") in imported_modules(probe)
    finally:
        probe.unlink()
