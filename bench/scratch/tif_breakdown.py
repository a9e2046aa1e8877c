import os, time, sys, shutil, numpy as np, tifffile, tensorstore as ts
sys.path.insert(0, "/work/main/bench"); import methods
D = "/tmp/bioimage-async-bench/full"; OUT = "/tmp/tif-bd.zarr"
def timed(label, fn):
    c0 = os.times(); t = time.perf_counter(); fn(); w = time.perf_counter() - t; c1 = os.times()
    print(f"{label:55s} wall {w:.2f} user {c1.user-c0.user:.2f} sys {c1.system-c0.system:.2f}", flush=True)
mm = tifffile.memmap(D + "/input.tif", mode="r")
def copies():
    for z in range(0, 512, 64): a = np.array(mm[z:z+64])
timed("np.array(memmap) 8 x 64 MiB (fresh buffers)", copies)
buf = np.empty((64, 1024, 1024), np.uint8)
def copies_reuse():
    for z in range(0, 512, 64): np.copyto(buf, mm[z:z+64])
timed("np.copyto(reused buffer, memmap) 8 x 64 MiB", copies_reuse)
ctx = ts.Context({"file_io_sync": False, "cache_pool": {"total_bytes_limit": 32 << 20}})
def open_out():
    shutil.rmtree(OUT, ignore_errors=True)
    return ts.open(methods.ts_spec(OUT, (512, 1024, 1024)), create=True, context=ctx).result()
dst = open_out()
def write_reused():
    fs = [dst[z:z+64].write(buf) for z in range(0, 512, 64)]
    for f in fs: f.result()
timed("ts write same 64 MiB array 8x (all at once)", write_reused)
dst = open_out()
def write_views():
    fs = [dst[z:z+64].write(mm[z:z+64]) for z in range(0, 512, 64)]
    for f in fs: f.result()
timed("ts write memmap views 8 x 64 MiB", write_views)
dst = open_out()
def write_small_views():
    fs = []
    for z in range(0, 512, 64):
        for y in range(0, 1024, 256):
            fs.append(dst[z:z+64, y:y+256].write(mm[z:z+64, y:y+256]))
    for f in fs: f.result()
timed("ts write memmap views 32 x 16 MiB", write_small_views)
src = ts.open(methods.ts_spec(D + "/input.zarr"), context=ctx).result()
dst = open_out()
timed("ts->ts whole copy (decode+encode)", lambda: dst.write(src).result())
timed("ts read whole (decode only)", lambda: src.read().result())
shutil.rmtree(OUT, ignore_errors=True)
