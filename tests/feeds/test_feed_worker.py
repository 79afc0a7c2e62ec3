"""The feed worker against the emulator: delta cycles, removed records, rejects, refused records,
run history, scheduling with a fake clock, SIGTERM + resume, and 304 sources."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from feed_cli import emulator
from local_server import serve
from click.testing import CliRunner
from werkzeug.wrappers import Request, Response

from streambatch.batch import Batch
from streambatch.cli import main
from streambatch.client import Client
from streambatch.emulator import Emulator
from streambatch.feeds.config import FeedConfig
from streambatch.feeds.state import FeedState
from streambatch.feeds.worker import CycleStats, FeedRunner, Worker

OWNER = "Demo Organization"
FAST = "[batch]\npoll_interval = 0.02\n"


def write_config(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def cycle(config_path: Path, client: Client, **overrides: Any) -> CycleStats:
    config = FeedConfig.load(config_path)
    config.batch.setdefault("poll_interval", 0.02)
    for k, v in overrides.items():
        setattr(config, k, v)
    return FeedRunner(config, client).run_cycle()


def uploads(tc: Emulator) -> list[dict]:
    return [r for r in tc.requests if r["method"] == "POST" and r["path"].endswith("/createAndUpload")]


def job_file_of(config_path: Path, run: int | None = None) -> Path:
    config = FeedConfig.load(config_path)
    state = FeedState(config.state_dir / "state.sqlite")
    try:
        runs = state.runs(100)
        row = runs[0] if run is None else next(r for r in runs if r["id"] == run)
        return state.job_path(row["job"])
    finally:
        state.close()


def query(db: Path, sql: str, args: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def csv_rows(n: int, changed: set[int] = frozenset(), removed: set[int] = frozenset()) -> str:
    lines = ["ip,rating,tags"]
    for i in range(n):
        if i in removed:
            continue
        ip = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
        rating, tag = (5, "changed") if i in changed else (1 + i % 3, "c2")
        lines.append(f"{ip},{rating},{tag};feed")
    return "\n".join(lines) + "\n"


def ip_of(i: int) -> str:
    return f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"


CSV_CONFIG = """source = "feed.csv"
format = "csv"
owner = "Demo Organization"
{extra}
[mapping]
value = "ip"
type = {{ const = "Address" }}
rating = "rating"
tags = {{ columns = ["tags"], separator = ";" }}

[batch]
poll_interval = 0.02
"""


# -- 1. the smallest config ------------------------------------------------------------------


def test_smallest_config_defaults_and_state_next_to_config(tmp_path: Path) -> None:
    (tmp_path / "iocs.txt").write_text("1.2.3.4\nevil.example.com\n# a comment\nhttp://bad.example.com/x\n")
    cfg = write_config(tmp_path / "mini.toml", 'source = "iocs.txt"\nformat = "text"\nowner = "Demo Organization"\n')
    config = FeedConfig.load(cfg)
    assert (config.schedule, config.removed, config.grace, config.retention) == (3600.0, "keep", 86400.0, 3)
    assert config.state_dir == tmp_path / "mini.streambatch" and config.history_jsonl is None
    with emulator(tmp_path) as (tc, client):
        stats = cycle(cfg, client)
        assert stats.status == "done"
        assert (stats.read, stats.new, stats.sent, stats.rejected, stats.failed) == (3, 3, 3, 0, 0)
        assert (tmp_path / "mini.streambatch" / "state.sqlite").is_file()
        assert tc.store.indicator(OWNER, "Address", "1.2.3.4") is not None
        assert tc.store.indicator(OWNER, "Host", "evil.example.com") is not None
        assert tc.store.indicator(OWNER, "URL", "http://bad.example.com/x") is not None
        assert tc.store.count(OWNER, "indicator") == 3


# -- 2. delta cycles -------------------------------------------------------------------------


def test_delta_cycle_sends_exactly_the_changed_rows(tmp_path: Path) -> None:
    n = 2000
    changed = set(range(7, n, 100))  # 20 rows, spread over the file
    assert len(changed) == 20
    (tmp_path / "feed.csv").write_text(csv_rows(n))
    cfg = write_config(tmp_path / "c2.toml", CSV_CONFIG.format(extra=""))
    with emulator(tmp_path) as (tc, client):
        first = cycle(cfg, client)
        assert (first.status, first.read, first.new, first.sent, first.unchanged) == ("done", n, n, n, 0)
        assert tc.store.count(OWNER, "indicator") == n
        before = len(uploads(tc))

        (tmp_path / "feed.csv").write_text(csv_rows(n, changed=changed))
        second = cycle(cfg, client)
        assert second.status == "done"
        assert (second.new, second.changed, second.unchanged, second.sent, second.failed) == (0, 20, n - 20, 20, 0)
        # the job file of this cycle holds exactly the 20 changed records ...
        job = job_file_of(cfg, second.run)
        staged = {s for (s,) in query(job, "SELECT summary FROM indicators")}
        assert staged == {ip_of(i) for i in changed}
        # ... and the API received exactly 20 records for it
        new_uploads = uploads(tc)[before:]
        assert len(new_uploads) >= 1
        jobs = tc.store.jobs()[-len(new_uploads):]
        assert sum(j["records"]["indicator"] for j in jobs) == 20
        for i in changed:
            rec = tc.store.indicator(OWNER, "Address", ip_of(i))
            assert rec["rating"] == 5 and {t["name"] for t in rec["tag"]} == {"changed", "feed"}
        untouched = tc.store.indicator(OWNER, "Address", ip_of(8))
        assert untouched["rating"] == 1 + 8 % 3 and {t["name"] for t in untouched["tag"]} == {"c2", "feed"}

        before = len(uploads(tc))
        third = cycle(cfg, client)
        assert (third.status, third.sent, third.new, third.changed, third.unchanged) == ("done", 0, 0, 0, n)
        assert len(uploads(tc)) == before


def _tags(tc: Emulator, ip: str) -> set[str]:
    rec = tc.store.indicator(OWNER, "Address", ip)
    return {t["name"] for t in rec["tag"]}


def test_a_value_listed_twice_is_sent_merged_and_stays_merged(tmp_path: Path) -> None:
    """A record the feed lists more than once is sent as the merge of its occurrences, and an
    unchanged feed then sends nothing: with Replace write types, sending one occurrence alone
    would drop the other's tags on the server."""
    feed = tmp_path / "feed.csv"
    feed.write_text("ip,rating,tags\n10.0.0.1,1,alpha\n10.0.0.2,2,solo\n10.0.0.1,3,beta\n")
    cfg = write_config(tmp_path / "dup.toml", CSV_CONFIG.format(extra=""))
    with emulator(tmp_path) as (tc, client):
        first = cycle(cfg, client)
        assert (first.read, first.new, first.repeated, first.unchanged, first.sent) == (3, 2, 1, 0, 2)
        assert _tags(tc, "10.0.0.1") == {"alpha", "beta"}
        assert tc.store.indicator(OWNER, "Address", "10.0.0.1")["rating"] == 3.0

        for _ in range(2):  # unchanged: nothing is sent, and nothing flips on the server
            before = len(uploads(tc))
            again = cycle(cfg, client)
            assert (again.sent, again.new, again.changed, again.unchanged, again.repeated) == (0, 0, 0, 2, 1)
            assert len(uploads(tc)) == before
            assert _tags(tc, "10.0.0.1") == {"alpha", "beta"}

        # one occurrence changes: the merge of both is sent
        feed.write_text("ip,rating,tags\n10.0.0.1,1,alpha\n10.0.0.2,2,solo\n10.0.0.1,3,gamma\n")
        changed = cycle(cfg, client)
        assert (changed.sent, changed.changed, changed.unchanged, changed.repeated) == (1, 1, 1, 1)
        assert _tags(tc, "10.0.0.1") == {"alpha", "gamma"}
        staged = query(job_file_of(cfg, changed.run), "SELECT body FROM indicators")
        assert len(staged) == 1 and {t["name"] for t in json.loads(staged[0][0])["tag"]} == {"alpha", "gamma"}


def test_a_value_that_starts_repeating_is_sent_whole_by_the_next_cycle(tmp_path: Path) -> None:
    """An unchanged occurrence is not staged, so a value that is repeated for the first time
    cannot be merged in that cycle: it is held back, never sent in part, and sent whole next."""
    feed = tmp_path / "feed.csv"
    feed.write_text("ip,rating,tags\n10.0.0.1,1,alpha\n10.0.0.2,2,solo\n")
    cfg = write_config(tmp_path / "dup.toml", CSV_CONFIG.format(extra=""))
    with emulator(tmp_path) as (tc, client):
        assert cycle(cfg, client).sent == 2
        feed.write_text("ip,rating,tags\n10.0.0.1,1,alpha\n10.0.0.2,2,solo\n10.0.0.1,1,beta\n")
        held = cycle(cfg, client)
        assert (held.status, held.sent, held.repeated, held.changed) == ("done", 0, 1, 1)
        assert _tags(tc, "10.0.0.1") == {"alpha"}  # not replaced by the new occurrence alone
        whole = cycle(cfg, client)
        assert (whole.sent, whole.changed, whole.repeated) == (1, 1, 1)
        assert _tags(tc, "10.0.0.1") == {"alpha", "beta"}
        settled = cycle(cfg, client)
        assert (settled.sent, settled.unchanged, settled.repeated) == (0, 2, 1)
        # listed once again: sent as it now is
        feed.write_text("ip,rating,tags\n10.0.0.1,1,alpha\n10.0.0.2,2,solo\n")
        single = cycle(cfg, client)
        assert (single.sent, single.repeated) == (1, 0)
        assert _tags(tc, "10.0.0.1") == {"alpha"}
        assert cycle(cfg, client).sent == 0


def test_a_group_is_one_record_by_xid_whatever_its_name(tmp_path: Path) -> None:
    """Two rows with group xid g-1 under different names are one group (as in the job file
    and on the server): merged, and never sent one row alone."""
    def feed(tag2: str, name2: str = "emotet") -> None:
        lines = [{"type": "Adversary", "xid": "g-1", "name": "Emotet", "tag": [{"name": "a"}]},
                 {"type": "Adversary", "xid": "g-1", "name": name2, "tag": [{"name": tag2}]}]
        (tmp_path / "feed.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))

    def tags() -> set[str]:
        return {t["name"] for t in tc.store.group(OWNER, "g-1").get("tag", [])}

    feed("b")
    cfg = write_config(tmp_path / "g.toml", 'source = "feed.jsonl"\nformat = "jsonl"\nowner = "Demo Organization"\n' + FAST)
    with emulator(tmp_path) as (tc, client):
        first = cycle(cfg, client)
        assert (first.new, first.repeated, first.sent) == (1, 1, 1) and tags() == {"a", "b"}
        assert (cycle(cfg, client).sent, tags()) == (0, {"a", "b"})
        feed("c")
        changed = cycle(cfg, client)
        assert (changed.changed, changed.sent) == (1, 1) and tags() == {"a", "c"}
        feed("c", name2="Emotet (renamed)")  # a new name is a change of the same group, not a new one
        renamed = cycle(cfg, client)
        assert (renamed.new, renamed.changed, renamed.removed) == (0, 1, 0)
        assert tc.store.group(OWNER, "g-1")["name"] == "Emotet (renamed)"


def test_state_files_that_keyed_groups_by_name_are_converted(tmp_path: Path) -> None:
    state_path = tmp_path / "state.sqlite"
    state = FeedState(state_path)
    state.conn.execute("INSERT INTO sent(key, kind, type, ident, xid, hash, seen) VALUES "
                       "(1, 'group', 'Adversary', 'Emotet', 'g-1', 11, 1), "
                       "(1, 'group', 'Adversary', 'emotet', 'g-1', 12, 1), "
                       "(2, 'indicator', 'Address', '10.0.0.1', 'x', 13, 1)")
    state.put("group_ident", None)  # as written before groups were keyed by xid
    state.close()
    state = FeedState(state_path)
    try:
        rows = state.conn.execute("SELECT kind, ident, xid FROM sent ORDER BY key").fetchall()
    finally:
        state.close()
    assert rows == [("group", "g-1", "g-1"), ("indicator", "10.0.0.1", "x")]


class _StopAfter(threading.Event):
    """A stop event whose is_set() turns true from its n-th call on."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.calls, self.n = 0, n

    def is_set(self) -> bool:
        self.calls += 1
        return self.calls >= self.n


def test_a_cycle_stopped_while_reading_is_dropped_and_read_again(tmp_path: Path) -> None:
    """Stopped at row 10,000, a cycle has staged part of the feed, here one of the two rows
    of a repeated value: its job is dropped, never sent, and the next cycle reads it all."""
    rows = ["ip,rating,tags", "10.0.0.1,1,alpha"] + [f"{ip_of(100000 + i)},1,x" for i in range(15000)]
    (tmp_path / "feed.csv").write_text("\n".join(rows + ["10.0.0.1,1,beta"]) + "\n")
    cfg = write_config(tmp_path / "dup.toml", CSV_CONFIG.format(extra=""))
    with emulator(tmp_path) as (tc, client):
        assert cycle(cfg, client).sent == 15001
        assert _tags(tc, "10.0.0.1") == {"alpha", "beta"}
        (tmp_path / "feed.csv").write_text("\n".join(rows + ["10.0.0.1,1,gamma"]) + "\n")
        config = FeedConfig.load(cfg)
        stopped = FeedRunner(config, client, stop=_StopAfter(2)).run_cycle()  # checked every 10,000 rows
        assert stopped.status == "interrupted" and "reading" in (stopped.message or "")
        partial = job_file_of(cfg, stopped.run)
        assert partial.exists()
        before = len(uploads(tc))
        again = cycle(cfg, client)
        assert not partial.exists() and len(uploads(tc)) == before + 1
        assert (again.status, again.sent, again.changed, again.repeated) == ("done", 1, 1, 1)
        assert _tags(tc, "10.0.0.1") == {"alpha", "gamma"}  # never {"alpha"} alone
        state = FeedState(config.state_dir / "state.sqlite")
        try:
            assert {r["id"]: r["status"] for r in state.runs()}[stopped.run] == "interrupted (dropped)"
        finally:
            state.close()


# -- 3. removed records ----------------------------------------------------------------------


def _removed_setup(tmp_path: Path, removed: str, grace: str | None = None) -> Path:
    (tmp_path / "feed.csv").write_text(csv_rows(10))
    extra = f'removed = "{removed}"\nabsent_cycles = 1\nmax_removed = "50%"\n' + (f'grace = "{grace}"\n' if grace else "")
    return write_config(tmp_path / "feed.toml", CSV_CONFIG.format(extra=extra))


GONE = {2, 5, 9}


def test_removed_keep_leaves_records_alone(tmp_path: Path) -> None:
    cfg = _removed_setup(tmp_path, "keep")
    with emulator(tmp_path) as (tc, client):
        assert cycle(cfg, client).sent == 10
        (tmp_path / "feed.csv").write_text(csv_rows(10, removed=GONE))
        before = len(uploads(tc))
        stats = cycle(cfg, client)
        assert (stats.status, stats.removed, stats.sent, stats.unchanged) == ("done", 3, 0, 7)
        assert len(uploads(tc)) == before
        for i in GONE:
            rec = tc.store.indicator(OWNER, "Address", ip_of(i))
            assert rec is not None and rec.get("active", True) is not False
        assert tc.store.count(OWNER, "indicator") == 10
        # still gone: counted when they left, not again every cycle
        assert (cycle(cfg, client).removed, cycle(cfg, client).unchanged) == (0, 7)


def test_removed_inactive_sends_active_false(tmp_path: Path) -> None:
    cfg = _removed_setup(tmp_path, "inactive")
    with emulator(tmp_path) as (tc, client):
        cycle(cfg, client)
        (tmp_path / "feed.csv").write_text(csv_rows(10, removed=GONE))
        stats = cycle(cfg, client)
        assert (stats.status, stats.removed, stats.sent, stats.unchanged) == ("done", 3, 3, 7)
        for i in GONE:
            assert tc.store.indicator(OWNER, "Address", ip_of(i))["active"] is False
        for i in set(range(10)) - GONE:
            assert tc.store.indicator(OWNER, "Address", ip_of(i)).get("active") is not False


def test_removed_inactive_record_that_comes_back_is_active_again(tmp_path: Path) -> None:
    """A record made inactive because it left the feed, then back in the feed: the worker sees
    it as changed and sends it, but the record it sends has no ``active`` field, so the
    indicator stays inactive in ThreatConnect although the feed lists it again."""
    cfg = _removed_setup(tmp_path, "inactive")
    with emulator(tmp_path) as (tc, client):
        cycle(cfg, client)
        (tmp_path / "feed.csv").write_text(csv_rows(10, removed=GONE))
        cycle(cfg, client)
        assert tc.store.indicator(OWNER, "Address", ip_of(5))["active"] is False
        (tmp_path / "feed.csv").write_text(csv_rows(10, removed=GONE - {5}))
        back = cycle(cfg, client)
        assert back.changed == 1
        assert tc.store.indicator(OWNER, "Address", ip_of(5))["active"] is True


def test_removed_inactive_is_not_resent_every_cycle(tmp_path: Path) -> None:
    """Docstring: a cycle 'sends only what changed since the last successful cycle'. Records
    already sent as inactive have not changed since: the next cycle must not send them again."""
    cfg = _removed_setup(tmp_path, "inactive")
    with emulator(tmp_path) as (tc, client):
        cycle(cfg, client)
        (tmp_path / "feed.csv").write_text(csv_rows(10, removed=GONE))
        assert cycle(cfg, client).sent == 3
        before = len(uploads(tc))
        again = cycle(cfg, client)
        assert again.status == "done"
        assert again.sent == 0, f"the {len(GONE)} inactive records were sent again: {again.line()}"
        assert len(uploads(tc)) == before


def test_removed_delete_after_grace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _removed_setup(tmp_path, "delete", grace="1m")
    with emulator(tmp_path) as (tc, client):
        cycle(cfg, client)
        (tmp_path / "feed.csv").write_text(csv_rows(10, removed=GONE))
        n_requests = len(tc.requests)
        first = cycle(cfg, client)
        assert (first.status, first.removed, first.sent) == ("done", 3, 0)
        assert not [r for r in tc.requests[n_requests:] if r["method"] == "POST"]  # nothing deleted yet
        for i in GONE:
            assert tc.store.indicator(OWNER, "Address", ip_of(i)) is not None
        state_file = FeedConfig.load(cfg).state_dir / "state.sqlite"
        marked = query(state_file, "SELECT ident FROM sent WHERE missing_since IS NOT NULL")
        assert {m[0] for m in marked} == {ip_of(i) for i in GONE}

        # still inside the grace period: not deleted
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 30)
        assert cycle(cfg, client).removed == 0  # they left in the cycle before
        for i in GONE:
            assert tc.store.indicator(OWNER, "Address", ip_of(i)) is not None

        # past the grace period: a Delete job (create + upload) removes them
        monkeypatch.setattr(time, "time", lambda: real() + 61)
        n_requests = len(tc.requests)
        third = cycle(cfg, client)
        assert third.status == "done"
        posts = [r["path"] for r in tc.requests[n_requests:] if r["method"] == "POST"]
        assert "/api/v2/batch" in posts
        assert any(p.rstrip("/").split("/")[-1].isdigit() for p in posts)  # upload to /v2/batch/{id}
        for i in GONE:
            assert tc.store.indicator(OWNER, "Address", ip_of(i)) is None
        assert tc.store.count(OWNER, "indicator") == 7
        delete_jobs = [j for j in tc.store.jobs() if j["settings"].get("action") == "Delete"]
        assert len(delete_jobs) == 1 and delete_jobs[0]["records"]["indicator"] == 3

        # forgotten: not removed again, nothing more deleted
        fourth = cycle(cfg, client)
        assert fourth.removed == 0
        assert len([j for j in tc.store.jobs() if j["settings"].get("action") == "Delete"]) == 1


# -- 4. bad rows ---------------------------------------------------------------------------------


def test_bad_rows_are_rejected_with_line_and_reason(tmp_path: Path) -> None:
    (tmp_path / "feed.csv").write_text(
        "ip,rating,tags\n"
        "10.0.0.1,1,a\n"
        "999.1.1.1,1,a\n"        # line 3: not an address
        "10.0.0.2,1,a\n"
        "10.0.0.3,77,a\n"        # line 5: rating out of range
        "10.0.0.4,2,a\n")
    cfg = write_config(tmp_path / "feed.toml", CSV_CONFIG.format(extra=""))
    with emulator(tmp_path) as (tc, client):
        stats = cycle(cfg, client)
        assert stats.status == "done"
        assert (stats.read, stats.rejected, stats.new, stats.sent) == (5, 2, 3, 3)
        rows = query(job_file_of(cfg), "SELECT line, reason, source FROM rejected ORDER BY line")
        assert [r[0] for r in rows] == [3, 5]
        assert all(r[1] for r in rows) and all(r[2] == "feed.csv" for r in rows)
        assert "999.1.1.1" in rows[0][1] or "address" in rows[0][1].lower()
        assert "rating" in rows[1][1].lower()
        assert tc.store.count(OWNER, "indicator") == 3

        # not fatal, and counted again in the next cycle (the rows are still bad)
        again = cycle(cfg, client)
        assert (again.status, again.rejected, again.sent) == ("done", 2, 0)


# -- 5. records the API refuses --------------------------------------------------------------


def _refused_setup(tmp_path: Path, client: Client) -> Path:
    """A jsonl feed with 3 groups and 2 indicators; group 'feed-adv-2' collides with an Incident
    of the same xid already in the owner (the emulator refuses it: 0x100A, severity Error)."""
    lines = [{"type": "Adversary", "name": f"Adversary {i}", "xid": f"feed-adv-{i}"} for i in (1, 2, 3)]
    lines += [{"type": "Address", "summary": "10.9.0.1"}, {"type": "Host", "summary": "refused.example.com"}]
    (tmp_path / "feed.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with Batch(OWNER, tmp_path / "pre.sqlite", client=client, poll_interval=0.02) as pre:
        pre.incident("Colliding", xid="feed-adv-2")
        pre.submit_all()
    return write_config(tmp_path / "feed.toml", 'source = "feed.jsonl"\nformat = "jsonl"\nowner = "Demo Organization"\n' + FAST)


def _check_refused_then_resent(tc: Emulator, cfg: Path, client: Client) -> None:
    """Only the refused record is unconfirmed and sent again."""
    unconfirmed = 1
    first = cycle(cfg, client)
    assert first.status == "done" and first.sent == 5
    # the emulator refused exactly one record, with severity Error (a job processed inline with
    # errors is sent once more as a queued job, to learn which record it was)
    feed_jobs = tc.store.jobs()[1:]
    last = feed_jobs[-1]
    assert last["counters"]["errorCount"] == 1
    assert [(e["severity"], e["errorSource"]) for e in tc.store.errors(last["id"])] == [("Error", "feed-adv-2")]
    assert first.failed == unconfirmed, f"the refused record was not counted as failed: {first.line()}"
    assert tc.store.group(OWNER, "feed-adv-1")["type"] == "Adversary"
    assert tc.store.group(OWNER, "feed-adv-2")["type"] == "Incident"

    # still refused: only the refused record is sent again
    second = cycle(cfg, client)
    assert (second.sent, second.failed, second.unchanged) == (unconfirmed, unconfirmed, 5 - unconfirmed)

    # the collision is gone: the record is sent once more and accepted
    tc.store.delete_group(tc.store.find_group(OWNER, "feed-adv-2")["id"])
    third = cycle(cfg, client)
    assert (third.sent, third.failed, third.unchanged) == (unconfirmed, 0, 5 - unconfirmed)
    assert tc.store.group(OWNER, "feed-adv-2")["type"] == "Adversary"

    fourth = cycle(cfg, client)
    assert (fourth.sent, fourth.failed, fourth.unchanged) == (0, 0, 5)


def test_refused_records_are_resent_async_jobs(tmp_path: Path) -> None:
    with emulator(tmp_path, synchronous_batch_save_limit=0) as (tc, client):
        cfg = _refused_setup(tmp_path, client)
        _check_refused_then_resent(tc, cfg, client)


def test_refused_records_are_resent_synchronous_jobs(tmp_path: Path) -> None:
    """Small deltas (<= synchronousBatchSaveLimit items, 100 by default) are processed inline
    and answered 'Completed' without an id; the API refused a record (errorCount 1), and the
    chunk sent again as a queued job tells which."""
    with emulator(tmp_path) as (tc, client):
        cfg = _refused_setup(tmp_path, client)
        _check_refused_then_resent(tc, cfg, client)


# -- 6. run history ------------------------------------------------------------------------------


def test_history_command_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "feed.csv").write_text(csv_rows(10))
    cfg = write_config(tmp_path / "feed.toml", CSV_CONFIG.format(extra='history_jsonl = "history.jsonl"\n'))
    with emulator(tmp_path) as (tc, client):
        s1 = cycle(cfg, client)
        (tmp_path / "feed.csv").write_text(csv_rows(10, changed={1, 2}, removed={9}) + "bad,1,x\n")
        s2 = cycle(cfg, client)
    assert (s2.read, s2.rejected, s2.changed, s2.unchanged, s2.removed, s2.sent) == (10, 1, 2, 7, 1, 2)

    result = CliRunner().invoke(main, ["history", "--json", str(cfg)])
    assert result.exit_code == 0, result.output
    runs = [json.loads(line) for line in result.output.splitlines()]
    assert [r["id"] for r in runs] == [s2.run, s1.run]
    assert {k: runs[0][k] for k in ("status", "read", "rejected", "new", "changed", "unchanged", "removed", "sent", "failed")} == \
        {"status": "done", "read": 10, "rejected": 1, "new": 0, "changed": 2, "unchanged": 7, "removed": 1, "sent": 2, "failed": 0}
    assert (runs[1]["new"], runs[1]["sent"]) == (10, 10)

    table = CliRunner().invoke(main, ["history", str(cfg)])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:14] == ["id", "read", "rejected", "new", "changed", "unchanged", "kept_alive", "expired",
                                     "removed", "retired", "sent", "accepted", "failed", "warned"]
    assert lines[1].split()[:14] == [str(s2.run), "10", "1", "0", "2", "7", "0", "0", "1", "0", "2", "2", "0", "0"]
    assert lines[2].split()[:14] == [str(s1.run), "10", "0", "10", "0", "0", "0", "0", "0", "0", "10", "10", "0", "0"]
    assert lines[1].split()[-1] == lines[2].split()[-1] == "done"

    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2
    assert [h["run"] for h in history] == [s1.run, s2.run]
    assert {k: history[1][k] for k in ("feed", "status", "read", "rejected", "changed", "removed", "sent")} == \
        {"feed": "feed", "status": "done", "read": 10, "rejected": 1, "changed": 2, "removed": 1, "sent": 2}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", history[1]["time"])  # ISO-8601 UTC


# -- 7. the schedule -----------------------------------------------------------------------------


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _two_feeds(folder: Path) -> None:
    (folder / "a.txt").write_text("1.1.1.1\n")
    (folder / "b.txt").write_text("2.2.2.2\n")
    write_config(folder / "a.toml", 'source = "a.txt"\nformat = "text"\nowner = "Demo Organization"\nschedule = "1m"\n' + FAST)
    write_config(folder / "b.toml", 'source = "b.txt"\nformat = "text"\nowner = "Demo Organization"\nschedule = "3m"\n' + FAST)


def _run_count(folder: Path, name: str) -> int:
    state = FeedState(folder / f"{name}.streambatch" / "state.sqlite")
    try:
        return len(state.runs(1000))
    finally:
        state.close()


def test_schedule_first_interval(tmp_path: Path) -> None:
    folder = tmp_path / "feeds"
    folder.mkdir()
    _two_feeds(folder)
    clock = FakeClock(time.time())
    t0 = clock.now
    with emulator(tmp_path) as (tc, client):
        worker = Worker(folder, client, clock=clock)
        assert worker.next_wakeup() == t0  # never run: due now
        ran = worker.run_due()
        assert sorted(s.feed for s in ran) == ["a", "b"] and all(s.status == "done" for s in ran)
        assert tc.store.count(OWNER, "indicator") == 2
        assert worker.next_wakeup() == pytest.approx(t0 + 60, abs=5)

        clock.now = t0 + 30  # less than either schedule
        assert worker.run_due() == []
        clock.now = t0 + 65  # a is due, b is not
        assert [s.feed for s in worker.run_due()] == ["a"]
        assert (_run_count(folder, "a"), _run_count(folder, "b")) == (2, 1)
        clock.now = t0 + 185  # b is due
        assert "b" in [s.feed for s in worker.run_due()]
        assert _run_count(folder, "b") == 2


def test_schedule_counts_from_the_last_run_on_the_workers_clock(tmp_path: Path) -> None:
    """The next run is due one schedule after the last run -- on the clock the Worker was given."""
    folder = tmp_path / "feeds"
    folder.mkdir()
    _two_feeds(folder)
    (folder / "b.toml").unlink()
    clock = FakeClock(time.time())
    t0 = clock.now
    with emulator(tmp_path) as (tc, client):
        worker = Worker(folder, client, clock=clock)
        worker.run_due()                      # run 1 at t0
        clock.now = t0 + 61
        assert len(worker.run_due()) == 1     # run 2 at t0 + 61
        assert worker.next_wakeup() == pytest.approx(t0 + 121, abs=1)
        clock.now = t0 + 91                   # 30 s after run 2: not due
        assert worker.run_due() == []
        assert _run_count(folder, "a") == 2


def test_run_forever_with_fake_sleep(tmp_path: Path) -> None:
    folder = tmp_path / "feeds"
    folder.mkdir()
    _two_feeds(folder)
    clock = FakeClock(time.time())
    t0 = clock.now
    stop = threading.Event()
    sleeps: list[float] = []
    with emulator(tmp_path) as (tc, client):
        worker = Worker(folder, client, clock=clock, stop=stop)

        def sleep(seconds: float) -> bool:
            assert 0 <= seconds <= Worker.RESCAN  # short naps: a changed config is noticed soon
            sleeps.append(seconds)
            clock.now += seconds
            if sum(sleeps) >= 240 - 1e-6:
                stop.set()
            return stop.is_set()

        worker.run_forever(sleep)
    # iterations at t0, t0+60, t0+120, t0+180: a runs each time, b at t0 and t0+180
    assert sum(sleeps) == pytest.approx(240)
    assert (_run_count(folder, "a"), _run_count(folder, "b")) == (4, 2), f"sleeps: {sleeps}"
    assert clock.now == pytest.approx(t0 + 240, abs=2)


def test_run_forever_stops_on_stop_event(tmp_path: Path) -> None:
    folder = tmp_path / "feeds"
    folder.mkdir()
    stop = threading.Event()
    calls: list[float] = []
    worker = Worker(folder, None, clock=FakeClock(1000.0), stop=stop)
    assert worker.next_wakeup() == 1060.0  # no feeds: a minute from now

    def sleep(seconds: float) -> bool:
        calls.append(seconds)
        stop.set()
        return True

    worker.run_forever(sleep)
    assert calls == [Worker.RESCAN]  # woken by the stop at the first nap


# -- 8. SIGTERM mid-cycle, then resume ------------------------------------------------------------

N_RECORDS = 600
MAX_RECORDS = 150  # 4 chunks, each above the emulator's synchronous limit (100): queued jobs


def _sigterm_setup(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "feeds"
    folder.mkdir()
    (folder / "big.txt").write_text("".join(f"10.77.{i // 256}.{i % 256}\n" for i in range(N_RECORDS)))
    cfg = write_config(folder / "big.toml", 'source = "big.txt"\nformat = "text"\nowner = "Demo Organization"\n'
                       f'schedule = "1h"\n[batch]\npoll_interval = 0.05\nmax_records = {MAX_RECORDS}\n')
    return folder, cfg


def _worker_process(tc: Emulator, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "TC_API_PATH": tc.url, "TC_API_ACCESS_ID": tc.access_id, "TC_API_SECRET_KEY": tc.secret_key}
    env.pop("TC_TOKEN", None)
    return subprocess.Popen([sys.executable, "-m", "streambatch.cli", "worker", str(folder)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _check_interrupted_and_resume(tc: Emulator, client: Client, cfg: Path) -> None:
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        runs = state.runs()
        current = state.get("current")
        job = state.job_path(current["job"]) if current else None
    finally:
        state.close()
    assert len(runs) == 1 and runs[0]["status"] == "interrupted", runs
    assert current is not None and current["run"] == runs[0]["id"]
    assert job is not None
    pending = query(job, "SELECT count(*) FROM chunks WHERE state != 'done'")[0][0]
    unchunked = query(job, "SELECT count(*) FROM indicators WHERE seq > "
                           "(SELECT coalesce(max(ind_hi), 0) FROM chunks)")[0][0]
    assert pending + unchunked > 0  # work left for the next run
    sent_before = len(uploads(tc))
    assert 1 <= sent_before < N_RECORDS // MAX_RECORDS

    stats = cycle(cfg, client)
    assert stats.status == "done"
    assert stats.sent == 0 and stats.unchanged == N_RECORDS  # the interrupted job's records were confirmed
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        statuses = [r["status"] for r in state.runs()]
    finally:
        state.close()
    assert statuses == ["done", "done (resumed)"]
    # every chunk sent exactly once over both runs: the first run's chunks were not re-sent
    assert len(uploads(tc)) == N_RECORDS // MAX_RECORDS
    assert query(job, "SELECT count(*) FROM chunks WHERE state != 'done'")[0][0] == 0
    assert tc.store.count(OWNER, "indicator") == N_RECORDS
    counts = [j["records"]["indicator"] for j in tc.store.jobs()]
    assert sum(counts) == N_RECORDS and all(j["status"] == "Completed" for j in tc.store.jobs())


def test_sigterm_while_a_job_runs_exits_and_the_next_run_resumes(tmp_path: Path) -> None:
    """SIGTERM while the first chunk's job is held in Running: the worker stops (the job file
    keeps the chunk's batch id) and a later run polls it -- never sending it again."""
    folder, cfg = _sigterm_setup(tmp_path)
    with emulator(tmp_path, faults=[{"kind": "running", "nth": 1, "times": 0}]) as (tc, client):
        proc = _worker_process(tc, folder)
        try:
            assert _wait_for(lambda: len(uploads(tc)) >= 1), proc.stderr.read() if proc.poll() is not None else ""
            time.sleep(0.2)  # the worker is polling the held job
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pytest.fail("the worker did not stop within 5 s of SIGTERM while a batch job was Running")
        finally:
            if proc.poll() is None:
                tc.set_faults([])
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        assert proc.returncode == 0, proc.stderr.read()
        tc.set_faults([])
        _check_interrupted_and_resume(tc, client, cfg)


def test_sigterm_mid_cycle_then_restart_resumes(tmp_path: Path) -> None:
    """SIGTERM after the first createAndUpload; the held job is released so the current step
    can finish: the worker stops before the next chunk, and the next run finishes the job."""
    folder, cfg = _sigterm_setup(tmp_path)
    with emulator(tmp_path, faults=[{"kind": "running", "nth": 1, "times": 0}]) as (tc, client):
        proc = _worker_process(tc, folder)
        try:
            assert _wait_for(lambda: len(uploads(tc)) >= 1), proc.stderr.read() if proc.poll() is not None else ""
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            tc.set_faults([])  # the step in progress (polling the first chunk) can now finish
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr = proc.stderr.read().decode()
        assert proc.returncode == 0, stderr
        assert "SIGTERM" in stderr and "worker stopped" in stderr
        _check_interrupted_and_resume(tc, client, cfg)


# -- 9. an unchanged (304) URL source --------------------------------------------------------------

ETAG = '"feed-v1"'


class FeedServer:
    def __init__(self) -> None:
        self.body = b"1.2.3.4\n5.6.7.8\nevil.example.com\n"
        self.etag = ETAG
        self.statuses: list[int] = []

    def __call__(self, environ, start_response):
        request = Request(environ)
        if request.headers.get("If-None-Match") == self.etag:
            response = Response(status=304)
        else:
            response = Response(self.body, headers={"ETag": self.etag})
        self.statuses.append(response.status_code)
        return response(environ, start_response)


@pytest.fixture
def feed_server() -> Iterator[tuple[str, FeedServer]]:
    app = FeedServer()
    with serve(app) as base:
        yield f"{base}/feed.txt", app


def test_not_modified_source_sends_and_removes_nothing(tmp_path: Path, feed_server) -> None:
    url, app = feed_server
    cfg = write_config(tmp_path / "url.toml", f'source = "{url}"\nformat = "text"\nowner = "Demo Organization"\n'
                       f'removed = "inactive"\nabsent_cycles = 1\nmax_removed = "50%"\n' + FAST)
    with emulator(tmp_path) as (tc, client):
        first = cycle(cfg, client)
        assert (first.status, first.sent) == ("done", 3)
        before = len(uploads(tc))
        second = cycle(cfg, client)
        assert app.statuses == [200, 304]
        # not read: counted as the unchanged cycle it stands for (the rows and records of the last read)
        assert second.source_unchanged
        assert (second.status, second.read, second.unchanged, second.sent, second.removed, second.failed) == \
            ("done", 3, 3, 0, 0, 0)
        assert len(uploads(tc)) == before
        for ind_type, summary in (("Address", "1.2.3.4"), ("Address", "5.6.7.8"), ("Host", "evil.example.com")):
            assert tc.store.indicator(OWNER, ind_type, summary).get("active") is not False

        # the feed changes: 200 again, and the removed record is made inactive
        app.body, app.etag = b"1.2.3.4\nevil.example.com\n", '"feed-v2"'
        third = cycle(cfg, client)
        assert app.statuses[-1] == 200
        assert (third.read, third.unchanged, third.removed, third.sent) == (2, 2, 1, 1)
        assert tc.store.indicator(OWNER, "Address", "5.6.7.8")["active"] is False


def test_feed_url_secrets_stay_out_of_errors() -> None:
    from streambatch.errors import StreambatchError
    from streambatch.feeds.readers import read_feed

    url = "http://user:hunter2@127.0.0.1:9/feed.txt?apikey=s3cr3t-key"  # port 9: nothing listens
    with pytest.raises(StreambatchError) as info:
        list(read_feed(url, "text"))
    text = str(info.value)
    assert "127.0.0.1:9/feed.txt" in text
    assert "hunter2" not in text and "s3cr3t-key" not in text


def test_cron_schedule_on_a_fake_clock(tmp_path: Path) -> None:
    from streambatch.feeds.config import ConfigError, FeedConfig

    cfg_path = tmp_path / "cron.toml"
    cfg_path.write_text('source = "x.txt"\nformat = "text"\nowner = "Demo Organization"\nschedule = "0 */6 * * *"\n')
    config = FeedConfig.load(cfg_path)
    assert config.cron == "0 */6 * * *"
    start = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
    assert config.next_due(None, start) == start  # never ran: due at once
    assert config.next_due(start, start) == 1_700_006_400.0  # the next 00/06/12/18:00 UTC: 2023-11-15 00:00
    cfg_path.write_text('source = "x.txt"\nformat = "text"\nowner = "O"\nschedule = "61 * * * *"\n')
    with pytest.raises(ConfigError, match="cron"):
        FeedConfig.load(cfg_path)


def test_unchanged_rows_are_recognised_by_the_readers_output(tmp_path: Path) -> None:
    """A row the reader turns into the same record as last time is unchanged without a check;
    the same record written differently is still unchanged after the full check; a changed
    default (from the config) changes every record."""
    rows = [{"type": "Address", "summary": f"10.40.0.{i}", "rating": 2} for i in range(5)]
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = write_config(tmp_path / "feed.toml", 'source = "feed.jsonl"\nformat = "jsonl"\nowner = "Demo Organization"\n'
                       + FAST)
    with emulator(tmp_path) as (tc, client):
        assert cycle(cfg, client).sent == 5
        state = sqlite3.connect(tmp_path / "feed.streambatch" / "state.sqlite")
        assert state.execute("SELECT count(*) FROM sent WHERE raw IS NOT NULL").fetchone()[0] == 5
        second = cycle(cfg, client)
        assert (second.unchanged, second.sent) == (5, 0)
        # the same records with their keys in another order: the reader's output differs, the
        # canonical record does not
        feed.write_text("".join(json.dumps(dict(reversed(list(r.items())))) + "\n" for r in rows))
        third = cycle(cfg, client)
        assert (third.unchanged, third.changed, third.sent) == (5, 0, 0)
        fourth = cycle(cfg, client)
        assert (fourth.unchanged, fourth.sent) == (5, 0)
        # a new default from the config reaches every record
        cfg.write_text(cfg.read_text().replace("[batch]", "[options]\nconfidence = 90\n\n[batch]", 1)
                       if "[batch]" in cfg.read_text() else cfg.read_text() + "\n[options]\nconfidence = 90\n")
        fifth = cycle(cfg, client)
        assert (fifth.changed, fifth.sent) == (5, 5)
        assert tc.store.indicator(OWNER, "Address", "10.40.0.3")["confidence"] == 90
