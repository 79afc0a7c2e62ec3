"""A feed run through the ``streambatch`` command applies the instance's rules before staging:
an excluded value is a local reject (``streambatch rejected``), an over-long attribute is cut
with ``[batch] truncate_attributes``, and the rules are cached in the feed's state file with
their fetch time, asked again only once ``rules_refresh`` has passed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from feed_cli import cli

from streambatch.emulator import Emulator
from streambatch.feeds.config import FeedConfig
from streambatch.feeds.state import FeedState

OWNER = "Demo Organization"
LONG = "y" * 300


@pytest.fixture
def tc(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(db=tmp_path / "emu.sqlite", attribute_types=[{"name": "Description", "maxSize": 200}],
                  exclusion_lists=[{"name": "Indicator-Host", "variable": ["*.internal.example"]}]) as emulator:
        yield emulator



def feed(folder: Path, hosts: list[str]) -> Path:
    (folder / "hosts.txt").write_text("".join(h + "\n" for h in hosts))
    cfg = folder / "hosts.toml"
    cfg.write_text(f'source = "hosts.txt"\nformat = "text"\nowner = "{OWNER}"\n'
                   f'[options]\ntype = "Host"\nattributes = [{{type = "Description", value = "{LONG}"}}]\n'
                   '[batch]\npoll_interval = 0.02\ntruncate_attributes = true\nrules_refresh = "12h"\n')
    return cfg


def state_rules(cfg: Path) -> dict:
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        return state.get("rules")
    finally:
        state.close()


def asked(tc: Emulator) -> int:
    return sum(1 for r in tc.requests if r["method"] == "GET" and r["path"].endswith("/v3/attributeTypes"))


def bodies(tc: Emulator) -> bytes:
    return b"\n".join(tc.store.job_input(j["id"]) or b"" for j in tc.store.jobs())


def test_a_feed_run_applies_caches_and_refreshes_the_instance_rules(tmp_path: Path, tc: Emulator) -> None:
    cfg = feed(tmp_path, ["a.example.com", "db.internal.example", "b.example.com"])
    done = cli(tc, "run", "--json", str(cfg), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["rejected"] == 1 and run["sent"] == 2
    assert b"db.internal.example" not in bodies(tc) and LONG.encode() not in bodies(tc)
    stored = tc.store.indicator(OWNER, "Host", "a.example.com")
    assert stored is not None and [a["value"] for a in stored["attribute"]] == ["y" * 200]

    listed = cli(tc, "rejected", "--json", str(cfg), cwd=tmp_path)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["line"] for r in rows] == [2] and "excluded by Indicator-Host" in rows[0]["reason"]
    status = cli(tc, "status", str(cfg), cwd=tmp_path)
    assert "attributes truncated 2" in status.stdout, status.stdout

    cached = state_rules(cfg)
    assert cached["owner"] == OWNER and cached["fetched"] > 0 and "exclusionLists" in cached["active"]
    assert asked(tc) == 1

    feed(tmp_path, ["a.example.com", "c.example.com"])
    assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
    assert asked(tc) == 1  # fresh enough: the state file's copy is used
    assert tc.store.indicator(OWNER, "Host", "c.example.com") is not None

    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    state.put("rules", {**cached, "fetched": cached["fetched"] - 13 * 3600})
    state.close()
    feed(tmp_path, ["d.example.com"])
    assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
    assert asked(tc) == 2  # older than rules_refresh: asked again
    assert state_rules(cfg)["fetched"] > cached["fetched"]


def test_an_attribute_type_the_instance_lacks_is_left_out_and_needs_a_look(tc: Emulator, tmp_path: Path) -> None:
    """A feed mapping an attribute type the instance does not have (a Port attribute, say):
    the indicators land without it, the run says which type and how many, and exits 3."""
    (tmp_path / "hosts.txt").write_text("a.example.com\nb.example.com\n")
    cfg = tmp_path / "ports.toml"
    cfg.write_text(f'source = "hosts.txt"\nformat = "text"\nowner = "{OWNER}"\n'
                   '[options]\ntype = "Host"\nattributes = [{type = "Port", value = "443"}]\n'
                   '[batch]\npoll_interval = 0.02\n')
    done = cli(tc, "run", "--json", str(cfg), cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    run = json.loads(done.stdout)
    assert run["attributes_dropped"] == {"Port": 2} and run["rejected"] == 0 and run["accepted"] == 2
    assert any("Port (2)" in line for line in run["attention"])
    assert "Port is not an attribute type of this instance" in done.stderr
    assert tc.store.indicator(OWNER, "Host", "a.example.com")["attribute"] == []
    assert b'"Port"' not in bodies(tc)
    status = cli(tc, "status", str(cfg), cwd=tmp_path)
    assert "attributes dropped 2" in status.stdout
