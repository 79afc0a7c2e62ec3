"""A source that ends before its end is an IncompleteReadError, raised after every item read
before that point; a feed that merely has bad rows is still a complete read."""

from __future__ import annotations

import gzip
import io
import json
import socket
import struct
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from streambatch.errors import IncompleteReadError, TransientError
from streambatch.feeds import read_feed


def ips(n: int, start: int = 0) -> list[str]:
    return [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(start, start + n)]


def drain(gen: Iterator) -> tuple[list, BaseException | None]:
    """Every item the reader yields before it raises, and what it raised."""
    items: list = []
    try:
        for item in gen:
            items.append(item)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return items, exc
    return items, None


# -- 1. truncated archives --------------------------------------------------------------------


def test_gzip_cut_in_the_middle_raises_after_the_lines_before(tmp_path: Path) -> None:
    values = ips(20_000)
    packed = gzip.compress(("\n".join(values) + "\n").encode())
    path = tmp_path / "feed.txt.gz"
    path.write_bytes(packed[: len(packed) // 2])
    items, exc = drain(read_feed(path, "text"))
    assert isinstance(exc, IncompleteReadError), exc
    assert 0 < len(items) < len(values)
    assert [i.record["summary"] for i in items] == values[: len(items)]  # all good, in order, none lost before the cut
    assert str(path) in str(exc) and f"line {len(items) + 1}" in str(exc) and "gzip" in str(exc)


def test_gzip_missing_its_trailer_or_with_a_bad_crc_raises_after_every_line(tmp_path: Path) -> None:
    packed = gzip.compress(b"1.2.3.4\n5.6.7.8\n")
    (tmp_path / "short.gz").write_bytes(packed[:-4])  # ISIZE cut: every byte of data is there
    items, exc = drain(read_feed(tmp_path / "short.gz", "text"))
    assert [i.record["summary"] for i in items] == ["1.2.3.4", "5.6.7.8"]
    assert isinstance(exc, IncompleteReadError) and "short.gz" in str(exc)
    (tmp_path / "cut.gz").write_bytes(packed[:-10])  # into the deflate stream
    assert isinstance(drain(read_feed(tmp_path / "cut.gz", "text"))[1], IncompleteReadError)
    crc = bytearray(packed)
    crc[-8] ^= 0xFF
    (tmp_path / "crc.gz").write_bytes(bytes(crc))
    items, exc = drain(read_feed(tmp_path / "crc.gz", "text"))
    assert isinstance(exc, IncompleteReadError) and "CRC" in str(exc)
    assert [i.record["summary"] for i in items] == ["1.2.3.4", "5.6.7.8"]


def test_zip_member_with_a_bad_crc_and_a_cut_archive(tmp_path: Path) -> None:
    values = ips(20_000) + ["9.9.9.9"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("feed.txt", "\n".join(values) + "\n")
    archive = bytearray(buf.getvalue())
    at = archive.index(b"9.9.9.9")
    archive[at] = ord("8")  # stored data changed, CRC not: the member is corrupt
    (tmp_path / "crc.zip").write_bytes(bytes(archive))
    items, exc = drain(read_feed(tmp_path / "crc.zip", "text"))
    assert isinstance(exc, IncompleteReadError), exc
    assert "feed.txt" in str(exc) and "crc.zip" in str(exc) and "CRC" in str(exc)
    # zipfile checks the CRC as it reads the last block: the blocks before it were read, that one is not
    assert 0 < len(items) < len(values)
    assert [i.record["summary"] for i in items] == values[: len(items)]
    (tmp_path / "cut.zip").write_bytes(buf.getvalue()[:40])  # the central directory is gone
    items, exc = drain(read_feed(tmp_path / "cut.zip", "text"))
    assert items == [] and isinstance(exc, IncompleteReadError) and "cut.zip" in str(exc)


# -- 2. JSON and STIX -------------------------------------------------------------------------

GOOD = [{"type": "Host", "summary": f"h{i}.example.com"} for i in range(3)]


@pytest.mark.parametrize("tail, why", [
    ('{"type": "Host", "summ', "premature EOF"),  # truncated
    ('{"type": "Host", "summary": x}]', "invalid char"),  # syntax error
    ('{"type": "Host", "summary": "z.example.com", "rating": 1e999}]', "overflow"),  # out-of-range number
])
def test_json_that_does_not_parse_to_its_end_is_incomplete(tmp_path: Path, tail: str, why: str) -> None:
    path = tmp_path / "feed.json"
    path.write_text("[" + ", ".join(json.dumps(g) for g in GOOD) + ", " + tail)
    items, exc = drain(read_feed(path, "json"))
    assert [i.record["summary"] for i in items] == [g["summary"] for g in GOOD]  # no bad item is made up
    assert isinstance(exc, IncompleteReadError), exc
    assert str(path) in str(exc) and "item 4" in str(exc) and why in str(exc)
    assert "\n" not in str(exc)  # the parser's multi-line caret drawing is not copied


def test_json_under_a_path_cut_before_the_array_closes(tmp_path: Path) -> None:
    path = tmp_path / "o.json"
    path.write_text('{"data": {"items": [' + json.dumps(GOOD[0]) + ", " + json.dumps(GOOD[1]))
    items, exc = drain(read_feed(path, "json", options={"path": "data.items"}))
    assert [i.record["summary"] for i in items] == [GOOD[0]["summary"], GOOD[1]["summary"]]
    assert isinstance(exc, IncompleteReadError) and "item 3" in str(exc)


def test_bad_items_before_the_end_are_still_yielded(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_text('[{"type": "Host", "summary": "a.example.com"}, 42, {"no": "type"}, {"type": "Host"')
    items, exc = drain(read_feed(path, "json"))
    assert [(i.line, i.record is None) for i in items] == [(1, False), (2, True), (3, True)]
    assert isinstance(exc, IncompleteReadError) and "item 4" in str(exc)


def test_complete_json_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_text(json.dumps(GOOD + [42]) + "\n")
    items, exc = drain(read_feed(path, "json"))
    assert exc is None and len(items) == 4 and items[3].error


STIX_IND = {"type": "indicator", "spec_version": "2.1", "id": "indicator--11111111-1111-4111-8111-111111111111",
            "created": "2024-03-01T12:00:00Z", "modified": "2024-03-01T12:00:00Z", "pattern_type": "stix",
            "valid_from": "2024-03-01T12:00:00Z", "pattern": "[ipv4-addr:value = '198.51.100.7']"}
STIX_MAL = {"type": "malware", "spec_version": "2.1", "id": "malware--22222222-2222-4222-8222-222222222222",
            "name": "ExampleRAT", "is_family": True}
STIX_REL = {"type": "relationship", "spec_version": "2.1", "id": "relationship--33333333-3333-4333-8333-333333333333",
            "relationship_type": "indicates", "source_ref": STIX_IND["id"], "target_ref": STIX_MAL["id"]}


def test_truncated_stix_bundle_yields_what_came_before(tmp_path: Path) -> None:
    # the relationship comes before its indicator (held until the indicator is seen), then the cut
    objects = ", ".join(json.dumps(o) for o in (STIX_MAL, STIX_REL, STIX_IND))
    path = tmp_path / "bundle.json"
    path.write_text('{"type": "bundle", "id": "bundle--1", "objects": [' + objects + ', {"type": "indicator", "id": "ind')
    items, exc = drain(read_feed(path, "stix"))
    assert isinstance(exc, IncompleteReadError), exc
    assert "object 4" in str(exc) and str(path) in str(exc)
    records = [i.record for i in items]
    assert {"type": "Malware", "name": "ExampleRAT", "xid": STIX_MAL["id"]} in records
    assert any(r.get("summary") == "198.51.100.7" for r in records)
    assert {"association": {"ref_1": "198.51.100.7", "type_1": "Address", "ref_2": STIX_MAL["id"]}} in records
    assert all(i.error is None for i in items)


def test_stix_bundle_with_an_overflowing_number_is_incomplete(tmp_path: Path) -> None:
    bad = dict(STIX_IND, confidence=1e999)
    path = tmp_path / "bundle.json"
    path.write_text('{"type": "bundle", "id": "bundle--1", "objects": [' + json.dumps(STIX_MAL) + ", "
                    + json.dumps(bad).replace("Infinity", "1e999") + "]}")
    items, exc = drain(read_feed(path, "stix"))
    assert [i.record["name"] for i in items] == ["ExampleRAT"]
    assert isinstance(exc, IncompleteReadError) and "overflow" in str(exc)


def test_jsonl_overflowing_number_is_a_bad_row_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text('{"type": "Host", "summary": "a.example.com"}\n'
                    '{"type": "Host", "summary": "b.example.com", "rating": 1e999}\n'
                    '{"type": "Host", "summary": "c.example.com"}\n')
    items, exc = drain(read_feed(path, "jsonl"))
    assert exc is None
    assert [i.line for i in items] == [1, 2, 3]
    assert items[1].record is None and "infinity" in items[1].error and "1e999" in items[1].raw
    assert items[2].record["summary"] == "c.example.com"


# -- 3. CSV quotes ----------------------------------------------------------------------------

MAP = {"value": "v", "description": "d"}


def test_unbalanced_quote_is_one_bad_row_and_the_next_lines_are_read(tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_text(
        'v,d\n'
        '1.1.1.1,"never closed\n'  # 2: unbalanced
        '2.2.2.2,ok\n'  # 3
        '3.3.3.3,"a ""quoted"" word, and a comma"\n'  # 4: balanced
        '4.4.4.4,x"y,"z\n'  # 5: a literal quote, then an open one: the quote count is even, still open
        '5.5.5.5,say "hi"\n'  # 6: quotes inside an unquoted field are text
        '6.6.6.6,"last line open\n')  # 7: unbalanced at the very end
    items, exc = drain(read_feed(tmp_path / "f.csv", "csv", mapping=MAP))
    assert exc is None
    by_line = {i.line: i for i in items}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7]
    for line, raw in ((2, '1.1.1.1,"never closed'), (5, '4.4.4.4,x"y,"z'), (7, '6.6.6.6,"last line open')):
        assert by_line[line].record is None and "unbalanced quote" in by_line[line].error
        assert by_line[line].raw == raw
    assert by_line[3].record["summary"] == "2.2.2.2"
    assert by_line[4].record["attribute"] == [{"type": "Description", "value": 'a "quoted" word, and a comma'}]
    assert by_line[6].record["attribute"] == [{"type": "Description", "value": 'say "hi"'}]


def test_unbalanced_quote_in_the_header_is_a_bad_row_too(tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_text('"v,d\nv,d\n1.1.1.1,x\n')
    items, exc = drain(read_feed(tmp_path / "f.csv", "csv", mapping=MAP))
    assert exc is None
    assert items[0].line == 1 and "unbalanced quote" in items[0].error
    assert items[1].line == 3 and items[1].record["summary"] == "1.1.1.1"


def test_multiline_option_keeps_quoted_newlines(tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_text('v,d\n1.2.3.4,"line one\nline two"\n5.6.7.8,x\n')
    items, exc = drain(read_feed(tmp_path / "f.csv", "csv", mapping=MAP, options={"multiline": True}))
    assert exc is None
    assert items[0].line == 2 and items[0].record["attribute"] == [{"type": "Description", "value": "line one\nline two"}]
    assert items[1].line == 4 and items[1].record["summary"] == "5.6.7.8"
    # the same file without the option: the open quote is a bad row, and no row swallows another
    items, exc = drain(read_feed(tmp_path / "f.csv", "csv", mapping=MAP))
    assert exc is None and items[0].line == 2 and "unbalanced quote" in items[0].error
    assert "multiline" in items[0].error  # says how to read such a feed
    assert items[-1].line == 4 and items[-1].record["summary"] == "5.6.7.8"


def test_multiline_quote_open_at_the_end_of_the_source_is_incomplete(tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_text('v,d\n1.1.1.1,ok\n2.2.2.2,"opened here\nand never\nclosed\n')
    items, exc = drain(read_feed(tmp_path / "f.csv", "csv", mapping=MAP, options={"multiline": True}))
    assert [i.record["summary"] for i in items] == ["1.1.1.1"]
    assert isinstance(exc, IncompleteReadError), exc
    assert "f.csv" in str(exc) and "line 3" in str(exc) and "quote" in str(exc)


def test_tsv_without_quoting_ignores_quotes(tmp_path: Path) -> None:
    (tmp_path / "f.tsv").write_text('v\td\n1.1.1.1\t"open\n2.2.2.2\tok\n')
    items, exc = drain(read_feed(tmp_path / "f.tsv", "tsv", mapping=MAP))
    assert exc is None and [i.record["summary"] for i in items] == ["1.1.1.1", "2.2.2.2"]


# -- 4/5. HTTP bodies cut short ---------------------------------------------------------------


@contextmanager
def raw_http(response: bytes, *, reset: bool = False) -> Iterator[str]:
    """A one-connection-at-a-time server that answers every request with ``response`` (raw
    bytes, whatever they claim) and then closes the connection (with a RST if ``reset``)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.05)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn:
                conn.recv(65536)
                conn.sendall(response)
                if reset:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://user:hunter2@127.0.0.1:{srv.getsockname()[1]}/feed.txt?apikey=s3cr3t"
    finally:
        stop.set()
        thread.join(5)
        srv.close()


BODY = ("\n".join(ips(50)) + "\n").encode()


def _no_secret(exc: BaseException) -> None:
    assert "hunter2" not in str(exc) and "s3cr3t" not in str(exc) and "127.0.0.1:" in str(exc)


def test_body_shorter_than_its_content_length_is_incomplete() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n" % (len(BODY) * 2)
    with raw_http(head + BODY) as url:
        cache: dict = {}
        items, exc = drain(read_feed(url, "text", cache=cache, options={"timeout": 5}))
    assert isinstance(exc, IncompleteReadError) and not isinstance(exc, TransientError), exc
    assert [i.record["summary"] for i in items] == ips(50)  # what did arrive was read
    assert f"{len(BODY)} of {len(BODY) * 2} bytes" in str(exc) and "Content-Length" in str(exc)
    _no_secret(exc)
    assert "etag" not in cache  # not a complete download: the next run fetches it whole


def test_gzip_encoded_body_cut_short_is_incomplete() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n"  # no length: ends at close
    with raw_http(head + gzip.compress(BODY)[:-12]) as url:
        items, exc = drain(read_feed(url, "text", options={"timeout": 5}))
    assert isinstance(exc, IncompleteReadError), exc
    assert [i.record["summary"] for i in items] == ips(50)[: len(items)]
    _no_secret(exc)


@pytest.mark.parametrize("response, reset", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(BODY) + BODY + b"\r\n", False),  # no last chunk
    (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(BODY) * 2) + BODY, True),  # connection reset
])
def test_connection_dropped_mid_body_is_transient_not_an_end(response: bytes, reset: bool) -> None:
    with raw_http(response, reset=reset) as url:
        cache: dict = {}
        items, exc = drain(read_feed(url, "text", cache=cache, options={"timeout": 5}))
    assert isinstance(exc, TransientError), exc
    assert "url_sha256" not in cache
    _no_secret(exc)


def test_complete_body_with_content_length_is_a_complete_read() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n" % len(BODY)
    with raw_http(head + BODY) as url:
        cache: dict = {}  # timeout as a TOML config gives it: a list [connect, read]
        items, exc = drain(read_feed(url, "text", cache=cache, options={"timeout": [5, 5]}))
    assert exc is None and len(items) == 50 and cache["etag"] == '"v1"'
