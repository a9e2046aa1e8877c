import os, time, sys, shutil, json
sys.path.insert(0, "/work/main/bench")
import methods
cfg = {"task": "copy", "method": sys.argv[1], "shape": [512,1024,1024], "zarr": "/tmp/bioimage-async-bench/full/input.zarr", "tif": "/tmp/bioimage-async-bench/full/input.tif", "out": "/tmp/ts-times.zarr"}
run = methods.METHODS[("copy", sys.argv[1])](cfg)
for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 2):
    shutil.rmtree(cfg["out"], ignore_errors=True)
    t0 = os.times(); w = time.perf_counter(); run(); w = time.perf_counter() - w; t1 = os.times()
    print(f"{sys.argv[1]} run {i}: wall {w:.2f} user {t1.user-t0.user:.2f} sys {t1.system-t0.system:.2f}", flush=True)
shutil.rmtree(cfg["out"], ignore_errors=True)
