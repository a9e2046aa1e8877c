"""Scratch: run one bioimage_async op in-process with RunStats, heartbeat and stall locations."""
import asyncio, json, sys, time, shutil, os, math, traceback, threading
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bioimage_async as ba
from methods import Heartbeat

size = os.environ.get("SIZE", "small")
task = sys.argv[1]
opts = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
D = f"/tmp/bioimage-async-bench/{size}"
OUT = f"/tmp/probe-{os.getpid()}.zarr"

class StallWatch(Heartbeat):
    """Heartbeat that also dumps the loop thread's stack when it is late by > 40 ms."""
    async def run(self):
        loop_thread = threading.get_ident()
        stop = threading.Event(); self.dumps = []
        last = [time.perf_counter()]
        def watch():
            while not stop.is_set():
                time.sleep(0.01)
                if time.perf_counter() - last[0] > 0.04:
                    frame = sys._current_frames().get(loop_thread)
                    if frame is not None:
                        self.dumps.append("".join(traceback.format_stack(frame)[-8:]))
                        time.sleep(0.05)
        t = threading.Thread(target=watch, daemon=True); t.start()
        try:
            while True:
                s = time.perf_counter(); last[0] = s
                await asyncio.sleep(self.period)
                self.stalls.append(time.perf_counter() - s - self.period)
        finally:
            stop.set()

async def main():
    if "configure" in opts: ba.configure(**opts.pop("configure"))
    beat = StallWatch(); bt = asyncio.create_task(beat.run())
    src = await ba.open_source(D + ("/input.tif" if task == "tif" else "/input.zarr"))
    shape = src.shape if task in ("copy", "tif") else tuple(math.ceil(n/2) for n in src.shape)
    out = await ba.create_source(OUT, shape=shape, dtype="uint8", chunks=(64,64,64))
    stats = ba.RunStats(); kw = {"num_workers": opts.pop("num_workers", 2), "stats": stats}
    rc = {k: opts.pop(k) for k in ("in_flight", "memory_budget") if k in opts}
    if rc: kw["job_config"] = ba.RunnerConfig(**rc)
    if "block_shape" in opts: kw["block_shape"] = tuple(opts.pop("block_shape"))
    cpu0 = os.times(); t = time.perf_counter()
    if task in ("copy", "tif"): await ba.copy(src, out, **kw)
    elif task == "ds0": await ba.downsample(src, 2, out, **kw)
    else: await ba.downsample(src, 2, out, order=1, anti_aliasing=True, **kw)
    wall = time.perf_counter() - t; c = os.times()
    cpu = sum(c[:4]) - sum(cpu0[:4])
    bt.cancel()
    print(f"{task} {opts} wall {wall:.2f}s cores {cpu/wall:.2f}", json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in stats.as_dict().items()}))
    print(beat.summary())
    if os.environ.get("DUMPS"):
        for d in beat.dumps[:int(os.environ["DUMPS"])]: print("----- stall\n" + d)
try:
    asyncio.run(main())
finally:
    shutil.rmtree(OUT, ignore_errors=True)
