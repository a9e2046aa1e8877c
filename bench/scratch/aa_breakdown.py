import asyncio, time, os, sys, math, json
sys.path.insert(0, "/work/main/bench"); sys.path.insert(0, "/work/main/bench/scratch")
import bioimage_async as ba, numpy as np
from bioimage_async.ops.resample import ResampleKernel
from bioimage_async.blocking.grid import BlockGrid
D = "/tmp/bioimage-async-bench/full"
cache = int(sys.argv[1]); bs = tuple(int(x) for x in sys.argv[2].split(",")); inflight = int(sys.argv[3])
async def main():
    ba.configure(cache_bytes=cache)
    src = await ba.open_source(D + "/input.zarr")
    target = tuple(math.ceil(n/2) for n in src.shape)
    k = ResampleKernel(src.shape, target, 1, True, "|u1"); g = BlockGrid(target, bs)
    ids = iter(range(g.num_blocks)); nbytes = 0
    async def worker():
        nonlocal nbytes
        for i in ids:
            d = await src.read_roi(k.input_roi(g.block(i))); nbytes += d.nbytes
    c0 = os.times(); t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    w = time.perf_counter() - t; c1 = os.times()
    print(f"read-only cache={cache>>20}MiB block={bs} in_flight={inflight}: {g.num_blocks} blocks, {nbytes/1e6:.0f} MB, wall {w:.2f} cpu {c1.user+c1.system-c0.user-c0.system:.2f}")
asyncio.run(main())
