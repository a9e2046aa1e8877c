"""The event loop stays responsive while compressed TIFF, TIFF slices and HDF5 convert.

Each conversion decodes blocks that cost more than the lag bound on one core (checked first, on a
fresh source, in a worker thread): had a block been decoded on the event loop, the heartbeat
would be late by that much. The bound is checked on the heartbeat's lateness minus the time its
thread waited for a free core (tests/loop_lag.py), as in test_loop_responsiveness.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

import bioimage_async as ba

from ..loop_lag import Heartbeat

MAX_LAG = 0.050
SHAPE = (48, 512, 1024)  # 48 MiB of uint16, converted as one block that the read splits over
BLOCK = SHAPE  # the pool's threads (libdeflate decodes half of it in under 50 ms)


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    rng = np.random.default_rng(7)
    walk = np.cumsum(rng.integers(-1, 2, (8, *SHAPE[1:])), axis=2) + 30000
    return np.concatenate([walk.astype(np.uint16)] * (SHAPE[0] // 8))  # compresses ~5x


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, volume: np.ndarray) -> dict[str, tuple]:
    folder = tmp_path_factory.mktemp("lag")
    kwargs = {"compression": "zlib", "compressionargs": {"level": 1}, "predictor": True}
    tifffile.imwrite(folder / "strips.tif", volume, rowsperstrip=128, **kwargs)
    slices = folder / "slices"
    slices.mkdir()
    for z, plane in enumerate(volume):
        tifffile.imwrite(slices / f"z{z:03d}.tif", plane, rowsperstrip=128, **kwargs)
    with h5py.File(folder / "gzip.h5", "w") as f:
        f.create_dataset(
            "d",
            data=volume,
            chunks=(16, 128, 256),
            compression="gzip",
            compression_opts=1,
            shuffle=True,
        )
    return {
        "tiff": (folder / "strips.tif", None),
        "slices": (slices, None),
        "hdf5": (folder / "gzip.h5", "d"),
    }


@pytest.mark.parametrize("name", ["tiff", "slices", "hdf5"])
def test_compressed_conversions_do_not_block_the_event_loop(
    inputs: dict[str, tuple], volume: np.ndarray, tmp_path: Path, name: str
) -> None:
    path, key = inputs[name]
    block = tuple(slice(0, n) for n in BLOCK)

    async def main() -> tuple[float, Heartbeat, np.ndarray, int]:
        probe = await ba.open_source(path, key)
        started = time.perf_counter()
        await asyncio.to_thread(probe.read_blocking, block)  # one block, on one thread
        one_block = time.perf_counter() - started

        src = await ba.open_source(path, key)
        out = await ba.create_source(
            tmp_path / "out.zarr", shape=SHAPE, dtype=np.uint16, chunks=(48, 128, 128)
        )
        async with Heartbeat() as beat:
            await ba.copy(src, out, block_shape=BLOCK, num_workers=2)
        column = await out.read((slice(None), slice(None), 7))
        return one_block, beat, column, src.decode_count

    one_block, beat, column, decoded = run(main())
    assert one_block > MAX_LAG, (
        f"one block decodes in {one_block * 1e3:.0f} ms here, too fast for this test to notice a "
        "block decoded on the event loop; make SHAPE larger"
    )
    np.testing.assert_array_equal(column, volume[:, :, 7])
    assert decoded > 0  # the conversion decoded segments/chunks, not a fallback
    assert beat.worst < MAX_LAG, (
        f"the event loop was blocked for {beat.worst * 1e3:.1f} ms (limit "
        f"{MAX_LAG * 1e3:.0f} ms) over {len(beat.blocked)} heartbeats; worst lateness "
        f"including waits for a core: {beat.worst_raw * 1e3:.1f} ms"
    )
    assert len(beat.blocked) >= 10, f"the heartbeat only ran {len(beat.blocked)} times"
