#!/usr/bin/env python3
"""Plain-SQLite measurement behind the job file's identity index (docs/decisions.md).

Inserts N rows shaped like the job file's ``indicators`` rows, 20,000 per transaction, with
random 64-bit identity keys, and prints inserts/s for every half million rows:

    python scripts/sqlite_index.py key N         # index on key, probing each batch's keys first
    python scripts/sqlite_index.py noprobe N     # index on key, no probe
    python scripts/sqlite_index.py generation N  # index on (seq >> 19, key), no probe
    python scripts/sqlite_index.py none N        # no index
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import tempfile
import time

INDEXES = {
    "key": "CREATE INDEX indicators_key ON indicators(key)",
    "noprobe": "CREATE INDEX indicators_key ON indicators(key)",
    "generation": "CREATE INDEX indicators_key ON indicators(seq >> 19, key)",
    "none": None,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=sorted(INDEXES))
    ap.add_argument("n", type=int)
    ap.add_argument("--batch", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(os.path.join(folder, "bench.sqlite"), isolation_level=None)
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "cache_size = -32000", "wal_autocheckpoint = 10000"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("CREATE TABLE indicators (seq INTEGER PRIMARY KEY, key INTEGER NOT NULL, xid TEXT NOT NULL, "
                     "type TEXT NOT NULL, summary TEXT NOT NULL, body BLOB NOT NULL, size INTEGER NOT NULL, "
                     "hash INTEGER NOT NULL)")
        if INDEXES[args.mode]:
            conn.execute(INDEXES[args.mode])
        rnd = random.Random(1)
        body = b"x" * 220
        start = last = time.perf_counter()
        for i in range(0, args.n, args.batch):
            rows = [(rnd.getrandbits(64) - (1 << 63), f"bench-{j}", "Address", f"10.0.{j}", body, len(body), j)
                    for j in range(i, i + args.batch)]
            conn.execute("BEGIN IMMEDIATE")
            if args.mode == "key":
                keys = [r[0] for r in rows]
                for k in range(0, len(keys), 500):
                    part = keys[k:k + 500]
                    conn.execute(f"SELECT key, seq FROM indicators WHERE key IN ({','.join('?' * len(part))})",
                                 part).fetchall()
            conn.executemany("INSERT INTO indicators(key, xid, type, summary, body, size, hash) "
                             "VALUES (?,?,?,?,?,?,?)", rows)
            conn.execute("COMMIT")
            done = i + args.batch
            if done % 500_000 == 0:
                now = time.perf_counter()
                print(f"{args.mode} {done:>10,} {500_000 / (now - last):>10,.0f} inserts/s", flush=True)
                last = now
        print(f"{args.mode} total {args.n / (time.perf_counter() - start):,.0f} inserts/s")
        conn.close()


if __name__ == "__main__":
    main()
