"""Feeds left running unattended, through the ``streambatch`` command against the emulator over
HTTP: an interrupted run finished from another working directory, a refused chunk retried, a
worker that backs off, finishes interrupted jobs first and skips a broken config, one run of a
feed at a time, and counts that say what the API accepted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import feed_cli
import pytest

from streambatch.emulator import Emulator
from streambatch.feeds.config import FeedConfig
from streambatch.feeds.state import FeedState

OWNER = "Demo Organization"


@pytest.fixture
def tc(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(db=tmp_path / "emu.sqlite") as emulator:
        yield emulator


def env_for(tc: Emulator, secret: str | None = None) -> dict[str, str]:
    return feed_cli.env_for(tc, **({"TC_API_SECRET_KEY": secret} if secret else {}))


def cli(tc: Emulator, *args: str, cwd: Path, secret: str | None = None, timeout: float = 120
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streambatch.cli", *args], cwd=cwd, env=env_for(tc, secret),
                          capture_output=True, text=True, timeout=timeout)


def start(tc: Emulator, *args: str, cwd: Path) -> subprocess.Popen:
    return feed_cli.start(tc, *args, cwd=cwd)


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def uploads(tc: Emulator) -> int:
    return sum(1 for r in tc.requests if r["method"] == "POST" and r["path"].endswith("/createAndUpload"))


def text_feed(folder: Path, name: str, n: int, *, prefix: str = "10.88", extra: str = "",
              max_records: int = 200) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text("".join(f"{prefix}.{i // 256}.{i % 256}\n" for i in range(n)))
    cfg = folder / f"{name}.toml"
    cfg.write_text(f'source = "{name}.txt"\nformat = "text"\nowner = "{OWNER}"\n{extra}\n'
                   f"[batch]\npoll_interval = 0.02\nmax_records = {max_records}\n")
    return cfg


def runs_of(cfg: Path) -> list[dict]:
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        return state.runs(1000)
    finally:
        state.close()


# -- 1. an interrupted run finished from another working directory ----------------------------


def test_interrupted_run_is_finished_from_another_working_directory(tmp_path: Path, tc: Emulator) -> None:
    """Interrupted while its second chunk is held Running, the run is finished by a rerun
    from another directory (as cron or systemd would start it): every record lands."""
    n = 1200
    home = tmp_path / "home"
    cfg = text_feed(home / "feeds", "big", n)
    tc.set_faults([{"kind": "running", "nth": 2, "times": 0}])
    proc = start(tc, "run", "feeds/big.toml", cwd=home)
    try:
        assert wait_for(lambda: uploads(tc) >= 2), proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0  # interrupted: not a success
    tc.set_faults([])
    assert tc.store.count(OWNER, "indicator") < n

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = cli(tc, "run", str(Path("..") / "home" / "feeds" / "big.toml"), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert tc.store.count(OWNER, "indicator") == n
    assert [r["status"] for r in runs_of(cfg)][-1] == "done (resumed)"
    again = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert tc.store.count(OWNER, "indicator") == n


# -- 2. a refused chunk does not wedge the feed ------------------------------------------------


def test_a_chunk_refused_with_a_wrong_secret_is_sent_by_the_next_run(tmp_path: Path, tc: Emulator) -> None:
    n = 500
    cfg = text_feed(tmp_path, "feed", n)
    wrong = cli(tc, "run", str(cfg), cwd=tmp_path, secret="not-the-secret")
    assert wrong.returncode != 0
    assert "401" in wrong.stdout + wrong.stderr
    assert tc.store.count(OWNER, "indicator") == 0

    right = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert right.returncode == 0, right.stdout + right.stderr
    assert tc.store.count(OWNER, "indicator") == n
    assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
    assert tc.store.count(OWNER, "indicator") == n


def test_a_failing_feed_backs_off_instead_of_looping(tmp_path: Path, tc: Emulator) -> None:
    """With a wrong secret, the worker tries the feed, records when it tries again, and waits:
    a few seconds of a failing feed are one attempt, not thousands."""
    folder = tmp_path / "feeds"
    text_feed(folder, "feed", 50, extra='schedule = "1m"')
    proc = subprocess.Popen([sys.executable, "-m", "streambatch.cli", "worker", str(folder)], cwd=tmp_path,
                            env=env_for(tc, secret="wrong"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    def attempts() -> int:
        return sum(1 for r in tc.requests if r["path"].endswith("/createAndUpload"))

    try:
        assert wait_for(lambda: attempts() >= 1, timeout=60)
        time.sleep(4)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert attempts() == 1, err  # tried once; the next attempt is 30 s or more away
    assert "next attempt" in err, err
    assert len(err) < 10_000
    assert proc.returncode == 0, err


# -- 3. a restarted worker finishes interrupted jobs first ------------------------------------


def _interrupt_run(tc: Emulator, cfg: Path, cwd: Path, held_job: int = 2) -> subprocess.Popen:
    """Start `streambatch run`, hold its ``held_job``-th batch job Running and SIGTERM it."""
    tc.set_faults([{"kind": "running", "nth": held_job, "times": 0}])
    proc = start(tc, "run", str(cfg), cwd=cwd)
    try:
        assert wait_for(lambda: uploads(tc) >= held_job), proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    tc.set_faults([])
    return proc


def test_a_restarted_worker_finishes_an_interrupted_job_before_the_schedule(tmp_path: Path, tc: Emulator) -> None:
    n = 1000
    folder = tmp_path / "feeds"
    cfg = text_feed(folder, "big", n, extra='schedule = "1h"')
    _interrupt_run(tc, cfg, tmp_path)
    assert tc.store.count(OWNER, "indicator") < n
    proc = subprocess.Popen([sys.executable, "-m", "streambatch.cli", "worker", str(folder)], cwd=tmp_path,
                            env=env_for(tc), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        landed = wait_for(lambda: tc.store.count(OWNER, "indicator") == n, timeout=30)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert landed, err
    assert "big" in err and "interrupted" in err  # the start-up listing says what it found
    statuses = [r["status"] for r in runs_of(cfg)]
    assert statuses[-1] == "done (resumed)"


# -- 5. one run of a feed at a time ----------------------------------------------------------


def test_a_second_run_of_the_same_feed_says_who_holds_it(tmp_path: Path, tc: Emulator) -> None:
    n = 600
    cfg = text_feed(tmp_path, "feed", n)
    tc.set_faults([{"kind": "running", "nth": 1, "times": 0}])
    first = start(tc, "run", str(cfg), cwd=tmp_path)
    try:
        assert wait_for(lambda: uploads(tc) >= 1)
        second = cli(tc, "run", str(cfg), cwd=tmp_path)
        assert second.returncode == 4, second.stdout + second.stderr
        assert f"pid {first.pid}" in second.stderr
        tc.set_faults([])
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert tc.store.count(OWNER, "indicator") == n
    assert uploads(tc) == 3  # each chunk sent once
    assert sum(j["records"]["indicator"] for j in tc.store.jobs()) == n


# -- 6. one broken config does not stop the others -----------------------------------------------


def test_a_malformed_config_is_skipped_and_read_again_when_fixed(tmp_path: Path, tc: Emulator) -> None:
    folder = tmp_path / "feeds"
    text_feed(folder, "good", 20, prefix="10.61", extra='schedule = "1h"')
    bad = folder / "bad.toml"
    bad.write_text('source = "bad.txt\nformat = text\n')  # unterminated string
    (folder / "bad.txt").write_text("10.62.0.1\n10.62.0.2\n")
    proc = subprocess.Popen([sys.executable, "-m", "streambatch.cli", "worker", str(folder)], cwd=tmp_path,
                            env=env_for(tc), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: tc.store.count(OWNER, "indicator") == 20, timeout=30)
        bad.write_text(f'source = "bad.txt"\nformat = "text"\nowner = "{OWNER}"\n[batch]\npoll_interval = 0.02\n')
        assert wait_for(lambda: tc.store.count(OWNER, "indicator") == 22, timeout=30)
        assert proc.poll() is None  # still running
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert err.count("bad.toml") >= 1 and "not valid TOML" in err
    assert err.count("not valid TOML") == 1  # said once, not every loop


# -- 4. removing records: only after complete reads, never en masse -------------------------------


def _delete_feed(tmp_path: Path, n: int, extra: str = "") -> Path:
    cfg = text_feed(tmp_path, "feed", n, extra='removed = "delete"\ngrace = "1s"\n' + extra)
    return cfg


def _write_values(cfg: Path, values: range) -> None:
    cfg.with_suffix(".txt").write_text("".join(f"10.88.{i // 256}.{i % 256}\n" for i in values))


def test_records_are_deleted_only_after_absent_cycles_and_grace(tmp_path: Path, tc: Emulator) -> None:
    cfg = _delete_feed(tmp_path, 100)
    assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
    _write_values(cfg, range(95))  # 5% gone
    first = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    time.sleep(1.2)  # past the grace period, but absent from one complete read only
    assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
    assert tc.store.count(OWNER, "indicator") == 95  # absent twice now: deleted by this run
    assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
    assert tc.store.count(OWNER, "indicator") == 95


def test_a_mass_removal_is_held_until_allowed(tmp_path: Path, tc: Emulator) -> None:
    cfg = _delete_feed(tmp_path, 100, extra="absent_cycles = 1")
    assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
    _write_values(cfg, range(50))  # half the feed gone at once
    time.sleep(1.2)
    held = cli(tc, "run", str(cfg), cwd=tmp_path)
    time.sleep(1.2)
    held2 = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert tc.store.count(OWNER, "indicator") == 100
    assert held.returncode == 3 and held2.returncode == 3
    assert "max_removed" in held.stdout + held.stderr and "50" in held.stdout
    allowed = cli(tc, "run", "--allow-removal", str(cfg), cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert tc.store.count(OWNER, "indicator") == 50


def test_an_empty_source_removes_nothing(tmp_path: Path, tc: Emulator) -> None:
    cfg = _delete_feed(tmp_path, 30, extra='absent_cycles = 1\nmax_removed = "none"')
    assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
    cfg.with_suffix(".txt").write_text("")
    for _ in range(2):
        time.sleep(1.1)
        empty = cli(tc, "run", str(cfg), cwd=tmp_path)
        assert empty.returncode == 3, empty.stdout + empty.stderr
        assert "empty" in empty.stdout + empty.stderr
    assert tc.store.count(OWNER, "indicator") == 30


def test_a_truncated_json_feed_is_a_failed_read_and_deletes_nothing(tmp_path: Path, tc: Emulator) -> None:
    import json

    rows = [{"type": "Address", "summary": f"10.89.0.{i}"} for i in range(40)]
    (tmp_path / "feed.json").write_text(json.dumps(rows))
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.json"\nformat = "json"\nowner = "{OWNER}"\nremoved = "delete"\ngrace = "1s"\n'
                   'absent_cycles = 1\nmax_removed = "none"\n[batch]\npoll_interval = 0.02\n')
    assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
    full = json.dumps(rows)
    for broken in (full[: len(full) // 2], full.replace('"10.89.0.30"}', '"10.89.0.30", "rating": 1e999}')):
        (tmp_path / "feed.json").write_text(broken)
        time.sleep(1.1)
        run = cli(tc, "run", str(cfg), cwd=tmp_path)
        assert run.returncode == 1, run.stdout + run.stderr
        assert "Traceback" not in run.stderr
        assert tc.store.count(OWNER, "indicator") == 40


# -- 7. config errors at load -----------------------------------------------------------------------


def test_a_config_wide_bad_value_is_a_config_error(tmp_path: Path, tc: Emulator) -> None:
    cfg = text_feed(tmp_path, "feed", 10)
    cfg.write_text(cfg.read_text() + "[options]\nconfidence = 500\n")
    run = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "confidence" in run.stderr and "feed.toml" in run.stderr
    assert tc.store.count(OWNER, "indicator") == 0
    cfg.write_text(cfg.read_text().replace("confidence = 500", "confidnce = 50"))
    typo = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert typo.returncode == 2 and "confidence" in typo.stderr  # did you mean


# -- 8. results that say what happened -------------------------------------------------------------


def test_every_row_rejected_is_a_failure_with_a_way_to_see_why(tmp_path: Path, tc: Emulator) -> None:
    (tmp_path / "feed.txt").write_text("".join(f"not an indicator {i}!\n" for i in range(30)))
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.txt"\nformat = "text"\nowner = "{OWNER}"\n')
    run = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "rejected 30" in run.stdout
    listed = cli(tc, "rejected", str(cfg), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "not an indicator 7!" in listed.stdout


def test_max_rejected_fails_a_run_with_too_many_rejects(tmp_path: Path, tc: Emulator) -> None:
    (tmp_path / "feed.txt").write_text("10.90.0.1\n10.90.0.2\nbad value one\nbad value two\n")
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.txt"\nformat = "text"\nowner = "{OWNER}"\n[batch]\npoll_interval = 0.02\n')
    assert cli(tc, "run", "--max-rejected", "25%", str(cfg), cwd=tmp_path).returncode == 3
    assert cli(tc, "run", "--max-rejected", "2", str(cfg), cwd=tmp_path).returncode == 0
    assert tc.store.count(OWNER, "indicator") == 2


def test_server_warnings_are_counted_on_the_run_line(tmp_path: Path, tc: Emulator) -> None:
    n = 150
    cfg = text_feed(tmp_path, "feed", n)  # preflight off: the server's warnings are under test
    cfg.write_text(cfg.read_text() + 'preflight = false\n[options]\nattributes = [{type = "No Such Attribute", value = "x"}]\n')
    run = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert run.returncode == 3, run.stdout + run.stderr
    assert f"warned {n}" in run.stdout and "failed 0" in run.stdout
    status = cli(tc, "status", str(cfg), cwd=tmp_path)
    assert f"warned {n}" in status.stdout and "0x2001" in status.stdout
    assert "No Such Attribute" in status.stdout  # the message, not only the code


def test_an_interrupted_run_counts_what_the_api_accepted_and_the_resume_says_what_it_sent(
        tmp_path: Path, tc: Emulator) -> None:
    n = 1000  # 5 chunks of 200; the 2nd is held Running when the run is stopped
    cfg = text_feed(tmp_path, "feed", n)
    proc = _interrupt_run(tc, cfg, tmp_path)
    out = proc.stdout.read()
    assert "interrupted" in out and "sent 200" in out, out
    resumed = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "finished interrupted run 1: sent 800" in resumed.stdout, resumed.stdout
    assert tc.store.count(OWNER, "indicator") == n


# -- 9. progress on a terminal -----------------------------------------------------------------------


def test_run_shows_progress_on_a_terminal_and_nothing_elsewhere(tmp_path: Path, tc: Emulator) -> None:
    import pty

    cfg = text_feed(tmp_path, "feed", 30_000, max_records=5000)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "streambatch.cli", "run", str(cfg)], cwd=tmp_path,
                            env=env_for(tc), stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    seen = b""
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            seen += data
    finally:
        os.close(master)
        proc.wait(timeout=60)
    out = proc.stdout.read()
    assert proc.returncode == 0, seen.decode(errors="replace")
    screen = seen.decode(errors="replace")
    assert "reading:" in screen and "rows" in screen
    assert "submitting:" in screen and "of 30,000 records" in screen
    assert "waiting for batch job" in screen and "sending chunk" in screen
    assert "\r" in screen  # rewritten in place
    assert "sent 30,000" in out
    quiet = cli(tc, "run", str(cfg), cwd=tmp_path)  # not a terminal: no progress at all
    assert "reading:" not in quiet.stderr and "submitting:" not in quiet.stderr
    silent = cli(tc, "run", "-q", str(cfg), cwd=tmp_path)
    assert silent.returncode == 0 and silent.stdout == "" and silent.stderr == ""


# -- 10. clean failures ------------------------------------------------------------------------------


def _limited(limit: int):
    import resource

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing

    return preexec


def test_a_full_disk_is_one_line_and_the_next_run_finishes(tmp_path: Path, tc: Emulator) -> None:
    n = 3000
    cfg = text_feed(tmp_path, "feed", n, max_records=500)
    full = subprocess.run([sys.executable, "-m", "streambatch.cli", "run", str(cfg)], cwd=tmp_path, env=env_for(tc),
                          capture_output=True, text=True, timeout=120, preexec_fn=_limited(256 * 1024))
    output = full.stdout + full.stderr
    assert full.returncode == 1, output
    assert "Traceback" not in output
    assert "disk full" in output and "feed.streambatch" in output, output
    done = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert tc.store.count(OWNER, "indicator") == n


def test_a_damaged_job_file_is_named_left_alone_and_can_be_moved_away(tmp_path: Path, tc: Emulator) -> None:
    import hashlib

    n = 1000
    cfg = text_feed(tmp_path, "feed", n)
    _interrupt_run(tc, cfg, tmp_path)
    state_dir = FeedConfig.load(cfg).state_dir
    state = FeedState(state_dir / "state.sqlite")
    try:
        job = state.job_path(state.get("current")["job"])
    finally:
        state.close()
    data = bytearray(job.read_bytes())
    for offset in range(4096, len(data), 4096):  # every page but the first: garbage
        data[offset + 8: offset + 200] = os.urandom(192)
    job.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(str(job) + suffix).unlink(missing_ok=True)
    digest = hashlib.sha256(job.read_bytes()).hexdigest()
    broken = cli(tc, "run", str(cfg), cwd=tmp_path)
    output = broken.stdout + broken.stderr
    assert broken.returncode == 1, output
    assert "Traceback" not in output
    assert job.name in output and "move it away" in output, output
    assert hashlib.sha256(job.read_bytes()).hexdigest() == digest  # nothing overwritten
    job.rename(tmp_path / "damaged.sqlite")
    done = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert tc.store.count(OWNER, "indicator") == n


def test_a_truncated_gzip_feed_fails_with_a_message_not_an_interrupt(tmp_path: Path, tc: Emulator) -> None:
    import gzip

    values = "".join(f"10.91.{i // 256}.{i % 256}\n" for i in range(2000)).encode()
    (tmp_path / "feed.txt.gz").write_bytes(gzip.compress(values)[:-200])
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.txt.gz"\nformat = "text"\nowner = "{OWNER}"\n')
    run = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "interrupted" not in run.stdout + run.stderr
    assert "feed.txt.gz" in run.stdout + run.stderr
    assert tc.store.count(OWNER, "indicator") == 0  # a failed read sends nothing


def test_records_a_halted_job_left_unprocessed_are_sent_again(tmp_path: Path, tc: Emulator) -> None:
    """With haltOnError, the API stops at the first failing record and processes none after
    it: those records did not land and must not be taken as sent."""
    import json

    with _pre_batch(tc, tmp_path) as pre:
        pre.incident("Colliding", xid="adv-2")
        pre.submit_all()
    lines = [{"type": "Adversary", "name": f"Adversary {i}", "xid": f"adv-{i}"} for i in (1, 2, 3)]
    lines += [{"type": "Address", "summary": f"10.92.0.{i}"} for i in range(150)]
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.jsonl"\nformat = "jsonl"\nowner = "{OWNER}"\n'
                   "[batch]\npoll_interval = 0.02\nhalt_on_error = true\n")
    first = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert first.returncode == 3, first.stdout + first.stderr
    assert tc.store.count(OWNER, "indicator") == 0  # halted at adv-2, before the indicators
    feed.write_text("".join(json.dumps(x) + "\n" for x in lines if x.get("xid") != "adv-2"))
    second = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert tc.store.count(OWNER, "indicator") == 150
    assert tc.store.group(OWNER, "adv-3") is not None


def _pre_batch(tc: Emulator, tmp_path: Path):
    from streambatch import Batch
    from streambatch.client import ApiConfig, Client

    return Batch(OWNER, tmp_path / "pre.sqlite", client=Client(ApiConfig(tc.url, tc.access_id, tc.secret_key)),
                 poll_interval=0.02)


def test_a_group_xid_reused_with_another_type_is_a_rejected_row(tmp_path: Path, tc: Emulator) -> None:
    import json

    rows = [{"type": "Adversary", "name": "APT X", "xid": "g-1"}, {"type": "Campaign", "name": "Op X", "xid": "g-1"},
            {"type": "Address", "summary": "10.95.0.1"}]
    (tmp_path / "feed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.jsonl"\nformat = "jsonl"\nowner = "{OWNER}"\n[batch]\npoll_interval = 0.02\n')
    run = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "rejected 1" in run.stdout
    assert tc.store.group(OWNER, "g-1")["type"] == "Adversary" and tc.store.count(OWNER, "indicator") == 1
    listed = cli(tc, "rejected", str(cfg), cwd=tmp_path)
    assert "Campaign" in listed.stdout and "g-1" in listed.stdout
