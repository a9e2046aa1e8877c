"""The error tree holds every error the library raises on purpose."""

import ast
from pathlib import Path

import bioimage_async as ba
from bioimage_async import errors

PACKAGE = Path(ba.__file__).parent
BUILTIN = {
    "ValueError",
    "TypeError",
    "RuntimeError",
    "KeyError",
    "IndexError",
    "OSError",
    "FileNotFoundError",
    "TimeoutError",
    "ConnectionError",
    "PermissionError",
    "FileExistsError",
    "ImportError",
    "Exception",
}


def test_no_module_raises_a_bare_builtin_error():
    """Each `raise X(...)` names a class of errors.py (a subclass may also be a builtin)."""
    bare = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if name in BUILTIN:
                    bare.append(f"{path.relative_to(PACKAGE)}:{node.lineno} raises {name}")
    assert not bare, "\n".join(bare)


def test_every_error_class_is_in_the_tree_and_exported():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    for cls in classes:
        assert issubclass(cls, ba.BioimageAsyncError), cls
        assert cls.__name__ in errors.__doc__, f"{cls.__name__} is missing from the drawn tree"
        assert getattr(ba, cls.__name__, None) is cls, cls


def test_argument_errors_are_caught_as_value_or_type_errors():
    error = ba.InvalidArgumentError("x")
    assert isinstance(error, ValueError) and isinstance(error, TypeError)
