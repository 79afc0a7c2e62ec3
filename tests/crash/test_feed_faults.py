"""The acceptance fault test for unattended feeds: ``streambatch run`` killed with SIGKILL at
random points (its own failpoints and random moments) and restarted from different working
directories, and ``streambatch worker`` stopped with SIGTERM mid-job and restarted; each time
the emulator must end up holding exactly the feed's valid distinct values, merged, once, and
no job or state file may be left damaged.

Randomness is seeded: the seed is printed and named in every failure; set
``FEED_FAULTS_SEED=<n>`` to replay a run.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streambatch.emulator import Emulator

sys.path.insert(0, str(Path(__file__).parent))
from feed_faults_helpers import (  # noqa: E402
    OWNER, Feed, cli, env_for, integrity_problems, landed_problems, spot_check, write_config)

SEED = int(os.environ.get("FEED_FAULTS_SEED") or random.SystemRandom().randrange(1, 10**6))
print(f"\nfeed fault tests: FEED_FAULTS_SEED={SEED}")

KILLS = 20
MAX_VALUES = 4_000  # the feed stops gaining values past this many
RUN_TIMEOUT = 60.0  # seconds for one `streambatch run`, generously
# Failpoints a feed run reaches, with the largest N to pick for each (a run sends ~10 chunks; a
# resumed run has fewer left, so N stays small for the per-chunk points). after-errors and the
# upload points are not reached by this feed (no API errors, no documents).
POINTS = {
    "staged": 1, "chunk-written": 3, "chunk-recorded": 3, "before-send": 3, "after-create": 3,
    "after-submitted": 3, "after-poll": 3, "after-complete": 3, "after-done": 3,
}
CREATES = ("/v2/batch/createAndUpload", "/v2/batch")


def _seeded(text: str) -> str:
    return f"[FEED_FAULTS_SEED={SEED}] {text}"


def _creates(tc: Emulator, since: float) -> list[dict]:
    """Job-creating requests received after ``since`` (epoch s)."""
    return [r for r in tc.requests
            if r["time"] >= since and r["method"] == "POST" and r["path"].removeprefix("/api") in CREATES]


class Runner:
    """Runs ``streambatch run CONFIG`` from a rotating choice of working directories, with
    the config path given relative to the cwd or absolute."""

    def __init__(self, tc: Emulator, config: Path, elsewhere: Path, rng: random.Random) -> None:
        self.tc = tc
        self.config = config
        self.rng = rng
        folder = config.parent
        self.places = [
            (folder, config.name),                                         # the config's own folder
            (folder.parent, str(Path(folder.name) / config.name)),         # its parent
            (elsewhere, str(config)),                                      # unrelated, absolute
            (elsewhere, os.path.relpath(config, elsewhere)),               # unrelated, relative
            (folder, str(config)),                                         # its own folder, absolute
        ]
        self.turn = rng.randrange(len(self.places))
        self.log: list[str] = []

    def run(self, crash_at: str | None = None, kill_after: float | None = None) -> tuple[int, str, str]:
        cwd, arg = self.places[self.turn % len(self.places)]
        self.turn += 1
        env = env_for(self.tc)
        if crash_at:
            env["STREAMBATCH_CRASH_AT"] = crash_at
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(cli("run", arg), cwd=cwd, env=env, stdout=out, stderr=err, text=True)
            try:
                try:
                    proc.wait(timeout=kill_after if kill_after is not None else RUN_TIMEOUT)
                except subprocess.TimeoutExpired:
                    if kill_after is None:
                        raise
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=RUN_TIMEOUT)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        what = crash_at or (f"kill after {kill_after:.2f} s" if kill_after is not None else "no kill")
        self.log.append(f"{what} (cwd {cwd.name}, {arg}): rc {proc.returncode}")
        return proc.returncode, stdout, stderr


def test_feed_run_sigkilled_at_random_points_lands_exactly_once(tmp_path: Path) -> None:
    """SIGKILL ``streambatch run`` 20 times, at its failpoints and at random moments, restart it
    from a different cwd each time; then the emulator holds exactly the feed's valid distinct
    values, with complete merged tags, the last row's rating and one Description each, and one
    more run sends nothing; no chunk goes twice except after a kill in the accept-but-not-
    stored window; no run is left recorded as running; no stray job files are left behind.

    A run that finishes before its kill point moves the feed to its next generation (a share of
    the values revised, new values, repeats, bad rows, one more row of values already listed
    several times), so that the kills land on real work; after some kills the feed also
    changes while it is down. The expected data is always the final feed's."""
    rng = random.Random(SEED)
    folder = tmp_path / "feeds"
    folder.mkdir()
    elsewhere = tmp_path / "unrelated" / "cwd"
    elsewhere.mkdir(parents=True)
    feed = Feed(folder / "iocs.csv", rng)
    feed.grow(2_800, invalid=40)
    config = write_config(folder / "intel.toml", "iocs.csv")
    state_dir = folder / "intel.streambatch"

    finished: list[float] = []  # wall seconds of the runs that finished before their kill

    def kill_point() -> tuple[str, float | None]:
        """A failpoint (``name:N``, the process kills itself there) or a random delay after
        which the test kills it: within 1.5 s, and within 90% of the shortest of the last
        runs that finished first, so that as cycles get faster the kills still land in them."""
        if rng.random() < 0.55:
            name = rng.choice(sorted(POINTS))
            return f"{name}:{rng.randint(1, POINTS[name])}", None
        top = min([1.5] + [0.9 * t for t in finished[-5:]])
        return "random", round(rng.uniform(0.05, max(0.1, top)), 3)

    kills: list[str] = []
    with Emulator(db=tmp_path / "emu.sqlite", rate=20_000) as tc:
        runner = Runner(tc, config, elsewhere, rng)

        def context() -> str:
            return _seeded(f"kills so far: {kills}; runs: {runner.log[-8:]}")

        attempts = 0
        while len(kills) < KILLS and attempts < 3 * KILLS:
            point, delay = kill_point()
            for _try in range(3):  # the same kill point again after a run that finished first
                attempts += 1
                began = time.monotonic()
                if point == "random":
                    rc, out, err = runner.run(kill_after=delay)
                else:
                    rc, out, err = runner.run(crash_at=point)
                if rc == 0:
                    finished.append(time.monotonic() - began)
                assert rc in (0, -signal.SIGKILL), context() + f"\nrc {rc}\nstdout: {out[-3000:]}\nstderr: {err[-3000:]}"
                bad = integrity_problems([state_dir])
                assert not bad, context() + f"\ndamaged after {point}: {bad}"
                if rc == -signal.SIGKILL:
                    kills.append(point if delay is None else f"random {delay}")
                    if rng.random() < 0.3:  # the source changes while the feed is down
                        feed.grow(rng.randint(20, 80) if feed.distinct < MAX_VALUES else 0, invalid=rng.randint(1, 4),
                                  more_of_repeated=5, change_share=rng.uniform(0.05, 0.3))
                        kills[-1] += " (then the feed changed)"
                    break
                # finished before the kill: the next generation of the feed gives the next
                # attempt something to do
                feed.grow(rng.randint(50, 150) if feed.distinct < MAX_VALUES else 0, invalid=rng.randint(2, 8),
                          more_of_repeated=10, change_share=rng.uniform(0.2, 0.5))
        assert len(kills) == KILLS, context()

        for _ in range(3):  # run until done
            rc, out, err = runner.run()
            if rc == 0:
                break
            assert rc != 4, context() + f"\nthe feed is reported locked after a SIGKILL: {err}"
        assert rc == 0, context() + f"\nrc {rc}\nstdout: {out[-3000:]}\nstderr: {err[-3000:]}"
        tc.wait_idle()
        bad = landed_problems(tc, OWNER, [feed]) + spot_check(tc, OWNER, feed, rng)
        assert not bad, context() + f"\nfeed of {len(feed.rows)} rows, {feed.distinct} distinct values, " \
            f"{feed.invalid} invalid, {feed.generation} generation(s):\n" + "\n".join(bad)

        since = time.time()
        rc, out, err = runner.run()
        run_line = next((line for line in out.splitlines() if re.match(r"feed intel: run \d+ ", line)), "")
        assert rc == 0, context() + f"\nrc {rc}\n{out}\n{err[-2000:]}"
        assert "; sent 0:" in run_line, context() + f"\nthe run after completion sent again: {out}"
        assert f"rejected {feed.invalid:,}," in run_line, context() + f"\n{run_line}"
        assert not _creates(tc, since), context() + f"\nnew jobs after completion: {_creates(tc, since)}"
        tc.wait_idle()
        assert not landed_problems(tc, OWNER, [feed]), context()
        bad = integrity_problems([state_dir])
        assert not bad, context() + f"\n{bad}"
        leftovers = _leftovers(state_dir)
        assert not leftovers, context() + f"\nfiles left behind in the state folder: {leftovers}"
        runs = _runs(state_dir)
        stuck = [r for r in runs if r[1] == "running"]
        assert not stuck, context() + f"\nruns still recorded as running after the feed finished: {stuck}"
        # a chunk goes twice only after a kill between the API accepting it and its batch id being
        # stored (a failpoint after-create, or a random kill that may have landed there)
        inputs = [tc.store.job_input(j["id"]) for j in tc.store.jobs()]
        resent = len(inputs) - len(set(inputs))
        may_resend = sum(1 for k in kills if k.startswith(("after-create", "random")))
        assert resent <= may_resend, context() + f"\n{resent} chunk(s) sent twice, at most {may_resend} expected"
        print(f"\n{len(kills)} kills ({sum(not k.startswith('random') for k in kills)} at failpoints): "
              f"{', '.join(kills)}; feed of {len(feed.rows)} rows, {feed.distinct} values, {feed.invalid} invalid, "
              f"{feed.generation} generation(s); {len(runner.log)} runs; "
              f"{len(_creates(tc, 0))} jobs created, {resent} sent twice")


# -- the worker ----------------------------------------------------------------------------

SECOND_OWNER = "Common Community"
WORKER_STOP_TIMEOUT = 20.0  # a SIGTERM'd worker must exit within this many seconds
WORKER_FINISH_TIMEOUT = 30.0  # a restarted worker must have finished both feeds within this many seconds
JOBS = 5 + 6  # the two feeds' jobs of 200 records


class WorkerProc:
    """One ``streambatch worker FOLDER`` process, its output in files."""

    def __init__(self, tc: Emulator, cwd: Path, arg: str, logs: Path, n: int) -> None:
        self.out_path, self.err_path = logs / f"worker-{n}.out", logs / f"worker-{n}.err"
        self.out, self.err = open(self.out_path, "w"), open(self.err_path, "w")
        self.where = f"worker {n} (cwd {cwd}, {arg})"
        self.proc = subprocess.Popen(cli("worker", arg), cwd=cwd, env=env_for(tc), stdout=self.out,
                                     stderr=self.err, text=True)

    def stderr(self) -> str:
        if not self.err.closed:
            self.err.flush()
        return self.err_path.read_text()

    def stop(self, timeout: float = WORKER_STOP_TIMEOUT) -> tuple[int | None, float]:
        """SIGTERM; returns (exit code or None if it did not exit in time, seconds taken)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        return rc, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()


def _wait(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_worker_sigtermed_mid_job_and_restarted_finishes_both_feeds(tmp_path: Path) -> None:
    """``streambatch worker`` over two feeds (schedule 1h) is stopped with SIGTERM three times
    after it started sending (twice while the emulator holds a job Running, once at a random
    moment, with a hold on a later job only as a backstop so that work is left), restarted each
    time from another cwd; each stop exits 0 in bounded time, and a
    restarted worker finishes both feeds (interrupted jobs first, not waiting for the
    schedule), landing exactly their valid distinct values; no job or state file is damaged."""
    rng = random.Random(SEED + 1)
    root = tmp_path / "site"
    folder = root / "feeds"
    folder.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    feed_a = Feed(folder / "a.csv", rng, prefix=10)
    feed_a.grow(1_000, invalid=20)  # 5 jobs of 200
    feed_b = Feed(folder / "b.csv", rng, prefix=20)
    feed_b.grow(1_150, invalid=15)  # 6 jobs, none small enough to be processed inline
    write_config(folder / "alpha.toml", "a.csv", owner=OWNER, max_records=200)
    write_config(folder / "beta.toml", "b.csv", owner=SECOND_OWNER, max_records=200)
    state_dirs = [folder / "alpha.streambatch", folder / "beta.streambatch"]
    places = [(folder, "."), (root, "feeds"), (elsewhere, str(folder)), (elsewhere, os.path.relpath(folder, elsewhere))]
    rng.shuffle(places)
    workers: list[WorkerProc] = []
    notes: list[str] = []

    def context() -> str:
        tails = "".join(f"\n{w.where}'s stderr:\n{w.stderr()[-2000:]}" for w in workers)
        return _seeded(f"{'; '.join(notes)}{tails}")

    def complete() -> bool:
        return not landed_problems(tc, OWNER, [feed_a], limit=1) and \
            not landed_problems(tc, SECOND_OWNER, [feed_b], limit=1)

    with Emulator(db=tmp_path / "emu.sqlite", rate=5_000) as tc:
        try:
            stops = ["held", "held", "random"]
            rng.shuffle(stops)
            for i, how in enumerate(stops):
                since = time.time()
                # jobs this worker may start. A hold on the k-th job from here holds every later
                # one too, but the other feed (another owner) still uploads its next job, so a stop
                # uses up to k + 1 jobs; leave two for each later stop but the last, which needs one
                budget = max(1, JOBS - len(tc.store.jobs()) - 2 * (len(stops) - i - 1))
                if how == "held":
                    k = rng.randint(1, min(4, budget))
                else:  # a backstop only: the stop comes at a random moment, normally well before
                    k = budget
                tc.set_faults([{"kind": "running", "nth": k, "times": 0}])
                cwd, arg = places[i % len(places)]
                w = WorkerProc(tc, cwd, arg, logs, i)
                workers.append(w)
                if how == "held":
                    _wait(lambda: tc.faults.as_list()[0]["fired"] >= 1 or w.proc.poll() is not None, 30)
                    assert tc.faults.as_list()[0]["fired"] >= 1 and w.proc.poll() is None, \
                        context() + f"\nno job was held (fault: {tc.faults.as_list()})"
                    time.sleep(rng.uniform(0.0, 0.4))
                    notes.append(f"{w.where}: SIGTERM while job {k} (from here) is held Running")
                else:
                    started = _wait(lambda: bool(_creates(tc, since)) or w.proc.poll() is not None, 30)
                    assert started and w.proc.poll() is None, context() + "\nthe worker did not start sending"
                    delay = rng.uniform(0.0, 0.3)
                    time.sleep(delay)
                    notes.append(f"{w.where}: SIGTERM {delay:.2f} s after its first job")
                rc, took = w.stop()
                after = w.stderr().split("received SIGTERM", 1)[-1]
                stopped = re.search(r"feed (\w+): (?:interrupted )?run \d+ interrupted", after)
                notes[-1] += f" -> rc {rc} in {took:.1f} s, " + \
                    (f"feed {stopped.group(1)} interrupted" if stopped else "between cycles")
                assert rc == 0, context() + f"\nthe worker did not exit 0 within {WORKER_STOP_TIMEOUT} s of SIGTERM"
                assert "worker stopped" in w.stderr(), context()
                assert "Traceback" not in w.stderr() and "cycle failed" not in w.stderr(), context()
                tc.set_faults([])  # release a held job; it completes at the emulator
                bad = integrity_problems(state_dirs)
                assert not bad, context() + f"\n{bad}"

            assert not complete() or not all(_no_current(d) for d in state_dirs), \
                context() + "\nthe feeds were finished before the last stop: the stops came too late"
            cwd, arg = places[len(stops) % len(places)]
            started = time.monotonic()
            w = WorkerProc(tc, cwd, arg, logs, len(stops))
            workers.append(w)
            done = _wait(lambda: complete() and all(_no_current(d) for d in state_dirs), WORKER_FINISH_TIMEOUT,
                         step=0.2)
            took = time.monotonic() - started
            notes.append(f"{w.where}: both feeds complete after {took:.1f} s" if done else f"{w.where}: not complete")
            if not done:
                problems = landed_problems(tc, OWNER, [feed_a]) + landed_problems(tc, SECOND_OWNER, [feed_b])
                raise AssertionError(context() + f"\nnot complete within {WORKER_FINISH_TIMEOUT} s:\n"
                                     + "\n".join(problems))
            rc, took = w.stop()
            notes.append(f"final stop: rc {rc} in {took:.1f} s")
            assert rc == 0, context()
            err = w.stderr()
            assert "Traceback" not in err and "cycle failed" not in err, context()
            # every restart began by finishing the job its predecessor left, before any other
            # cycle and without waiting for the 1h schedule
            for before, after in zip(workers, workers[1:]):
                if not re.search(r"feed \w+: (?:interrupted )?run \d+ interrupted",
                                 before.stderr().split("received SIGTERM", 1)[-1]):
                    continue  # stopped between cycles: nothing to finish
                first = _first_cycle_line(after.stderr())
                assert first is not None and _finishes(first), \
                    context() + f"\n{after.where} did not start by finishing the interrupted job: {first!r}"
        finally:
            for w in workers:
                w.kill()
        tc.wait_idle()
        bad = landed_problems(tc, OWNER, [feed_a]) + landed_problems(tc, SECOND_OWNER, [feed_b])
        bad += spot_check(tc, OWNER, feed_a, rng) + spot_check(tc, SECOND_OWNER, feed_b, rng)
        assert not bad, context() + "\n" + "\n".join(bad)
        assert all(_no_current(d) for d in state_dirs), context() + "\na feed still has an unfinished run"
        bad = integrity_problems(state_dirs)
        assert not bad, context() + f"\n{bad}"
        all_err = "\n".join(x.stderr() for x in workers)
        assert "finished interrupted run" in all_err, context()
        print("\n" + "\n".join(notes))


def _finishes(line: str) -> bool:
    """Does this log line say the worker is taking up an interrupted run?"""
    return bool(re.search(r"finishing the job of interrupted run|stopped while reading the feed; dropping", line))


def _first_cycle_line(log: str) -> str | None:
    """The first line of a worker's log that says it started work on a feed."""
    for line in log.splitlines():
        if re.search(r"feed \w+: (finishing the job|run \d+ |run \d+ stopped while reading)", line):
            return line
    return None


def _leftovers(state_dir: Path, retention: int = 3) -> list[str]:
    """After a finished cycle: more job files than the feed keeps, or a job file's companions
    (chunk folder, lock, -wal, -shm) without the job file."""
    jobs = sorted(p.name for p in state_dir.glob("job-*.sqlite"))
    out = [f"{len(jobs)} job files (retention {retention})"] if len(jobs) > retention else []
    for p in sorted(state_dir.iterdir()):
        if p.name.startswith("job-"):
            base = re.sub(r"\.sqlite.*$|\.chunks$", "", p.name) + ".sqlite"
            if base not in jobs:
                out.append(p.name)
    return out


def _runs(state_dir: Path) -> list[tuple]:
    """(id, status, message) of every run in a feed's state file (read on a copy)."""
    import shutil
    import sqlite3

    db = state_dir / "state.sqlite"
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "state.sqlite"
        shutil.copyfile(db, copy)
        if Path(str(db) + "-wal").exists():
            shutil.copyfile(str(db) + "-wal", str(copy) + "-wal")
        conn = sqlite3.connect(copy)
        try:
            return conn.execute("SELECT id, status, message FROM runs ORDER BY id").fetchall()
        finally:
            conn.close()


def _no_current(state_dir: Path) -> bool:
    """The feed's state file records no unfinished run (read on a copy, never locking it)."""
    import shutil
    import sqlite3

    db = state_dir / "state.sqlite"
    if not db.exists():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "state.sqlite"
        shutil.copyfile(db, copy)
        if Path(str(db) + "-wal").exists():
            shutil.copyfile(str(db) + "-wal", str(copy) + "-wal")
        try:
            conn = sqlite3.connect(copy)
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'current'").fetchone()
                runs = conn.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.DatabaseError:  # copied while the worker wrote: look again later
            return False
    return (row is None or row[0] in (None, "null")) and runs > 0
