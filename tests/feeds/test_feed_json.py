"""The jsonl and json readers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from streambatch.errors import IncompleteReadError, StreambatchError
from streambatch.feeds import read_feed


def test_jsonl_passthrough_defaults_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"type": "Host", "summary": "evil.example.com", "rating": 5}),
        "{bad json",
        "",
        json.dumps([1, 2]),
        json.dumps({"type": "Adversary", "name": "APT1"}),
        json.dumps({"association": {"ref_1": "evil.example.com", "type_1": "Host", "ref_2": "g1"}}),
        json.dumps({"ip": "1.2.3.4"}),
    ]
    (tmp_path / "f.jsonl").write_text("\ufeff" + "\n".join(lines) + "\n")
    items = list(read_feed(tmp_path / "f.jsonl", "jsonl", options={"rating": 1, "tags": ["x"]}))
    assert items[0].record == {"type": "Host", "summary": "evil.example.com", "rating": 5, "tag": [{"name": "x"}]}
    assert items[1].line == 2 and "malformed JSON" in items[1].error and items[1].raw == "{bad json"
    assert items[2].line == 4 and "JSON list" in items[2].error
    assert items[3].record == {"type": "Adversary", "name": "APT1"}  # groups get no indicator defaults
    assert items[4].record["association"]["ref_2"] == "g1"
    assert items[5].line == 7 and "no mapping" in items[5].error


def test_jsonl_mapping_with_dotted_paths(tmp_path: Path) -> None:
    rows = [{"ioc": {"value": "hxxp://a[.]example.com/x", "kind": None}, "meta": {"score": 80, "labels": ["c2", "x"]},
             "seen": "2024-05-01T00:00:00+02:00"},
            {"ioc": {"value": "1.2.3.4"}, "meta": {"score": 500}},
            {"ioc": {}}]
    (tmp_path / "f.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    mapping = {"value": "ioc.value", "type": "ioc.kind", "confidence": "meta.score", "tags": "meta.labels",
               "first_seen": "seen"}
    items = list(read_feed(tmp_path / "f.jsonl", "jsonl", mapping=mapping))
    assert items[0].record == {"type": "URL", "summary": "http://a.example.com/x", "confidence": 80,
                               "firstSeen": "2024-04-30T22:00:00Z", "tag": [{"name": "c2"}, {"name": "x"}]}
    assert items[1].line == 2 and "confidence '500'" in items[1].error
    assert items[2].line == 3 and "is empty" in items[2].error


def test_json_array_streamed_gzip_and_path(tmp_path: Path) -> None:
    doc = [{"type": "Address", "summary": "1.2.3.4"}, "oops", {"type": "URL", "summary": "http://x.example.com/"}]
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(json.dumps(doc).encode()))
    items = list(read_feed(tmp_path / "a.json.gz", "json"))
    assert [(i.line, bool(i.record)) for i in items] == [(1, True), (2, False), (3, True)]
    assert "JSON str" in items[1].error

    (tmp_path / "o.json").write_text(json.dumps({"meta": 1, "data": {"items": [{"v": 1.5, "h": "evil.example.com"}]}}))
    items = list(read_feed(tmp_path / "o.json", "json", options={"path": "data.items"},
                           mapping={"value": "h", "rating": "v"}))
    assert items[0].record == {"type": "Host", "summary": "evil.example.com", "rating": 1.5}
    with pytest.raises(StreambatchError, match="options.path"):
        list(read_feed(tmp_path / "o.json", "json"))


def test_json_syntax_error_keeps_earlier_items(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('[{"type": "Host", "summary": "a.example.com"}, {"type": "Host", "summ')
    items = read_feed(tmp_path / "t.json", "json")
    assert next(items).record["summary"] == "a.example.com"
    with pytest.raises(IncompleteReadError, match="item 2: invalid JSON after item 1"):
        next(items)
