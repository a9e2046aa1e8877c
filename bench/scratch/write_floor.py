import os, time, shutil, numpy as np, tensorstore as ts, tifffile, numcodecs
D="/tmp/bioimage-async-bench/full"
def timed(label, fn):
    c0 = os.times(); t = time.perf_counter(); fn(); w = time.perf_counter() - t; c1 = os.times()
    print(f"{label:60s} wall {w:.2f}  cpu {c1.user+c1.system-c0.user-c0.system:.2f} (sys {c1.system-c0.system:.2f})", flush=True)
data = tifffile.memmap(D + "/input.tif", mode="r"); arr = np.array(data)
comp = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1}
def spec(kv, compressor=comp):
    return {"driver": "zarr", "kvstore": kv, "metadata": {"shape": [512,1024,1024], "chunks": [64,64,64], "dtype": "|u1", "compressor": compressor}}
ctx = ts.Context({"file_io_sync": False})
def to_mem(compressor=comp):
    s = ts.open(spec({"driver": "memory"}, compressor), create=True, context=ts.Context({"file_io_sync": False})).result(); s.write(arr).result()
timed("numpy -> zarr in memory kvstore, no compression", lambda: to_mem(None))
timed("numpy -> zarr in memory kvstore, blosc-lz4", to_mem)
def to_file(compressor=comp):
    shutil.rmtree("/tmp/wf.zarr", ignore_errors=True)
    s = ts.open(spec({"driver": "file", "path": "/tmp/wf.zarr/"}, compressor), create=True, context=ctx).result(); s.write(arr).result()
timed("numpy -> zarr files, no compression", lambda: to_file(None))
timed("numpy -> zarr files, blosc-lz4", to_file)
b = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1); numcodecs.blosc.set_nthreads(1)
def enc():
    for z in range(0,512,64):
        for y in range(0,1024,64):
            for x in range(0,1024,64): b.encode(np.ascontiguousarray(arr[z:z+64,y:y+64,x:x+64]))
timed("numcodecs blosc-lz4 encode of 2048 chunks (1 thread, incl. gather)", enc)
def files():
    os.makedirs("/tmp/wf2", exist_ok=True); blob = os.urandom(180000)
    for i in range(2048):
        with open(f"/tmp/wf2/{i}", "wb") as f: f.write(blob)
timed("write 2048 files of 180 KB (1 thread)", files)
shutil.rmtree("/tmp/wf.zarr", ignore_errors=True); shutil.rmtree("/tmp/wf2", ignore_errors=True)
