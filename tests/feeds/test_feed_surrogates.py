"""Lone surrogate escapes (``"\\ud800"``) in JSON feeds: the item holding one is a bad row naming
where it is, never a record with the text changed; surrogate pairs decode; escaped backslashes
are not escapes; an escape split across the parser's reads is seen; json, stix, jsonl and TAXII
alike, and through the CLI against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streambatch.emulator import Emulator
from streambatch.feeds import read_feed
from streambatch.feeds import readers

OWNER = "Demo Organization"


def _host(summary: str, **extra: object) -> str:
    return json.dumps({"type": "Host", "summary": summary, **extra})


def _json_feed(tmp_path: Path, items: list[str], name: str = "f.json") -> Path:
    path = tmp_path / name
    path.write_bytes(("[" + ",\n".join(items) + "]").encode())
    return path


@pytest.mark.parametrize("escape", [r"\ud800", r"\uDBFF", r"\udc00", r"\uDFFF", r"\ud800\u0041", r"\ude00\ud83d"])
def test_json_item_with_a_lone_surrogate_is_a_bad_row(tmp_path: Path, escape: str) -> None:
    items = [_host("a.example.com"),
             '{"type": "Host", "summary": "b.example.com", "tag": [{"name": "x' + escape + 'y"}]}',
             _host("c.example.com")]
    got = list(read_feed(_json_feed(tmp_path, items), "json"))
    assert [i.line for i in got] == [1, 2, 3]
    assert got[0].record["summary"] == "a.example.com" and got[2].record["summary"] == "c.example.com"
    bad = got[1]
    assert bad.record is None
    assert "lone surrogate" in bad.error and "tag[0].name" in bad.error
    first = escape[:6].lower()
    assert first in bad.error.lower()
    assert bad.raw is not None and "b.example.com" in bad.raw and first in bad.raw.lower()
    assert "?" not in bad.raw
    bad.raw.encode("utf-8")  # storable text
    bad.error.encode("utf-8")


def test_surrogate_pairs_escaped_backslashes_and_the_marker_character_pass(tmp_path: Path) -> None:
    items = [_host("a.example.com", description="smile \\ud83d\\ude00 \\uD83D\\uDE00"),  # json.dumps escapes \
             '{"type": "Host", "summary": "b.example.com", "description": "pair \\ud83d\\ude00 done"}',
             '{"type": "Host", "summary": "c.example.com", "description": "not an escape \\\\ud800"}',
             '{"type": "Host", "summary": "d.example.com", "description": "three \\\\\\ud83d\\ude00"}',
             '{"type": "Host", "summary": "e.example.com", "description": "nonchar \\ufdd0 \ufdd0 \\uFDD0\\ud800x"}',
             '{"type": "Host", "summary": "f.example.com", "description": "nonchar \\ufdd0d800 \ufdd0\ufdd0"}']
    got = list(read_feed(_json_feed(tmp_path, items), "json"))
    assert got[0].record["description"] == "smile \\ud83d\\ude00 \\uD83D\\uDE00"
    assert got[1].record["description"] == "pair \U0001F600 done"
    assert got[2].record["description"] == "not an escape \\ud800"
    assert got[3].record["description"] == "three \\\U0001F600"
    assert got[4].record is None and "lone surrogate" in got[4].error and "description" in got[4].error
    assert got[5].record["description"] == "nonchar \ufdd0d800 \ufdd0\ufdd0"


def test_a_lone_surrogate_in_a_key_or_deep_inside_names_its_place(tmp_path: Path) -> None:
    items = ['{"type": "Host", "summary": "a.example.com", "k\\ud800": 1}',
             '{"type": "Host", "summary": "b.example.com", "attribute": [{"type": "Description", "value": "v"}, '
             '{"type": "Source", "value": "s\\udfff"}]}']
    got = list(read_feed(_json_feed(tmp_path, items), "json"))
    assert got[0].record is None and "lone surrogate" in got[0].error and "k\\ud800" in got[0].error
    assert got[1].record is None and "attribute[1].value" in got[1].error


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11, 13, 64])
def test_escapes_split_across_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """The filter in front of the parser reads ``size`` bytes at a time: every escape, backslash
    run and marker character is split at every place."""
    monkeypatch.setattr(readers, "SURROGATE_READ", size)
    items = ['{"type": "Host", "summary": "a.example.com", "description": "x\\\\\\\\\\ud83d\\ude00\\\\ud800"}',
             '{"type": "Host", "summary": "b.example.com", "description": "\\\\\\ud800"}',
             '{"type": "Host", "summary": "c.example.com", "description": "\\ufdd0\ufdd0\\ud83d\\ude00"}',
             '{"type": "Host", "summary": "d.example.com", "description": "\\ud83d\\\\ude00"}']
    got = list(read_feed(_json_feed(tmp_path, items), "json"))
    assert got[0].record["description"] == "x\\\\\U0001F600\\ud800"
    assert got[1].record is None and "description" in got[1].error
    assert got[2].record["description"] == "\ufdd0\ufdd0\U0001F600"
    assert got[3].record is None and "\\ud83d" in got[3].error


def test_stix_object_with_a_lone_surrogate_is_a_bad_row(tmp_path: Path) -> None:
    good = {"type": "indicator", "spec_version": "2.1", "id": "indicator--00000000-0000-4000-8000-000000000001",
            "pattern": "[ipv4-addr:value = '198.51.100.1']", "pattern_type": "stix", "valid_from": "2024-01-01T00:00:00Z"}
    bad = dict(good, id="indicator--00000000-0000-4000-8000-000000000002",
               pattern="[ipv4-addr:value = '198.51.100.2']", name="NAME")
    actor = {"type": "threat-actor", "spec_version": "2.1", "id": "threat-actor--00000000-0000-4000-8000-000000000003",
             "name": "Actor"}
    rel = {"type": "relationship", "spec_version": "2.1", "id": "relationship--00000000-0000-4000-8000-000000000004",
           "relationship_type": "indicates", "source_ref": bad["id"], "target_ref": actor["id"]}
    text = json.dumps({"type": "bundle", "id": "bundle--1", "objects": [good, bad, actor, rel]})
    text = text.replace('"NAME"', '"C2 \\ud800 server"')
    (tmp_path / "b.json").write_text(text)
    got = list(read_feed(tmp_path / "b.json", "stix"))
    by_line = {i.line: i for i in got}
    assert by_line[1].record["summary"] == "198.51.100.1"
    assert by_line[2].record is None and "lone surrogate" in by_line[2].error and "name" in by_line[2].error
    assert bad["id"] in by_line[2].error
    assert by_line[3].record["name"] == "Actor"
    assert by_line[4].record is None and "not mapped" in by_line[4].error  # points to the refused indicator


def test_jsonl_line_with_a_lone_surrogate_is_a_bad_row(tmp_path: Path) -> None:
    (tmp_path / "f.jsonl").write_text(_host("a.example.com") + "\n"
                                      + '{"type": "Host", "summary": "b.example.com", "tag": ["\\ud800"]}\n'
                                      + _host("c.example.com") + "\n")
    got = list(read_feed(tmp_path / "f.jsonl", "jsonl"))
    assert [i.record["summary"] if i.record else None for i in got] == ["a.example.com", None, "c.example.com"]
    assert "surrogate" in got[1].error and got[1].line == 2


def test_taxii_object_with_a_lone_surrogate_is_a_bad_row(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import taxii_server as ts

    objs = [ts.indicator(i) for i in range(3)]
    objs[1]["description"] = "half \ud800 a pair"  # medallion answers it as the JSON escape \ud800
    srv = ts.TaxiiServer([ts.collection("c1", "Indicators", objs)]).start()
    try:
        got = list(read_feed(f"taxii2+http://{ts.USER}:{ts.PASSWORD}@127.0.0.1:{srv.port}/taxii2/", "stix"))
    finally:
        srv.stop()
    good = [i.record["summary"] for i in got if i.record]
    assert good == [ts.value_of(0)[1], ts.value_of(2)[1]]
    bad = [i for i in got if i.record is None]
    assert len(bad) == 1 and "lone surrogate" in bad[0].error and "description" in bad[0].error


def test_cli_run_rejects_the_item_and_sends_the_rest(tmp_path: Path) -> None:
    items = [_host("a.example.com", tag=[{"name": "ok"}]),
             '{"type": "Host", "summary": "b.example.com", "tag": [{"name": "bad \\ud800 tag"}]}',
             '{"type": "Host", "summary": "c.example.com", "tag": [{"name": "pair \\ud83d\\ude00"}]}']
    _json_feed(tmp_path, items, "feed.json")
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.json"\nformat = "json"\nowner = "{OWNER}"\n[batch]\npoll_interval = 0.02\n')
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_"))}
        env.update(TC_API_PATH=tc.url, TC_API_ACCESS_ID=tc.access_id, TC_API_SECRET_KEY=tc.secret_key)

        def cli(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "streambatch.cli", *args], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)

        run = cli("run", str(cfg))
        assert run.returncode in (0, 3), run.stdout + run.stderr
        assert "rejected 1" in run.stdout + run.stderr
        assert tc.store.count(OWNER, "indicator") == 2
        assert tc.store.indicator(OWNER, "Host", "b.example.com") is None
        assert tc.store.indicator(OWNER, "Host", "c.example.com") is not None
        landed = [tc.store.indicator(OWNER, "Host", h) for h in ("a.example.com", "c.example.com")]
        assert [[t["name"] for t in rec["tag"]] for rec in landed] == [["ok"], ["pair \U0001F600"]]
        sent = b"".join(p.read_bytes() for p in (tmp_path / "feed.streambatch").rglob("chunk-*.json*"))
        assert b"c.example.com" in sent and b"b.example.com" not in sent and b"?" not in sent

        listing = cli("rejected", str(cfg))
        assert listing.returncode == 0, listing.stderr
        assert "line 2" in listing.stdout and "lone surrogate" in listing.stdout and "tag[0].name" in listing.stdout
        as_json = cli("rejected", "--json", str(cfg))
        rows = [json.loads(line) for line in as_json.stdout.splitlines()]
        assert len(rows) == 1 and rows[0]["line"] == 2 and "lone surrogate" in rows[0]["reason"]
        assert "b.example.com" in rows[0]["raw"]


_ALPHABET = ["a", "\\", "u", "d", "8", "\ud800", "\udc00", "\udbff", "\U0001F600", "\ufdd0", "\ufdd0d800", "é", '"']


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from(_ALPHABET), max_size=12).map("".join), min_size=1, max_size=6),
       st.booleans(), st.sampled_from([1, 2, 3, 7, 16, 1 << 16]))
def test_json_items_agree_with_the_standard_library(monkeypatch: pytest.MonkeyPatch, texts: list[str], ascii_only: bool,
                                                    size: int) -> None:
    """Whatever the strings and read size, each item is what ``json.loads`` makes of it: as it
    is when it has no lone surrogate, else a BadJsonItem holding exactly that value."""
    import io

    monkeypatch.setattr(readers, "SURROGATE_READ", size)
    doc = [{"k" + t: t, "list": [t, {"x": t}]} for t in texts]
    data = json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if not ascii_only:  # raw lone surrogates are not UTF-8: write them as the escapes a feed would carry
        data = json.dumps(doc, ensure_ascii=False).encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")\
            .encode("utf-8", "backslashreplace")
    expected = json.loads(data)
    got = list(readers.json_items(io.BufferedReader(io.BytesIO(data)), "item"))
    assert [n for n, _ in got] == list(range(1, len(doc) + 1))
    for (_n, item), want in zip(got, expected):
        if any("\ud800" <= c <= "\udfff" for c in json.dumps(want, ensure_ascii=False)):  # a lone one
            assert isinstance(item, readers.BadJsonItem) and item.item == want and "lone surrogate" in item.reason
        else:
            assert item == want


def test_a_lone_surrogate_outside_the_items_or_in_a_bare_string_item(tmp_path: Path) -> None:
    ind = {"type": "indicator", "spec_version": "2.1", "id": "indicator--00000000-0000-4000-8000-000000000009",
           "pattern": "[ipv4-addr:value = '198.51.100.9']", "pattern_type": "stix", "valid_from": "2024-01-01T00:00:00Z"}
    text = ('{"type": "bundle", "id": "bundle--\\ud800", "objects": ["x\\udc00", ' + json.dumps(ind) + "]}")
    (tmp_path / "b.json").write_text(text)
    got = list(read_feed(tmp_path / "b.json", "stix"))
    assert got[0].record is None and got[0].error.startswith("bundle object: lone surrogate \\udc00")
    assert got[1].record["summary"] == "198.51.100.9"  # walked (a mark is still outstanding), and whole


def test_a_lone_surrogate_in_an_entry_options_select_reads(tmp_path: Path) -> None:
    """With options.select the expression sees one top-level entry at a time: a member of a
    top-level object (or an item of the array) holding a lone surrogate is a bad row, and the
    expression never sees it."""
    (tmp_path / "o.json").write_text('{"good": [{"v": "a.example.com"}], "b\\ud800d": [{"v": "b.example.com"}], '
                                     '"also": [{"v": "c.example.com", "n": "x\\udfff"}, {"v": "d.example.com"}]}')
    got = list(read_feed(tmp_path / "o.json", "json", options={"select": "*[]"}, mapping={"value": "v"}))
    assert [i.record["summary"] for i in got if i.record] == ["a.example.com"]
    bad = [i for i in got if i.record is None]
    assert len(bad) == 2 and all("lone surrogate" in i.error for i in bad)
    assert "key 'b\\ud800d'" in bad[0].error and "also[0].n" in bad[1].error

    (tmp_path / "a.json").write_text('[{"v": "e.example.com"}, {"v": "f.example.com", "n": "\\ud800"}]')
    got = list(read_feed(tmp_path / "a.json", "json", options={"select": "[?v]"}, mapping={"value": "v"}))
    assert [i.record["summary"] if i.record else None for i in got] == ["e.example.com", None]
