import asyncio, time, os, sys, math, json, shutil
sys.path.insert(0, "/work/main/bench"); sys.path.insert(0, "/work/main/bench/scratch")
import methods, proto, bioimage_async as ba
cache = int(sys.argv[1]) if len(sys.argv) > 1 else 256 << 20
opts = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
async def main():
    ba.configure(cache_bytes=cache)
    src = await ba.open_source("/tmp/bioimage-async-bench/full/input.zarr")
    out = await ba.create_source("/tmp/aa-proto.zarr", shape=tuple(math.ceil(n/2) for n in src.shape), dtype="uint8", chunks=(64,64,64))
    stats = ba.RunStats(); c0 = os.times(); t = time.perf_counter()
    await proto._aa_threads(ba, src, out, {}, stats, opts)
    w = time.perf_counter() - t; c1 = os.times()
    print(f"cache {cache>>20} {opts}: wall {w:.2f} cpu {c1.user+c1.system-c0.user-c0.system:.2f} (user {c1.user-c0.user:.2f} sys {c1.system-c0.system:.2f})", {k: round(v, 2) if isinstance(v, float) else v for k, v in stats.as_dict().items() if k in ("blocks_total", "read_s", "compute_s", "write_s", "wall_s", "max_in_flight")})
shutil.rmtree("/tmp/aa-proto.zarr", ignore_errors=True)
asyncio.run(main())
shutil.rmtree("/tmp/aa-proto.zarr", ignore_errors=True)
