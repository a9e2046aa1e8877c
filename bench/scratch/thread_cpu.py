"""Per-thread CPU of one bioimage_async op (from /proc/self/task), grouped by thread name."""
import asyncio, os, sys, time, math, shutil, collections
import bioimage_async as ba
TCK = os.sysconf("SC_CLK_TCK")
def threads():
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            comm = open(f"/proc/self/task/{tid}/comm").read().strip()
            f = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
            out[tid] = (comm, int(f[11]) / TCK, int(f[12]) / TCK)
        except OSError: pass
    return out
task = sys.argv[1]; D = "/tmp/bioimage-async-bench/full"
async def main():
    src = await ba.open_source(D + ("/input.tif" if task == "tif" else "/input.zarr"))
    shape = src.shape if task in ("copy", "tif") else tuple(math.ceil(n / 2) for n in src.shape)
    shutil.rmtree("/tmp/tcpu.zarr", ignore_errors=True)
    out = await ba.create_source("/tmp/tcpu.zarr", shape=shape, dtype="uint8", chunks=(64, 64, 64))
    before = threads(); t = time.perf_counter()
    if task in ("copy", "tif"): await ba.copy(src, out, num_workers=2)
    elif task == "ds0": await ba.downsample(src, 2, out, num_workers=2)
    else: await ba.downsample(src, 2, out, order=1, anti_aliasing=True, num_workers=2)
    wall = time.perf_counter() - t; after = threads()
    groups = collections.defaultdict(lambda: [0.0, 0.0, 0])
    for tid, (comm, u, s) in after.items():
        u0, s0 = before.get(tid, (comm, 0.0, 0.0))[1:]
        key = comm.rstrip("0123456789_-")
        g = groups[key]; g[0] += u - u0; g[1] += s - s0; g[2] += 1
    tot = sum(g[0] + g[1] for g in groups.values())
    print(f"{task}: wall {wall:.2f} s, CPU {tot:.2f} s")
    for k, (u, s, n) in sorted(groups.items(), key=lambda kv: -(kv[1][0] + kv[1][1])):
        if u + s > 0.01: print(f"   {k:28s} x{n:<2d} user {u:5.2f}  sys {s:5.2f}")
asyncio.run(main()); shutil.rmtree("/tmp/tcpu.zarr", ignore_errors=True)
