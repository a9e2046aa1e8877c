"""A griffe extension for the API reference: load sub-packages that have no ``__init__.py``.

bioimage_async.blocking, .pipeline and .runners are folders without ``__init__.py``; Python imports
them (implicit namespace packages), but griffe skips such folders inside a regular package, so
names re-exported from them (``ba.ExecOptions``, ``ba.RunStats``, ``ba.SlurmConfig``, ...) would not
resolve. This extension visits their modules statically and attaches them to the package. It does
nothing for a folder that has an ``__init__.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import griffe


class NamespaceSubpackages(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        filepath = pkg.filepath
        if not isinstance(filepath, Path) or filepath.name != "__init__.py":
            return
        self._add_folders(pkg, filepath.parent, loader)

    def _add_folders(
        self, module: griffe.Module, folder: Path, loader: griffe.GriffeLoader
    ) -> None:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            files = sorted(sub.glob("*.py"))
            if not files or (sub / "__init__.py").exists() or sub.name in module.members:
                continue
            space = griffe.Module(
                sub.name,
                filepath=[sub],
                parent=module,
                lines_collection=loader.lines_collection,
                modules_collection=loader.modules_collection,
            )
            module.set_member(sub.name, space)
            for file in files:
                code = file.read_text(encoding="utf-8")
                loader.lines_collection[file] = code.splitlines()
                child = griffe.visit(
                    file.stem,
                    filepath=file,
                    code=code,
                    extensions=loader.extensions,
                    parent=space,
                    docstring_parser=loader.docstring_parser,
                    docstring_options=loader.docstring_options,
                    lines_collection=loader.lines_collection,
                    modules_collection=loader.modules_collection,
                )
                space.set_member(file.stem, child)
