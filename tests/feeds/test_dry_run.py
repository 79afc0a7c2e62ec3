"""``streambatch run --dry-run`` through the command, against the emulator over HTTP: it reports
what a real cycle would do (new, changed with field differences, unchanged, kept alive,
expired, removed and retired or held, rejected with reasons, records, batch jobs and bytes),
sends nothing, changes no state, and the real run that follows does what it said."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from feed_cli import cli

from streambatch.emulator import Emulator
from streambatch.feeds.config import FeedConfig
from streambatch.store import JobLock

OWNER = "Demo Organization"
FAST = "[batch]\npoll_interval = 0.02\nmax_records = 20\n"
COUNTS = ("read", "rejected", "new", "changed", "unchanged", "kept_alive", "expired", "repeated", "removed",
          "retired", "held")


@pytest.fixture
def tc(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(db=tmp_path / "emu.sqlite") as emulator:
        yield emulator



def ip(i: int) -> str:
    return f"10.99.0.{i}"


def write_feed(folder: Path, rows: dict[int, tuple[int, str, str]], bad: int = 0) -> None:
    lines = ["ioc,score,labels,until"] + [f"{ip(i)},{score},{labels},{until}" for i, (score, labels, until)
                                          in sorted(rows.items())]
    lines += [f"not an address {n},3,a," for n in range(bad)]
    (folder / "feed.csv").write_text("\n".join(lines) + "\n")


def config(folder: Path, extra: str = "") -> Path:
    cfg = folder / "feed.toml"
    cfg.write_text(f'source = "feed.csv"\nformat = "csv"\nowner = "{OWNER}"\nremoved = "inactive"\n'
                   f'absent_cycles = 1\nmax_removed = "50%"\nexpires = "30d"\nkeep_alive = "1h"\n{extra}\n'
                   '[mapping]\nvalue = "ioc"\nrating = "score"\ntags = { columns = ["labels"], separator = "|" }\n'
                   f'expires = "until"\n{FAST}')
    return cfg


def snapshot(cfg: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file of the feed's state folder but its lock file: size, mtime and bytes."""
    folder = FeedConfig.load(cfg).state_dir
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "feed.lock":
            st = path.stat()
            out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns, path.read_bytes())
    return out


def test_a_dry_run_says_what_the_next_run_does_and_changes_nothing(tmp_path: Path, tc: Emulator) -> None:
    rows = {i: (3, "a|b", "") for i in range(30)}
    write_feed(tmp_path, rows)
    cfg = config(tmp_path)
    first = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    with sqlite3.connect(FeedConfig.load(cfg).state_dir / "state.sqlite") as conn:  # sent an hour ago
        conn.execute("UPDATE sent SET sent_at = sent_at - 3600")

    rows[0] = rows[1] = (4, "a|x", "")  # changed
    rows[2] = (3, "a|b", "2001-01-01")  # expired
    for i in (27, 28, 29):  # removed, retired (inactive)
        del rows[i]
    rows.update({i: (2, "n", "") for i in range(30, 34)})  # new
    write_feed(tmp_path, rows, bad=2)
    before, requests = snapshot(cfg), len(tc.requests)

    dry = cli(tc, "run", "--dry-run", "--json", str(cfg), cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    said = json.loads(dry.stdout)
    assert said["dry_run"] is True and said["status"] == "done" and said["rules"] is True
    assert {k: said[k] for k in COUNTS} == {"read": 33, "rejected": 2, "new": 4, "changed": 2, "unchanged": 0,
                                            "kept_alive": 24, "expired": 1, "repeated": 0, "removed": 3,
                                            "retired": 3, "held": 0}
    assert said["records"] == 4 + 2 + 24 + 1 + 3 and said["jobs"] == 2 and said["bytes"] > 0
    assert [c["summary"] for c in said["changes"]] == [ip(0), ip(1)]
    assert said["changes"][0]["diff"] == ["rating 3 -> 4", "tags +x -b"]
    assert [r["line"] for r in said["rejected_sample"]] == [33, 34]  # after the header and 31 records
    assert "cannot detect the indicator type" in said["rejected_sample"][0]["reason"]
    assert snapshot(cfg) == before and len(tc.requests) == requests  # nothing sent, no state changed

    text = cli(tc, "run", "--dry-run", str(cfg), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "nothing was sent and no state was changed" in text.stdout
    assert f"  Address {ip(0)}: rating 3 -> 4; tags +x -b" in text.stdout
    assert "send 34 record(s) and 0 association(s) in 2 batch job(s)" in text.stdout
    assert "line 33: cannot detect the indicator type" in text.stdout
    assert snapshot(cfg) == before and len(tc.requests) == requests

    real = cli(tc, "run", "--json", str(cfg), cwd=tmp_path)
    assert real.returncode == 0, real.stderr
    did = json.loads(real.stdout)
    assert did["run"] == said["run"]
    assert {k: did[k] for k in COUNTS} == {k: said[k] for k in COUNTS}
    assert (did["sent"], did["jobs"], did["bytes"]) == (said["records"], said["jobs"], said["bytes"])
    assert tc.store.indicator(OWNER, "Address", ip(0))["rating"] == 4
    assert tc.store.indicator(OWNER, "Address", ip(2))["active"] is False
    assert tc.store.indicator(OWNER, "Address", ip(29))["active"] is False


def test_a_dry_run_says_the_guard_would_hold_removals(tmp_path: Path, tc: Emulator) -> None:
    rows = {i: (3, "a", "") for i in range(20)}
    write_feed(tmp_path, rows)
    cfg = config(tmp_path)
    assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
    write_feed(tmp_path, {i: rows[i] for i in range(5)})
    with sqlite3.connect(FeedConfig.load(cfg).state_dir / "state.sqlite") as conn:  # the kept rules are old
        (rules,) = conn.execute("SELECT value FROM meta WHERE key = 'rules'").fetchone()
        conn.execute("UPDATE meta SET value = ? WHERE key = 'rules'",
                     (json.dumps({**json.loads(rules), "fetched": 1.0}),))
    before, requests = snapshot(cfg), len(tc.requests)
    dry = cli(tc, "run", "--dry-run", str(cfg), cwd=tmp_path)
    assert dry.returncode == 3, dry.stdout + dry.stderr
    assert "find 15 record(s) gone from the feed; retire 0 (held back by max_removed: 15 would be retired)" \
        in dry.stdout
    assert "a real run would need a look: 15 record(s) would be retired (inactive), more than max_removed" \
        in dry.stdout
    allowed = json.loads(cli(tc, "run", "--dry-run", "--json", "--allow-removal", str(cfg), cwd=tmp_path).stdout)
    assert (allowed["retired"], allowed["held"], allowed["exit_code"]) == (15, 0, 0)
    assert snapshot(cfg) == before and len(tc.requests) == requests


def test_a_dry_run_of_a_feed_that_never_ran_creates_nothing(tmp_path: Path, tc: Emulator) -> None:
    write_feed(tmp_path, {i: (1, "a", "") for i in range(7)})
    cfg = config(tmp_path)
    listing = sorted(p.name for p in tmp_path.iterdir())
    dry = cli(tc, "run", "--dry-run", "--json", str(cfg), cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    said = json.loads(dry.stdout)
    assert (said["run"], said["new"], said["records"], said["jobs"]) == (1, 7, 7, 1)
    assert said["rules"] is False  # none kept yet, and the instance is not asked
    assert sorted(p.name for p in tmp_path.iterdir()) == listing and not tc.requests


def test_a_dry_run_exits_as_a_real_run_on_bad_config_read_errors_and_a_busy_feed(tmp_path: Path,
                                                                                   tc: Emulator) -> None:
    write_feed(tmp_path, {1: (1, "a", "")})
    cfg = config(tmp_path)
    assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
    before = snapshot(cfg)

    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace('removed = "inactive"', 'removed = "sometimes"'))
    wrong = cli(tc, "run", "--dry-run", str(bad), cwd=tmp_path)
    assert wrong.returncode == 2 and "removed 'sometimes' is not one of" in wrong.stderr

    (tmp_path / "feed.csv").unlink()
    unread = cli(tc, "run", "--dry-run", str(cfg), cwd=tmp_path)
    assert unread.returncode == 1
    assert "dry run of feed feed: failed: " in unread.stdout and "No such file or directory" in unread.stdout

    lock = JobLock(FeedConfig.load(cfg).state_dir / "feed").acquire()
    try:
        busy = cli(tc, "run", "--dry-run", str(cfg), cwd=tmp_path)
    finally:
        lock.release()
    assert busy.returncode == 4 and "in use by another streambatch process" in busy.stderr
    assert snapshot(cfg) == before


def test_a_dry_run_of_an_unchanged_url_source_says_so(tmp_path: Path, tc: Emulator) -> None:
    from local_server import serve
    from werkzeug.wrappers import Request, Response

    statuses: list[int] = []

    def app(environ, start_response):
        if Request(environ).headers.get("If-None-Match") == '"v1"':
            response = Response(status=304)
        else:
            response = Response(b"10.98.0.1\n10.98.0.2\n", headers={"ETag": '"v1"'})
        statuses.append(response.status_code)
        return response(environ, start_response)

    with serve(app) as base:
        cfg = tmp_path / "url.toml"
        cfg.write_text(f'source = "{base}/feed.txt"\nformat = "text"\nowner = "{OWNER}"\n{FAST}')
        assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
        before, requests = snapshot(cfg), len(tc.requests)
        dry = cli(tc, "run", "--dry-run", str(cfg), cwd=tmp_path)
        assert dry.returncode == 0, dry.stderr
        assert "find the source not modified since the last run" in dry.stdout
        assert statuses == [200, 304]
        assert snapshot(cfg) == before and len(tc.requests) == requests
