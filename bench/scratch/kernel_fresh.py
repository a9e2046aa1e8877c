import time, numpy as np, math, sys, os
from bioimage_async.ops.resample import ResampleKernel
from bioimage_async.blocking.grid import BlockGrid
import tensorstore as ts
src = ts.open({"driver":"zarr","kvstore":{"driver":"file","path":"/tmp/bioimage-async-bench/small/input.zarr/"}}).result()
shape = tuple(src.shape); target = tuple(math.ceil(n/2) for n in shape)
bs = tuple(int(x) for x in sys.argv[1].split(","))
k = ResampleKernel(shape, target, 1, True, "|u1")
g = BlockGrid(target, bs)
tot=0; cpu=0
for i in range(min(6, g.num_blocks)):
    b = g.block(i); data = src[k.input_roi(b)].read().result()
    t=time.perf_counter(); c=time.process_time(); r = k.compute(b, data); w=time.perf_counter()-t; cc=time.process_time()-c
    print(f"block {i} in {data.shape} wall {w:.3f} cpu {cc:.3f}")
