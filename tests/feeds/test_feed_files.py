"""What a feed writes on disk: private modes, and a foreign file at the state path left alone."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from streambatch.errors import JobFileError
from streambatch.feeds.state import FeedState

OWNER = "Demo Organization"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_"))}
    return subprocess.run([sys.executable, "-m", "streambatch.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_state_folder_files_and_history_are_private(tmp_path: Path) -> None:
    (tmp_path / "feed.txt").write_text("10.94.0.1\n10.94.0.2\n")
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.txt"\nformat = "text"\nowner = "{OWNER}"\nhistory_jsonl = "history.jsonl"\n'
                   "[batch]\npoll_interval = 0.02\n")
    run = _run("run", str(cfg), cwd=tmp_path)  # no credentials: the embedded emulator
    assert run.returncode == 0, run.stdout + run.stderr
    state_dir = tmp_path / "feed.streambatch"
    assert _mode(state_dir) == 0o700
    created = [p for p in state_dir.rglob("*") if p.is_file()] + [tmp_path / "history.jsonl"]
    assert any(p.name == "state.sqlite" for p in created) and any(p.name == "emulator.sqlite" for p in created)
    assert {str(p): oct(_mode(p)) for p in created if _mode(p) != 0o600} == {}
    assert {str(p): oct(_mode(p)) for p in state_dir.rglob("*") if p.is_dir() and _mode(p) != 0o700} == {}


def test_a_foreign_database_at_the_state_path_is_refused_untouched(tmp_path: Path) -> None:
    state = tmp_path / "feed.streambatch" / "state.sqlite"
    state.parent.mkdir()
    conn = sqlite3.connect(state)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers(name) VALUES ('someone')")
    conn.commit()
    conn.close()
    digest = hashlib.sha256(state.read_bytes()).hexdigest()
    with pytest.raises(JobFileError, match="not a streambatch feed state file"):
        FeedState(state)
    assert hashlib.sha256(state.read_bytes()).hexdigest() == digest
    (tmp_path / "feed.txt").write_text("10.94.0.1\n")
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.txt"\nformat = "text"\nowner = "{OWNER}"\n')
    run = _run("run", str(cfg), cwd=tmp_path)
    assert run.returncode == 1 and "not a streambatch feed state file" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert hashlib.sha256(state.read_bytes()).hexdigest() == digest


def test_state_files_from_before_the_application_id_are_adopted(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    old = FeedState(state)
    old.put("http_cache", {"etag": "x"})
    old.conn.execute("PRAGMA application_id = 0")  # as written before state files carried one
    old.close()
    again = FeedState(state)
    try:
        assert again.get("http_cache") == {"etag": "x"}
        assert again.conn.execute("PRAGMA application_id").fetchone()[0] != 0
    finally:
        again.close()


def test_what_a_killed_removal_left_behind_is_removed_by_the_next_cycle(tmp_path: Path) -> None:
    (tmp_path / "feed.txt").write_text("10.94.0.1\n")
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.txt"\nformat = "text"\nowner = "{OWNER}"\nretention = 1\n'
                   "[batch]\npoll_interval = 0.02\n")
    state_dir = tmp_path / "feed.streambatch"
    state_dir.mkdir()
    orphans = [state_dir / "job-20200101-000000-000001.chunks", state_dir / "job-20200101-000000-000002.sqlite-wal",
               state_dir / "job-20200101-000000-000003.sqlite.lock", state_dir / "delete-20200101-000000-000004.chunks"]
    for path in orphans:
        if path.suffix == ".chunks":
            path.mkdir()
            (path / "chunk-000001.json").write_text("{}")
        else:
            path.write_text("")
    keep = state_dir / "notes.txt"  # not streambatch's: left alone
    keep.write_text("mine")
    for _ in range(2):
        run = _run("run", str(cfg), cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
    assert [p for p in orphans if p.exists()] == []
    assert keep.exists()
    assert len(list(state_dir.glob("job-*.sqlite"))) == 1  # retention 1


@pytest.mark.parametrize("retention", [0, 1])
def test_a_feed_keeping_no_old_job_files_runs_and_says_so(tmp_path: Path, retention: int) -> None:
    """retention = 0 keeps no job file of a finished run (1 keeps the newest): runs succeed, the
    next run still sees what was sent, and `status` says there is no job file left, in one line."""
    (tmp_path / "feed.txt").write_text("10.95.0.1\n10.95.0.2\n")
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.txt"\nformat = "text"\nowner = "{OWNER}"\nretention = {retention}\n'
                   "[batch]\npoll_interval = 0.02\n")
    first = _run("run", str(cfg), cwd=tmp_path)
    assert first.returncode == 0 and "new 2," in first.stdout, first.stdout + first.stderr
    second = _run("run", str(cfg), cwd=tmp_path)
    assert second.returncode == 0 and "unchanged 2," in second.stdout, second.stdout + second.stderr
    jobs = list((tmp_path / "feed.streambatch").glob("job-*.sqlite"))
    assert len(jobs) == retention
    status = _run("status", str(cfg), cwd=tmp_path)
    assert "Traceback" not in status.stderr
    if retention == 0:
        assert status.returncode == 1 and status.stderr.strip().splitlines()[-1] == \
            "error: feed feed: no run has a job file left"
    else:
        assert status.returncode == 0, status.stderr


@pytest.mark.parametrize("line, why", [('retention = "3"', "integer"), ("retention = -1", "0 or more"),
                                       ("retention = 2.5", "integer")])
def test_a_bad_retention_is_one_line_and_exit_2(tmp_path: Path, line: str, why: str) -> None:
    (tmp_path / "feed.txt").write_text("10.95.0.1\n")
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.txt"\nformat = "text"\nowner = "{OWNER}"\n{line}\n')
    run = _run("run", str(cfg), cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "retention" in run.stderr and why in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_the_worker_folder_and_its_emulator_are_private(tmp_path: Path) -> None:
    """`streambatch worker FOLDER` without an API makes FOLDER/.streambatch-worker (the embedded
    emulator's data) 0700 and its files 0600, and each feed's state folder 0700, even run under
    umask 0."""
    import signal
    import time

    folder = tmp_path / "feeds"
    folder.mkdir()
    (folder / "feed.txt").write_text("10.97.0.1\n10.97.0.2\n")
    (folder / "feed.toml").write_text(f'source = "feed.txt"\nformat = "text"\nowner = "{OWNER}"\nschedule = "1h"\n'
                                      "[batch]\npoll_interval = 0.02\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_"))}
    old = os.umask(0)
    try:
        worker = subprocess.Popen([sys.executable, "-m", "streambatch.cli", "worker", str(folder)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finally:
        os.umask(old)
    try:
        state = folder / "feed.streambatch" / "state.sqlite"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if state.exists():
                with sqlite3.connect(f"{state.as_uri()}?mode=ro", uri=True) as conn:
                    try:
                        if conn.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0]:
                            break
                    except sqlite3.OperationalError:
                        pass
            time.sleep(0.1)
        else:
            pytest.fail("the worker did not finish a cycle")
        data = folder / ".streambatch-worker"
        assert _mode(data) == 0o700 and _mode(data / "emulator.sqlite") == 0o600
        assert _mode(folder / "feed.streambatch") == 0o700
        assert {str(p): oct(_mode(p)) for p in data.rglob("*") if p.is_file() and _mode(p) != 0o600} == {}
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, worker.stderr.read().decode() if worker.stderr else ""
