"""Check one method's output against the input, so a fast-but-wrong method cannot win silently.

``python bench/verify.py '{"task": ..., "zarr": ..., "out": ..., "shape": [...]}'`` prints one
``VERIFY_RESULT {json}`` line. Runs in its own process (after the timed run, never timed):

- copy, tif: the whole output equals the input (slab by slab), metadata is uint8 / 64^3 chunks;
- ds0: the whole output equals ``input[::2, ::2, ::2]``;
- ds_aa, methods with the peer's filter (bioimage_async, bioimage-py): random blocks (and the
  two corner blocks, to cover the mirrored borders) against ``gaussian_filter(sigma=0.5,
  mode='mirror', truncate=4)`` sampled at even indices (order 1 at integer positions is exact
  sampling), tolerance < 1 grey level (bioimage-py truncates, bioimage_async rounds);
- ds_aa box-filter methods (tensorstore mean, dask coarsen): the whole output against the 2x2x2
  mean, tolerance 0.5 (rounded) + float error.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import tensorstore as ts

SLAB = 64
BOX_METHODS = ("ts_mean", "dask_coarsen")


def _open(path: str) -> ts.TensorStore:
    spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": path + "/"}}
    return ts.open(spec, read=True).result()


def _metadata(path: str, shape: tuple[int, ...]) -> list[str]:
    problems = []
    meta = json.loads((Path(path) / ".zarray").read_text())
    if tuple(meta["shape"]) != tuple(shape):
        problems.append(f"shape {meta['shape']} != {list(shape)}")
    want = tuple(min(64, n) for n in shape)
    if tuple(meta["chunks"]) != want:
        problems.append(f"chunks {meta['chunks']} != {list(want)}")
    if np.dtype(meta["dtype"]) != np.uint8:
        problems.append(f"dtype {meta['dtype']} != uint8")
    return problems


def verify(cfg: dict) -> dict:
    task, name = cfg["task"], cfg["method"]
    shape = tuple(cfg["shape"])
    target = shape if task in ("copy", "tif") else tuple(math.ceil(n / 2) for n in shape)
    problems = _metadata(cfg["out"], target)
    src = _open(cfg["zarr"])
    out = _open(cfg["out"])
    info: dict = {}
    if task in ("copy", "tif"):
        for z in range(0, shape[0], SLAB):
            a = src[z : z + SLAB].read().result()
            b = out[z : z + SLAB].read().result()
            if not np.array_equal(a, b):
                problems.append(f"planes {z}..{z + SLAB}: {int((a != b).sum())} voxels differ")
                break
        info["compared"] = "whole volume, exact"
    elif task == "ds0":
        for z in range(0, target[0], SLAB // 2):
            a = src[2 * z : 2 * (z + SLAB // 2)].read().result()[::2, ::2, ::2]
            b = out[z : z + a.shape[0]].read().result()
            if not np.array_equal(a, b):
                problems.append(f"out planes {z}..: {int((a != b).sum())} voxels differ")
                break
        info["compared"] = "whole volume vs input[::2, ::2, ::2], exact"
    elif task == "ds_aa" and name in BOX_METHODS:
        worst = 0.0
        for z in range(0, target[0], SLAB // 2):
            a = src[2 * z : 2 * (z + SLAB // 2)].read().result().astype(np.float64)
            n = a.shape[0] // 2
            ref = a.reshape(n, 2, target[1], 2, target[2], 2).mean(axis=(1, 3, 5))
            b = out[z : z + n].read().result().astype(np.float64)
            worst = max(worst, float(np.abs(b - ref).max()))
        info["compared"] = "whole volume vs 2x2x2 mean"
        info["max_abs_diff"] = worst
        if worst > 0.5 + 1e-6:
            problems.append(f"max |out - box mean| = {worst:.3f} > 0.5")
    elif task == "ds_aa":
        from scipy.ndimage import gaussian_filter

        rng = np.random.default_rng(7)
        edge = 32
        starts = [(0, 0, 0), tuple(max(0, t - edge) for t in target)]
        starts += [tuple(int(rng.integers(0, max(1, t - edge))) for t in target) for _ in range(6)]
        worst, exact, total = 0.0, 0, 0
        halo = 4  # > the Gaussian's radius (2 for sigma 0.5, truncate 4)
        for start in starts:
            o_roi = tuple(slice(s, min(s + edge, t)) for s, t in zip(start, target))
            i_roi = tuple(
                slice(max(0, 2 * r.start - halo), min(n, 2 * r.stop + halo))
                for r, n in zip(o_roi, shape)
            )
            a = src[i_roi].read().result().astype(np.float64)
            smooth = gaussian_filter(a, 0.5, mode="mirror", truncate=4.0)
            sel = tuple(
                slice(2 * r.start - ir.start, 2 * r.stop - ir.start, 2) for r, ir in zip(o_roi, i_roi)
            )
            ref = smooth[sel]
            b = out[o_roi].read().result().astype(np.float64)
            worst = max(worst, float(np.abs(b - ref).max()))
            exact += int((b == np.rint(ref)).sum())
            total += b.size
        info["compared"] = f"{len(starts)} blocks of {edge}^3 vs gaussian(sigma=0.5)+sampling"
        info["max_abs_diff"] = worst
        info["fraction_equal_to_rounded_ref"] = exact / total
        if worst >= 1.0 + 1e-6:
            problems.append(f"max |out - reference| = {worst:.3f} >= 1")
    else:
        problems.append(f"no verification for task {task}")
    return {"ok": not problems, "problems": problems, **info}


if __name__ == "__main__":
    result = verify(json.loads(sys.argv[1]))
    sys.stdout.write("VERIFY_RESULT " + json.dumps(result) + "\n")
