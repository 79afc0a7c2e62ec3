"""Jobs are processed a chunk at a time: the indicators of a processing chunk are read with a few
statements and written with a few more, with exactly the results of taking them one at a time."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streambatch.emulator.catalog import IndicatorCatalog
from streambatch.emulator.processor import Processor
from streambatch.emulator.settings import parse_settings
from streambatch.emulator.store import Store

OWNER = "Demo Organization"


class StoreRows:
    """The per-item reference: every read and write of an indicator row goes straight to the
    store, at the moment the item needs it (what processing did before chunks were read and
    written at once). Used only by these tests, to compare against."""

    def __init__(self, store: Store, owner: str) -> None:
        self.store, self.owner = store, owner

    def load(self, prepared: list) -> None:
        pass

    def find_indicator(self, itype: str, key: str) -> dict[str, Any] | None:
        return self.store.find_indicator(self.owner, itype, key)

    def find_files(self, hashes: dict[str, str]) -> list[dict[str, Any]]:
        return self.store.find_files(self.owner, hashes)

    def put(self, rec: dict[str, Any]) -> None:
        self.store.put_indicator(rec)

    def delete(self, indicator_id: int, move_links_to: int | None = None) -> None:
        self.store.delete_indicator(indicator_id, move_links_to=move_links_to)

    def flush(self) -> None:
        pass


def _settings(**extra: Any) -> dict[str, Any]:
    return parse_settings({"owner": OWNER, "action": "Create", "haltOnError": False,
                           "attributeWriteType": "Replace", **extra})


def _run(proc: Processor, doc: Any, chunk: int = 500, **extra: Any) -> tuple[dict, list]:
    settings = _settings(**extra)
    job_id = proc.store.create_job(OWNER, settings, "async")
    counters = proc.run(job_id, settings, orjson.dumps(doc), chunk=chunk)
    return counters, proc.store.errors(job_id)


def _dump(store: Store) -> dict[str, list]:
    """Every stored row but the modification times (which differ from run to run)."""
    with store.tx() as db:
        return {
            "ind": [tuple(r) for r in db.execute(
                "SELECT id, owner, type, key, summary, xid, md5, sha1, sha256, fields, attribute, tag, label"
                " FROM ind ORDER BY id")],
            "grp": [tuple(r) for r in db.execute(
                "SELECT id, owner, xid, type, name, fields, attribute, tag, label FROM grp ORDER BY id")],
            "assoc": [tuple(r) for r in db.execute("SELECT * FROM assoc ORDER BY rowid")],
            "label": [tuple(r) for r in db.execute("SELECT * FROM label ORDER BY owner, name")],
        }


def _host(i: int) -> dict[str, Any]:
    return {"type": ["Host", "Address", "URL", "File"][i % 4],
            "summary": [f"h{i}.example.com", f"10.0.{i // 256}.{i % 256}", f"https://u{i}.example.net/p",
                        f"{i:032x}"][i % 4],
            "rating": 3, "confidence": 50, "tag": [{"name": "bulk"}],
            "attribute": [{"type": "Description", "value": f"record {i}"}]}


class CountingConnection:
    """The store's connection, counting the statements it is given (``executemany`` is one)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements: list[str] = []

    def execute(self, sql: str, *args: Any) -> Any:
        self.statements.append(sql)
        return self.conn.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> Any:
        self.statements.append(sql)
        return self.conn.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_a_chunk_of_indicators_costs_a_few_statements(tmp_path: Path) -> None:
    store = Store(tmp_path / "emu.sqlite")
    proc = Processor(store, IndicatorCatalog())
    doc = {"indicator": [_host(i) for i in range(500)]}
    counting = store._conn = CountingConnection(store._conn)
    first, _ = _run(proc, doc)
    created = len(counting.statements)
    counting.statements.clear()
    again, _ = _run(proc, doc)  # every one exists now: 500 updates
    assert first["successIndicatorCount"] == again["successIndicatorCount"] == 500
    assert first["errorCount"] == again["errorCount"] == 0
    assert store.count(OWNER) == 500
    # a lookup per indicator type, one bulk insert or update, and the job's own bookkeeping
    assert created < 40, counting.statements
    assert len(counting.statements) < 40, counting.statements


# ----------------------------------------------------------- the same results as one at a time

MD5 = ["905ad8176a569a36421bf54c04ba7f95", "b" * 32]
SHA1 = ["a52b6986d68cdfac53aa740566cbeade4452124e", "c" * 40]
SHA256 = ["25bdabd23e349f5e5ea7890795b06d15d842bde1d43135c361e755f748ca05d0"]


@st.composite
def file_summaries(draw: st.DrawFn) -> str:
    parts = [draw(st.sampled_from(MD5 + [None])), draw(st.sampled_from(SHA1 + [None])),
             draw(st.sampled_from(SHA256 + [None]))]
    parts = [p for p in parts if p] or ["not-a-hash"]
    return " : ".join(draw(st.permutations(parts)))


summaries = {
    "Host": st.sampled_from(["a.example.com", "A.example.com", "b.example.com", "bad_host.example.com"]),
    "Address": st.sampled_from(["10.0.0.1", "10.0.0.2", "010.0.0.1", "2001:DB8::1"]),
    "URL": st.sampled_from(["https://a.example.com/x", "https://A.example.com/x", "no-scheme"]),
    "File": file_summaries(),
    "Nope": st.just("whatever"),
}
tags = st.lists(st.sampled_from([{"name": "t1"}, {"name": "t2"}, {"name": "x" * 200}, {"nom": 1}]), max_size=3)
attributes = st.lists(st.sampled_from([
    {"type": "Description", "value": "d1"}, {"type": "description", "value": "d2"},
    {"type": "Source", "value": "s"}, {"type": "Unknown Kind", "value": "z"}, {"type": "Source"}]), max_size=3)
labels = st.lists(st.sampled_from([{"name": "TLP:AMBER"}, {"name": "Mine", "color": "ff0000", "description": "m"},
                                   {"name": "Undescribed"}]), max_size=2)
links = st.lists(st.sampled_from([
    {"associatedGroups": [{"groupXid": "g-1"}]}, {"associatedGroups": [{"groupXid": "g-missing"}]},
    {"associatedIndicators": [{"summary": "a.example.com", "indicatorType": "Host"}]},
    {"associatedIndicators": [{"summary": MD5[0], "indicatorType": "File"}]}]), max_size=2)


@st.composite
def indicators(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([5, "text", None]))
    itype = draw(st.sampled_from(list(summaries)))
    item: dict[str, Any] = {"type": draw(st.sampled_from([itype, itype.lower()])), "summary": draw(summaries[itype])}
    for key, values in (("rating", st.sampled_from([3, "4", 9, "x"])), ("confidence", st.sampled_from([50, 101.0])),
                        ("xid", st.sampled_from(["x-1", "x-2"])), ("tag", tags), ("attribute", attributes),
                        ("securityLabel", labels), ("description", st.just("about it"))):
        if draw(st.booleans()):
            item[key] = draw(values)
    if itype == "File" and draw(st.booleans()):
        item["fileOccurrence"] = draw(st.sampled_from([[{"fileName": "a.exe"}], [{"path": "/tmp"}], [{}], "bad"]))
    for link in draw(links):
        item.update(link)
    return item


@st.composite
def jobs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], int]:
    doc: dict[str, Any] = {"indicator": draw(st.lists(indicators(), max_size=14))}
    if draw(st.booleans()):
        doc["group"] = [{"type": "Threat", "name": "a threat", "xid": "g-1"}]
    if draw(st.booleans()):
        doc["association"] = [{"ref_1": "g-1", "ref_2": "b.example.com", "type_2": "Host"}]
    extra = {
        "action": draw(st.sampled_from(["Create"] * 5 + ["Delete"])),
        "haltOnError": draw(st.booleans()),
        "attributeWriteType": draw(st.sampled_from(["Append", "Replace", "Singleton", "Static"])),
        "tagWriteType": draw(st.sampled_from(["Append", "Replace"])),
        "securityLabelWriteType": draw(st.sampled_from(["Append", "Replace"])),
        "fileMergeMode": draw(st.sampled_from(["Distribute", "Merge"])),
        "hashCollisionMode": draw(st.sampled_from(["FavorExisting", "FavorIncoming", "IgnoreExisting",
                                                   "IgnoreIncoming", "Split"])),
    }
    return doc, extra, draw(st.integers(1, 8))


def _compare(batch_jobs: list, limit: int = 25_000) -> None:
    """Run the jobs through chunked processing and through the per-item reference, one chunk
    per item; every job's counters and error records and, at the end, every row must agree."""
    with tempfile.TemporaryDirectory() as folder:
        bulk = Processor(Store(Path(folder) / "bulk.sqlite"), IndicatorCatalog(), indicator_limit=limit)
        single = Processor(Store(Path(folder) / "single.sqlite"), IndicatorCatalog(), indicator_limit=limit)
        single.rows = StoreRows
        try:
            for doc, extra, chunk in batch_jobs:
                assert _run(bulk, doc, chunk=chunk, **extra) == _run(single, doc, chunk=1, **extra)
            assert _dump(bulk.store) == _dump(single.store)
        finally:
            bulk.store.close()
            single.store.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(jobs(), min_size=1, max_size=4), st.sampled_from([25_000, 6]))
def test_chunked_processing_matches_one_item_at_a_time(batch_jobs: list, limit: int) -> None:
    _compare(batch_jobs, limit)


@st.composite
def file_jobs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Files only, from few hashes, so that one chunk creates, merges, splits and deletes rows."""
    items = []
    for _ in range(draw(st.integers(0, 10))):
        item: dict[str, Any] = {"type": "File", "summary": draw(file_summaries())}
        if draw(st.booleans()):
            item["tag"] = draw(tags)
        if draw(st.booleans()):
            item["rating"] = draw(st.sampled_from([1, 2, 3]))
        if draw(st.integers(0, 3)) == 0:
            item["associatedIndicators"] = [{"summary": "a.example.com", "indicatorType": "Host"}]
        items.append(item)
    if draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), {"type": "Host", "summary": "a.example.com"})
    extra = {
        "attributeWriteType": "Append",
        "fileMergeMode": draw(st.sampled_from(["Distribute", "Merge", "Merge"])),
        "hashCollisionMode": draw(st.sampled_from(["FavorExisting", "FavorIncoming", "IgnoreExisting",
                                                   "IgnoreIncoming", "Split"])),
    }
    return {"indicator": items}, extra, draw(st.integers(1, 12))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(file_jobs(), min_size=1, max_size=5))
def test_file_merges_in_one_chunk_match_one_item_at_a_time(batch_jobs: list) -> None:
    _compare(batch_jobs)


def test_a_merge_that_deletes_the_newest_row_frees_its_id_for_the_next_new_one() -> None:
    md5, sha1, sha256 = MD5[0], SHA1[0], SHA256[0]
    _compare([
        ({"indicator": [{"type": "File", "summary": md5}, {"type": "File", "summary": sha1}]}, {}, 500),
        # one chunk: a new File (id 3), then md5's row is touched, so md5+sha256 merges the new
        # one into md5's row and deletes id 3, which the new Host then takes, as SQLite gives it
        ({"indicator": [{"type": "File", "summary": sha256}, {"type": "File", "summary": md5, "rating": 2},
                        {"type": "File", "summary": f"{md5} : {sha256}"},
                        {"type": "Host", "summary": "a.example.com"}]}, {}, 500),
    ])


def test_the_url_space_check_finds_exactly_what_str_isspace_finds() -> None:
    from streambatch.emulator.rules import _SPACE
    assert [c for c in map(chr, range(0x110000)) if _SPACE.search(c)] == [
        c for c in map(chr, range(0x110000)) if c.isspace()]
