"""The writer process (streambatch.writer): a Batch staged through it leaves the same job file
as one staged in process; lookups, counts and flush see what it was sent; its failures
surface naming the job file and lose nothing; it carries no credentials."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import streambatch.batch as batch_module
from streambatch import Batch, JobFileError
from streambatch.store import JobFile
from streambatch.writer import WriterFailed

TABLES = {
    "groups": "key, xid, type, name, body, size, hash, refs, chunk",
    "indicators": "key, xid, type, summary, body, size, hash",
    "associations": "key, body, size",
    "files": "xid, type, file_name, source, content, path, state",
    "rejected": "source, line, xid, type, field, reason, raw",
}


def records(n: int, repeat_every: int = 7):
    """Indicators with tags and attributes, some staged twice with more tags (merged), some
    invalid (rejected), groups, and documents with content."""
    for i in range(n):
        yield {"type": "Host", "summary": f"h{i}.example.com", "rating": i % 6,
               "tag": [{"name": f"t{i % 5}"}], "attribute": [{"type": "Description", "value": f"record {i}"}]}
        if i % repeat_every == 3:
            yield {"type": "Host", "summary": f"h{i - 3}.example.com", "tag": [{"name": "again"}]}
        if i % 50 == 0:
            yield {"type": "Address", "summary": f"999.1.1.{i}"}  # rejected: not an address
            yield {"type": "Adversary", "name": f"adv {i}", "xid": f"adv-{i}",
                   "attribute": [{"type": "Description", "value": "a group"}]}
        if i % 90 == 0:
            yield {"type": "Document", "name": f"doc {i}", "xid": f"doc-{i}", "fileName": f"d{i}.txt",
                   "fileContent": f"content {i}"}


def stage(path: Path, writer: str, n: int = 2000, buffer_size: int = 150, **options) -> dict:
    with Batch("Org", path, writer=writer, buffer_size=buffer_size, preflight=False, **options) as batch:
        staged = batch.save_all(records(n), on_error="reject")
        batch.add_association(ref_1="adv-0", ref_2="h1.example.com", type_2="Host")
        report = {"staged": staged, "len": len(batch)}
    report["writer"] = batch.writer_report
    return report


def dump(path: Path) -> dict:
    conn = sqlite3.connect(path)
    try:
        out = {t: conn.execute(f"SELECT {cols} FROM {t} ORDER BY rowid").fetchall() for t, cols in TABLES.items()}
        out["meta"] = conn.execute("SELECT key, value FROM meta WHERE key != 'staging_write' ORDER BY key").fetchall()
    finally:
        conn.close()
    return out


@pytest.mark.parametrize("on_conflict", ["merge", "replace"])
def test_the_writer_process_stages_exactly_what_inline_staging_does(tmp_path: Path, on_conflict: str) -> None:
    inline = stage(tmp_path / "inline.sqlite", "inline", on_conflict=on_conflict)
    process = stage(tmp_path / "process.sqlite", "process", on_conflict=on_conflict)
    assert process["writer"]["writes"] > 10  # it did the writing, in many writes
    assert inline["writer"] == {}
    assert (process["staged"], process["len"]) == (inline["staged"], inline["len"])
    a, b = dump(tmp_path / "inline.sqlite"), dump(tmp_path / "process.sqlite")
    assert len(a["rejected"]) == 40 and len(a["files"]) == 23 and len(a["indicators"]) == 2000
    assert a == b
    JobFile.check(tmp_path / "process.sqlite")
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{tmp_path / 'process.sqlite'}{suffix}")
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_auto_starts_the_writer_only_once_the_batch_has_written_enough(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert stage(tmp_path / "small.sqlite", "auto", n=300)["writer"] == {}  # AUTO_WRITER_ROWS: tens of thousands
    monkeypatch.setattr(batch_module, "AUTO_WRITER_ROWS", 600)
    report = stage(tmp_path / "big.sqlite", "auto", n=2000)["writer"]
    assert 0 < report["rows"] < 2400  # the first 600 or so were written in process


def test_unknown_writer_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="writer must be 'auto', 'inline' or 'process'"):
        Batch("Org", tmp_path / "job.sqlite", writer="thread")


def test_lookups_counts_and_flush_see_what_the_writer_was_sent(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    with Batch("Org", path, writer="process", buffer_size=10, preflight=False) as batch:
        for i in range(100):
            rec = batch.host(f"h{i}.example.com", rating=2)
            rec.tag("first")
            batch.save(rec)
        # h95 is in a write just handed over: interface 1 finds it, with its fields
        again = batch.host("h95.example.com")
        assert again.data["rating"] == 2 and again.data["tag"] == [{"name": "first"}]
        again.tag("second")
        batch.save(again)
        assert batch.indicator_len == 100
        assert batch.get("adv-x") is None
        found = batch.job.find("indicator", "Host", "h3.example.com")  # the feed worker's way in
        assert found is not None
        batch.flush()
        conn = sqlite3.connect(path)  # flushed means committed, for any reader
        assert conn.execute("SELECT count(*) FROM indicators").fetchone()[0] == 100
        body = conn.execute("SELECT body FROM indicators WHERE summary = 'h95.example.com'").fetchone()[0]
        assert b'"second"' in body and b'"first"' in body
        conn.close()


def test_the_writer_process_has_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TC_API_SECRET_KEY", "s3cret-not-for-the-writer")
    monkeypatch.setenv("TC_TOKEN", "token-not-for-the-writer")
    with Batch("Org", tmp_path / "job.sqlite", writer="process", buffer_size=10, preflight=False) as batch:
        batch.save_all({"type": "Host", "summary": f"h{i}.example.com"} for i in range(30))
        environ = Path(f"/proc/{batch._writer.pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{batch._writer.pid}/cmdline").read_bytes()
    assert b"s3cret" not in environ and b"token-not" not in environ and b"TC_" not in environ
    assert b"s3cret" not in cmdline


SCRIPT = textwrap.dedent("""
    import os, resource, sys
    from streambatch import Batch
    from streambatch.writer import WriterFailed

    path, action, n, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    consumed = 0

    def rows():
        global consumed
        for i in range(n):
            if i == 3000:
                print("writer", batch._writer.pid, flush=True)
            consumed += 1
            yield {"type": "Host", "summary": f"h{i}.example.com", "xid": f"x{i}", "rating": i % 6,
                   "tag": [{"name": "t"}], "attribute": [{"type": "Description", "value": "d" * 200}]}

    batch = Batch("Org", path, writer="process", buffer_size=1000, preflight=False)
    if limit:  # files this process and the writer it starts write are small from now on
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        batch.save_all(rows())
    except WriterFailed as exc:
        print("failed", exc, flush=True)
        if action == "give-up":
            os._exit(3)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    batch.close()
    print("consumed", consumed, flush=True)
""")


def run_script(tmp_path: Path, path: Path, action: str, n: int, limit: int = 0) -> subprocess.Popen:
    script = tmp_path / "stage.py"
    script.write_text(SCRIPT)
    return subprocess.Popen([sys.executable, str(script), str(path), action, str(n), str(limit)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def writer_pid(proc: subprocess.Popen) -> int:
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert line.startswith("writer "), (line, proc.stderr.read())  # type: ignore[union-attr]
    return int(line.split()[1])


def committed(path: Path) -> int:
    JobFile.check(path)  # whole, by SQLite's check
    job = JobFile.open(path, create=False)
    try:
        return job.count("indicator")
    finally:
        job.close()


def gone(pid: int, timeout: float = 20) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # ended; its new parent has not reaped it
            return True
        time.sleep(0.05)
    return False


def test_a_full_disk_in_the_writer_is_raised_naming_the_job_file_and_nothing_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    proc = run_script(tmp_path, path, "keep", 20_000, limit=4 << 20)
    writer_pid(proc)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    failed = [line for line in out.splitlines() if line.startswith("failed ")]
    assert failed, out
    assert f"failed {path}: staging into the job file failed: the writer process" in failed[0], failed[0]
    assert "could not write it: OperationalError" in failed[0], failed[0]
    consumed = int(out.split("consumed ")[1].split()[0])
    assert 3000 < consumed < 20_000
    assert committed(path) == consumed  # what the writer did not commit was written by the caller at close


def test_sigkill_of_the_writer_is_raised_naming_the_job_file_and_the_job_stages_again(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    proc = run_script(tmp_path, path, "give-up", 300_000)
    pid = writer_pid(proc)
    os.kill(pid, 9)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, (out, err)
    assert f"failed {path}: staging into the job file failed: the writer process (pid {pid}) was killed by " \
           f"signal 9 (SIGKILL)" in out, out
    n = committed(path)
    assert n % 1000 == 0 and n < 300_000  # whole writes only
    again = run_script(tmp_path, path, "keep", 300_000)
    writer_pid(again)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "failed" not in out, (out, err)
    assert committed(path) == 300_000


def test_sigkill_of_the_caller_ends_the_writer_and_leaves_the_job_whole(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    proc = run_script(tmp_path, path, "keep", 2_000_000)
    pid = writer_pid(proc)
    proc.kill()
    proc.wait()
    assert gone(pid), "the writer process outlived its caller"
    n = committed(path)
    assert n % 1000 == 0 and n < 2_000_000
    with Batch("Org", path, writer="inline", preflight=False) as batch:  # resumes as any job file does
        batch.save_all({"type": "Host", "summary": f"h{i}.example.com", "xid": f"x{i}"} for i in range(n + 500))
        assert batch.indicator_len == n + 500


def test_a_writer_that_cannot_open_the_job_file_fails_the_first_write(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    batch = Batch("Org", path, writer="process", buffer_size=5, preflight=False)
    given = []

    def records():  # the failure may surface at the third write (two are kept unacknowledged) or at the flush
        for i in range(50):
            given.append(i)
            yield {"type": "Host", "summary": f"h{i}.example.com"}

    try:
        real = batch.path
        batch.path = tmp_path / "missing.sqlite"  # the writer is told a path that is not the job file
        with pytest.raises(WriterFailed, match="missing.sqlite: staging into the job file failed.*no such job file"):
            batch.save_all(records())
            batch.flush()
        batch.path = real
    finally:
        batch.close()  # the writes it was sent are written here
    assert len(given) >= 15
    assert committed(path) == len(given)  # every record the Batch took, whenever the failure surfaced
    assert issubclass(WriterFailed, JobFileError)


def mark_of(path: Path):
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'staging_unsynced'").fetchone()
    finally:
        conn.close()
    return row


def test_the_writer_writes_unsynced_only_between_flushes(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    with Batch("Org", path, writer="process", buffer_size=100, preflight=False) as batch:
        batch.save_all({"type": "Host", "summary": f"h{i}.example.com"} for i in range(1000))
        batch.job  # every write handed over committed
        assert mark_of(path) is not None  # marked, in a synced transaction, before the first unsynced write
        batch.flush()
        assert mark_of(path) is None  # flushed: checkpointed with syncs, mark cleared
        batch.save_all({"type": "Host", "summary": f"g{i}.example.com"} for i in range(1000))
        batch.job
        assert mark_of(path) is not None
    assert batch.writer_report["durable"] is True
    assert mark_of(path) is None


def set_mark(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO meta(key, value) VALUES ('staging_unsynced', '123')")
    conn.commit()
    conn.close()


def test_a_cut_unsynced_staging_is_checked_when_the_job_is_next_opened(tmp_path: Path) -> None:
    whole, damaged = tmp_path / "whole.sqlite", tmp_path / "damaged.sqlite"
    for path in (whole, damaged):
        with Batch("Org", path, writer="inline", preflight=False) as batch:
            batch.save_all({"type": "Host", "summary": f"h{i}.example.com", "attribute": [
                {"type": "Description", "value": "x" * 300}]} for i in range(5000))
        set_mark(path)
    with Batch("Org", whole, preflight=False) as batch:  # SQLite's check finds it whole: the mark goes
        assert batch.indicator_len == 5000
    assert mark_of(whole) is None
    conn = sqlite3.connect(damaged)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    with open(damaged, "r+b") as fh:  # what a power cut during an unsynced checkpoint can leave
        for n in range(pages // 2, pages // 2 + 8):
            fh.seek(n * page)
            fh.write(b"\x5a" * page)
    with pytest.raises(JobFileError, match=r"(?s)damaged\.sqlite: damaged job file .*Staging into this job file was cut "
                                           r"while it was written without syncing to disk .* move it away and stage "
                                           r"the job again"):
        Batch("Org", damaged, preflight=False)


def test_key_filter_add_all_sets_the_bits_add_sets() -> None:
    from streambatch.store import KeyFilter

    keys = [(i * 0x9E3779B97F4A7C15) & (2**64 - 1) for i in range(5000)]
    one, many = KeyFilter(1 << 16), KeyFilter(1 << 16)
    for key in keys:
        one.add(key)
    many.add_all(keys)
    assert one.segments == many.segments and all(k in many for k in keys)


def test_at_most_max_unacked_writes_are_unacknowledged_at_a_time(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes of one small record each: hundreds would fit in the pipe, and the writer commits
    each more slowly than the caller makes the next; each kept until acknowledged."""
    import streambatch.writer as writer_module

    seen: list[int] = []
    send = writer_module.Writer.send

    def counting_send(self, write, keys) -> None:
        send(self, write, keys)
        seen.append(len(self._unacked))

    monkeypatch.setattr(writer_module.Writer, "send", counting_send)
    path = tmp_path / "job.sqlite"
    with Batch("Org", path, writer="process", buffer_size=1, preflight=False) as batch:
        batch.save_all({"type": "Host", "summary": f"h{i}.example.com"} for i in range(3000))
    assert len(seen) == 3000 and batch.writer_report["writes"] == 3000
    assert max(seen) <= 2 == getattr(writer_module, "MAX_UNACKED", None)
    assert committed(path) == 3000


def test_writes_handed_to_the_writer_are_smaller_than_the_buffer(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_module, "WRITER_WRITE_ROWS", 250, raising=False)
    process = stage(tmp_path / "process.sqlite", "process", buffer_size=1000)
    inline = stage(tmp_path / "inline.sqlite", "inline", buffer_size=1000)
    assert process["writer"]["writes"] >= 2000 // 250  # not the 2 or 3 writes of a 1,000-row buffer
    assert (process["staged"], process["len"]) == (inline["staged"], inline["len"])
    assert dump(tmp_path / "process.sqlite") == dump(tmp_path / "inline.sqlite")


@pytest.mark.parametrize("bound", [10**9, 650])
def test_keys_handed_to_the_writer_are_found_with_the_filter_kept_or_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bound: int) -> None:
    """The caller keeps the keys handed to the writer (at most UNFILTERED_KEYS) for its own
    filter; past the bound it drops the filter, read again from the job file at a lookup."""
    from array import array

    monkeypatch.setattr(batch_module, "UNFILTERED_KEYS", bound, raising=False)
    with Batch("Org", tmp_path / "job.sqlite", writer="process", buffer_size=100, preflight=False) as batch:
        batch.save_all({"type": "Host", "summary": f"h{i}.example.com", "rating": 1} for i in range(3000))
        assert batch._unfiltered and sum(len(keys) for keys in batch._unfiltered) <= bound
        assert all(isinstance(keys, array) and keys.typecode == "q" for keys in batch._unfiltered)  # not sets of ints
        for i in (0, 1500, 2999):  # interface 1 finds each staged record, with its fields
            assert batch.host(f"h{i}.example.com").data["rating"] == 1
        assert batch.host("new.example.com").data.get("rating") is None
        assert batch._unfiltered == []
        assert batch.indicator_len == 3001
