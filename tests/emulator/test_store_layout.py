"""Where the emulator keeps an uploaded batch file: in its own table, not in the job's row."""

from __future__ import annotations

import sqlite3

import orjson

from streambatch.emulator.store import Store

OWNER = "Demo Organization"


def test_upload_lives_apart_from_the_counters(tmp_path) -> None:
    store = Store(tmp_path / "emu.sqlite")
    job = store.create_job(OWNER, {"owner": OWNER, "action": "Create"}, "async")
    content = orjson.dumps({"indicator": [{"type": "Host", "summary": f"h{i}.example.com"} for i in range(20_000)]})
    store.update_job(job, input=content, status="Queued")
    store.update_job(job, counters={"successCount": 5})
    assert store.job_input(job) == content
    assert store.job(job)["status"] == "Queued"
    store.close()
    with sqlite3.connect(tmp_path / "emu.sqlite") as db:
        columns = {r[1] for r in db.execute("PRAGMA table_info(job)")}
        row_bytes = db.execute("SELECT length(settings) + length(records) + length(counters) FROM job").fetchone()[0]
    assert "input" not in columns
    assert row_bytes < 1000 < len(content)


def test_a_data_file_with_uploads_in_the_job_rows_is_moved_once(tmp_path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the layout of data files made before job_input
        db.executescript("""
            CREATE TABLE job (id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, settings TEXT NOT NULL,
                status TEXT NOT NULL, mode TEXT NOT NULL, records TEXT NOT NULL, counters TEXT NOT NULL,
                input BLOB, created REAL NOT NULL, updated REAL NOT NULL);
            INSERT INTO job VALUES (1, 'o', '{}', 'Completed', 'async', '{}', '{}', X'7B7D', 0, 0);
            INSERT INTO job VALUES (2, 'o', '{}', 'Created', 'async', '{}', '{}', NULL, 0, 0);
        """)
    path.chmod(0o600)
    store = Store(path)
    assert store.job_input(1) == b"{}"
    assert store.job_input(2) is None
    store.update_job(2, input=b"[]")
    store.close()
    store = Store(path)  # opening again moves nothing twice and loses nothing
    assert (store.job_input(1), store.job_input(2)) == (b"{}", b"[]")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM job WHERE input IS NOT NULL").fetchone()[0] == 0
    store.close()
