"""An unchanged source is not read: a cycle whose source is the same as at the last clean
complete read (HTTP 304, the same ETag, the same content digest), and that nothing else gives
work, records a run counted as unchanged and reads nothing. Each thing that gives a cycle work
(a changed config, a keep-alive due, an expiry passed, a record to send again, a retirement
held or not yet due, the instance's rules due for a refresh) makes it read the feed in full."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from feed_cli import cli
from local_server import serve
from test_feed_worker import CSV_CONFIG, FAST, OWNER, _refused_setup, csv_rows, emulator, ip_of, uploads, write_config
from werkzeug.wrappers import Request, Response

from streambatch.emulator import Emulator
from streambatch.feeds.config import FeedConfig
from streambatch.feeds.state import FeedState
from streambatch.feeds.worker import CycleStats, FeedRunner
from streambatch.metrics import Metrics


def run(cfg: Path, client, now: float | None = None, **options) -> CycleStats:
    config = FeedConfig.load(cfg)
    return FeedRunner(config, client, clock=(lambda: now) if now is not None else None, **options).run_cycle()


def job_files(cfg: Path) -> list[Path]:
    return sorted(FeedConfig.load(cfg).state_dir.glob("job-*.sqlite"))


def runs(cfg: Path) -> list[dict]:
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        return state.runs(100)
    finally:
        state.close()


def csv_feed(tmp_path: Path, n: int = 20, extra: str = "") -> Path:
    (tmp_path / "feed.csv").write_text(csv_rows(n))
    return write_config(tmp_path / "feed.toml", CSV_CONFIG.format(extra=extra))


# -- the skip itself ---------------------------------------------------------------------------


def test_an_unchanged_file_is_not_read_and_the_run_says_so(tmp_path: Path) -> None:
    cfg = csv_feed(tmp_path, extra='history_jsonl = "history.jsonl"\n')
    metrics = Metrics()
    with emulator(tmp_path) as (tc, client):
        first = run(cfg, client)
        assert (first.status, first.new, first.sent) == ("done", 20, 20)
        jobs, posts = job_files(cfg), len(uploads(tc))
        second = run(cfg, client)
        metrics.cycle(second)
    assert second.source_unchanged and second.status == "done" and second.exit_code() == 0
    # counted as the unchanged cycle it stands for
    assert (second.read, second.rejected, second.new, second.changed, second.unchanged, second.removed,
            second.sent) == (20, 0, 0, 0, 20, 0, 0)
    assert "(source unchanged since run 1 (the same content): not read again, counts as in run 1)" in second.line()
    assert job_files(cfg) == jobs and len(uploads(tc)) == posts  # no job file made, nothing sent
    last = runs(cfg)[0]
    assert (last["id"], last["status"], last["job"], last["read"], last["unchanged"], last["sent"]) == \
        (2, "done", None, 20, 20, 0)
    assert "source unchanged since run 1" in last["message"]
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [h["source_unchanged"] for h in history] == [False, True]
    exposed = metrics.registry.get_sample_value("streambatch_feed_records_total", {"feed": "feed", "kind": "unchanged"})
    assert exposed == 20


def test_an_unchanged_file_skipped_through_the_command(tmp_path: Path) -> None:
    cfg = csv_feed(tmp_path)
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
        again = cli(tc, "run", str(cfg), cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert "unchanged 20" in again.stdout and "not read again" in again.stdout
        history = cli(tc, "history", str(cfg), cwd=tmp_path)
        assert "done: source unchanged since run 1 (the same content): not read again, counts as in run 1" in history.stdout
        # status shows the newest run with a job file, and says that the newer one made none
        status = cli(tc, "status", str(cfg), cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        first = status.stdout.splitlines()[0]
        assert first.startswith("feed feed: run 1 (done), job file ") and \
            "; run 2 is newer and made no job file (done: source unchanged since run 1" in first, first


def test_a_changed_byte_is_read_in_full(tmp_path: Path) -> None:
    cfg = csv_feed(tmp_path)
    with emulator(tmp_path) as (tc, client):
        run(cfg, client)
        text = (tmp_path / "feed.csv").read_text()
        (tmp_path / "feed.csv").write_text(text.replace("10.0.0.3,1,", "10.0.0.3,2,"))  # same size
        again = run(cfg, client)
        assert not again.source_unchanged
        assert (again.read, again.changed, again.unchanged, again.sent) == (20, 1, 19, 1)
        assert tc.store.indicator(OWNER, "Address", "10.0.0.3")["rating"] == 2.0
        assert run(cfg, client).source_unchanged  # and then unchanged again


class Validators:
    """A feed served with or without validators, optionally ignoring conditional requests."""

    def __init__(self, body: bytes, etag: str | None = None, conditional: bool = True) -> None:
        self.body, self.etag, self.conditional = body, etag, conditional
        self.statuses: list[int] = []

    def __call__(self, environ, start_response):
        request = Request(environ)
        if self.conditional and self.etag and request.headers.get("If-None-Match") == self.etag:
            response = Response(status=304)
        else:
            response = Response(self.body, headers={"ETag": self.etag} if self.etag else {})
        self.statuses.append(response.status_code)
        return response(environ, start_response)


@pytest.fixture
def url_feed(tmp_path: Path) -> Iterator:
    def make(app: Validators, extra: str = "") -> Path:
        base = stack.enter_context(serve(app))
        return write_config(tmp_path / "url.toml", f'source = "{base}/feed.txt"\nformat = "text"\nowner = "{OWNER}"\n'
                            + extra + FAST)

    import contextlib

    with contextlib.ExitStack() as stack:
        yield make


@pytest.mark.parametrize("etag, conditional, why, requests", [
    ('"v1"', True, "HTTP 304", [200, 304]),
    ('"v1"', False, "the same ETag", [200, 200]),  # a server that ignores If-None-Match
    (None, True, "the same content", [200, 200]),  # no validators: the body's digest
])
def test_an_unchanged_url_is_not_read(tmp_path: Path, url_feed, etag, conditional, why, requests) -> None:
    app = Validators(b"10.7.0.1\n10.7.0.2\n10.7.0.3\n", etag, conditional)
    cfg = url_feed(app)
    with emulator(tmp_path) as (tc, client):
        assert run(cfg, client).new == 3
        again = run(cfg, client)
        assert again.source_unchanged and f"({why})" in again.message
        assert (again.read, again.unchanged, again.sent) == (3, 3, 0)
        assert app.statuses == requests

        app.body = b"10.7.0.1\n10.7.0.3\n10.7.0.4\n"
        if etag:
            app.etag = '"v2"'
        changed = run(cfg, client)
        assert not changed.source_unchanged
        assert (changed.read, changed.new, changed.unchanged, changed.removed) == (3, 1, 2, 1)


# -- what makes a cycle read the feed in full --------------------------------------------------


def test_a_changed_config_reads_in_full_and_a_schedule_change_does_not(tmp_path: Path) -> None:
    cfg = csv_feed(tmp_path)
    with emulator(tmp_path) as (tc, client):
        run(cfg, client)
        write_config(cfg, CSV_CONFIG.format(extra='schedule = "2h"\nretention = 5\n'))  # not what a cycle sends
        assert run(cfg, client).source_unchanged
        write_config(cfg, CSV_CONFIG.format(extra="").replace('rating = "rating"\n', "rating = { const = 4 }\n"))
        changed = run(cfg, client)
        assert not changed.source_unchanged and (changed.changed, changed.sent) == (20, 20)
        assert tc.store.indicator(OWNER, "Address", ip_of(0))["rating"] == 4.0


def test_a_keep_alive_due_reads_in_full(tmp_path: Path) -> None:
    cfg = csv_feed(tmp_path, extra='keep_alive = "1h"\n')
    t0 = 1_900_000_000.0
    with emulator(tmp_path) as (tc, client):
        assert run(cfg, client, t0).new == 20
        assert run(cfg, client, t0 + 1).source_unchanged  # none of the 20 phases falls in that second
        kept = run(cfg, client, t0 + 3600)
        assert not kept.source_unchanged and (kept.kept_alive, kept.sent) == (20, 20)
        assert run(cfg, client, t0 + 3601).source_unchanged


def test_an_expiry_passing_reads_in_full(tmp_path: Path) -> None:
    (tmp_path / "feed.csv").write_text("ip,until\n10.8.0.1,2030-01-01T00:00:00Z\n10.8.0.2,\n")
    cfg = write_config(tmp_path / "feed.toml", f'source = "feed.csv"\nformat = "csv"\nowner = "{OWNER}"\n'
                       '[mapping]\nvalue = "ip"\nexpires = "until"\n' + FAST)
    before = 1_893_456_000.0 - 3600  # an hour before 2030-01-01
    with emulator(tmp_path) as (tc, client):
        assert run(cfg, client, before).new == 2
        assert run(cfg, client, before + 60).source_unchanged
        expired = run(cfg, client, before + 7200)
        assert not expired.source_unchanged and (expired.expired, expired.unchanged, expired.sent) == (1, 1, 1)
        assert tc.store.indicator(OWNER, "Address", "10.8.0.1")["active"] is False
        assert run(cfg, client, before + 7260).source_unchanged  # sent as inactive once: nothing left to do


def test_a_record_to_send_again_is_sent_while_the_url_answers_304(tmp_path: Path) -> None:
    """A record the API refused is sent again by the next cycle, even though the source
    answers 304: a cycle that left records to retry leaves no mark, and a full read asks
    unconditionally (before, a 304 read nothing and the record waited for the feed to change)."""
    with emulator(tmp_path, synchronous_batch_save_limit=0) as (tc, client):
        local = _refused_setup(tmp_path, client)
        app = Validators((tmp_path / "feed.jsonl").read_bytes(), '"v1"')
        with serve(app) as base:
            cfg = write_config(local, local.read_text().replace('"feed.jsonl"', f'"{base}/feed.jsonl"'))
            first = run(cfg, client)
            assert (first.sent, first.failed) == (5, 1)
            tc.store.delete_group(tc.store.find_group(OWNER, "feed-adv-2")["id"])
            second = run(cfg, client)
            assert (second.sent, second.failed, second.unchanged) == (1, 0, 4) and not second.source_unchanged
            assert tc.store.group(OWNER, "feed-adv-2")["type"] == "Adversary"
            third = run(cfg, client)
            assert third.source_unchanged and app.statuses == [200, 200, 304]


def test_retirements_held_back_are_looked_at_again(tmp_path: Path) -> None:
    cfg = csv_feed(tmp_path, 10, 'removed = "inactive"\nabsent_cycles = 1\nmax_removed = "10%"\n')
    with emulator(tmp_path) as (tc, client):
        run(cfg, client)
        (tmp_path / "feed.csv").write_text(csv_rows(10, removed={1, 2, 3, 4, 5}))
        held = run(cfg, client)
        assert (held.removed, held.held, held.retired) == (5, 5, 0)
        again = run(cfg, client)
        assert not again.source_unchanged and again.held == 5 and again.attention
        allowed = run(cfg, client, allow_removal=True)
        assert not allowed.source_unchanged and allowed.retired == 5
        assert run(cfg, client).source_unchanged


def test_a_retirement_not_yet_due_is_advanced(tmp_path: Path) -> None:
    """With absent_cycles = 2 a record that left is retired by the second complete read without
    it, though the source did not change between the two."""
    cfg = csv_feed(tmp_path, 10, 'removed = "inactive"\nabsent_cycles = 2\nmax_removed = "50%"\n')
    with emulator(tmp_path) as (tc, client):
        run(cfg, client)
        (tmp_path / "feed.csv").write_text(csv_rows(10, removed={2, 5, 9}))
        left = run(cfg, client)
        assert (left.removed, left.retired) == (3, 0)
        retired = run(cfg, client)
        assert not retired.source_unchanged and (retired.retired, retired.sent) == (3, 3)
        assert tc.store.indicator(OWNER, "Address", ip_of(5))["active"] is False
        assert run(cfg, client).source_unchanged


def test_rules_due_for_a_refresh_read_in_full(tmp_path: Path) -> None:
    cfg = csv_feed(tmp_path)
    write_config(cfg, cfg.read_text() + 'rules_refresh = "12h"\n')
    with emulator(tmp_path) as (tc, client):
        run(cfg, client)
        assert run(cfg, client).source_unchanged
        asked = sum(1 for r in tc.requests if r["path"].endswith("/v3/attributeTypes"))
        state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
        rules = state.get("rules")
        state.put("rules", {**rules, "fetched": rules["fetched"] - 13 * 3600})
        state.close()
        refreshed = run(cfg, client)
        assert not refreshed.source_unchanged
        assert sum(1 for r in tc.requests if r["path"].endswith("/v3/attributeTypes")) == asked + 1
        assert run(cfg, client).source_unchanged


def test_rules_that_changed_read_in_full(tmp_path: Path) -> None:
    """Rules read by another cycle's batch (or written by an older version) differ from those the
    last complete read applied: the feed is read again under them."""
    cfg = csv_feed(tmp_path)
    with emulator(tmp_path) as (tc, client):
        run(cfg, client)
        state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
        rules = state.get("rules")
        state.put("rules", {**rules, "exclusionLists": [{"name": "Indicator-Address", "owner": None,
                                                          "fixed": [ip_of(4)], "variable": []}]})
        state.close()
        again = run(cfg, client)
        assert not again.source_unchanged and again.read == 20
        assert run(cfg, client).source_unchanged


def test_a_stopped_cycle_leaves_no_mark(tmp_path: Path) -> None:
    import threading

    cfg = csv_feed(tmp_path)
    with emulator(tmp_path) as (tc, client):
        run(cfg, client)
        stop = threading.Event()
        stop.set()
        config = FeedConfig.load(cfg)
        (tmp_path / "feed.csv").write_text(csv_rows(20, changed={1}))
        assert FeedRunner(config, client, stop=stop).run_cycle().status == "interrupted"
        (tmp_path / "feed.csv").write_text(csv_rows(20))  # back to what the last complete read had
        again = run(cfg, client)
        assert not again.source_unchanged and again.status == "done"
        assert run(cfg, client).source_unchanged


def test_a_feed_moved_with_its_state_is_still_unchanged(tmp_path: Path) -> None:
    """Where the config is does not change what a cycle sends: a feed folder moved whole
    (config, source, state) keeps its mark and the keys of its rows."""
    import shutil

    old = tmp_path / "old"
    old.mkdir()
    csv_feed(old)
    with emulator(tmp_path) as (tc, client):
        run(old / "feed.toml", client)
        new = tmp_path / "new"
        shutil.move(old, new)
        assert run(new / "feed.toml", client).source_unchanged
        (new / "feed.csv").write_text(csv_rows(20) + "\n")  # other bytes, the same rows
        again = run(new / "feed.toml", client)
        assert not again.source_unchanged and (again.unchanged, again.sent) == (20, 0)
        state = FeedState(FeedConfig.load(new / "feed.toml").state_dir / "state.sqlite")
        try:  # every row was known by its key, none mapped again: each key is the one last kept
            assert state.conn.execute("SELECT count(*) FROM sent WHERE raw IS NOT NULL").fetchone()[0] == 20
        finally:
            state.close()
