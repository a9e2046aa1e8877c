"""A notebook-style session with the blocking API: ``ba.sync.*``, ``src[...]``, map_blocks, iter_blocks.

Written as cells (``# %%``): open it in Jupyter / VS Code / Spyder and run cell by cell, or run
the whole file as a script. ``ba.sync`` runs every call on one background event-loop thread, so
the same code works in a plain script and in Jupyter, where an event loop is already running;
Ctrl-C (the kernel's "interrupt") cancels a running block-wise call and keeps finished blocks.

Run it::

    python examples/notebook_session.py                    # in a fresh temporary folder
    python examples/notebook_session.py --workdir session --shape 64,256,256 --workers 2

Every cell prints what it did; the last one prints a summary line ``SUMMARY {...}`` (JSON).
"""

# %% Imports and options (argparse also works in Jupyter: unknown kernel arguments are ignored)
import argparse
import json
import os
import tempfile

import numpy as np

import bioimage_async as ba

parser = argparse.ArgumentParser(description="a notebook-style bioimage_async session")
parser.add_argument(
    "--workdir", default=None, help="folder for the arrays (default: a new temp dir)"
)
parser.add_argument("--shape", default="64,256,256", help="shape z,y,x of the sample volume")
parser.add_argument("--chunks", default="32,64,64", help="zarr chunk shape")
parser.add_argument("--workers", type=int, default=2, help="worker processes for map_blocks")
parser.add_argument("--threshold", type=int, default=128, help="captured by the block function")
args, _unknown = parser.parse_known_args()  # Jupyter passes '-f kernel.json'

shape = tuple(int(n) for n in args.shape.split(","))
chunks = tuple(int(n) for n in args.chunks.split(","))
workdir = args.workdir or tempfile.mkdtemp(prefix="bioimage-async-notebook-")
os.makedirs(workdir, exist_ok=True)
print(f"working in {workdir}")

# %% Create a zarr array and fill it with blocking indexing: src[...] = value
rng = np.random.default_rng(0)
volume = rng.integers(0, 256, size=shape, dtype=np.uint8)
raw = ba.sync.create_source(
    os.path.join(workdir, "raw.zarr"), shape=shape, dtype="uint8", chunks=chunks, exist_ok=True
)
raw[...] = volume  # blocking write, numpy basic indexing
print(raw.shape, raw.dtype, "chunks", raw.chunks)

# %% Reopen it like a user would, and index it like a numpy array (reads only what is asked)
raw = ba.sync.open_source(os.path.join(workdir, "raw.zarr"))
corner = raw[0, :4, :4]  # ints drop their axis
print("corner of plane 0:\n", corner)
assert np.array_equal(corner, volume[0, :4, :4])
z, y = shape[0], shape[1]
roi = raw.view(np.s_[z // 4 : z // 2, y // 8 : y // 2, :])  # a lazy region of interest
print("view of shape", roi.shape, "mean", float(roi[...].mean()))


# %% map_blocks with a closure: the block function captures `threshold` from the enclosing scope
def make_binarize(threshold: int, foreground: int = 255):
    """A closure: the worker processes get `threshold` and `foreground` with the function."""

    def binarize(block: np.ndarray) -> np.ndarray:
        return np.where(block >= threshold, foreground, 0).astype(np.uint8)

    return binarize  # shipped with cloudpickle (like functions that use notebook variables)


threshold = args.threshold

mask = ba.sync.create_source(
    os.path.join(workdir, "mask.zarr"), shape=shape, dtype="uint8", chunks=chunks, exist_ok=True
)
ba.sync.map_blocks(make_binarize(threshold), raw, mask, num_workers=args.workers, progress=False)
expected_mask = np.where(volume >= threshold, 255, 0).astype(np.uint8)
assert np.array_equal(mask[...], expected_mask)
print(f"mask written: {int((expected_mask > 0).sum())} voxels >= {threshold}")

# %% iter_blocks: stream blocks with bounded read-ahead, e.g. per-block statistics
counts = {}
for block, data in ba.sync.iter_blocks(mask, chunks, prefetch=4):
    counts[block.id] = int((data > 0).sum())
print(
    f"{len(counts)} blocks; busiest block {max(counts, key=counts.get)} "
    f"with {max(counts.values())} foreground voxels"
)
assert sum(counts.values()) == int((expected_mask > 0).sum())

# %% A downsampled overview, returned as a numpy array (no output given: local run)
overview = ba.sync.downsample(raw, 2, order=1, anti_aliasing=True, progress=False)
print("overview", overview.shape, overview.dtype)

# %% Summary (one JSON line, easy to check from a test)
summary = {
    "workdir": workdir,
    "shape": list(raw.shape),
    "chunks": list(raw.chunks),
    "threshold": threshold,
    "foreground": int(sum(counts.values())),
    "blocks": len(counts),
    "overview_shape": list(overview.shape),
}
print("SUMMARY", json.dumps(summary))
