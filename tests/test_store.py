"""The job file: creation, integrity checks, streaming save, merge semantics, file content."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from pathlib import Path

import orjson
import pytest

from streambatch import Batch, JobFileError, ValidationError
from streambatch.store import GEN_SHIFT, SCHEMA_VERSION, JobFile, KeyFilter


def test_job_file_is_private_wal_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "feed.sqlite"
    with Batch("Org", path) as batch:
        batch.save(batch.address("1.2.3.4"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_default_path_is_under_dot_streambatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Batch("My Org") as batch:
        assert batch.path.parent == Path(".streambatch")
        assert batch.path.name.startswith("my-org-")
    assert stat.S_IMODE(os.stat(tmp_path / batch.path).st_mode) == 0o600


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_foreign_sqlite_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    before = _digest(path)
    with pytest.raises(JobFileError, match="not a streambatch job file"):
        Batch("Org", path)
    assert _digest(path) == before


def test_non_sqlite_and_truncated_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 10)
    with pytest.raises(JobFileError, match="not a SQLite database"):
        Batch("Org", junk)
    good = tmp_path / "good.sqlite"
    with Batch("Org", good) as batch:
        batch.save_all({"type": "Address", "summary": f"10.0.{i // 256}.{i % 256}"} for i in range(3000))
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(good.read_bytes()[:6000])
    before = _digest(truncated)
    with pytest.raises(JobFileError):
        with Batch("Org", truncated) as batch:
            len(batch)
    assert _digest(truncated) == before


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    Batch("Org", path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(JobFileError, match="newer streambatch"):
        Batch("Org", path)


def test_owner_and_settings_are_kept_in_the_job_file(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    Batch("Org", path, attribute_write_type="Append", max_records=123).close()
    with Batch("Org", path) as batch:
        assert batch.settings.attribute_write_type == "Append"
        assert batch.settings.max_records == 123
        assert batch.settings.config("Org")["attributeWriteType"] == "Append"
    with pytest.raises(JobFileError, match="belongs to owner 'Org'"):
        Batch("Other Org", path)


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        Batch("Org", tmp_path / "job.sqlite", tag_write_type="Sometimes")
    assert info.value.field == "tag_write_type"


@pytest.mark.parametrize("buffer_size", [1, 1000])
def test_saving_the_same_indicator_twice_merges(tmp_path: Path, buffer_size: int) -> None:
    with Batch("Org", tmp_path / "job.sqlite", buffer_size=buffer_size) as batch:
        a = batch.address("10.1.1.1", rating=2)
        a.tag("first")
        a.attribute("Description", "one")
        batch.save(a)
        b = batch.indicator("Address", "10.1.1.1", xid="another-xid", rating=4)
        b.tag("second")
        b.attribute("Description", "one")
        b.attribute("Description", "two")
        batch.save(b)
        assert batch.indicator_len == 1
        rec = batch.address("10.1.1.1")
        assert [t for t in rec.tags] == ["first", "second"]
        assert [(x.type, x.value) for x in rec.attributes] == [("Description", "one"), ("Description", "two")]
        assert rec.rating == 4.0
        assert rec.xid == a.xid  # the first xid is kept


def test_replace_keeps_the_last_write(tmp_path: Path) -> None:
    with Batch("Org", tmp_path / "job.sqlite", on_conflict="replace", buffer_size=1) as batch:
        a = batch.host("bad.example.com")
        a.tag("old")
        batch.save(a)
        b = {"type": "Host", "summary": "BAD.example.com", "xid": "x2", "tag": [{"name": "new"}]}
        batch.save(b)
        assert batch.get("x2").tags == ["new"]
        assert batch.indicator_len == 1


def test_groups_merge_by_xid(tmp_path: Path) -> None:
    with Batch("Org", tmp_path / "job.sqlite", buffer_size=1) as batch:
        g = batch.adversary("APT", xid="g-1")
        g.tag("a")
        g.association("g-0")
        batch.save(g)
        batch.save({"type": "Adversary", "name": "APT renamed", "xid": "g-1", "tag": [{"name": "b"}],
                    "associatedGroupXid": ["g-2"]})
        data = batch.get("g-1").data
        assert data["name"] == "APT renamed"
        assert data["tag"] == [{"name": "a"}, {"name": "b"}]
        assert data["associatedGroupXid"] == ["g-0", "g-2"]
        assert batch.group_len == 1


def test_asking_again_returns_the_staged_record(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    with Batch("Org", path) as batch:
        rec = batch.url("https://Example.com/a", rating=3)
        rec.tag("x")
        assert batch.url("https://example.com/a") is rec  # in memory: the same object
        batch.save(rec)
        saved = rec.data
    with Batch("Org", path) as batch:  # rehydrated from the job file
        again = batch.url("https://example.com/a")
        assert again.data == saved
        assert batch.get(saved["xid"]).data == saved


def test_unsaved_records_are_written_when_built(tmp_path: Path) -> None:
    with Batch("Org", tmp_path / "job.sqlite") as batch:
        batch.mutex("Global\\evil")
        batch.adversary("kept in memory")
        paths = batch.build()
        chunk = orjson.loads(paths[0].read_bytes())
        assert [g["name"] for g in chunk["group"]] == ["kept in memory"]
        assert [i["summary"] for i in chunk["indicator"]] == ["Global\\evil"]


def test_rejected_records_are_kept_with_their_reason(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    with Batch("Org", path) as batch:
        n = batch.save_all([{"type": "Address", "summary": "1.2.3.4"},
                            {"type": "Address", "summary": "1.2.3.999", "xid": "bad-1"},
                            {"type": "Nope", "summary": "x"}], on_error="reject")
        assert n == 1
    job = JobFile.open(path)
    rows = job.conn.execute("SELECT xid, type, field, reason FROM rejected ORDER BY id").fetchall()
    assert rows[0][:3] == ("bad-1", "Address", "summary") and "not a valid IPv4" in rows[0][3]
    assert rows[1][2] == "type"
    with pytest.raises(ValidationError):
        Batch("Org", path).save_all([{"type": "Address", "summary": "nope"}])


def test_document_content_is_spilled_or_referenced_never_called(tmp_path: Path) -> None:
    calls: list[str] = []

    def callback(xid: str) -> bytes:
        calls.append(xid)
        return b"late"

    report_file = tmp_path / "report.pdf"
    report_file.write_bytes(b"%PDF")
    path = tmp_path / "job.sqlite"
    with Batch("Org", path) as batch:
        d1 = batch.document("doc bytes", "a.txt", file_content="inline text")
        d2 = batch.document("doc callback", "b.txt", file_content=callback)
        r1 = batch.report("report path", file_name="r.pdf", file_content=report_file)
        for rec in (d1, d2, r1):
            batch.save(rec)
        assert "fileContent" not in d1.data
        batch.build()
        assert batch.content_for(d2.xid) is callback
    assert calls == []
    job = JobFile.open(path)
    assert job.file(d1.xid)["content"] == b"inline text"
    assert job.file(d2.xid)["source"] == "callback"
    assert job.file(r1.xid)["path"] == str(report_file.resolve())
    assert job.file(r1.xid)["content"] is None


def test_file_content_only_for_documents_and_reports(tmp_path: Path) -> None:
    with Batch("Org", tmp_path / "job.sqlite") as batch:
        with pytest.raises(ValidationError) as info:
            batch.adversary("x").file_content = b"no"
        assert info.value.field == "fileContent"


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE groups (seq INTEGER PRIMARY KEY, key INTEGER NOT NULL, xid TEXT NOT NULL, type TEXT NOT NULL,
    name TEXT NOT NULL, body BLOB NOT NULL, size INTEGER NOT NULL, hash INTEGER NOT NULL, refs TEXT, chunk INTEGER);
CREATE INDEX groups_key ON groups(key);
CREATE TABLE indicators (seq INTEGER PRIMARY KEY, key INTEGER NOT NULL, xid TEXT NOT NULL, type TEXT NOT NULL,
    summary TEXT NOT NULL, body BLOB NOT NULL, size INTEGER NOT NULL, hash INTEGER NOT NULL);
CREATE INDEX indicators_key ON indicators(key);
CREATE TABLE associations (seq INTEGER PRIMARY KEY, key INTEGER NOT NULL, body BLOB NOT NULL, size INTEGER NOT NULL);
CREATE INDEX associations_key ON associations(key);
CREATE TABLE files (xid TEXT PRIMARY KEY, type TEXT NOT NULL, file_name TEXT, source TEXT NOT NULL,
    content BLOB, path TEXT, state TEXT NOT NULL DEFAULT 'pending', error TEXT);
CREATE TABLE chunks (id INTEGER PRIMARY KEY, path TEXT NOT NULL, bytes INTEGER NOT NULL,
    groups INTEGER NOT NULL, indicators INTEGER NOT NULL, associations INTEGER NOT NULL,
    ind_lo INTEGER, ind_hi INTEGER, assoc_lo INTEGER, assoc_hi INTEGER,
    state TEXT NOT NULL DEFAULT 'built', batch_id INTEGER, status TEXT, created REAL);
CREATE TABLE rejected (id INTEGER PRIMARY KEY, source TEXT, line INTEGER, xid TEXT, type TEXT, field TEXT,
    reason TEXT NOT NULL, raw TEXT);
"""


def test_a_version_1_job_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA + "PRAGMA application_id = 1396853318; PRAGMA user_version = 1;")
    conn.execute("INSERT INTO meta VALUES ('owner', '\"Org\"')")
    conn.execute("INSERT INTO chunks(id, path, bytes, groups, indicators, associations, state, batch_id) "
                 "VALUES (1, 'c.json', 10, 0, 0, 0, 'submitted', 77)")
    conn.commit()
    conn.close()
    with Batch("Org", path) as batch:
        assert batch.job.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert batch.job.conn.execute("SELECT state, batch_id, errors_fetched FROM chunks").fetchone() == \
            ("submitted", 77, 0)
        assert batch.job.conn.execute("SELECT count(*) FROM errors").fetchone()[0] == 0


def test_a_failed_migration_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    # a v1 file that already has one of the v2 tables: the upgrade cannot apply
    conn.executescript(V1_SCHEMA + "CREATE TABLE errors (x); PRAGMA application_id = 1396853318; "
                       "PRAGMA user_version = 1;")
    conn.commit()
    conn.close()
    with pytest.raises(JobFileError):
        Batch("Org", path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "message" not in [r[1] for r in conn.execute("PRAGMA table_info(chunks)")]


def test_one_writer_per_job_file(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    first = Batch("Org", path)
    with pytest.raises(JobFileError, match=f"in use by another streambatch process \\(pid {os.getpid()}\\)"):
        Batch("Org", path)
    first.close()
    Batch("Org", path).close()  # released on close


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "job.sqlite"
    code = ("import os, sys; from streambatch import Batch; b = Batch('Org', sys.argv[1]); "
            "print('locked', flush=True); os.kill(os.getpid(), 9)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9 and "locked" in proc.stdout
    assert (tmp_path / "job.sqlite.lock").exists()  # the lock file stays, its lock died with the process
    with Batch("Org", path) as batch:
        assert batch.group_len == 0


def test_records_in_later_generations_of_the_index_are_found_and_merged(tmp_path: Path) -> None:
    """Lookups and merges search every generation of the identity index, not only the first."""
    path = tmp_path / "job.sqlite"
    with Batch("Org", path) as batch:
        rec = batch.address("10.9.9.9", rating=1)
        rec.tag("first")
        batch.save(rec)
        batch.save({"type": "Adversary", "name": "APT", "xid": "g-1", "tag": [{"name": "a"}]})
        batch.add_association(ref_1="g-1", ref_2="10.9.9.9", type_2="Address")
    conn = sqlite3.connect(path)
    for table in ("groups", "indicators", "associations"):
        conn.execute(f"UPDATE {table} SET seq = seq + (3 << {GEN_SHIFT})")
    conn.commit()
    conn.close()
    with Batch("Org", path) as batch:
        again = batch.address("10.9.9.9")  # rehydrated from generation 3
        assert again.tags == ["first"] and again.rating == 1.0
        batch.save({"type": "Address", "summary": "10.9.9.9", "xid": "other", "tag": [{"name": "second"}]})
        batch.save({"type": "Adversary", "name": "APT", "xid": "g-1", "tag": [{"name": "b"}]})
        batch.add_association(ref_1="g-1", ref_2="10.9.9.9", type_2="Address")
        batch.flush()
        assert batch.indicator_len == 1 and batch.group_len == 1
        assert batch.job.count("association") == 1
        assert batch.address("10.9.9.9").tags == ["first", "second"]
        assert batch.get("g-1").tags == ["a", "b"]


def test_the_key_filter_never_forgets_and_rarely_errs() -> None:
    import random

    rnd = random.Random(7)
    flt = KeyFilter(nbits=1 << 16)
    keys = [rnd.getrandbits(64) - (1 << 63) for _ in range(6500)]  # 10 bits per key
    for key in keys:
        flt.add(key)
    assert all(key in flt for key in keys)
    others = [rnd.getrandbits(64) - (1 << 63) for _ in range(20000)]
    false_positives = sum(key in flt for key in others)
    assert 0 < false_positives < 0.04 * len(others)  # ~1.7% expected at 10 bits per key
    with pytest.raises(ValueError):
        KeyFilter(nbits=1000)


def test_the_key_filter_grows_by_segments_so_a_large_job_keeps_few_false_positives() -> None:
    """Past its capacity the filter starts a new segment instead of filling one past use: at 8
    times its capacity (65,536 bits, 6,500 keys a segment) fresh keys still mostly miss, where
    one segment would say "maybe" to nearly all of them; no key added is ever forgotten."""
    import random

    rnd = random.Random(11)
    flt = KeyFilter(nbits=1 << 16, capacity=6500)
    keys = [rnd.getrandbits(64) - (1 << 63) for _ in range(52_000)]
    flt.add_all(keys[:26_000])
    for key in keys[26_000:]:
        flt.add(key)
    assert all(key in flt for key in keys)
    others = [rnd.getrandbits(64) - (1 << 63) for _ in range(20000)]
    false_positives = sum(key in flt for key in others)
    assert false_positives < 0.15 * len(others)  # ~8 segments of ~1.7% each
    assert len(flt.segments) == 8


def test_a_version_2_job_file_gets_the_generation_index(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    with Batch("Org", path) as batch:
        batch.save({"type": "Host", "summary": "a.example.com", "xid": "h", "tag": [{"name": "x"}]})
    conn = sqlite3.connect(path)
    for table in ("groups", "indicators", "associations"):  # the version 2 index: on key alone
        conn.execute(f"DROP INDEX {table}_key")
        conn.execute(f"CREATE INDEX {table}_key ON {table}(key)")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with Batch("Org", path) as batch:
        assert batch.job.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        sql = batch.job.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'indicators_key'").fetchone()[0]
        assert f"seq >> {GEN_SHIFT}" in sql
        batch.save({"type": "Host", "summary": "A.example.com", "xid": "h2", "tag": [{"name": "y"}]})
        assert batch.indicator_len == 1
        assert batch.host("a.example.com").tags == ["x", "y"]
