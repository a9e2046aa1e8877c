import time, numpy as np, math, sys
from bioimage_async.ops.resample import ResampleKernel
from bioimage_async.blocking.grid import BlockGrid
import tensorstore as ts
src = ts.open({"driver":"zarr","kvstore":{"driver":"file","path":"/tmp/bioimage-async-bench/small/input.zarr/"}}).result()
shape = tuple(src.shape); target = tuple(math.ceil(n/2) for n in shape)
bs = tuple(int(x) for x in sys.argv[1].split(",")) if len(sys.argv) > 1 else (64,128,128)
k = ResampleKernel(shape, target, 1, True, "|u1")
g = BlockGrid(target, bs)
b = g.block(min(3, g.num_blocks-1)); roi = k.input_roi(b)
data = src[roi].read().result()
print("block", b.shape, "input", data.shape, data.nbytes/1e6, "MB")
for i in range(3):
    t=time.perf_counter(); cpu=time.process_time(); r = k.compute(b, data); print(f"compute {time.perf_counter()-t:.3f}s cpu {time.process_time()-cpu:.3f}", r.dtype, r.shape)
import cProfile, pstats
cProfile.run("k.compute(b, data)", "/tmp/kprof")
pstats.Stats("/tmp/kprof").sort_stats("cumtime").print_stats(12)
