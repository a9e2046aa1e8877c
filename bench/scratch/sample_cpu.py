import psutil, sys, time, subprocess, os
cmd = sys.argv[1:]
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
ps = psutil.Process(p.pid)
prev = {}
t0 = time.time()
while p.poll() is None:
    time.sleep(1.0)
    try: procs = [ps] + ps.children(recursive=True)
    except psutil.Error: break
    line = []
    for q in procs:
        try:
            t = q.cpu_times(); mem = q.memory_info()
            key = q.pid; cur = (t.user, t.system)
            d = [c - o for c, o in zip(cur, prev.get(key, cur))]
            prev[key] = cur
            line.append(f"{'main' if q.pid == p.pid else 'w'+str(q.pid)}: u{d[0]:.2f} s{d[1]:.2f} rss{mem.rss>>20}M")
        except psutil.Error: pass
    g = psutil.cpu_times_percent(interval=None)
    print(f"t={time.time()-t0:4.1f} " + " | ".join(line) + f" | sys idle {g.idle:.0f}% steal {g.steal:.0f}% iowait {g.iowait:.0f}%", flush=True)
print(p.stdout.read()[-600:])
