import time, numpy as np, math, sys, os
sys.path.insert(0, "/work/main/bench/scratch")
from bioimage_async.ops.resample import ResampleKernel
from bioimage_async.blocking.grid import BlockGrid
import tensorstore as ts
import fast_resample as fr
src = ts.open({"driver":"zarr","kvstore":{"driver":"file","path":"/tmp/bioimage-async-bench/full/input.zarr/"}}).result()
shape = tuple(src.shape); target = tuple(math.ceil(n/2) for n in shape)
k = ResampleKernel(shape, target, 1, True, "|u1")
g = BlockGrid(target, (128,128,128))
which = sys.argv[1]
datas = [src[k.input_roi(g.block(i))].read().result() for i in range(8)]
from scipy.ndimage import gaussian_filter1d  # import outside the timing
W=C=0
for i, data in enumerate(datas):
    b = g.block(i)
    t=time.perf_counter(); c=time.process_time()
    if which == "current":
        r = k.compute(b, data)
    else:
        r = fr.to_uint8(fr.downsample_aa_block(data, tuple(s.start for s in k.input_roi(b)), b.roi, shape, target))
    w=time.perf_counter()-t; cc=time.process_time()-c; W+=w; C+=cc
    if which != "current" and i < 2:
        ref = k.compute(b, data); assert np.abs(ref.astype(int)-r).max() <= 1, np.abs(ref.astype(int)-r).max()
print(f"{which:8s} {os.environ.get('MALLOC_MMAP_THRESHOLD_','default'):>10s}: mean wall {W/8:.3f} cpu {C/8:.3f} per 262^3 block")
