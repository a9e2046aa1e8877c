import sys, time, shutil, os
sys.path.insert(0, "/work/main/bench")
import methods, bioimage_py as bp
D="/tmp/bioimage-async-bench/full"
for bs in [(64,1024,1024),(64,256,256),(128,512,512),(64,128,128)]:
    out="/tmp/bp-tif.zarr"; shutil.rmtree(out, ignore_errors=True)
    z = methods.zarr_output(out, (512,1024,1024))
    t=time.perf_counter(); c=os.times()
    bp.copy(bp.open_source(D+"/input.tif"), z, block_shape=bs, num_workers=2)
    w=time.perf_counter()-t; c2=os.times()
    print(bs, f"wall {w:.2f} cpu {c2.user+c2.system-c.user-c.system:.2f}", flush=True)
shutil.rmtree("/tmp/bp-tif.zarr", ignore_errors=True)
