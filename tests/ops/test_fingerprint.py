"""Function fingerprints: equal for the same computation (in any process), else different."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np

from bioimage_async.ops.fingerprint import function_fingerprint


def scale(factor: float):
    def fn(block: np.ndarray) -> np.ndarray:
        return block * factor

    return fn


def add(block: np.ndarray, value: int = 1) -> np.ndarray:
    return block + value


class Threshold:
    def __init__(self, level: float) -> None:
        self.level = level

    def __call__(self, block: np.ndarray) -> np.ndarray:
        return block > self.level


def test_closures_partials_and_callables_differ_by_their_values():
    assert function_fingerprint(scale(2)) == function_fingerprint(scale(2))
    assert function_fingerprint(scale(2)) != function_fingerprint(scale(3))
    assert function_fingerprint(functools.partial(add, value=1)) != function_fingerprint(
        functools.partial(add, value=2)
    )
    assert function_fingerprint(Threshold(0.5)) == function_fingerprint(Threshold(0.5))
    assert function_fingerprint(Threshold(0.5)) != function_fingerprint(Threshold(0.7))
    big = np.zeros(1000)
    other = big.copy()
    other[999] = 1
    assert function_fingerprint(scale(big)) != function_fingerprint(scale(other))


def test_code_changes_count_and_line_numbers_do_not():
    def compile_fn(source: str):
        namespace: dict = {}
        exec(compile(source, "user.py", "exec"), namespace)
        return namespace["fn"]

    body = "def fn(block):\n    return block + 1\n"
    assert function_fingerprint(compile_fn(body)) == function_fingerprint(
        compile_fn("\n\n\n" + body)
    )
    assert function_fingerprint(compile_fn(body)) != function_fingerprint(
        compile_fn(body.replace("+ 1", "+ 2"))
    )
    assert function_fingerprint(compile_fn(body)) != function_fingerprint(
        compile_fn(body.replace("+", "-"))
    )


def test_the_fingerprint_is_the_same_in_a_fresh_process():
    """A resume usually runs in another process (another hash seed) than the first attempt."""
    code = (
        "from tests.ops.test_fingerprint import scale, Threshold;"
        "from bioimage_async.ops.fingerprint import function_fingerprint as f;"
        "print(f(scale(2)), f(Threshold(0.5)))"
    )
    here = f"{function_fingerprint(scale(2))} {function_fingerprint(Threshold(0.5))}"
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        )
        assert done.stdout.split() == here.split()
