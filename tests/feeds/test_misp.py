"""MISP feeds as feed sources, through `streambatch run` against an emulator over HTTP, with the
feed served by a local HTTP server (misp_server.py) or read from a local folder.

Only events whose manifest timestamp changed are downloaded, the others read from the local
copy, so every read is whole: records of unchanged events stay unchanged (never removed), the
records of an event that left the manifest are removed; the timestamps are committed only with
the confirmed job; an event that is missing or truncated fails the read (nothing sent or
removed, nothing committed); attribute types, tags, TLP and events as groups are mapped; a
credential in a header never appears in output or files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import feed_cli
import pytest
from misp_server import MispFeed, attribute, event, event_uuid, feed_server, host_of

from streambatch.emulator import Emulator
from streambatch.feeds import redact
from streambatch.feeds.config import ConfigError, FeedConfig
from streambatch.feeds.readers import read_feed
from streambatch.feeds.state import FeedState

OWNER = "Demo Organization"


# -- helpers --------------------------------------------------------------------------------------

def cli(tc: Emulator, cfg: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`streambatch ARGS CFG` in a subprocess, against ``tc``."""
    return feed_cli.cli(tc, *args, str(cfg), cwd=cfg.parent, **env)


def run(tc: Emulator, cfg: Path, *args: str, code: int = 0, **env: str) -> dict[str, Any]:
    """`streambatch run --json -v`: the run's counts (and its stderr under ``"log"``)."""
    done = cli(tc, cfg, "run", "--json", "-v", *args, **env)
    assert done.returncode == code, (done.returncode, done.stdout[-3000:], done.stderr[-3000:])
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["log"] = done.stderr
    return out


def config(tmp_path: Path, source: str, body: str = "", table: str = "", name: str = "misp") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'source = "{source}"\nowner = "{OWNER}"\n{body}\n[misp]\n{table}\n'
                    "[batch]\npoll_interval = 0.02\n", encoding="utf-8")
    return path


def cursor(cfg: Path) -> dict | None:
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        return state.get("cursor")
    finally:
        state.close()


def host(tc: Emulator, i: int, j: int) -> dict | None:
    return tc.store.indicator(OWNER, "Host", host_of(i, j))


# -- configuration --------------------------------------------------------------------------------

def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, message", [
    ('source = "misp+https://m.example.com/feed/"\nowner = "O"\n[misp]\nto_ids = true\n',
     "unknown key 'misp.to_ids' (did you mean 'to_ids_only'?)"),
    ('source = "misp+https://m.example.com/feed/"\nowner = "O"\n[misp]\nto_ids_only = "yes"\n',
     "misp.to_ids_only must be true or false"),
    ('source = "misp+https://m.example.com/feed/"\nowner = "O"\n[misp]\ngroup_type = "Adversary"\n',
     "misp.group_type must be 'Event', 'Incident' or 'none'"),
    ('source = "misp+https://m.example.com/feed/"\nowner = "O"\n[misp]\nmax_age = "a year"\n',
     "misp.max_age: 'a year' is not an interval"),
    ('source = "misp+https://m.example.com/feed/"\nowner = "O"\n[misp]\nexclude_tags = [1]\n',
     "misp.exclude_tags must be a list of non-empty strings"),
    ('source = "misp+https://m.example.com/feed/"\nowner = "O"\n[misp]\nport_attribute = ""\n',
     "misp.port_attribute must be an attribute type name"),
    ('source = "misp+https://m.example.com/feed/"\nformat = "json"\nowner = "O"\n',
     "a MISP feed is read as format 'misp'"),
    ('owner = "O"\n[misp]\nto_ids_only = false\n', "a MISP feed needs misp.url"),
    ('owner = "O"\nformat = "misp"\nsource = "feed.json"\n', "a MISP feed needs misp.url"),
    ('source = "misp+https://m.example.com/feed/"\nowner = "O"\n[misp]\nurl = "https://m.example.com/feed/"\n',
     "give either source (or source_env) or misp.url"),
    ('owner = "O"\n[misp]\nurl = "http://m.example.com/feed/"\n', "a MISP feed is read over HTTPS"),
    ('owner = "O"\n[misp]\nurl = "https://m.example.com/feed/?key=abc123"\n', "takes no query"),
    ('owner = "O"\n[misp]\nurl = "https://m.example.com/feed/"\n[options]\nmember = "x.json"\n',
     "options.member does not apply to a MISP feed"),
    ('owner = "O"\n[misp]\nurl = "https://m.example.com/feed/"\n[options]\ndelimiter = ";"\n',
     "options.delimiter does not apply to format 'misp'"),
    ('owner = "O"\n[misp]\nurl = "https://m.example.com/feed/"\n[mapping]\nvalue = "x"\n',
     "[mapping] does not apply to a MISP feed"),
    ('owner = "O"\nmisp = "https://m.example.com/feed/"\n', "[misp] must be a table"),
])
def test_config_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        FeedConfig.load(_write(tmp_path, text))
    assert message in str(info.value) and str(tmp_path) in str(info.value)


def test_config_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISP_FEED_TEST", "https://feeds.example.com/osint/manifest.json")
    one = FeedConfig.load(_write(tmp_path, 'owner = "O"\n[misp]\nurl = "${MISP_FEED_TEST}"\ngroup_type = "incident"\n'
                                           'include_tags = "tlp:white"\nmax_age = "30d"\nto_ids_only = false\n'))
    assert (one.source, one.format) == ("misp+https://feeds.example.com/osint/", "misp")
    settings = one.options["misp"]
    assert settings["url"] == "https://feeds.example.com/osint/" and settings["group_type"] == "Incident"
    assert settings["include_tags"] == ["tlp:white"] and settings["max_age"] == 30 * 86400
    assert settings["to_ids_only"] is False and settings["published_only"] is False
    assert settings["cache_dir"] == str(one.state_dir / "misp-events")

    two = FeedConfig.load(_write(tmp_path, 'source = "misp+feeds/circl"\nowner = "O"\n'))  # a local folder
    assert two.options["misp"]["url"] == str(tmp_path / "feeds" / "circl") and two.format == "misp"
    three = FeedConfig.load(_write(tmp_path, 'source = "misp+http://user7:pass-9x9x@127.0.0.1:9/f/"\nowner = "O"\n'))
    assert "pass-9x9x" not in three.source and "pass-9x9x" not in repr(three)
    assert redact.text("the pass-9x9x") == "the ***"


# -- cycles ---------------------------------------------------------------------------------------

def test_cycles_download_only_changed_events_and_remove_what_left(tmp_path: Path) -> None:
    """60 events of 20 attributes; a second cycle with the manifest unchanged costs one request;
    then 2 events change, 1 is added and 1 leaves the manifest: only the 3 are downloaded, the
    records of the 57 unchanged ones are unchanged (not removed), those of the one that left are
    removed and made inactive."""
    n, per = 60, 20
    feed = MispFeed([event(i, per) for i in range(n)])
    with feed_server(feed) as srv, Emulator(db=tmp_path / "emu.sqlite") as tc:
        cfg = config(tmp_path, f"misp+{srv.url}", 'removed = "inactive"\nabsent_cycles = 1\nmax_removed = "none"\n')
        first = run(tc, cfg)
        assert first["status"] == "done"
        assert (first["read"], first["new"], first["rejected"], first["accepted"]) == (n * per, n * per, 0, n * per)
        assert sorted(srv.fetched()) == sorted(["manifest.json", *(f"{event_uuid(i)}.json" for i in range(n))])
        assert "hashes.csv" not in srv.fetched()
        assert tc.store.count(OWNER, "indicator") == n * per
        rec = host(tc, 7, 3)
        assert {t["name"] for t in rec["tag"]} == {"type:OSINT", "misp-category:Network activity"}
        assert [s["name"] for s in rec["securityLabel"]] == ["TLP:WHITE"]
        assert {"type": "Description", "value": "seen in 7"}.items() <= rec["attribute"][0].items()
        committed = cursor(cfg)
        assert committed is not None and len(committed["events"]) == n
        copies = sorted(p.name for p in (FeedConfig.load(cfg).state_dir / "misp-events").iterdir())
        assert len(copies) == n and all(p.startswith(tuple(committed["events"])) for p in copies)

        before = len(srv.requests)
        second = run(tc, cfg)
        assert (second["status"], second["read"], second["sent"], second["removed"]) == ("done", 0, 0, 0)
        assert [r["status"] for r in srv.requests[before:]] == [304]

        feed.touch(3, Attribute=[*feed.events[event_uuid(3)]["Event"]["Attribute"], attribute(3, 500)])
        feed.touch(4, Tag=[{"name": "tlp:amber"}, {"name": 'misp-galaxy:threat-actor="Sofacy"'}])
        feed.put(event(100, per))
        feed.drop(9)
        before = len(srv.requests)
        third = run(tc, cfg)
        assert third["status"] == "done", third
        assert sorted(srv.fetched(before)) == sorted(["manifest.json", *(f"{event_uuid(i)}.json" for i in (3, 4, 100))])
        assert (third["read"], third["new"], third["changed"]) == (n * per + 1, per + 1, per)
        assert third["unchanged"] == (n - 2) * per and (third["removed"], third["retired"]) == (per, per)
        assert "downloaded 3 event(s), read 57 from the local copy; 1201 attribute(s)" in third["log"]
        assert host(tc, 9, 0)["active"] is False and host(tc, 8, 0).get("active", True) is True
        assert host(tc, 3, 500) is not None and host(tc, 100, 19) is not None
        amber = host(tc, 4, 0)
        assert [s["name"] for s in amber["securityLabel"]] == ["TLP:AMBER"]
        assert "Sofacy" in {t["name"] for t in amber["tag"]}
        assert set(cursor(cfg)["events"]) == {event_uuid(i) for i in range(n) if i != 9} | {event_uuid(100)}
        assert len(list((FeedConfig.load(cfg).state_dir / "misp-events").iterdir())) == n


def test_a_missing_or_truncated_event_fails_the_read(tmp_path: Path) -> None:
    """An event the manifest lists that answers 404, or whose file is cut: the read fails,
    nothing is sent or removed and nothing is committed; the next cycle downloads the changed
    events again. A job the API does not confirm commits nothing either."""
    n, per = 12, 5
    feed = MispFeed([event(i, per) for i in range(n)])
    with feed_server(feed) as srv, Emulator(db=tmp_path / "emu.sqlite") as tc:
        cfg = config(tmp_path, f"misp+{srv.url}", 'removed = "inactive"\nabsent_cycles = 1\nmax_removed = "none"\n')
        assert run(tc, cfg)["new"] == n * per
        committed = cursor(cfg)

        for i in (2, 5):
            feed.touch(i, Attribute=[*feed.events[event_uuid(i)]["Event"]["Attribute"], attribute(i, 99)])
        feed.drop(7)
        for fault in ("missing", "truncated"):
            getattr(srv, fault).add(f"{event_uuid(5)}.json")
            failed = run(tc, cfg, code=1)
            assert failed["status"] == "failed" and "incomplete read" in failed["message"]
            assert event_uuid(5) in failed["message"]
            assert "failed while reading the feed: nothing was sent or removed" in failed["message"]
            assert (failed["sent"], failed["removed"], failed["retired"]) == (0, 0, 0)
            assert cursor(cfg) == committed
            assert host(tc, 2, 99) is None and host(tc, 7, 0).get("active", True) is True
            getattr(srv, fault).clear()

        # the job is refused: the read was whole, but nothing is committed
        tc.set_faults([{"kind": "status", "method": "POST", "path": "/v2/batch*", "status": 503, "times": 0}])
        before = len(srv.requests)
        refused = run(tc, cfg, code=1)
        assert refused["status"] == "failed" and cursor(cfg) == committed
        # downloaded again: what the failed reads fetched was not committed
        assert sorted(srv.fetched(before)) == sorted(["manifest.json", *(f"{event_uuid(i)}.json" for i in (2, 5))])
        tc.set_faults([])
        before = len(srv.requests)
        again = run(tc, cfg)
        assert again["status"] == "done", again
        assert cursor(cfg)["events"] == {u: e["Event"]["timestamp"] for u, e in feed.events.items()}
        assert host(tc, 2, 99) is not None and host(tc, 5, 99) is not None
        assert host(tc, 7, 0)["active"] is False
        # the finished job committed the timestamps: an unchanged manifest now reads nothing
        assert (run(tc, cfg)["read"], srv.requests[-1]["status"]) == (0, 304)
        assert srv.fetched(before) == []


# -- mapping --------------------------------------------------------------------------------------

def _typed(i: int, j: int, kind: str, value: str, **extra: Any) -> dict[str, Any]:
    return attribute(i, j, **{"type": kind, "value": value, "comment": "", **extra})


MD5, SHA1 = "d41d8cd98f00b204e9800998ecf8427e", "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_types_tags_tlp_and_events_as_groups(tmp_path: Path) -> None:
    attrs = [
        _typed(1, 1, "ip-dst", "198.51.100.7", Tag=[{"name": "tlp:red"}, {"name": "c2"}]),
        _typed(1, 2, "ip-src", "203.0.113.0/24"),
        _typed(1, 3, "ip-dst|port", "198.51.100.8|8443"),
        _typed(1, 4, "hostname", "Login.Evil.Example", first_seen="2026-10-01T00:00:00Z"),
        _typed(1, 5, "domain|ip", "pay.evil.example|198.51.100.9"),
        _typed(1, 6, "url", "hxxp://evil[.]example/login"),
        _typed(1, 7, "md5", MD5.upper()),
        _typed(1, 8, "filename|sha256", f"dropper.exe|{SHA256}"),
        _typed(1, 9, "email-src", "phish@evil.example"),
        _typed(1, 10, "AS", "64500"),
        _typed(1, 11, "user-agent", "Mozilla/5.0 (EvilBot)"),
        _typed(1, 12, "mutex", "Global\\EvilMutex"),
        _typed(1, 13, "regkey", "HKLM\\Software\\Evil\\Run"),
        _typed(1, 14, "sha1", SHA1, deleted=True),
        _typed(1, 15, "domain", "benign.example", to_ids=False),
        _typed(1, 16, "ssdeep", "3:abc:def"),
        _typed(1, 17, "link", "https://blog.example/post"),
        _typed(1, 18, "ip-dst", "not-an-ip"),
    ]
    objects = [{"name": "domain-ip", "meta-category": "network", "uuid": "a7d1ef3e-1b0a-4f7e-8b0e-2d5e1c9d0a11",
                "Attribute": [_typed(1, 20, "domain", "obj.evil.example", object_relation="domain"),
                              _typed(1, 21, "ip-dst", "198.51.100.20", object_relation="ip")]},
               {"name": "file", "meta-category": "file", "deleted": True,
                "Attribute": [_typed(1, 22, "md5", "0" * 32)]},
               {"name": "file", "meta-category": "file", "uuid": "b8e2f04f-2c1b-4a8f-9c1f-3e6f2d0a1b22",
                "Attribute": [_typed(1, 23, "md5", "1" * 32, comment="the dropper"),
                              _typed(1, 24, "sha1", "2" * 40, Tag=[{"name": "loader"}]),
                              _typed(1, 25, "sha256", "3" * 64),
                              _typed(1, 26, "filename", "invoice.pdf.exe", to_ids=False),
                              _typed(1, 27, "size-in-bytes", "7168", to_ids=False)]}]
    feed = MispFeed([event(1, 0, extra=attrs, objects=objects,
                           tags=["tlp:green", 'misp-galaxy:threat-actor="Sofacy"', "osint:source-type=\"blog-post\""])])
    folder = feed.write(tmp_path / "circl")
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        cfg = config(tmp_path, "misp+circl", table='group_type = "Event"')
        out = run(tc, cfg)
        assert out["status"] == "done" and out["rejected"] == 1
        assert "skipped: 2 deleted, 2 not flagged to_ids" in out["log"]
        assert "skipped for their type, which has no ThreatConnect counterpart: 2 (ssdeep 1, link 1)" in out["log"]
        store = tc.store
        group = store.group(OWNER, f"misp:event:{event_uuid(1)}")
        assert group["type"] == "Event" and group["name"] == "OSINT - campaign 1"
        assert group["eventDate"].startswith("2026-11-01")
        assert [s["name"] for s in group["securityLabel"]] == ["TLP:GREEN"]
        assert {t["name"] for t in group["tag"]} == {"Sofacy", 'osint:source-type="blog-post"'}

        ip = store.indicator(OWNER, "Address", "198.51.100.7")
        assert [s["name"] for s in ip["securityLabel"]] == ["TLP:RED"]  # the attribute's own TLP wins
        assert {"c2", "Sofacy", "misp-category:Network activity"} <= {t["name"] for t in ip["tag"]}
        assert ip["associatedGroups"] == [{"groupXid": f"misp:event:{event_uuid(1)}"}]
        assert store.indicator(OWNER, "CIDR", "203.0.113.0/24") is not None
        assert "port:8443" in {t["name"] for t in store.indicator(OWNER, "Address", "198.51.100.8")["tag"]}
        assert store.indicator(OWNER, "Host", "login.evil.example")["firstSeen"].startswith("2026-10-01")
        assert store.indicator(OWNER, "Host", "pay.evil.example") is not None
        assert store.indicator(OWNER, "Address", "198.51.100.9") is not None
        assert store.indicator(OWNER, "URL", "http://evil.example/login") is not None
        assert store.indicator(OWNER, "File", MD5) is not None
        dropper = store.indicator(OWNER, "File", SHA256)
        assert dropper is not None
        assert store.indicator(OWNER, "EmailAddress", "phish@evil.example") is not None
        assert store.indicator(OWNER, "ASN", "ASN64500") is not None
        assert store.indicator(OWNER, "User Agent", "Mozilla/5.0 (EvilBot)") is not None
        assert store.indicator(OWNER, "Mutex", "Global\\EvilMutex") is not None
        assert store.indicator(OWNER, "Registry Key", "HKEY_LOCAL_MACHINE\\Software\\Evil\\Run :   : REG_NONE")
        assert store.indicator(OWNER, "Host", "obj.evil.example") is not None
        assert store.indicator(OWNER, "Address", "198.51.100.20") is not None
        assert store.indicator(OWNER, "File", SHA1) is None and store.indicator(OWNER, "File", "0" * 32) is None
        assert store.indicator(OWNER, "Host", "benign.example") is None
        # a file object: its hashes are one File, its filename an occurrence
        dropper2 = store.indicator(OWNER, "File", "3" * 64)
        assert (dropper2["md5"], dropper2["sha1"], dropper2["sha256"]) == ("1" * 32, "2" * 40, "3" * 64)
        assert [o["fileName"] for o in dropper2["fileOccurrence"]] == ["invoice.pdf.exe"]
        assert "loader" in {t["name"] for t in dropper2["tag"]}
        assert [a["value"] for a in dropper2["attribute"]] == ["the dropper"]
        assert store.indicator(OWNER, "File", "1" * 32)["id"] == dropper2["id"]
        assert store.count(OWNER, "indicator") == 17 and store.count(OWNER, "group") == 1

        rejected = cli(tc, cfg, "rejected")
        text = rejected.stdout
        assert "not-an-ip" in text and event_uuid(1) in text and "ip-dst" in text

        # all attributes, with a port attribute the instance has
        cfg2 = config(tmp_path, "misp+circl", name="all", table='to_ids_only = false\nport_attribute = "Port"\n'
                                                              'category_tags = false\nexclude_tags = ["c2"]')
        with Emulator(db=tmp_path / "emu2.sqlite", attribute_types=("Description", "Port")) as tc2:
            out2 = run(tc2, cfg2)
            assert out2["status"] == "done" and out2["warned"] == 0
            assert tc2.store.indicator(OWNER, "Host", "benign.example") is not None
            assert tc2.store.indicator(OWNER, "Address", "198.51.100.7") is None  # tagged c2: excluded
            port = tc2.store.indicator(OWNER, "Address", "198.51.100.8")
            assert {"type": "Port", "value": "8443"}.items() <= port["attribute"][0].items()
            assert not [t for t in port["tag"] if t["name"].startswith(("port:", "misp-category:"))]
    assert folder.is_dir()


def test_filters_on_the_manifest_leave_events_undownloaded(tmp_path: Path) -> None:
    feed = MispFeed([event(0, 3, tags=["tlp:white", "type:OSINT"]), event(1, 3, tags=["tlp:red"]),
                     event(2, 3, date="2019-01-01"), event(3, 3, published=False)])
    with feed_server(feed) as srv:
        cfg = config(tmp_path, f"misp+{srv.url}", table='exclude_tags = ["TLP:RED"]\nmax_age = "365d"\n'
                                                       "published_only = true")
        loaded = FeedConfig.load(cfg)
        items = list(read_feed(loaded.source, loaded.format, options=loaded.options, cache={}))
        assert sorted(i.record["summary"] for i in items) == sorted(host_of(0, j) for j in range(3))
        assert sorted(srv.fetched()) == sorted(["manifest.json", f"{event_uuid(0)}.json", f"{event_uuid(3)}.json"])


def test_events_as_incidents(tmp_path: Path) -> None:
    feed = MispFeed([event(i, 2, tags=["tlp:amber+strict", "type:OSINT"]) for i in range(3)])
    feed.write(tmp_path / "osint")
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        out = run(tc, config(tmp_path, "misp+osint", table='group_type = "incident"\npublished_only = true'))
        assert (out["status"], out["new"]) == ("done", 9)
        incident = tc.store.group(OWNER, f"misp:incident:{event_uuid(2)}")
        assert incident["type"] == "Incident" and incident["securityLabel"] == [{"name": "TLP:AMBER+STRICT"}]
        assert {i["summary"] for i in incident["associatedIndicators"]} == {host_of(2, 0), host_of(2, 1)}
        assert "read 3 event file(s)" in out["log"]


def test_threat_level_sets_the_rating_where_the_table_says(tmp_path: Path) -> None:
    """``threat_level_rating`` rates each event's indicators by the event's threat level; a
    level the table leaves out (here Undefined) keeps the feed's own [options] rating, and an
    attribute's own rating is never overridden (MISP attributes have none)."""
    events = [event(i, 2) for i in range(5)]
    for i, level in enumerate(["1", "2", "3", "4", 2]):  # MISP writes the level as a string; an int is read too
        events[i]["Event"]["threat_level_id"] = level
    MispFeed(events).write(tmp_path / "osint")
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        out = run(tc, config(tmp_path, "misp+osint", "[options]\nrating = 2\n",
                             table="threat_level_rating = { high = 5, medium = 3, low = 1 }"))
        assert (out["status"], out["new"]) == ("done", 10)
        ratings = [host(tc, i, 0)["rating"] for i in range(5)]
        assert ratings == [5, 3, 1, 2, 3], ratings
        assert all(host(tc, i, 1)["rating"] == ratings[i] for i in range(5))


@pytest.mark.parametrize("table, message", [
    ("threat_level_rating = { severe = 5 }", "misp.threat_level_rating: unknown level 'severe'"),
    ("threat_level_rating = { high = 6 }", "misp.threat_level_rating.high must be a rating from 0 to 5"),
    ("threat_level_rating = { high = true }", "misp.threat_level_rating.high must be a rating from 0 to 5"),
    ('threat_level_rating = "high"', "misp.threat_level_rating must be a table"),
])
def test_threat_level_rating_errors_name_the_key(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        FeedConfig.load(_write(tmp_path, f'source = "misp+https://m.example.com/feed/"\nowner = "O"\n[misp]\n{table}\n'))
    assert message in str(info.value) and str(tmp_path) in str(info.value)


# -- a local folder, credentials ------------------------------------------------------------------

def test_local_folder_feed(tmp_path: Path) -> None:
    feed = MispFeed([event(i, 4) for i in range(5)])
    folder = feed.write(tmp_path / "feeds" / "osint")
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        cfg = config(tmp_path, "misp+feeds/osint/manifest.json", 'removed = "inactive"\nabsent_cycles = 1\n'
                                                                 'max_removed = "none"\n')
        assert run(tc, cfg)["new"] == 20
        again = run(tc, cfg)
        assert (again["read"], again["unchanged"], again["sent"]) == (20, 20, 0)
        feed.drop(4)
        feed.touch(0, Attribute=[attribute(0, 0), attribute(0, 1), attribute(0, 2), attribute(0, 3), attribute(0, 9)])
        feed.write(folder)
        third = run(tc, cfg)
        assert (third["read"], third["new"], third["unchanged"], third["removed"]) == (17, 1, 16, 4)
        assert host(tc, 4, 0)["active"] is False and host(tc, 0, 9) is not None
        assert not (FeedConfig.load(cfg).state_dir / "misp-events").exists()  # nothing copied for a folder
        (folder / f"{event_uuid(1)}.json").unlink()
        failed = run(tc, cfg, code=1)
        assert "incomplete read" in failed["message"] and f"{event_uuid(1)}.json is missing" in failed["message"]
        (folder / "manifest.json").write_text('{"not-a-uuid/../../etc": {"timestamp": "1"}}')
        odd = run(tc, cfg, code=3)
        assert odd["rejected"] == 1 and "is not an event uuid" in cli(tc, cfg, "rejected").stdout


def test_the_mass_removal_guard_holds_events_that_left(tmp_path: Path) -> None:
    """Half the events leave the manifest: their records (and only theirs) are removed, and the
    default max_removed (10%) holds their retirement."""
    feed = MispFeed([event(i, 5) for i in range(10)])
    folder = feed.write(tmp_path / "osint")
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        cfg = config(tmp_path, "misp+osint", 'removed = "inactive"\nabsent_cycles = 1\n')
        assert run(tc, cfg)["new"] == 50
        for i in range(5):
            feed.drop(i)
        feed.write(folder)
        held = run(tc, cfg, code=3)
        assert (held["read"], held["unchanged"], held["removed"], held["retired"], held["held"]) == (25, 25, 25, 0, 25)
        assert host(tc, 0, 0).get("active", True) is True
        allowed = run(tc, cfg, "--allow-removal")
        assert (allowed["retired"], host(tc, 0, 0)["active"], host(tc, 9, 0).get("active", True)) == (25, False, True)


def test_credentials_in_headers_never_appear(tmp_path: Path) -> None:
    secret = "misp-key-7f3a9c2e5b"
    feed = MispFeed([event(i, 3) for i in range(4)])
    with feed_server(feed) as srv, Emulator(db=tmp_path / "emu.sqlite") as tc:
        srv.require = ("Authorization", secret)
        cfg = tmp_path / "keyed.toml"
        cfg.write_text(f'source = "misp+{srv.url}"\nowner = "{OWNER}"\nhistory_jsonl = "keyed.history.jsonl"\n'
                       '[options]\nheaders_env = {Authorization = "MISP_FEED_KEY"}\n[batch]\npoll_interval = 0.02\n')
        outputs = [cli(tc, cfg, "run", "-vv", MISP_FEED_KEY=secret)]
        assert outputs[0].returncode == 0, outputs[0].stderr[-2000:]
        assert tc.store.count(OWNER, "indicator") == 12
        assert all(r["headers"].get("authorization") == secret for r in srv.requests)
        srv.truncated.add(f"{event_uuid(2)}.json")
        feed.touch(2)
        outputs.append(cli(tc, cfg, "run", "-vv", MISP_FEED_KEY=secret))
        assert outputs[-1].returncode == 1
        outputs.append(cli(tc, cfg, "run", "-vv", MISP_FEED_KEY="wrong-key-12345"))
        assert outputs[-1].returncode == 1 and "HTTP 401" in outputs[-1].stdout + outputs[-1].stderr
        outputs.append(cli(tc, cfg, "history", MISP_FEED_KEY=secret))
    for out in outputs:
        assert secret not in out.stdout + out.stderr
    leaking = [str(p) for p in tmp_path.rglob("*") if p.is_file() and p.name != "emu.sqlite"
               and secret.encode() in p.read_bytes()]
    assert not leaking
    state_dir = tmp_path / "keyed.streambatch"  # (the config needs MISP_FEED_KEY to load)
    assert oct((state_dir / "misp-events").stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in (state_dir / "misp-events").iterdir())


def test_expiration_sightings_and_decayed_attributes_expire_their_indicators(tmp_path: Path) -> None:
    """MISP's own expiry: an expiration sighting (type 2) sets externalDateExpires (one in the
    past makes the indicator expired: sent inactive); a decay score marked decayed expires it
    as of the attribute's last change."""
    past, future = 1_700_000_000, 4_100_000_000
    attrs = [
        _typed(1, 1, "ip-dst", "198.51.100.30", Sighting=[{"type": "0", "date_sighting": str(past)},
                                                          {"type": "2", "date_sighting": str(past)}]),
        _typed(1, 2, "ip-dst", "198.51.100.31", Sighting=[{"type": "2", "date_sighting": str(future)}]),
        _typed(1, 3, "domain", "decayed.evil.example", timestamp=str(past),
               decay_score=[{"score": 3.2, "decayed": True, "DecayingModel": {"name": "NIDS Simple"}}]),
        _typed(1, 4, "domain", "fresh.evil.example",
               decay_score=[{"score": 80.0, "decayed": False, "DecayingModel": {"name": "NIDS Simple"}}]),
    ]
    feed = MispFeed([event(1, 0, extra=attrs)])
    feed.write(tmp_path / "circl")
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        out = run(tc, config(tmp_path, "misp+circl"))
        assert out["status"] == "done" and out["rejected"] == 0
        assert out["expired"] == 2
        gone = tc.store.indicator(OWNER, "Address", "198.51.100.30")
        assert gone["active"] is False and gone["externalDateExpires"].startswith("2023-11-14")
        later = tc.store.indicator(OWNER, "Address", "198.51.100.31")
        assert later.get("active", True) is True and later["externalDateExpires"].startswith("2099-12-03")
        decayed = tc.store.indicator(OWNER, "Host", "decayed.evil.example")
        assert decayed["active"] is False and decayed["externalDateExpires"].startswith("2023-11-14")
        fresh = tc.store.indicator(OWNER, "Host", "fresh.evil.example")
        assert fresh.get("active", True) is True and "externalDateExpires" not in fresh
