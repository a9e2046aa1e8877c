import asyncio, sys, time, os, shutil
import bioimage_async as ba
async def main():
    src = await ba.open_source("/tmp/bioimage-async-bench/full/input.tif")
    shutil.rmtree("/tmp/ba-tif.zarr", ignore_errors=True)
    out = await ba.create_source("/tmp/ba-tif.zarr", shape=src.shape, dtype="uint8", chunks=(64,64,64))
    st = ba.RunStats(); c0 = os.times(); t = time.perf_counter()
    await ba.copy(src, out, num_workers=2, stats=st)
    w = time.perf_counter() - t; c1 = os.times()
    print(f"wall {w:.2f} user {c1.user-c0.user:.2f} sys {c1.system-c0.system:.2f}", {k: v for k, v in st.as_dict().items() if k in ("blocks_total","read_s","write_s","max_in_flight")})
asyncio.run(main())
shutil.rmtree("/tmp/ba-tif.zarr", ignore_errors=True)
