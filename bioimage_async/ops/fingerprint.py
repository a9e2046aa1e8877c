"""A digest of what a user's block function computes, for resumes.

A resumed run keeps the blocks its first attempt wrote, so it must run the same function: two
closures from one factory (``threshold(0.5)`` and ``threshold(0.7)``) share a ``__qualname__``,
and a function edited between the attempts keeps its name, yet either would leave an output
made of two different computations. The digest covers the code (bytecode, constants and names,
nested functions included, not line numbers), default arguments, closure values, the wrapped
function and arguments of a ``functools.partial``, and a callable object's state; it does not
cover module globals the function reads.
"""

from __future__ import annotations

import functools
import hashlib
import types
from typing import Any

import cloudpickle


def function_fingerprint(fn: Any) -> str:
    """A hex digest that changes when ``fn``'s code, defaults, closure or bound state do."""
    digest = hashlib.sha256()
    _feed(digest, fn, depth=0)
    return digest.hexdigest()[:32]


def _feed(digest: Any, fn: Any, depth: int) -> None:
    if depth > 8:  # partials of partials of ...: the pickled value below still covers them
        digest.update(_pickled(fn))
        return
    if isinstance(fn, functools.partial):
        digest.update(b"partial")
        _feed(digest, fn.func, depth + 1)
        digest.update(_pickled((fn.args, sorted(fn.keywords.items()))))
        return
    if isinstance(fn, types.MethodType):
        digest.update(b"method")
        _feed(digest, fn.__func__, depth + 1)
        digest.update(_pickled(fn.__self__))
        return
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
    digest.update(name.encode())
    code = getattr(fn, "__code__", None)
    if isinstance(code, types.CodeType):
        _feed_code(digest, code)
        digest.update(_pickled((fn.__defaults__, fn.__kwdefaults__)))
        cells = fn.__closure__ or ()
        digest.update(_pickled([_cell_value(cell) for cell in cells]))
        return
    # a callable object: its class's __call__ and its own state
    call = type(fn).__call__
    if isinstance(call, types.FunctionType):
        _feed_code(digest, call.__code__)
    digest.update(_pickled(fn))


def _feed_code(digest: Any, code: types.CodeType) -> None:
    digest.update(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            _feed_code(digest, constant)
        else:
            digest.update(repr(constant).encode())


def _cell_value(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # a cell not yet filled
        return None


def _pickled(value: Any) -> bytes:
    """The value as bytes: cloudpickle where it can, else its repr (still names the value)."""
    try:
        return bytes(cloudpickle.dumps(value, protocol=5))
    except Exception:  # noqa: BLE001 - any unpicklable value: fall back to its repr
        return repr(value).encode()
