"""The text reader: one value per line."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pytest

from streambatch import Batch
from streambatch.errors import StreambatchError
from streambatch.feeds import FeedItem, read_feed

DATA = Path(__file__).parent / "data"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_sample_file_field_by_field() -> None:
    items = list(read_feed("sample.txt", "text", base_dir=DATA))
    good = [(i.line, i.record) for i in items if i.record]
    assert good == [
        (4, {"type": "Address", "summary": "1.2.3.4"}),
        (5, {"type": "Host", "summary": "evil.example.com"}),
        (6, {"type": "URL", "summary": "https://bad.example.net/path?q=1#frag"}),
        (9, {"type": "ASN", "summary": "ASN64500"}),
        (10, {"type": "File", "summary": "d41d8cd98f00b204e9800998ecf8427e"}),
    ]
    bad = [i for i in items if i.error]
    assert [(b.line, b.raw) for b in bad] == [(8, "not-a-thing")]
    assert "cannot detect the indicator type" in bad[0].error
    assert all(isinstance(i, FeedItem) and (i.record is None) != (i.error is None) for i in items)


def test_defaults_and_forced_type(tmp_path: Path) -> None:
    _write(tmp_path / "f.txt", b"evil.example.com\nhxxp://x[.]example.com/a\n")
    opts = {"rating": 4, "confidence": 70, "tags": ["feed:x", "phish"],
            "attributes": [{"type": "Source", "value": "feed x"}]}
    items = list(read_feed(tmp_path / "f.txt", "text", options=opts))
    assert items[0].record == {"type": "Host", "summary": "evil.example.com", "rating": 4, "confidence": 70,
                               "tag": [{"name": "feed:x"}, {"name": "phish"}],
                               "attribute": [{"type": "Source", "value": "feed x"}]}
    assert items[1].record["type"] == "URL" and items[1].record["summary"] == "http://x.example.com/a"
    # records do not share mutable metadata
    items[0].record["attribute"][0]["value"] = "changed"
    assert items[1].record["attribute"][0]["value"] == "feed x"

    _write(tmp_path / "m.txt", b"Global\\MyMutex\n1.2.3.4\n")
    forced = list(read_feed(tmp_path / "m.txt", "text", options={"type": "mutex"}))
    assert [i.record for i in forced] == [{"type": "Mutex", "summary": "Global\\MyMutex"},
                                          {"type": "Mutex", "summary": "1.2.3.4"}]
    hosts = list(read_feed(tmp_path / "m.txt", "text", options={"type": "Host"}))
    assert hosts[0].error and "Host value" in hosts[0].error and hosts[0].line == 1
    assert hosts[1].error and hosts[1].line == 2  # an IP is not a Host


def test_unknown_forced_type_and_format_raise(tmp_path: Path) -> None:
    with pytest.raises(StreambatchError, match="not a known indicator"):
        read_feed(tmp_path / "x.txt", "text", options={"type": "Adversary"})
    with pytest.raises(StreambatchError, match="unknown feed format"):
        read_feed(tmp_path / "x.txt", "xml")


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(StreambatchError, match="cannot open"):
        list(read_feed("nope.txt", "text", base_dir=tmp_path))


def test_bom_crlf_and_latin1(tmp_path: Path) -> None:
    _write(tmp_path / "f.txt", b"\xef\xbb\xbfevil.example.com\r\ncaf\xe9.example.com\r\n1.2.3.4\r\n")
    items = list(read_feed(tmp_path / "f.txt", "text"))
    assert items[0].record == {"type": "Host", "summary": "evil.example.com"}  # BOM gone
    assert items[1].record is None and items[1].line == 2
    assert "not valid utf-8" in items[1].error and "0xe9" in items[1].error
    assert items[1].raw == "caf\ufffd.example.com"
    assert items[2].record == {"type": "Address", "summary": "1.2.3.4"}
    # the same file read as latin-1: the row is decoded, then refused (a non-ASCII host)
    latin = list(read_feed(tmp_path / "f.txt", "text", options={"encoding": "latin-1"}))
    assert latin[1].error and "cannot detect" in latin[1].error and latin[1].raw == "café.example.com"


def test_utf16_bom_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "f.txt", "evil.example.com\n".encode("utf-16"))
    with pytest.raises(StreambatchError, match="UTF-16"):
        list(read_feed(tmp_path / "f.txt", "text"))


def test_huge_line_is_a_bad_row(tmp_path: Path) -> None:
    huge = b"a" * 3_000_000
    _write(tmp_path / "f.txt", b"1.1.1.1\n" + huge + b"\n2.2.2.2\n" + b"b" * 2000)
    items = list(read_feed(tmp_path / "f.txt", "text", options={"max_line_bytes": 1 << 20}))
    assert items[0].record["summary"] == "1.1.1.1"
    assert items[1].line == 2 and items[1].record is None
    assert "longer than 1048576 bytes" in items[1].error and "3000000" in items[1].error
    assert len(items[1].raw) == 1000
    assert items[2].line == 3 and items[2].record["summary"] == "2.2.2.2"
    assert items[3].line == 4 and "cannot detect" in items[3].error and len(items[3].raw) == 1000  # last line, no \n
    small = list(read_feed(tmp_path / "f.txt", "text", options={"max_line_bytes": 100}))
    assert [i.line for i in small if i.error and "longer" in i.error] == [2, 4]


def test_gzip_by_magic_not_name(tmp_path: Path) -> None:
    _write(tmp_path / "feed.dat", gzip.compress(b"# x\n1.2.3.4\nevil.example.com\n"))
    items = list(read_feed("feed.dat", "text", base_dir=tmp_path))
    assert [i.record["summary"] for i in items] == ["1.2.3.4", "evil.example.com"]


def test_zip_single_member_and_named_member(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "one.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("feed.txt", "1.2.3.4\n")
    assert [i.record["summary"] for i in read_feed(tmp_path / "one.zip", "text")] == ["1.2.3.4"]
    with zipfile.ZipFile(tmp_path / "two.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("readme.md", "hello\n")
        z.writestr("data/ips.txt.gz", gzip.compress(b"5.6.7.8\n"))  # a gzip inside a zip
    with pytest.raises(StreambatchError, match="2 members"):
        list(read_feed(tmp_path / "two.zip", "text"))
    with pytest.raises(StreambatchError, match="no member 'x.txt'"):
        list(read_feed(tmp_path / "two.zip", "text", options={"member": "x.txt"}))
    items = list(read_feed(tmp_path / "two.zip", "text", options={"member": "data/ips.txt.gz"}))
    assert [i.record for i in items] == [{"type": "Address", "summary": "5.6.7.8"}]


def test_records_are_accepted_by_the_batch(tmp_path: Path) -> None:
    items = list(read_feed("sample.txt", "text", base_dir=DATA, options={"rating": 2, "tags": ["t"]}))
    with Batch("Org", tmp_path / "job.sqlite") as batch:
        staged = batch.save_all((i.record for i in items if i.record), on_error="raise")
    assert staged == 5
