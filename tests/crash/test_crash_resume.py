"""Kill a real job (a subprocess talking HTTP to the emulator) at every step boundary and at
random moments, rerun the same command each time, and check that the emulator ends up with
exactly the expected data, with no chunk whose batch id was stored sent twice."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


from streambatch.emulator import Emulator

sys.path.insert(0, str(Path(__file__).parent))
import crash_job  # noqa: E402

JOB = Path(__file__).parent / "crash_job.py"
N = 3000
OWNER = crash_job.OWNER

# Kill points in pipeline order; each run resumes the last one and dies at the next point.
CHAIN = [
    "staged:2", "chunk-written:1", "chunk-recorded:1", "before-send:1", "after-create:1", "after-submitted:1",
    "after-poll:1", "after-complete:1", "before-upload:1", "after-upload:2", "after-done:1", "staged:5",
    "before-send:2", "after-create:1", "after-poll:2", "after-submitted:2", "after-complete:1", "after-done:2",
    "after-create:2", "chunk-recorded:2", "after-poll:1", "after-done:3", "chunk-written:2", "after-create:1",
]
WINDOW = "after-create"  # the server accepted the job, its batch id is not stored yet


def _run(tc: Emulator, job: Path, crash_at: str | None = None, action: str = "Create",
         kill_after: float | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_"))}
    if crash_at:
        env["STREAMBATCH_CRASH_AT"] = crash_at
    args = [sys.executable, str(JOB), str(job), tc.url, tc.access_id, tc.secret_key, str(N), action]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if kill_after is not None:
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"the job failed (rc {proc.returncode}): {err.decode()[-2000:]}")
    return proc.returncode


def _chunks(job: Path) -> list[tuple]:
    conn = sqlite3.connect(job)
    try:
        return conn.execute("SELECT id, state, batch_id FROM chunks ORDER BY id").fetchall()
    finally:
        conn.close()


def _check_landed(tc: Emulator) -> None:
    store = tc.store
    assert store.count(OWNER, "indicator") == N
    assert store.count(OWNER, "group") == crash_job.GROUPS + crash_job.DOCUMENTS
    expected = {r["summary"]: r for r in crash_job.indicators(N)}
    for i, (summary, rec) in enumerate(expected.items()):
        if i % 97:
            continue
        got = store.indicator(OWNER, rec["type"], summary)
        assert got is not None, summary
        assert got["tag"] == rec["tag"]
        assert [(a["type"], a["value"]) for a in got["attribute"]] == [("Description", rec["attribute"][0]["value"])]
        assert got["rating"] == rec["rating"] and got["confidence"] == rec["confidence"]
        assert [g["groupXid"] for g in got["associatedGroups"]] == [rec["associatedGroups"][0]["groupXid"]]
    for g in range(1, crash_job.GROUPS):
        group = store.group(OWNER, f"crash-group-{g}")
        assert f"crash-group-{g - 1}" in group["associatedGroupXid"]
        assert group["tag"] == [{"name": "crash"}]
    for d in range(crash_job.DOCUMENTS):
        xid = f"crash-doc-{d}"
        assert store.document(OWNER, xid) == crash_job.doc_content(xid)


def test_killed_anywhere_then_rerun_lands_everything_once(tmp_path: Path) -> None:
    """Each run resumes the job file the last run was killed in. When a run finishes before
    its kill point is reached, the job is complete: the kill is tried on a new job file with the
    same records (the emulator's data must still end up exactly the same)."""
    rnd = random.Random(20261128)
    plan = [(point, None) for point in CHAIN]
    for i in range(12):  # random moments, seeded, spread through the plan
        plan.insert(2 * i + 1, ("random", rnd.uniform(0.4, 1.4)))
    jobs = [tmp_path / "job-0.sqlite"]
    kills: list[str] = []
    with Emulator(db=tmp_path / "emu.sqlite", synchronous_batch_save_limit=0, rate=20_000) as tc:
        for point, delay in plan:
            for _attempt in range(3):
                if point == "random":
                    rc = _run(tc, jobs[-1], kill_after=delay)
                else:
                    rc = _run(tc, jobs[-1], crash_at=point)
                if rc == -signal.SIGKILL:
                    kills.append(point)
                    break
                jobs.append(tmp_path / f"job-{len(jobs)}.sqlite")  # finished: go on with a new job
        for job in jobs:
            assert _run(tc, job) == 0
        tc.wait_idle()
        _check_landed(tc)

        all_ids: list[int] = []
        for job in jobs:
            chunks = _chunks(job)
            assert chunks and all(state == "done" for _, state, _ in chunks)
            all_ids += [b for _, _, b in chunks]
        assert None not in all_ids and len(set(all_ids)) == len(all_ids)
        resent = [j["id"] for j in tc.store.jobs() if j["id"] not in set(all_ids)]
        # only a kill between the API accepting a job and its id being stored can make a chunk
        # go twice; a chunk whose batch id was stored is never sent again
        may_resend = sum(1 for k in kills if k.split(":")[0] in (WINDOW, "random"))
        assert len(resent) <= may_resend
        print(f"\n{len(kills)} kills ({len(kills) - kills.count('random')} at step boundaries, "
              f"{kills.count('random')} random) over {len(jobs)} job file(s), {len(all_ids)} chunks; "
              f"{len(resent)} chunk(s) re-sent after a kill in the accept-but-not-stored window")
    assert len(kills) >= 30, " ".join(kills)


def test_delete_killed_between_create_and_upload(tmp_path: Path) -> None:
    create, delete = tmp_path / "create.sqlite", tmp_path / "delete.sqlite"
    with Emulator(db=tmp_path / "emu.sqlite", synchronous_batch_save_limit=0) as tc:
        assert _run(tc, create) == 0
        tc.wait_idle()
        assert tc.store.count(OWNER, "indicator") == N
        assert _run(tc, delete, crash_at="after-create:1", action="Delete") == -signal.SIGKILL
        assert [s for _, s, _ in _chunks(delete)][0] == "sending"
        assert _run(tc, delete, action="Delete") == 0
        tc.wait_idle()
        assert tc.store.count(OWNER, "indicator") == 0
        assert tc.store.count(OWNER, "group") == 0


def test_emulator_restarted_and_down_for_a_while(tmp_path: Path) -> None:
    job, db = tmp_path / "job.sqlite", tmp_path / "emu.sqlite"
    tc = Emulator(db=db, synchronous_batch_save_limit=0, rate=5_000).start()
    creds = dict(access_id=tc.access_id, secret_key=tc.secret_key, port=tc.port)
    env_tc = tc
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_"))}
    args = [sys.executable, str(JOB), str(job), tc.url, tc.access_id, tc.secret_key, str(N)]
    proc = subprocess.Popen(args, env=proc_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(2.0)
        env_tc.close()  # the server goes away mid-job ...
        time.sleep(1.5)  # ... for a while, within the job's retry budget ...
        tc = Emulator(db=db, synchronous_batch_save_limit=0, rate=5_000, **creds).start()  # ... and comes back
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        tc.wait_idle()
        _check_landed(tc)
    finally:
        if proc.poll() is None:
            proc.kill()
        tc.close()


def test_stops_cleanly_when_the_api_stays_down_then_resumes(tmp_path: Path) -> None:
    job, db = tmp_path / "job.sqlite", tmp_path / "emu.sqlite"
    with Emulator(db=db, synchronous_batch_save_limit=0) as tc:
        creds = dict(access_id=tc.access_id, secret_key=tc.secret_key)
        url = tc.url
    # nothing listens at url now: the run uses its retry budget, then stops with a clear error
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_"))}
    res = subprocess.run([sys.executable, "-c", (
        "import sys; sys.argv = sys.argv[1:]; import runpy; "
        "from streambatch.client import RetryPolicy; import crash_job; "
        "crash_job.RetryPolicy = lambda **kw: RetryPolicy(attempts=3, backoff=0.05, total=2); "
        "crash_job.main()"), "crash_job.py", str(job), url, creds["access_id"], creds["secret_key"], str(N)],
        env=env, cwd=Path(__file__).parent, capture_output=True, timeout=120)
    assert res.returncode == 1
    assert b"stays pending" in res.stderr or b"rerun" in res.stderr
    assert _chunks(job)[0][1] == "built"
    with Emulator(db=db, synchronous_batch_save_limit=0, **creds) as tc:
        assert _run(tc, job) == 0
        tc.wait_idle()
        _check_landed(tc)
