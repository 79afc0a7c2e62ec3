"""Indicator lifecycle through the ``streambatch`` command against the emulator over HTTP:
per-feed expiry (``expires``) and a source's own expiry, expired and revoked records sent
inactive, keep-alive re-sends spread over cycles (measured on a controllable clock), the
counts in the run line, ``history --json`` and the metrics, and the mass-removal guard on
STIX and TAXII sources."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from feed_cli import cli

from streambatch.client import ApiConfig, Client, RetryPolicy
from streambatch.emulator import Emulator
from streambatch.feeds.config import ConfigError, FeedConfig
from streambatch.feeds.worker import FeedRunner
from streambatch.metrics import Metrics

OWNER = "Demo Organization"
FAST = "[batch]\npoll_interval = 0.02\n"
DAY = 86400


@pytest.fixture
def tc(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(db=tmp_path / "emu.sqlite") as emulator:
        yield emulator



def run_json(tc: Emulator, cfg: Path, *extra: str) -> dict:
    done = cli(tc, "run", "--json", *extra, str(cfg), cwd=cfg.parent)
    assert done.returncode in (0, 3), done.stderr
    return json.loads(done.stdout)


def ip(i: int) -> str:
    return f"10.77.{i // 256}.{i % 256}"


def text_feed(folder: Path, n: int, extra: str = "", start: int = 0) -> Path:
    (folder / "feed.txt").write_text("".join(f"{ip(i)}\n" for i in range(start, start + n)))
    cfg = folder / "feed.toml"
    cfg.write_text(f'source = "feed.txt"\nformat = "text"\nowner = "{OWNER}"\n{extra}\n{FAST}')
    return cfg


def epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def state_file(cfg: Path) -> Path:
    return FeedConfig.load(cfg).state_dir / "state.sqlite"


def age_state(cfg: Path, seconds: float) -> None:
    """Move every record's last send back in time (as if the feed had run that long ago)."""
    with sqlite3.connect(state_file(cfg)) as conn:
        conn.execute("UPDATE sent SET sent_at = sent_at - ?", (seconds,))


# -- config ------------------------------------------------------------------------------------

def test_expires_and_keep_alive_are_intervals(tmp_path: Path) -> None:
    cfg = text_feed(tmp_path, 1, 'expires = "30d"\nkeep_alive = "7d"')
    config = FeedConfig.load(cfg)
    assert (config.expires, config.keep_alive) == (30 * DAY, 7 * DAY)
    half = FeedConfig.load(text_feed(tmp_path, 1, 'expires = "30d"'))
    assert half.keep_alive == 15 * DAY  # a record still in the feed must not expire in ThreatConnect
    plain = FeedConfig.load(text_feed(tmp_path, 1))
    assert (plain.expires, plain.keep_alive) == (None, None)
    for extra, message in (('expires = "30"', "expires: '30' is not an interval"),
                           ('keep_alive = "soon"', "keep_alive: 'soon' is not an interval"),
                           ('expires = "7d"\nkeep_alive = "7d"', "keep_alive ('7d') must be shorter than expires")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            FeedConfig.load(text_feed(tmp_path, 1, extra))


# -- expiry --------------------------------------------------------------------------------------

def test_expires_sets_external_date_expires_from_the_send(tmp_path: Path, tc: Emulator) -> None:
    cfg = text_feed(tmp_path, 20, 'expires = "30d"')
    before = time.time()
    first = run_json(tc, cfg)
    assert (first["new"], first["accepted"], first["expired"], first["kept_alive"]) == (20, 20, 0, 0)
    for i in range(20):
        rec = tc.store.indicator(OWNER, "Address", ip(i))
        assert rec is not None and rec.get("active", True) is True
        assert before + 30 * DAY - 2 <= epoch(rec["externalDateExpires"]) <= time.time() + 30 * DAY + 1
    second = run_json(tc, cfg)  # the stamp is not content: an unchanged feed sends nothing
    assert (second["unchanged"], second["sent"]) == (20, 0)


def test_a_sources_own_expiry_wins_and_an_expired_record_is_sent_inactive(tmp_path: Path, tc: Emulator) -> None:
    (tmp_path / "feed.csv").write_text("ioc,until\n10.66.0.1,2099-01-01\n10.66.0.2,\n10.66.0.3,2001-01-01\n")
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.csv"\nformat = "csv"\nowner = "{OWNER}"\nexpires = "30d"\n'
                   f'[mapping]\nvalue = "ioc"\nexpires = "until"\n{FAST}')
    first = run_json(tc, cfg)
    assert (first["new"], first["expired"], first["accepted"]) == (2, 1, 3)
    own = tc.store.indicator(OWNER, "Address", "10.66.0.1")
    assert own["externalDateExpires"] == "2099-01-01T00:00:00Z" and own.get("active", True) is True
    ttl = tc.store.indicator(OWNER, "Address", "10.66.0.2")
    assert abs(epoch(ttl["externalDateExpires"]) - (time.time() + 30 * DAY)) < 120
    gone = tc.store.indicator(OWNER, "Address", "10.66.0.3")
    assert gone["externalDateExpires"] == "2001-01-01T00:00:00Z" and gone["active"] is False
    again = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "expired" not in again.stdout and "unchanged 3" in again.stdout  # sent inactive once

    # a record whose expiry passes while it is still in the feed is sent inactive then
    (tmp_path / "feed.csv").write_text("ioc,until\n10.66.0.1,2001-06-01\n10.66.0.2,\n10.66.0.3,2001-01-01\n")
    third = run_json(tc, cfg)
    assert (third["expired"], third["changed"], third["unchanged"], third["sent"]) == (1, 0, 2, 1)
    assert tc.store.indicator(OWNER, "Address", "10.66.0.1")["active"] is False
    line = cli(tc, "history", "--json", str(cfg), cwd=tmp_path)
    runs = [json.loads(x) for x in line.stdout.splitlines()]
    assert [r["expired"] for r in runs] == [1, 0, 1]


def test_an_unchanged_row_whose_expiry_passed_is_found_expired(tmp_path: Path, tc: Emulator) -> None:
    """The row is byte for byte what was sent; its expiry passing is what changed."""
    soon = datetime.fromtimestamp(time.time() + 2, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    (tmp_path / "feed.jsonl").write_text(
        json.dumps({"type": "Host", "summary": "soon.example.com", "externalDateExpires": soon}) + "\n"
        + json.dumps({"type": "Host", "summary": "later.example.com", "externalDateExpires": "2099-01-01"}) + "\n")
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.jsonl"\nformat = "jsonl"\nowner = "{OWNER}"\n{FAST}')
    assert run_json(tc, cfg)["new"] == 2
    time.sleep(3)
    second = run_json(tc, cfg)
    assert (second["expired"], second["unchanged"], second["sent"]) == (1, 1, 1)
    assert tc.store.indicator(OWNER, "Host", "soon.example.com")["active"] is False
    assert tc.store.indicator(OWNER, "Host", "later.example.com").get("active", True) is True


def stix_bundle(path: Path, objects: list[dict]) -> None:
    path.write_text(json.dumps({"type": "bundle", "id": "bundle--1", "objects": objects}))


def stix_indicator(n: int, **extra: object) -> dict:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
            "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z", "pattern_type": "stix",
            "pattern": f"[ipv4-addr:value = '10.55.{n // 256}.{n % 256}']", "valid_from": "2026-01-01T00:00:00Z",
            **extra}


def test_stix_revoked_and_valid_until(tmp_path: Path, tc: Emulator) -> None:
    stix_bundle(tmp_path / "bundle.json", [stix_indicator(1), stix_indicator(2, revoked=True),
                                           stix_indicator(3, valid_until="2001-01-01T00:00:00Z"),
                                           stix_indicator(4, valid_until="2099-01-01T00:00:00Z")])
    cfg = tmp_path / "stix.toml"
    cfg.write_text(f'source = "bundle.json"\nformat = "stix"\nowner = "{OWNER}"\nexpires = "10d"\n{FAST}')
    first = run_json(tc, cfg)
    assert (first["new"], first["expired"], first["accepted"]) == (3, 1, 4)
    live, revoked, expired, later = (tc.store.indicator(OWNER, "Address", f"10.55.0.{n}") for n in (1, 2, 3, 4))
    assert live.get("active", True) is True and abs(epoch(live["externalDateExpires"]) - time.time() - 10 * DAY) < 120
    assert revoked["active"] is False
    assert expired["active"] is False and expired["externalDateExpires"] == "2001-01-01T00:00:00Z"
    assert later.get("active", True) is True and later["externalDateExpires"] == "2099-01-01T00:00:00Z"


# -- keep-alive ----------------------------------------------------------------------------------

def test_keep_alive_resends_unchanged_records_and_refreshes_their_expiry(tmp_path: Path, tc: Emulator) -> None:
    n = 50
    cfg = text_feed(tmp_path, n, 'expires = "30d"\nkeep_alive = "1h"')
    assert run_json(tc, cfg)["new"] == n
    expiry = epoch(tc.store.indicator(OWNER, "Address", ip(0))["externalDateExpires"])
    assert run_json(tc, cfg)["kept_alive"] == 0  # sent moments ago
    age_state(cfg, 3600)  # every record was last sent an hour ago: each has passed its slot
    time.sleep(1.1)
    kept = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert f"unchanged 0, kept alive {n}" in kept.stdout and f"sent {n}" in kept.stdout
    assert epoch(tc.store.indicator(OWNER, "Address", ip(0))["externalDateExpires"]) > expiry
    history = [json.loads(x) for x in cli(tc, "history", "--json", str(cfg), cwd=tmp_path).stdout.splitlines()]
    assert [r["kept_alive"] for r in history] == [n, 0, 0]
    status = cli(tc, "status", str(cfg), cwd=tmp_path)
    assert f"kept alive {n:,}" in status.stdout, status.stdout
    as_json = json.loads(cli(tc, "status", "--json", str(cfg), cwd=tmp_path).stdout)
    assert (as_json["run"]["kept_alive"], as_json["run"]["sent"]) == (n, n)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_keep_alive_is_spread_over_cycles(tmp_path: Path, tc: Emulator) -> None:
    """1,000 records, keep_alive 1000 s, a cycle every 100 s: each cycle re-sends about a tenth,
    never the whole feed, and every record is re-sent exactly once per interval."""
    n, interval, period, cycles = 1000, 1000, 100, 20
    cfg = text_feed(tmp_path, n, f'keep_alive = "{interval}s"')
    clock = Clock(1_800_000_000.0)
    client = Client(ApiConfig(tc.url, tc.access_id, tc.secret_key), retry=RetryPolicy(attempts=2, backoff=0.01))
    metrics = Metrics()
    per_cycle = []
    try:
        config = FeedConfig.load(cfg)
        assert FeedRunner(config, client, clock=clock).run_cycle().new == n
        for _ in range(cycles):
            clock.now += period
            stats = FeedRunner(config, client, clock=clock).run_cycle()
            assert stats.status == "done" and stats.unchanged + stats.kept_alive == n, stats.line()
            assert stats.sent == stats.kept_alive
            metrics.cycle(stats)
            per_cycle.append(stats.kept_alive)
    finally:
        client.close()
    assert sum(per_cycle[:10]) == n and sum(per_cycle[10:]) == n  # each record once per interval
    assert max(per_cycle) <= 2 * n * period // interval, per_cycle
    assert min(per_cycle) >= n * period // interval // 3, per_cycle
    scraped = metrics.registry.get_sample_value("streambatch_feed_records_total", {"feed": "feed", "kind": "kept_alive"})
    assert scraped == 2 * n


# -- the mass-removal guard, whatever the source -----------------------------------------------

def test_the_removal_guard_holds_for_a_stix_source(tmp_path: Path, tc: Emulator) -> None:
    stix_bundle(tmp_path / "bundle.json", [stix_indicator(i) for i in range(40)])
    cfg = tmp_path / "stix.toml"
    cfg.write_text(f'source = "bundle.json"\nformat = "stix"\nowner = "{OWNER}"\nremoved = "inactive"\n'
                   f'absent_cycles = 1\n{FAST}')
    assert run_json(tc, cfg)["new"] == 40
    stix_bundle(tmp_path / "bundle.json", [stix_indicator(i) for i in range(20)])
    held = cli(tc, "run", "--json", str(cfg), cwd=tmp_path)
    assert held.returncode == 3
    out = json.loads(held.stdout)
    assert (out["removed"], out["retired"], out["held"]) == (20, 0, 20)
    assert all(tc.store.indicator(OWNER, "Address", f"10.55.0.{i}").get("active", True) for i in range(20, 40))


def test_the_removal_guard_holds_for_a_taxii_full_refresh(tmp_path: Path, tc: Emulator) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from taxii_server import PASSWORD, USER, TaxiiServer, collection, indicator, value_of

    srv = TaxiiServer([collection("c1", "Indicators", [indicator(i) for i in range(40)])]).start()
    try:
        cfg = tmp_path / "taxii.toml"
        cfg.write_text(f'source = "taxii2+{srv.discovery_url}"\nformat = "stix"\nowner = "{OWNER}"\n'
                       f'removed = "inactive"\nabsent_cycles = 1\n'
                       f'[taxii]\ncollection = "Indicators"\nuser = "{USER}"\npassword = "{PASSWORD}"\n'
                       f'full_refresh = "1s"\n{FAST}')
        assert run_json(tc, cfg)["new"] == 40
        for i in range(10, 40):
            srv.delete("c1", indicator(i)["id"])
        time.sleep(1.1)
        held = cli(tc, "run", "--json", str(cfg), cwd=tmp_path)
        assert held.returncode == 3, held.stdout + held.stderr
        out = json.loads(held.stdout)
        assert (out["removed"], out["retired"], out["held"]) == (30, 0, 30)
        assert all(tc.store.indicator(OWNER, *value_of(i)).get("active", True) for i in range(10, 40))
    finally:
        srv.stop()


def test_a_repeated_value_is_not_sent_again_for_its_expiry_stamp_but_is_kept_alive(tmp_path: Path,
                                                                                   tc: Emulator) -> None:
    """A value listed twice is sent as the merge of its rows; the merge's hash is taken without
    the cycle's stamp, so a later cycle finds it unchanged, and its keep-alive still comes."""
    (tmp_path / "feed.txt").write_text("10.44.0.1\n10.44.0.2\n10.44.0.1\n")
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.txt"\nformat = "text"\nowner = "{OWNER}"\nexpires = "30d"\nkeep_alive = "1h"\n'
                   f"{FAST}")
    first = run_json(tc, cfg)
    assert (first["new"], first["repeated"], first["sent"]) == (2, 1, 2)
    time.sleep(1.1)  # a later stamp
    second = run_json(tc, cfg)
    assert (second["unchanged"], second["repeated"], second["sent"]) == (2, 1, 0)
    age_state(cfg, 3600)
    third = run_json(tc, cfg)
    assert (third["kept_alive"], third["unchanged"], third["sent"]) == (2, 0, 2)
