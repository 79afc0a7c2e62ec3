"""TAXII 2.1 collections as feeds, against a real TAXII 2.1 server on loopback: OASIS medallion
(see taxii_server.py), started by each test in a thread, and the emulator as the API.

Full then incremental reads (only what was added is read and sent, the cursor is the server's
X-TAXII-Date-Added-Last to the microsecond and is committed only with the confirmed job),
paging (many pages, the server's page size adopted), a server that stops or loses its paging
sessions mid-read (a failed read: nothing sent or removed, the cursor unchanged, the next cycle
reads it all), a server that ignores added_after or repeats objects across pages, removal only
on full refreshes, and credentials that never appear in output or files."""

from __future__ import annotations

import copy
import logging
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import feed_cli
import pytest
import taxii_server as ts
from taxii_server import PASSWORD, USER, TaxiiServer, collection, indicator, value_of

from streambatch.batch import Batch
from streambatch.client import Client
from streambatch.emulator import Emulator
from streambatch.errors import IncompleteReadError, StreambatchError, TransientError
from streambatch.feeds import redact
from streambatch.feeds.config import ConfigError, FeedConfig
from streambatch.feeds.readers import read_feed
from streambatch.feeds.state import FeedState
from streambatch.feeds.worker import CycleStats, FeedRunner

OWNER = "Demo Organization"


# -- helpers --------------------------------------------------------------------------------------

def emulator(tmp_path: Path, **kwargs: Any):
    return feed_cli.emulator(tmp_path, attempts=2, **kwargs)


@contextmanager
def server(*collections: dict, **kwargs: Any) -> Iterator[TaxiiServer]:
    srv = TaxiiServer(list(collections), **kwargs).start()
    try:
        yield srv
    finally:
        srv.stop()


def cycle(cfg: Path, client: Client) -> CycleStats:
    config = FeedConfig.load(cfg)
    config.batch.setdefault("poll_interval", 0.02)
    return FeedRunner(config, client).run_cycle()


def uploads(tc: Emulator) -> int:
    return sum(1 for r in tc.requests if r["method"] == "POST" and r["path"].endswith("/createAndUpload"))


def config(tmp_path: Path, srv: TaxiiServer, body: str = "", *, name: str = "taxii", table: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'source = "taxii2+{srv.discovery_url}"\nformat = "stix"\nowner = "{OWNER}"\n{body}\n'
                    f'[taxii]\ncollection = "Indicators"\nuser = "{USER}"\npassword = "{PASSWORD}"\n{table}\n'
                    "[batch]\npoll_interval = 0.02\n", encoding="utf-8")
    return path


def state_of(cfg: Path) -> FeedState:
    return FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")


def committed(cfg: Path) -> dict | None:
    state = state_of(cfg)
    try:
        return state.get("cursor")
    finally:
        state.close()


def indicators(n: int, start: int = 0, **kwargs: Any) -> list[dict]:
    return [indicator(i, **kwargs) for i in range(start, start + n)]


def in_store(tc: Emulator, i: int, tag: str = "") -> dict | None:
    return tc.store.indicator(OWNER, *value_of(i, tag))


# -- the test server itself -----------------------------------------------------------------------

def test_medallion_shortcuts_match_the_originals() -> None:
    """The test server's linear filter steps give what medallion's own (quadratic) ones give,
    on objects with several versions, spec versions, shared dates added and odd limits; its
    collection lookup gives what medallion's gives."""
    rng = random.Random(7)
    objs, manifest = [], []
    for i in range(120):
        for version in range(rng.choice((1, 1, 2, 3))):
            obj = indicator(i % 90, version=version)
            if rng.random() < 0.2:
                obj["spec_version"] = "2.0"
            objs.append(obj)
            manifest.append({"id": obj["id"], "date_added": ts.added_at(rng.randrange(60)),
                             "version": obj["modified"], "media_type": f"application/stix+json;version={obj['spec_version']}"})
    rng.shuffle(objs)
    for spec in (None, "2.1", "2.0,2.1"):
        assert ts.linear_filter_by_spec_version(copy.deepcopy(objs), spec) == \
            ts.ORIGINAL["filter_by_spec_version"](copy.deepcopy(objs), spec)
        assert ts.linear_filter_by_spec_version(copy.deepcopy(manifest), spec) == \
            ts.ORIGINAL["filter_by_spec_version"](copy.deepcopy(manifest), spec)
    for after in (ts.added_at(0), ts.added_at(30), ts.added_at(59), "2000-01-01T00:00:00Z"):
        for info in (manifest, None):
            data = manifest if info is None else objs
            assert ts.linear_filter_by_added_after(copy.deepcopy(data), copy.deepcopy(info), after) == \
                ts.ORIGINAL["filter_by_added_after"](copy.deepcopy(data), copy.deepcopy(info), after)
    flt = ts.BasicFilter({})
    for limit in (None, 1, 7, 100, 1000):
        for data, info in ((objs, manifest), (objs[:10], manifest), (manifest, None), ([], manifest)):
            ours = ts.linear_sort_and_paginate(flt, copy.deepcopy(data), limit, copy.deepcopy(info))
            theirs = ts.ORIGINAL["sort_and_paginate"](flt, copy.deepcopy(data), limit, copy.deepcopy(info))
            assert ours == theirs, (limit, len(data))
    srv = TaxiiServer([collection("c1", "One", objs, [m["date_added"] for m in manifest]), collection("c2", "Two", [])])
    backend = ts.MemoryBackend(filename=None, check_interval=3600)
    backend.data = srv.data
    for cid in ("c1", "c2", "c3"):
        assert ts.lean_get_collection(backend, "api1", cid) == ts.ORIGINAL["get_collection"](backend, "api1", cid)
    assert ts.lean_get_collection(backend, "api9", "c1") is None is ts.ORIGINAL["get_collection"](backend, "api9", "c1")


# -- configuration --------------------------------------------------------------------------------

def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, message", [
    ('source = "taxii2+https://t.example.com/taxii2/"\nowner = "O"\n[taxii]\ncolection = "x"\n',
     "unknown key 'taxii.colection' (did you mean 'collection'?)"),
    ('source = "taxii2+https://t.example.com/taxii2/"\nowner = "O"\n[taxii]\npage_size = 0\n',
     "taxii.page_size must be a positive integer"),
    ('source = "taxii2+https://t.example.com/taxii2/"\nowner = "O"\n[taxii]\npage_size = true\n',
     "taxii.page_size must be a positive integer"),
    ('source = "taxii2+https://t.example.com/taxii2/"\nowner = "O"\n[taxii]\nfull_refresh = "daily"\n',
     "taxii.full_refresh: 'daily' is not an interval"),
    ('source = "taxii2+https://t.example.com/taxii2/"\nformat = "csv"\nowner = "O"\n',
     "a TAXII source is read as format 'stix'"),
    ('owner = "O"\n[taxii]\ncollection = "x"\n', "a [taxii] table needs taxii.url"),
    ('source = "feed.json"\nowner = "O"\nformat = "stix"\n[taxii]\ncollection = "x"\n', "a [taxii] table needs taxii.url"),
    ('source = "taxii2+https://t.example.com/taxii2/"\nowner = "O"\n[taxii]\nurl = "https://t.example.com/taxii2/"\n',
     "give either source (or source_env) or taxii.url"),
    ('owner = "O"\n[taxii]\nurl = "http://t.example.com/taxii2/"\n', "TAXII 2.1 requires HTTPS"),
    ('owner = "O"\n[taxii]\nurl = "https://t.example.com/taxii2/?key=abc123"\n', "takes no query"),
    ('owner = "O"\n[taxii]\nurl = "ftp://t.example.com/taxii2/"\n', "is not an http(s) URL"),
    ('owner = "O"\n[taxii]\nurl = "https://t.example.com/taxii2/"\nuser = "me"\n', "go together"),
    ('owner = "O"\n[taxii]\nurl = "https://t.example.com/taxii2/"\npassword = "${NO_SUCH_TAXII_VAR}"\nuser = "me"\n',
     "the environment variable NO_SUCH_TAXII_VAR is not set"),
    ('owner = "O"\n[taxii]\nurl = "https://t.example.com/taxii2/"\nuser = "me"\npassword = "pw12345"\n'
     '[options]\nheaders = {Authorization = "Bearer abcdef"}\n', "either taxii.user/password or an Authorization"),
    ('owner = "O"\n[taxii]\nurl = "https://t.example.com/taxii2/"\n[options]\nmember = "x.json"\n',
     "options.member does not apply to a TAXII source"),
    ('owner = "O"\n[taxii]\nurl = "https://t.example.com/taxii2/"\n[options]\ndelimiter = ";"\n',
     "options.delimiter does not apply to format 'stix'"),
    ('owner = "O"\ntaxii = "https://t.example.com/taxii2/"\n', "[taxii] must be a table"),
    ('owner = "O"\n[taxii]\nurl = "https://t.example.com/taxii2/"\ncollection = 5\n', "taxii.collection must be"),
])
def test_config_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        FeedConfig.load(_write(tmp_path, text))
    assert message in str(info.value) and str(tmp_path) in str(info.value)


def test_config_forms_and_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXII_PW_TEST", "env-pass-9z9z")
    (tmp_path / "user.txt").write_text("fileuser42\n")
    one = FeedConfig.load(_write(tmp_path, 'owner = "O"\n[taxii]\nurl = "https://t.example.com/taxii2"\n'
                                           'user = "${file:user.txt}"\npassword = "${TAXII_PW_TEST}"\n'
                                           'collection = "Intel"\npage_size = 500\nfull_refresh = "1d"\n'
                                           'api_root = "../api2"\n'))
    assert (one.source, one.format) == ("taxii2+https://t.example.com/taxii2/", "stix")
    assert one.options["taxii"] == {"url": "https://t.example.com/taxii2/", "api_root": "https://t.example.com/api2/",
                                    "collection": "Intel", "user": "fileuser42", "password": "env-pass-9z9z",
                                    "page_size": 500, "full_refresh": 86400.0}
    assert "env-pass-9z9z" not in repr(one) and "fileuser42" not in repr(one)
    assert redact.text("x fileuser42:env-pass-9z9z y") == "x ***:*** y"

    # user info in the source (here from source_env): taken out of the URL, redacted
    monkeypatch.setenv("TAXII_SOURCE_TEST", "taxii2+https://urluser7:url%2Fpass7@t.example.com/api1/collections/c9/")
    two = FeedConfig.load(_write(tmp_path, 'source_env = "TAXII_SOURCE_TEST"\nowner = "O"\n'))
    assert two.source == "taxii2+https://t.example.com/api1/collections/c9/" and two.format == "stix"
    assert (two.options["taxii"]["user"], two.options["taxii"]["password"]) == ("urluser7", "url/pass7")
    assert "url/pass7" not in redact.text("the password url/pass7 and url%2Fpass7")
    assert "url%2Fpass7" not in redact.text("url%2Fpass7")

    # plain http for loopback only; a header for credentials
    three = FeedConfig.load(_write(tmp_path, 'source = "taxii2+http://127.0.0.1:9/taxii2/"\nowner = "O"\n'
                                             '[options]\nheaders = {Authorization = "Bearer tok-abc-123"}\n'))
    assert three.options["taxii"]["user"] is None and three.options["headers"] == {"Authorization": "Bearer tok-abc-123"}
    assert FeedConfig.load(_write(tmp_path, 'source = "taxii2+http://localhost:9/taxii2/"\nowner = "O"\n')).format == "stix"


# -- full, then incremental ----------------------------------------------------------------------

def test_full_then_incremental_cycles(tmp_path: Path) -> None:
    """3000 indicators over 30 pages; then only what was added is read and sent; removal only
    on a full refresh."""
    n = 3000
    with server(collection("c1", "Indicators", indicators(n))) as srv, emulator(tmp_path) as (tc, client):
        cfg = config(tmp_path, srv, 'removed = "inactive"\nabsent_cycles = 1\nmax_removed = "none"\n',
                     table='full_refresh = "1d"')
        first = cycle(cfg, client)
        assert first.status == "done", first.message
        assert (first.read, first.rejected, first.new, first.sent, first.accepted, first.removed) == (n, 0, n, n, n, 0)
        assert srv.pages == 30 and len(srv.object_requests) == 30
        assert "added_after" not in srv.object_requests[0]
        assert tc.store.count(OWNER, "indicator") == n
        rec = in_store(tc, 4)
        assert rec is not None and {t["name"] for t in rec["tag"]} == {"malicious-activity"}
        assert in_store(tc, 2999) is not None
        cursor = committed(cfg)
        last = srv.manifest("c1")[-1]["date_added"]
        assert cursor["added_after"] == last == ts.added_at(n - 1)  # exactly as the server wrote it
        sends = uploads(tc)

        # 200 added through the API: only they are read and sent; nothing is removed
        srv.add("c1", indicators(200, n))
        requests_before = len(srv.object_requests)
        second = cycle(cfg, client)
        assert second.status == "done", second.message
        assert (second.read, second.new, second.changed, second.unchanged, second.sent) == (200, 200, 0, 0, 200)
        assert (second.removed, second.retired) == (0, 0)
        assert srv.object_requests[requests_before]["added_after"] == last
        assert len(srv.object_requests) - requests_before == 2  # 200 objects: 2 pages
        assert tc.store.count(OWNER, "indicator") == n + 200
        assert uploads(tc) == sends + 1
        assert in_store(tc, n + 199) is not None and in_store(tc, 0).get("active", True) is True
        new_cursor = committed(cfg)
        assert new_cursor["added_after"] == srv.manifest("c1")[-1]["date_added"] > last
        assert new_cursor["full"] == cursor["full"]

        # nothing added: nothing read, nothing sent, the cursor stays
        sends = uploads(tc)
        third = cycle(cfg, client)
        assert (third.status, third.read, third.sent, third.removed) == ("done", 0, 0, 0)
        assert uploads(tc) == sends and committed(cfg) == new_cursor
        assert srv.object_requests[-1]["added_after"] == new_cursor["added_after"]

        # a full refresh is due: the whole collection is read; what left it is retired
        gone = [indicator(i)["id"] for i in (0, 1, 2)]
        for obj_id in gone:
            srv.delete("c1", obj_id)
        state = state_of(cfg)
        state.put("cursor", {**new_cursor, "full": new_cursor["full"] - 2 * 86400})
        state.close()
        requests_before = len(srv.object_requests)
        fourth = cycle(cfg, client)
        assert fourth.status == "done", fourth.message
        assert "added_after" not in srv.object_requests[requests_before]
        assert (fourth.read, fourth.unchanged, fourth.new, fourth.removed, fourth.retired) == (n + 197, n + 197, 0, 3, 3)
        assert in_store(tc, 0)["active"] is False and in_store(tc, 3).get("active", True) is True
        assert committed(cfg)["full"] > new_cursor["full"]


def test_page_size_and_the_servers_page_size(tmp_path: Path) -> None:
    """page_size is asked for; a server that gives another number is asked for that number."""
    n = 600
    with server(collection("c1", "Indicators", indicators(n))) as srv:
        for size, limits, pages in ((250, ["250"] + ["100"] * 5, 6), (40, ["40"] * 15, 15), (None, [None] + ["100"] * 5, 6)):
            cfg = config(tmp_path, srv, table=f"page_size = {size}" if size else "")
            options = FeedConfig.load(cfg).options
            before = len(srv.object_requests)
            items = list(read_feed(FeedConfig.load(cfg).source, "stix", options=options, cache={}))
            assert len(items) == n and not [i for i in items if i.error]
            asked = [r.get("limit") for r in srv.object_requests[before:]]
            assert asked == limits and len(asked) == pages


# -- failed reads ---------------------------------------------------------------------------------

def test_server_stopped_mid_paging_is_a_failed_read(tmp_path: Path) -> None:
    n = 2000
    with server(collection("c1", "Indicators", indicators(n))) as srv, emulator(tmp_path) as (tc, client):
        cfg = config(tmp_path, srv, 'removed = "inactive"\nabsent_cycles = 1\n')
        srv.stop_after_pages = 5
        failed = cycle(cfg, client)
        assert failed.status == "failed"
        assert "failed while reading the feed: nothing was sent or removed" in failed.message
        assert "page 6" in failed.message and srv.pages == 5
        assert uploads(tc) == 0 and tc.store.count(OWNER) == 0
        assert committed(cfg) is None
        with pytest.raises(TransientError):  # the error class behind it
            list(read_feed(FeedConfig.load(cfg).source, "stix", options=FeedConfig.load(cfg).options))

        srv.restart()
        again = cycle(cfg, client)
        assert again.status == "done", again.message
        assert (again.read, again.new, again.sent, again.removed) == (n, n, n, 0)
        assert tc.store.count(OWNER, "indicator") == n
        assert committed(cfg)["added_after"] == ts.added_at(n - 1)


def test_server_losing_its_paging_session_in_an_incremental_read(tmp_path: Path) -> None:
    n, added = 1000, 300
    with server(collection("c1", "Indicators", indicators(n))) as srv, emulator(tmp_path) as (tc, client):
        cfg = config(tmp_path, srv, 'removed = "inactive"\nabsent_cycles = 1\nmax_removed = "none"\n')
        assert cycle(cfg, client).new == n
        cursor = committed(cfg)
        srv.add("c1", indicators(added, n))
        srv.lose_sessions_after_pages = srv.pages + 1  # restarted with the same data after the first page
        sends = uploads(tc)
        failed = cycle(cfg, client)
        assert failed.status == "failed"
        assert "incomplete read at page 2" in failed.message and "HTTP 400" in failed.message
        assert (failed.removed, failed.retired) == (0, 0) and uploads(tc) == sends
        assert committed(cfg) == cursor
        assert tc.store.count(OWNER, "indicator") == n and in_store(tc, 0).get("active", True) is True

        again = cycle(cfg, client)
        assert again.status == "done", again.message
        assert (again.read, again.new, again.sent, again.removed, again.retired) == (added, added, added, 0, 0)
        assert tc.store.count(OWNER, "indicator") == n + added
        assert committed(cfg)["added_after"] == srv.manifest("c1")[-1]["date_added"]

    with server(collection("c1", "Indicators", indicators(300))) as srv:
        srv.lose_sessions_after_pages = 2
        items: list = []
        with pytest.raises(IncompleteReadError):
            for item in read_feed(f"taxii2+http://{USER}:{PASSWORD}@127.0.0.1:{srv.port}/taxii2/", "stix"):
                items.append(item)
        assert 0 < len(items) <= 200  # what came before the error, never the whole collection


# -- servers that do not do as asked --------------------------------------------------------------

def test_server_ignoring_added_after(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = 1000
    with server(collection("c1", "Indicators", indicators(n))) as srv, emulator(tmp_path) as (tc, client):
        srv.ignore_added_after = True
        cfg = config(tmp_path, srv, 'removed = "inactive"\nabsent_cycles = 1\nmax_removed = "none"\n')
        assert cycle(cfg, client).new == n
        sends = uploads(tc)
        with caplog.at_level(logging.WARNING, logger="streambatch.feeds"):
            second = cycle(cfg, client)
        assert "ignored added_after" in caplog.text
        assert srv.object_requests[-10].get("added_after") == ts.added_at(n - 1)  # asked for, not applied
        assert (second.status, second.read, second.new, second.changed, second.unchanged) == ("done", n, 0, 0, n)
        assert (second.sent, second.removed, second.retired) == (0, 0, 0) and uploads(tc) == sends

        srv.add("c1", indicators(50, n))
        third = cycle(cfg, client)
        assert (third.status, third.read, third.new, third.unchanged, third.sent) == ("done", n + 50, 50, n, 50)
        assert uploads(tc) == sends + 1 and tc.store.count(OWNER, "indicator") == n + 50
        assert committed(cfg)["added_after"] == srv.manifest("c1")[-1]["date_added"]


def test_objects_repeated_across_pages_are_read_once(tmp_path: Path) -> None:
    n = 500
    with server(collection("c1", "Indicators", indicators(n))) as srv, emulator(tmp_path) as (tc, client):
        srv.overlap = True  # every page starts with the last object of the page before
        cfg = config(tmp_path, srv)
        stats = cycle(cfg, client)
        assert stats.status == "done", stats.message
        assert (stats.read, stats.new, stats.repeated, stats.sent) == (n, n, 0, n)
        assert srv.pages == 5


def test_more_without_next_pages_by_date_added() -> None:
    """A server that says more without a next is asked for the objects added after the page's
    X-TAXII-Date-Added-Last (TAXII 2.1 section 3.4)."""
    with server(collection("c1", "Indicators", indicators(350))) as srv:
        srv.strip_next = True
        cache: dict = {}
        items = list(read_feed(f"taxii2+http://{USER}:{PASSWORD}@127.0.0.1:{srv.port}/taxii2/", "stix", cache=cache))
        assert len(items) == 350 and len({i.record["summary"] for i in items}) == 350
        assert [r.get("added_after") for r in srv.object_requests] == \
            [None, ts.added_at(99), ts.added_at(199), ts.added_at(299)]
        assert all("next" not in r for r in srv.object_requests)
        assert cache["cursor_pending"]["added_after"] == ts.added_at(349) and cache["partial"] is False


def test_cursor_keeps_the_servers_microseconds(tmp_path: Path) -> None:
    """Objects added one microsecond after the cursor are read; one added at the cursor itself
    is not: the cursor is the header as written, never rounded."""
    with server(collection("c1", "Indicators", indicators(120))) as srv, emulator(tmp_path) as (tc, client):
        cfg = config(tmp_path, srv)
        assert cycle(cfg, client).new == 120
        cursor = committed(cfg)["added_after"]
        assert cursor == ts.added_at(119) and cursor.endswith(".119123Z")
        at, after = indicators(2, 500)
        srv.inject("c1", [at, after], [cursor, cursor[:-2] + "4Z"])  # at the cursor, and 1 microsecond later
        stats = cycle(cfg, client)
        assert (stats.read, stats.new) == (1, 1)
        assert in_store(tc, 501) is not None and in_store(tc, 500) is None
        assert srv.object_requests[-1]["added_after"] == cursor
        assert committed(cfg)["added_after"] == cursor[:-2] + "4Z"


# -- the cursor and the job -----------------------------------------------------------------------

def test_interrupted_submission_commits_the_cursor_when_finished(tmp_path: Path) -> None:
    n = 300
    with server(collection("c1", "Indicators", indicators(n))) as srv, \
            emulator(tmp_path, faults=[{"kind": "status", "method": "POST", "path": "/v2/batch*", "status": 503,
                                        "times": 0}]) as (tc, client):
        cfg = config(tmp_path, srv)
        failed = cycle(cfg, client)
        assert failed.status == "failed" and failed.read == n
        assert committed(cfg) is None  # read, but not sent: nothing is committed
        state = state_of(cfg)
        pending = state.get("current")["cursor"]
        state.close()
        assert pending["added_after"] == ts.added_at(n - 1)

        tc.set_faults([])
        srv.add("c1", indicators(10, n))
        stats = cycle(cfg, client)
        assert stats.status == "done", stats.message
        assert "finished interrupted run" in " ".join(stats.earlier)
        # the finished job committed its cursor, so this cycle read only what was added since
        assert (stats.read, stats.new) == (10, 10)
        assert tc.store.count(OWNER, "indicator") == n + 10
        assert committed(cfg)["added_after"] == srv.manifest("c1")[-1]["date_added"]


def test_a_refused_record_holds_the_cursor(tmp_path: Path) -> None:
    """A record the API refuses is not confirmed: the cursor is not advanced past it, so the
    next cycles read it again until it is accepted."""
    actor = {"type": "threat-actor", "spec_version": "2.1", "id": "threat-actor--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061",
             "created": "2024-05-01T00:00:00.000Z", "modified": "2024-05-01T00:00:00.000Z", "name": "Colliding Actor"}
    with server(collection("c1", "Indicators", [*indicators(20), actor])) as srv, emulator(tmp_path) as (tc, client):
        with Batch(OWNER, tmp_path / "pre.sqlite", client=client, poll_interval=0.02) as pre:
            pre.incident("Colliding", xid=actor["id"])
            pre.submit_all()
        cfg = config(tmp_path, srv)
        first = cycle(cfg, client)
        assert (first.status, first.read, first.new, first.failed) == ("done", 21, 21, 1)
        assert committed(cfg) is None
        second = cycle(cfg, client)  # read again from the start: only the refused record is sent
        assert "added_after" not in srv.object_requests[-1]
        assert (second.read, second.unchanged, second.sent, second.failed) == (21, 20, 1, 1)
        assert committed(cfg) is None

        tc.store.delete_group(tc.store.find_group(OWNER, actor["id"])["id"])
        third = cycle(cfg, client)
        assert (third.sent, third.failed) == (1, 0)
        assert committed(cfg)["added_after"] == ts.added_at(20)
        assert tc.store.group(OWNER, actor["id"])["type"] == "Adversary"
        fourth = cycle(cfg, client)
        assert (fourth.read, fourth.sent) == (0, 0) and srv.object_requests[-1]["added_after"] == ts.added_at(20)


# -- finding the collection -----------------------------------------------------------------------

def test_choosing_the_api_root_and_the_collection(tmp_path: Path) -> None:
    first = collection("c1", "Indicators", indicators(5))
    second = collection("c2", "Other intel", indicators(3, 100, collection="c2"))
    with server(first, second) as srv:
        def read(source: str, table: str = "") -> list:
            path = _write(tmp_path, f'source = "{source}"\nowner = "{OWNER}"\n[taxii]\nuser = "{USER}"\n'
                                    f'password = "{PASSWORD}"\n{table}\n')
            loaded = FeedConfig.load(path)
            return [i.record["summary"] for i in read_feed(loaded.source, loaded.format, options=loaded.options)]

        assert len(read(f"taxii2+{srv.discovery_url}", 'collection = "c2"')) == 3
        assert len(read(f"taxii2+{srv.discovery_url}", 'collection = "other INTEL"')) == 3  # a title, any case
        assert len(read(f"taxii2+{srv.api_root_url}", 'collection = "Indicators"')) == 5
        assert len(read(f"taxii2+{srv.collection_url('c2')}")) == 3
        assert len(read(f"taxii2+{srv.discovery_url}", 'api_root = "../api1/"\ncollection = "c1"')) == 5
        with pytest.raises(StreambatchError, match=r"has 2 readable collections: set taxii.collection .*c1 \('Indicators'\)"):
            read(f"taxii2+{srv.discovery_url}")
        with pytest.raises(StreambatchError, match="has no collection 'nope'"):
            read(f"taxii2+{srv.discovery_url}", 'collection = "nope"')
        with pytest.raises(StreambatchError, match="HTTP 404"):
            read(f"taxii2+{srv.base}/api9/", 'collection = "c1"')

        bad = _write(tmp_path, f'source = "taxii2+{srv.discovery_url}"\nowner = "{OWNER}"\n[taxii]\nuser = "{USER}"\n'
                               'password = "wrong-password-x"\ncollection = "c1"\n')
        loaded = FeedConfig.load(bad)
        with pytest.raises(StreambatchError, match="HTTP 401.*check the TAXII credentials") as info:
            list(read_feed(loaded.source, "stix", options=loaded.options))
        assert "wrong-password-x" not in str(info.value)


# -- the command line and credentials -------------------------------------------------------------

SECRETS = (USER, PASSWORD)


def _leaks(data: bytes) -> list[str]:
    return [s for s in SECRETS if s.encode() in data]


def _cli(tc: Emulator, cfg: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_", "TAXII_"))}
    environ.update(TC_API_PATH=tc.url, TC_API_ACCESS_ID=tc.access_id, TC_API_SECRET_KEY=tc.secret_key, **env)
    return subprocess.run([sys.executable, "-m", "streambatch.cli", *args, str(cfg)], cwd=cfg.parent, env=environ,
                          capture_output=True, timeout=120)


def test_cli_runs_and_credentials_never_appear(tmp_path: Path) -> None:
    """Through `streambatch run`, with the password from the environment and, in a second
    feed, user and password in the URL of source_env: the credentials are in no output at any
    verbosity, no state, job or history file."""
    import base64

    n = 600
    with server(collection("c1", "Indicators", indicators(n))) as srv, emulator(tmp_path) as (tc, _client):
        cfg = tmp_path / "cli.toml"
        cfg.write_text(f'source = "taxii2+{srv.discovery_url}"\nowner = "{OWNER}"\nhistory_jsonl = "cli.history.jsonl"\n'
                       f'[taxii]\ncollection = "Indicators"\nuser = "{USER}"\npassword = "${{TAXII_PASSWORD}}"\n'
                       "page_size = 100\n[batch]\npoll_interval = 0.02\n")
        outputs = []
        first = _cli(tc, cfg, "run", "-v", TAXII_PASSWORD=PASSWORD)
        outputs.append(first)
        assert first.returncode == 0, first.stderr.decode()
        assert f"read {n:,}" in first.stdout.decode() + first.stderr.decode()
        assert tc.store.count(OWNER, "indicator") == n

        srv.add("c1", indicators(25, n))
        second = _cli(tc, cfg, "run", "-v", TAXII_PASSWORD=PASSWORD)
        outputs.append(second)
        assert second.returncode == 0, second.stderr.decode()
        text = second.stdout.decode() + second.stderr.decode()
        assert "read 25," in text and "new 25," in text
        assert tc.store.count(OWNER, "indicator") == n + 25

        wrong = _cli(tc, cfg, "run", "-v", TAXII_PASSWORD="not-the-password")
        outputs.append(wrong)
        assert wrong.returncode == 1 and b"HTTP 401" in wrong.stdout + wrong.stderr

        srv.stop_after_pages = srv.pages + 1  # a failed read: its message names the URL
        env_feed = tmp_path / "envfeed.toml"
        env_feed.write_text(f'source_env = "TAXII_SOURCE"\nowner = "{OWNER}"\n[taxii]\ncollection = "c1"\n'
                            "page_size = 100\n[batch]\npoll_interval = 0.02\n")
        source = f"taxii2+http://{USER}:{PASSWORD}@127.0.0.1:{srv.port}/taxii2/"
        cut = _cli(tc, env_feed, "run", "-v", TAXII_SOURCE=source)
        outputs.append(cut)
        assert cut.returncode == 1 and b"failed while reading the feed" in cut.stdout + cut.stderr
        srv.restart()
        whole = _cli(tc, env_feed, "run", "-v", TAXII_SOURCE=source)
        outputs.append(whole)
        assert whole.returncode == 0, whole.stderr.decode()

        header_feed = tmp_path / "headerfeed.toml"
        header_feed.write_text(f'source = "taxii2+{srv.collection_url("c1")}"\nowner = "{OWNER}"\n'
                               '[options]\nheaders_env = {Authorization = "TAXII_AUTH"}\n[batch]\npoll_interval = 0.02\n')
        token = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        by_header = _cli(tc, header_feed, "run", "-v", TAXII_AUTH=token)
        outputs.append(by_header)
        assert by_header.returncode == 0, by_header.stderr.decode()
        for done in (_cli(tc, cfg, "history", TAXII_PASSWORD=PASSWORD), _cli(tc, env_feed, "history", TAXII_SOURCE=source)):
            outputs.append(done)
            assert done.returncode == 0, done.stderr.decode()

    for out in outputs:
        assert not _leaks(out.stdout + out.stderr), (out.args, out.stdout[-2000:], out.stderr[-2000:])
        assert b"[taxii2client" not in out.stderr  # the library's own stderr handler is not used
    leaking = {str(p): _leaks(p.read_bytes()) for p in tmp_path.rglob("*")
               if p.is_file() and p.suffix != ".toml" and p.name != "emu.sqlite" and _leaks(p.read_bytes())}
    assert not leaking
    assert (tmp_path / "cli.history.jsonl").is_file()
    assert b"Basic " not in b"".join(o.stdout + o.stderr for o in outputs)
