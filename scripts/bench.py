#!/usr/bin/env python3
"""streambatch benchmarks: records/s per phase and peak RSS. Not a test; numbers go to
docs/benchmarks.md with the machine and date.

    python scripts/bench.py stage --n 100000        # staging and building, each phase in its own process
    python scripts/bench.py stage --n 5000000 --phases dicts,build
    python scripts/bench.py e2e --n 1000000         # save_all + submit_all against the emulator
    python scripts/bench.py feed --n 2000000 --dir /tmp/b  # a CSV feed: a first cycle (kept in --dir
                                                    # as a seed), then the same rows, the same source
                                                    # and 1% changed (--cycles), in us a row
    python scripts/bench.py process --n 100000      # the emulator processing jobs of 25,000 (no HTTP)
    python scripts/bench.py stage --n 1000000 --writer inline   # staging without the writer process
    python scripts/bench.py headline --n 10000000   # stage N indicators and cut them into exact chunks

Phases (each runs in a fresh subprocess, so each peak RSS is its own):
  objects  interface 1 (batch.address(...) etc. + tag + attribute, then batch.save(obj))
  dicts    batch.save_all() of raw batch dicts (generator)
  build    batch.build() of the job staged by 'dicts'
  unchecked  the same dicts through batch.save_normalized(), which skips every check: what
           staging costs without validation (not a supported way to stage raw input)
  generator  only iterating the benchmark's generator: its own share of 'dicts'
  built    interface 1 records built as in 'objects' but dropped instead of saved: what
           building the records costs without save()

``--writer`` (auto, inline, process) is the Batch's ``writer`` option for the staging phases
(default: the Batch's default); where the writer process ran, its own figures follow the
phase (writes, seconds it was busy writing, its peak RSS).

``headline``: one process stages N raw dicts with ``save_all`` and builds them into chunk
files (exact sizes); prints records/s, wall time and the peak RSS of every process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic(i: int) -> tuple[str, str]:
    """The i-th synthetic indicator: a mix of Address, Host, URL and File."""
    k = i % 4
    if k == 0:
        return "Address", f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    if k == 1:
        return "Host", f"h{i}.example.com"
    if k == 2:
        return "URL", f"https://u{i}.example.net/path/{i}"
    return "File", f"{i:032x}"


def raw_dicts(n: int):
    for i in range(n):
        t, value = synthetic(i)
        yield {"type": t, "summary": value, "xid": f"bench-{i}", "rating": 3, "confidence": 50,
               "tag": [{"name": "bench"}], "attribute": [{"type": "Description", "value": f"synthetic record {i}"}]}


WRITER = {"writer": os.environ["SB_BENCH_WRITER"]} if os.environ.get("SB_BENCH_WRITER") else {}


def phase_objects(job: Path, n: int, save: bool = True) -> dict:
    from streambatch import Batch
    with Batch("Bench Org", job, **WRITER) as batch:
        make = {"Address": batch.address, "Host": batch.host, "URL": batch.url, "File": batch.file}
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            t, value = synthetic(i)
            rec = make[t](value, rating=3, confidence=50)
            rec.tag("bench")
            rec.attribute("Description", f"synthetic record {i}")
            if save:
                batch.save(rec)
            else:
                batch._pending.pop(rec.key)  # dropped: a measurement, not a way to use a Batch
        batch.flush()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"phase": "objects" if save else "built", "n": n, "seconds": dt, "records_per_s": n / dt, "cpu_s": cpu,
            "writer": getattr(batch, "writer_report", {})}


def run_queue_s() -> float:
    """Seconds this process has waited for a core (Linux schedstat): what other work took."""
    try:
        return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def phase_dicts(job: Path, n: int) -> dict:
    from streambatch import Batch
    with Batch("Bench Org", job, **WRITER) as batch:
        t0, c0, q0 = time.perf_counter(), time.process_time(), run_queue_s()
        batch.save_all(raw_dicts(n))
        batch.flush()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"phase": "dicts", "n": n, "seconds": dt, "records_per_s": n / dt, "cpu_s": cpu,
            "queued_s": run_queue_s() - q0,
            "writer": getattr(batch, "writer_report", {})}


def phase_headline(job: Path, n: int) -> dict:
    """Stage n raw dicts and cut them into exact chunk files, in one process (and its writer)."""
    from streambatch import Batch
    t0 = time.perf_counter()
    with Batch("Bench Org", job, **WRITER) as batch:
        batch.save_all(raw_dicts(n))
        batch.flush()
        t1 = time.perf_counter()
        stage_rss = peak_rss_mb()
        paths = batch.build()
        t2 = time.perf_counter()
        chunked = batch.job.conn.execute("SELECT coalesce(sum(indicators), 0) FROM chunks").fetchone()[0]
    assert chunked == n, (chunked, n)
    return {"phase": "headline", "n": n, "seconds": t2 - t0, "records_per_s": n / (t2 - t0),
            "stage_s": t1 - t0, "stage_per_s": n / (t1 - t0), "build_s": t2 - t1, "build_per_s": n / (t2 - t1),
            "files": len(paths), "bytes": sum(p.stat().st_size for p in paths), "stage_rss_mb": stage_rss,
            "writer": getattr(batch, "writer_report", {})}


def phase_unchecked(job: Path, n: int) -> dict:
    from streambatch import Batch
    with Batch("Bench Org", job) as batch:
        specs = {name: batch.types.get(name) for name in ("Address", "Host", "URL", "File")}
        t0 = time.perf_counter()
        for d in raw_dicts(n):
            batch.save_normalized(specs[d["type"]], d)
        batch.flush()
        dt = time.perf_counter() - t0
    return {"phase": "unchecked", "n": n, "seconds": dt, "records_per_s": n / dt}


def phase_generator(job: Path, n: int) -> dict:
    t0 = time.perf_counter()
    for _ in raw_dicts(n):
        pass
    dt = time.perf_counter() - t0
    return {"phase": "generator", "n": n, "seconds": dt, "records_per_s": n / dt}


def phase_build(job: Path, n: int) -> dict:
    from streambatch import Batch
    with Batch("Bench Org", job) as batch:
        t0 = time.perf_counter()
        paths = batch.build()
        dt = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in paths)
    return {"phase": "build", "n": n, "seconds": dt, "records_per_s": n / dt, "files": len(paths), "bytes": size}


class emulator_process:
    """An emulator in its own process (so the peak RSS measured is the client's alone)."""

    def __init__(self, db: Path) -> None:
        self.db = db

    def __enter__(self):
        from streambatch.client import ApiConfig, Client

        self.proc = subprocess.Popen([sys.executable, "-m", "streambatch.cli", "serve", "--port", "0", "--db",
                                      str(self.db), "--access-id", "bench", "--secret-key", "bench-secret",
                                      "--sync-limit", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        url = None
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if "TC_API_PATH" in line:
                url = line.split("=", 1)[1].strip()
                break
        assert url, "the emulator did not start"
        return Client(ApiConfig(url, "bench", "bench-secret"))

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait()


def phase_e2e(job: Path, n: int) -> dict:
    """Stage n raw dicts and submit them to an emulator process."""
    from streambatch import Batch

    with emulator_process(job.with_suffix(".emu.sqlite")) as client:
        with Batch("Demo Organization", job, client=client, poll_interval=0.1) as batch:
            t0 = time.perf_counter()
            batch.save_all(raw_dicts(n))
            batch.flush()
            t1 = time.perf_counter()
            results = batch.submit_all()
            dt = time.perf_counter() - t0
    ok = sum(int(r.get("successCount") or 0) for r in results)
    return {"phase": "e2e", "n": n, "seconds": dt, "records_per_s": n / dt, "stage_s": t1 - t0,
            "submit_s": dt - (t1 - t0), "succeeded": ok, "jobs": len(results)}


def phase_process(job: Path, n: int) -> dict:
    """Build chunk files of n raw dicts, then have the emulator process each one as a job, in
    this process and without HTTP: the emulator's own indicators/s per job."""
    from streambatch import Batch
    from streambatch.emulator import Emulator
    from streambatch.emulator.settings import parse_settings

    with Batch("Demo Organization", job) as batch:
        batch.save_all(raw_dicts(n))
        paths = batch.build()
    per_job = []
    with Emulator(db=job.with_suffix(".emu.sqlite"), auth=False) as tc:
        for path in paths:
            raw = path.read_bytes()
            settings = parse_settings({"owner": tc.owner, "action": "Create", "haltOnError": False,
                                       "attributeWriteType": "Replace", "version": "V2"})
            job_id = tc.store.create_job(tc.owner, settings, "async")
            tc.store.update_job(job_id, input=raw)
            t0 = time.perf_counter()
            counters = tc.app.processor.run(job_id, settings, raw)
            per_job.append((counters["successIndicatorCount"], time.perf_counter() - t0))
    items = sum(i for i, _ in per_job)
    seconds = sum(t for _, t in per_job)
    rates = sorted(i / t for i, t in per_job)
    return {"phase": "process", "n": n, "seconds": seconds, "records_per_s": items / seconds,
            "jobs": len(per_job), "succeeded": items, "median_job_per_s": rates[len(rates) // 2]}


def csv_row(i: int, changed: bool = False) -> str:
    _t, value = synthetic(i)
    return f"{value},{(i % 6 + 1) % 6 if changed else i % 6},bench;feed\n"


def write_csv_feed(folder: Path, n: int, changed_every: int = 0, blank: bool = False) -> Path:
    """A CSV feed of n rows (value, rating, tags) and its config. ``changed_every``: every
    k-th row has another rating; ``blank``: a blank line at the end (other bytes, the same rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "feed.csv", "w") as fh:
        fh.write("value,rating,tags\n")
        for i in range(n):
            fh.write(csv_row(i, bool(changed_every) and i % changed_every == 0))
        if blank:
            fh.write("\n")
    config = folder / "feed.toml"
    config.write_text('source = "feed.csv"\nformat = "csv"\nowner = "Demo Organization"\n'
                      '[mapping]\nvalue = "value"\nrating = "rating"\ntags = { columns = ["tags"], separator = ";" }\n'
                      '[batch]\npoll_interval = 0.1\n')
    return config


#: the later cycles of ``feed``: name -> (what the feed file becomes, what it measures)
FEED_CYCLES = {
    "rows": ({"blank": True}, "the same rows in other bytes: every row read, none changed"),
    "source": ({"blank": True}, "the same bytes again: the unchanged source"),
    "changed": ({"changed_every": 100}, "1% of the rows changed"),
}


def phase_feed(job: Path, n: int) -> dict:
    """An n-row CSV feed: a first cycle that sends everything (made once per folder and size,
    then copied: ``seed``), then, on a copy of it, the cycles of ``STREAMBATCH_FEED_CYCLES``
    (default rows,source,changed, see :data:`FEED_CYCLES`) one after another."""
    import shutil

    from streambatch.feeds.config import FeedConfig
    from streambatch.feeds.worker import FeedRunner

    seed = job.parent / f"feed-seed-{n}"
    out: dict = {"phase": "feed", "n": n}
    if not (seed / "done").exists():
        shutil.rmtree(seed, ignore_errors=True)
        config = FeedConfig.load(write_csv_feed(seed, n))
        with emulator_process(seed / "emu.sqlite") as client:
            t0 = time.perf_counter()
            first = FeedRunner(config, client).run_cycle()
            out["first_s"] = time.perf_counter() - t0
        out["first"] = first.line()
        (seed / "done").write_text(first.line())
    folder = job.with_suffix(".feed")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(seed, folder)
    cycles = []
    with emulator_process(folder / "emu.sqlite") as client:
        for name in os.environ.get("STREAMBATCH_FEED_CYCLES", "rows,source,changed").split(","):
            config = FeedConfig.load(write_csv_feed(folder, n, **FEED_CYCLES[name][0]))
            t0 = time.perf_counter()
            stats = FeedRunner(config, client).run_cycle()
            dt = time.perf_counter() - t0
            cycles.append({"cycle": name, "seconds": dt, "us_per_row": dt / n * 1e6, "line": stats.line()})
    out["cycles"] = cycles
    out["seconds"] = sum(c["seconds"] for c in cycles)
    out["records_per_s"] = n * len(cycles) / out["seconds"]
    return out


PHASES = {"objects": phase_objects, "dicts": phase_dicts, "build": phase_build, "e2e": phase_e2e,
          "feed": phase_feed, "process": phase_process, "unchecked": phase_unchecked, "generator": phase_generator,
          "built": lambda job, n: phase_objects(job, n, save=False), "headline": phase_headline}


def run_phase(name: str, job: Path, n: int) -> dict:
    out = PHASES[name](job, n)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["stage", "e2e", "feed", "process", "headline"], help="benchmark to run")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--phases", default="objects,dicts,build")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir); feed keeps its seed there")
    ap.add_argument("--writer", choices=["auto", "inline", "process"], default=None,
                    help="the Batch's writer option for the staging phases (default: the Batch's default)")
    ap.add_argument("--cycles", default="rows,source,changed", help="feed: the cycles after the seed, in order")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one phase in this process
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.writer:
        os.environ["SB_BENCH_WRITER"] = args.writer
        WRITER["writer"] = args.writer
    if args.one:
        print(json.dumps(run_phase(args.one, Path(args.job), args.n)))
        return
    work = Path(args.dir or tempfile.mkdtemp(prefix="sb-bench-"))
    print(f"# {platform.node()} {platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, n={args.n:,}")
    print(f"{'phase':<10}{'records/s':>14}{'seconds':>10}{'peak RSS MB':>14}{'CPU s':>8}  load")
    phases = args.what if args.what in ("e2e", "feed", "process", "headline") else args.phases
    for name in phases.split(","):
        job = work / ("dicts.sqlite" if name in ("dicts", "build") else f"{name}.sqlite")
        res = subprocess.run([sys.executable, __file__, args.what, "--one", name, "--job", str(job), "--n", str(args.n)],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "STREAMBATCH_FEED_CYCLES": args.cycles})
        r = json.loads(res.stdout.strip().splitlines()[-1])
        cpu = f"{r['cpu_s']:>8.2f}" if "cpu_s" in r else " " * 8
        print(f"{name:<10}{r['records_per_s']:>14,.0f}{r['seconds']:>10.2f}{r['peak_rss_mb']:>14.1f}{cpu}  "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        if name == "feed":
            if "first" in r:
                print(f"  first cycle (the seed, made once) {r['first_s']:.1f} s\n  {r['first']}")
            for c in r["cycles"]:
                print(f"  {c['cycle']:<8} {c['seconds']:8.2f} s {c['us_per_row']:8.2f} us/row  "
                      f"({FEED_CYCLES[c['cycle']][1]})\n           {c['line']}")
        if name == "process":
            print(f"  {r['jobs']} jobs, {r['succeeded']:,} indicators saved; median job {r['median_job_per_s']:,.0f} "
                  f"indicators/s")
        if "queued_s" in r:
            print(f"  the caller waited {r['queued_s']:.1f} s for a core (other work on the machine)", flush=True)
        if r.get("writer"):
            w = r["writer"]
            print(f"  writer process: {w['writes']} writes, {w['rows']:,} rows, busy {w['busy_s']:.1f} s "
                  f"(CPU {w['cpu_s']:.1f} s), peak RSS {w['peak_rss_mb']:.1f} MB; the caller waited for it "
                  f"{w['caller_waited_s']:.1f} s", flush=True)
        if name == "headline":
            print(f"  staged in {r['stage_s']:.1f} s ({r['stage_per_s']:,.0f} records/s, peak RSS "
                  f"{r['stage_rss_mb']:.1f} MB), built {r['files']} chunk files ({r['bytes'] / 1e9:.2f} GB) in "
                  f"{r['build_s']:.1f} s ({r['build_per_s']:,.0f} records/s); wall time {r['seconds']:.1f} s")
        if name == "e2e":
            print(f"  staged in {r['stage_s']:.1f} s, submitted in {r['submit_s']:.1f} s as {r['jobs']} jobs; "
                  f"{r['succeeded']:,} records succeeded")


if __name__ == "__main__":
    main()
