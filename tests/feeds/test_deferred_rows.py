"""Deferred rows (``read_feed(..., row_keys=seed)``): a text or csv row is given with a key and
mapped only when asked (``made()``). Mapped, every item is what the reader gives without
``row_keys``, bad rows included, in the same order; equal keys mean equal records; the key
changes with the seed and with the csv header."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from streambatch.feeds.readers import read_feed

VALUES = ["10.0.0.1", "10.0.0.2", " 10.0.0.1 ", "evil.example.com", "hxxp://bad[.]example/x", "not a value!",
          "", "300.1.1.1", "d41d8cd98f00b204e9800998ecf8427e", '"10.0.0.3"', "# comment", "10.0.0.4 ; note"]
RATINGS = ["", "1", "3", "5", "9", "x"]
CSV_MAPPING = {"value": "value", "rating": "rating", "tags": {"columns": ["tags"], "separator": ";"}}


def _items(path: Path, fmt: str, mapping: dict | None, seed: bytes | None) -> list:
    return list(read_feed(path, fmt, mapping=mapping, options={"rating": 2, "tags": ["feed"]}, row_keys=seed))


def _same(path: Path, fmt: str, mapping: dict | None) -> list:
    eager = _items(path, fmt, mapping, None)
    deferred = _items(path, fmt, mapping, b"seed")
    assert [i.made() for i in deferred] == eager
    assert all(i.make is None for i in eager)
    return deferred


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(VALUES), st.sampled_from(RATINGS), st.sampled_from(["a", "a;b", ""])),
                     max_size=25))
def test_deferred_csv_rows_map_to_what_the_reader_gives(tmp_path_factory, rows) -> None:
    path = tmp_path_factory.mktemp("csv") / "feed.csv"
    path.write_text("value,rating,tags\n" + "".join(f"{v},{r},{t}\n" for v, r, t in rows))
    deferred = _same(path, "csv", CSV_MAPPING)
    made = {}
    for item in deferred:
        if item.key is not None:
            assert made.setdefault(item.key, (item.made().record, item.made().error)) == \
                (item.made().record, item.made().error)  # equal keys, equal records


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.sampled_from(VALUES), max_size=25))
def test_deferred_text_rows_map_to_what_the_reader_gives(tmp_path_factory, lines) -> None:
    path = tmp_path_factory.mktemp("text") / "feed.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(line + "\n" for line in lines).encode())
    _same(path, "text", None)


def test_bad_lines_are_not_deferred_and_keep_their_order(tmp_path: Path) -> None:
    path = tmp_path / "feed.csv"
    path.write_bytes(b'value,rating\n10.0.0.1,1\n\xff\xfe,1\n"open,1\n10.0.0.2,x\n10.0.0.3,2\n')
    items = _same(path, "csv", {"value": "value", "rating": "rating"})
    assert [(i.line, i.key is not None) for i in items] == [(2, True), (3, False), (4, False), (5, True), (6, True)]
    assert "not valid utf-8" in items[1].error and "unbalanced quote" in items[2].error
    assert items[3].made().error.startswith("rating 'x'") and items[3].made().line == 5


def test_the_key_changes_with_the_seed_and_the_header(tmp_path: Path) -> None:
    one, other = tmp_path / "one.csv", tmp_path / "other.csv"
    one.write_text("value,rating\n10.0.0.1,1\n")
    other.write_text("rating,value\n10.0.0.1,1\n")  # the same fields under another header: another record
    mapping = {"value": "value", "rating": "rating"}
    key = _items(one, "csv", mapping, b"a")[0].key
    assert key == _items(one, "csv", mapping, b"a")[0].key
    assert key != _items(one, "csv", mapping, b"b")[0].key
    assert key != _items(other, "csv", mapping, b"a")[0].key


def test_rows_of_a_mapping_with_groups_are_not_deferred(tmp_path: Path) -> None:
    """The first row naming a group also yields the group: what a row yields depends on the rows
    before it, so its key could not stand for it."""
    path = tmp_path / "feed.csv"
    path.write_text("value,actor\n10.0.0.1,APT-X\n10.0.0.2,APT-X\n")
    mapping = {"value": "value", "groups": [{"type": "Adversary", "name": "actor"}]}
    items = list(read_feed(path, "csv", mapping=mapping, options={"owner": "Demo Organization"}, row_keys=b"s"))
    assert [i.key for i in items] == [None, None, None] and items[0].record["type"] == "Adversary"
