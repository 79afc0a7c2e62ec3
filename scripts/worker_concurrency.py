#!/usr/bin/env python3
"""How long the worker takes to run 4 feeds (2 owners) at --concurrency 1, 2 and 4, against
`streambatch serve` in another process; three rounds, medians. A benchmark, not a test.

    python scripts/worker_concurrency.py [ROWS_PER_FEED] [EMULATOR_RATE]   # defaults 20000 5000
"""
import os, signal, socket, sqlite3, subprocess, sys, time, shutil, tempfile
from pathlib import Path
BASE = tempfile.mkdtemp(prefix="streambatch-concurrency-")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
RATE = sys.argv[2] if len(sys.argv) > 2 else "5000"
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
results = {}
for rep in range(3):
  for conc in (1, 2, 4):
    root = Path(BASE) / f"r{rep}c{conc}"; shutil.rmtree(root, ignore_errors=True); (root / "feeds").mkdir(parents=True)
    for i in range(4):
        owner = ("Demo Organization", "Common Community")[i % 2]
        (root / "feeds" / f"f{i}.txt").write_text("".join(f"10.{i}.{j // 256}.{j % 256}\n" for j in range(N)))
        (root / "feeds" / f"f{i}.toml").write_text(f'source = "f{i}.txt"\nformat = "text"\nowner = "{owner}"\nschedule = "1h"\n[batch]\nmax_records = 5000\n')
    port = free()
    serve = subprocess.Popen([sys.executable, "-m", "streambatch.cli", "serve", "--port", str(port), "--db", str(root / "emu.sqlite"), "--access-id", "bench", "--secret-key", "bench-secret", "--rate", RATE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    env = {**os.environ, "TC_API_PATH": f"http://127.0.0.1:{port}/api"}
    env["TC_API_ACCESS_ID"], env["TC_API_SECRET_KEY"] = "bench", "bench-secret"
    t0 = time.monotonic()
    w = subprocess.Popen([sys.executable, "-m", "streambatch.cli", "worker", "-q", "--concurrency", str(conc), str(root / "feeds")], env=env, stderr=subprocess.PIPE, text=True)
    def done():
        n = 0
        for i in range(4):
            p = root / "feeds" / f"f{i}.streambatch" / "state.sqlite"
            if p.exists():
                try:
                    con = sqlite3.connect(p); r = con.execute("SELECT status FROM runs ORDER BY id DESC LIMIT 1").fetchone(); con.close()
                    n += r is not None and r[0] == "done"
                except sqlite3.Error: pass
        return n == 4
    while not done():
        time.sleep(0.2)
        if time.monotonic() - t0 > 600: break
    dt = time.monotonic() - t0
    w.send_signal(signal.SIGTERM); w.wait(30); serve.send_signal(signal.SIGTERM); serve.wait(30)
    results.setdefault(conc, []).append(dt)
    print(f"rep {rep} concurrency {conc}: {dt:.1f} s for 4 feeds x {N:,}", flush=True)
import statistics
for conc, ts in results.items():
    print(f"concurrency {conc}: median {statistics.median(ts):.1f} s ({', '.join(f'{t:.1f}' for t in ts)})")
