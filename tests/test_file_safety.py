"""Files streambatch creates: modes, and no writing through a planted symbolic link.

The adversary is someone who can create entries in a folder where streambatch will write (a
shared or world-writable folder, a job folder with loose permissions): a symbolic link or hard
link at the name of the lock file, a chunk temp file, the job file or its ``-wal``/``-shm``
must never make streambatch truncate, overwrite, create or chmod the file it points to. Every
such refusal is one :class:`JobFileError` naming the path. See docs/security.md, "Files".
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from werkzeug.test import Client as WsgiClient

from streambatch import Batch, JobFileError, ValidationError
from streambatch import chunker
from streambatch.chunker import Limits
from streambatch.demo import stage_demo
from streambatch.emulator import Emulator
from streambatch.errors import StreambatchError
from streambatch.store import JobFile, JobLock

PRECIOUS = b"precious data that must survive\n"
API_ENV = ("TC_API_PATH", "TC_API_ACCESS_ID", "TC_API_SECRET_KEY", "TC_TOKEN")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _victim(tmp_path: Path, name: str = "victim", mode: int = 0o644) -> Path:
    victim = tmp_path / name
    victim.write_bytes(PRECIOUS)
    os.chmod(victim, mode)
    return victim


def _untouched(victim: Path, mode: int = 0o644) -> None:
    assert victim.read_bytes() == PRECIOUS
    assert _mode(victim) == mode


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


# -- the lock file -----------------------------------------------------------------------

def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    job = tmp_path / "job.sqlite"
    os.symlink(victim, str(job) + ".lock")
    with pytest.raises(JobFileError, match="job.sqlite.lock.*symbolic link") as info:
        Batch("Org", job)
    _one_line(info.value)
    _untouched(victim)
    assert not job.exists()  # refused before anything was created


def test_a_dangling_lock_symlink_does_not_create_its_target(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "created-by-us"
    (tmp_path / "elsewhere").mkdir()
    lock = tmp_path / "job.sqlite.lock"
    os.symlink(target, lock)
    with pytest.raises(JobFileError, match="symbolic link"):
        JobLock(tmp_path / "job.sqlite").acquire()
    assert not target.exists() and lock.is_symlink()


def test_a_hard_linked_lock_file_is_refused(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    os.link(victim, tmp_path / "job.sqlite.lock")
    with pytest.raises(JobFileError, match="job.sqlite.lock.*link"):
        JobLock(tmp_path / "job.sqlite").acquire()
    _untouched(victim)


def test_a_directory_at_the_lock_path_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "job.sqlite.lock").mkdir()
    with pytest.raises(JobFileError, match="job.sqlite.lock") as info:
        JobLock(tmp_path / "job.sqlite").acquire()
    _one_line(info.value)


def test_the_feed_lock_refuses_a_symlink_too(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    os.symlink(victim, tmp_path / "feed.lock")
    with pytest.raises(JobFileError, match="feed.lock"):
        JobLock(tmp_path / "feed").acquire()
    _untouched(victim)


def test_the_lock_file_is_private_and_still_locks(tmp_path: Path) -> None:
    with _umask(0):
        lock = JobLock(tmp_path / "job.sqlite").acquire()
    try:
        assert _mode(lock.path) == 0o600
        with pytest.raises(JobFileError, match="in use"):
            JobLock(tmp_path / "job.sqlite").acquire()
    finally:
        lock.release()
    JobLock(tmp_path / "job.sqlite").acquire().release()  # a lock file left behind is reused


# -- chunk temp files --------------------------------------------------------------------

@pytest.mark.parametrize("gzip", [False, True])
def test_a_symlinked_chunk_temp_file_is_refused_and_its_target_untouched(tmp_path: Path, gzip: bool) -> None:
    victim = _victim(tmp_path)
    with Batch("Org", tmp_path / "job.sqlite", gzip=gzip) as batch:
        batch.save({"type": "Address", "summary": "10.7.0.1"})
        batch.out_dir.mkdir(mode=0o700)
        suffix = ".json.gz" if gzip else ".json"
        tmp = batch.out_dir / f"chunk-000001{suffix}.tmp"
        os.symlink(victim, tmp)
        with pytest.raises(JobFileError, match=f"chunk-000001{suffix}.tmp.*symbolic link") as info:
            batch.build()
        _one_line(info.value)
        _untouched(victim)
        assert tmp.is_symlink()  # left for the user to look at
        assert batch.job.conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0
        os.unlink(tmp)
        [path] = batch.build()  # the record stayed staged
    assert path.name == f"chunk-000001{suffix}" and _mode(path) == 0o600


def test_a_dangling_chunk_temp_symlink_does_not_create_its_target(tmp_path: Path) -> None:
    target = tmp_path / "created-by-us.json"
    with Batch("Org", tmp_path / "job.sqlite") as batch:
        batch.save({"type": "Address", "summary": "10.7.0.2"})
        batch.out_dir.mkdir(mode=0o700)
        os.symlink(target, batch.out_dir / "chunk-000001.json.tmp")
        with pytest.raises(JobFileError, match="symbolic link"):
            batch.build()
    assert not target.exists()


def test_a_stale_chunk_temp_file_from_a_crash_is_replaced(tmp_path: Path) -> None:
    with Batch("Org", tmp_path / "job.sqlite") as batch:
        batch.save({"type": "Address", "summary": "10.7.0.3"})
        batch.out_dir.mkdir(mode=0o700)
        stale = batch.out_dir / "chunk-000001.json.tmp"
        stale.write_bytes(b'{"group":[],"indic')  # what a killed build leaves
        os.chmod(stale, 0o644)
        [path] = batch.build()
    assert b"10.7.0.3" in path.read_bytes() and _mode(path) == 0o600
    assert not stale.exists()


def test_chunk_temp_files_are_opened_exclusively_without_following_links(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):
        opened.append((str(path), flags, mode))
        return real_open(path, flags, mode, *args, **kwargs)

    with Batch("Org", tmp_path / "job.sqlite") as batch:
        batch.save({"type": "Address", "summary": "10.7.0.4"})
        monkeypatch.setattr(os, "open", spy)
        batch.build()
        monkeypatch.setattr(os, "open", real_open)
    [(_, flags, mode)] = [o for o in opened if o[0].endswith(".tmp")]
    want = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    assert flags & want == want and not flags & os.O_TRUNC and mode == 0o600


# -- the job file ------------------------------------------------------------------------

def test_a_job_path_symlinked_to_an_empty_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    os.chmod(empty, 0o644)
    job = tmp_path / "job.sqlite"
    os.symlink(empty, job)
    with pytest.raises(JobFileError, match="job.sqlite.*symbolic link") as info:
        JobFile.open(job)
    _one_line(info.value)
    assert empty.read_bytes() == b"" and _mode(empty) == 0o644
    with pytest.raises(JobFileError, match="symbolic link"):
        Batch("Org", job)
    assert empty.read_bytes() == b"" and _mode(empty) == 0o644


def test_a_dangling_job_path_symlink_does_not_create_its_target(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.sqlite"
    job = tmp_path / "job.sqlite"
    os.symlink(target, job)
    with pytest.raises(JobFileError, match="symbolic link"):
        JobFile.open(job)
    with pytest.raises(JobFileError, match="symbolic link"):
        Batch("Org", job)
    assert not target.exists() and not os.path.lexists(str(target) + "-wal")


def test_a_job_path_symlinked_to_a_real_job_file_is_refused(tmp_path: Path) -> None:
    """The decision (docs/decisions.md, Library / Files): refused too, naming the real path.
    Its lock would be ``<link>.lock`` while another process that opens the real path locks
    ``<real>.lock``: two writers on one job file."""
    real = tmp_path / "real.sqlite"
    Batch("Org", real).close()
    before = real.read_bytes()
    link = tmp_path / "link.sqlite"
    os.symlink(real, link)
    for attempt in (lambda: JobFile.open(link), lambda: JobFile.open(link, create=False),
                    lambda: JobFile.check(link), lambda: Batch("Org", link)):
        with pytest.raises(JobFileError, match=f"link.sqlite.*symbolic link.*{real.name}"):
            attempt()
    assert real.read_bytes() == before
    JobFile.open(real, create=False).close()  # the real path works


def test_a_symlink_in_a_parent_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")
    with Batch("Org", tmp_path / "alias" / "job.sqlite") as batch:
        batch.save({"type": "Address", "summary": "10.7.0.5"})
    assert (tmp_path / "real" / "job.sqlite").is_file()


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_symlinked_wal_or_shm_is_refused_and_its_target_untouched(tmp_path: Path, suffix: str) -> None:
    victim = _victim(tmp_path)
    job = tmp_path / "job.sqlite"
    Batch("Org", job).close()
    os.symlink(victim, str(job) + suffix)
    with pytest.raises(JobFileError, match=f"job.sqlite{suffix}.*symbolic link") as info:
        Batch("Org", job)
    _one_line(info.value)
    _untouched(victim)
    fresh = tmp_path / "fresh.sqlite"
    os.symlink(victim, str(fresh) + suffix)
    with pytest.raises(JobFileError, match="symbolic link"):
        JobFile.open(fresh)
    _untouched(victim)


def test_an_empty_hard_linked_job_path_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "someone-elses-empty-file"
    empty.write_bytes(b"")
    os.chmod(empty, 0o644)
    os.link(empty, tmp_path / "job.sqlite")
    with pytest.raises(JobFileError, match="job.sqlite.*hard links"):
        JobFile.open(tmp_path / "job.sqlite")
    assert empty.read_bytes() == b"" and _mode(empty) == 0o644


def test_a_directory_at_the_job_path_is_one_line(tmp_path: Path) -> None:
    job = tmp_path / "job.sqlite"
    job.mkdir()
    for attempt in (lambda: JobFile.open(job), lambda: JobFile.open(job, create=False), lambda: Batch("Org", job)):
        with pytest.raises(JobFileError, match="job.sqlite: .*directory") as info:
            attempt()
        _one_line(info.value)


def test_a_job_path_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"x")
    with pytest.raises(JobFileError, match="plain") as info:
        JobFile.open(tmp_path / "plain" / "job.sqlite")
    _one_line(info.value)


def test_a_new_job_file_is_created_private_whatever_the_umask(tmp_path: Path) -> None:
    with _umask(0):
        job = JobFile.open(tmp_path / "new" / "job.sqlite")
    try:
        assert _mode(job.path) == 0o600
        assert _mode(tmp_path / "new") == 0o700  # a folder JobFile.open creates
    finally:
        job.close()


def test_an_empty_job_file_is_made_a_job_file(tmp_path: Path) -> None:
    """An empty regular file (``touch``, ``mkstemp``) is taken as a new job file, as before."""
    empty = tmp_path / "job.sqlite"
    empty.write_bytes(b"")
    os.chmod(empty, 0o644)
    JobFile.open(empty).close()
    assert _mode(empty) == 0o600 and empty.stat().st_size > 0
    with pytest.raises(JobFileError, match="no such job file"):
        JobFile.open(tmp_path / "missing.sqlite", create=False)


# -- modes after a run -------------------------------------------------------------------

def test_modes_after_a_run_with_the_embedded_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Job file, its -wal/-shm, lock, chunk folder and files, and the embedded emulator's data
    files are private even with umask 0 (checked while open: SQLite removes -wal/-shm on close)."""
    for name in API_ENV:
        monkeypatch.delenv(name, raising=False)
    with _umask(0):
        batch = Batch("Demo Organization", tmp_path / "jobs" / "job.sqlite", poll_interval=0.02, max_records=2)
        try:
            batch.save_all({"type": "Address", "summary": f"10.8.0.{i}"} for i in range(5))
            batch.report("R", file_name="r.txt", file_content=b"report\n")
            results = batch.submit_all()
            assert results and all(r["status"] == "Completed" for r in results)
            job = batch.path
            emu = batch.emulator.db
            files = {
                job: 0o600, Path(f"{job}-wal"): 0o600, Path(f"{job}-shm"): 0o600, Path(f"{job}.lock"): 0o600,
                batch.out_dir: 0o700,
                emu: 0o600, Path(f"{emu}-wal"): 0o600, Path(f"{emu}-shm"): 0o600,
            }
            files.update({p: 0o600 for p in batch.out_dir.iterdir()})
            assert len(files) > 9
            for path, mode in files.items():
                assert _mode(path) == mode, f"{path}: {oct(_mode(path))}"
        finally:
            batch.close()


def test_the_demo_folders_are_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in API_ENV:
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "demo" / "out"
    with _umask(0):
        with stage_demo(out, indicators=10, max_records=5) as batch:
            batch.build()
            assert _mode(out) == 0o700
            assert _mode(out / "chunks") == 0o700
            assert _mode(batch.path) == 0o600


def test_the_default_job_folder_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Batch(owner)`` without a path makes ``./.streambatch/`` 0700 (the job file in it 0600),
    whatever the umask."""
    monkeypatch.chdir(tmp_path)
    with _umask(0):
        with Batch("Demo Organization") as batch:
            assert batch.path.parent == Path(".streambatch")
            assert _mode(tmp_path / ".streambatch") == 0o700
            assert _mode(batch.path) == 0o600


# -- the emulator's data files -----------------------------------------------------------

def test_the_emulator_data_files_are_private(tmp_path: Path) -> None:
    db = tmp_path / "emu.sqlite"
    with _umask(0), Emulator(db=db) as tc:
        requests.get(f"{tc.base}/_emulator/jobs", timeout=10)
        tc.store.create_job(tc.owner, {}, mode="queued")
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert _mode(path) == 0o600, path


def test_an_existing_emulator_data_file_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "emu.sqlite"
    with Emulator(db=db):
        pass
    os.chmod(db, 0o644)  # as older versions created it
    with Emulator(db=db) as tc:
        tc.store.create_job(tc.owner, {}, mode="queued")
        assert _mode(db) == 0o600 and _mode(Path(f"{db}-wal")) == 0o600


def test_the_emulator_temporary_folder_is_private() -> None:
    with _umask(0), Emulator() as tc:
        assert _mode(tc.db.parent) == 0o700 and _mode(tc.db) == 0o600


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlinked_emulator_data_file_is_refused(tmp_path: Path, dangling: bool) -> None:
    victim = tmp_path / "victim"
    if not dangling:
        victim.write_bytes(b"")
    db = tmp_path / "emu.sqlite"
    os.symlink(victim, db)
    with pytest.raises(OSError, match="emu.sqlite.*symbolic link") as info:
        Emulator(db=db)
    _one_line(info.value)
    assert victim.exists() is not dangling
    if not dangling:
        assert victim.read_bytes() == b""


# -- the emulator's request log over HTTP ------------------------------------------------

SECRET_HEADERS = {
    "X-Api-Key": "k-123", "X-Auth-Thing": "a-123", "Cookie": "session=c-123", "X-Secret": "s-123",
    "X-Password": "p-123", "TC-Token": "t-123", "Proxy-Authorization": "Basic pa-123",
    "X-Access-Token": "at-123",
}


def _signed_requests(tc: Emulator) -> None:
    import base64
    import hashlib
    import hmac
    import time

    stamp = str(int(time.time()))
    sig = base64.b64encode(hmac.new(tc.secret_key.encode(), f"/api/v2/owners:GET:{stamp}".encode(),
                                    hashlib.sha256).digest()).decode()
    r = requests.get(f"{tc.url}/v2/owners", timeout=10,
                     headers={"Timestamp": stamp, "Authorization": f"TC {tc.access_id}:{sig}", **SECRET_HEADERS})
    assert r.status_code == 200
    r = requests.get(f"{tc.url}/v2/owners", timeout=10,
                     headers={"Timestamp": stamp, "Authorization": f"TC-Token {tc.token}"})
    assert r.status_code == 200


def test_request_headers_are_redacted_over_http_and_kept_in_process(tmp_path: Path) -> None:
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        _signed_requests(tc)
        r = requests.get(f"{tc.base}/_emulator/requests", timeout=10)
        body = r.text
        log = r.json()
        assert len(log) == 2
        # header names as the WSGI server spells them (TC-Token arrives as Tc-Token): compare lower-cased
        hmac_entry, token_entry = ({k.lower(): v for k, v in e["headers"].items()} for e in log)
        assert hmac_entry["authorization"] == "<redacted>" and token_entry["authorization"] == "<redacted>"
        for name in SECRET_HEADERS:
            assert hmac_entry[name.lower()] == "<redacted>", name
        assert hmac_entry["timestamp"].isdigit() and "python-requests" in hmac_entry["user-agent"]
        assert hmac_entry["accept"] == "*/*"
        for secret in (tc.secret_key, tc.token, *SECRET_HEADERS.values(), "k-123"):
            assert secret not in body
        assert tc.access_id not in body  # part of the Authorization value
        # in this process the real values stay available (tests check signatures with them)
        inproc = tc.requests
        assert inproc[0]["headers"]["Authorization"].startswith(f"TC {tc.access_id}:")
        assert inproc[1]["headers"]["Authorization"] == f"TC-Token {tc.token}"
        assert inproc[0]["headers"]["X-Api-Key"] == "k-123"
        # DELETE answers with the (now empty) log; a second read is redacted too
        _signed_requests(tc)
        assert "<redacted>" in requests.get(f"{tc.base}/_emulator/requests", timeout=10).text
        assert tc.secret_key not in requests.delete(f"{tc.base}/_emulator/requests", timeout=10).text


def test_redaction_is_by_header_name_case_insensitive() -> None:
    from streambatch.emulator.server import redact_headers

    headers = {"authorization": "x", "AUTHORIZATION-X": "x", "x-API-KEY": "x", "Set-Cookie": "x",
               "x-session-token": "x", "client-secret": "x", "Password": "x", "Content-Type": "text/plain",
               "Timestamp": "1", "Content-Length": "3", "Keep-Alive": "5", "Host": "h"}
    out = redact_headers(headers)
    assert list(out) == list(headers)  # names kept, in order
    assert {k for k, v in out.items() if v == "<redacted>"} == {
        "authorization", "AUTHORIZATION-X", "x-API-KEY", "Set-Cookie", "x-session-token", "client-secret", "Password"}
    assert out["Content-Type"] == "text/plain" and out["Keep-Alive"] == "5"
    assert headers["authorization"] == "x"  # the input is not changed


def test_control_routes_answer_loopback_clients_only() -> None:
    with Emulator() as tc:
        client = WsgiClient(tc.app)
        remote = client.get("/_emulator/requests", environ_base={"REMOTE_ADDR": "192.0.2.7"})
        assert remote.status_code == 403
        for addr in ("127.0.0.1", "127.0.0.2", "::1"):
            assert client.get("/_emulator/requests", environ_base={"REMOTE_ADDR": addr}).status_code == 200, addr
        # the API itself is not restricted (it has its credentials)
        assert client.get("/api/v2/owners", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 401
    with Emulator(remote_control=True) as tc:
        client = WsgiClient(tc.app)
        assert client.get("/_emulator/requests", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 200


# -- Batch arguments ---------------------------------------------------------------------

@pytest.mark.parametrize("settings", [
    {"max_records": "x"}, {"max_records": 0}, {"max_records": -1}, {"max_records": None}, {"max_records": 2.5},
    {"max_records": True}, {"max_records": "500"}, {"max_bytes": "5"}, {"max_bytes": 10.0}, {"max_bytes": 3},
    {"max_bytes": False}, {"max_bytes": chunker.EMPTY_SIZE + 1},
])
def test_bad_chunk_limits_are_one_line_errors(tmp_path: Path, settings: dict) -> None:
    [(name, value)] = settings.items()
    with pytest.raises(ValidationError, match=name) as info:
        Batch("Org", tmp_path / "job.sqlite", **settings)
    assert isinstance(info.value, ValueError) and isinstance(info.value, StreambatchError)
    _one_line(info.value)
    with pytest.raises(ValidationError, match=name):
        Limits(**{"max_bytes": chunker.DEFAULT_MAX_BYTES, "max_records": 10, **settings})
    # the refused Batch released its lock and left a usable job file
    Batch("Org", tmp_path / "job.sqlite").close()


def test_the_smallest_limits_are_accepted(tmp_path: Path) -> None:
    Limits(max_bytes=chunker.EMPTY_SIZE + 2, max_records=1)
    with Batch("Org", tmp_path / "job.sqlite", max_records=1, max_bytes=10_000) as batch:
        batch.save_all({"type": "Address", "summary": f"10.9.0.{i}"} for i in range(2))
        assert len(batch.build()) == 2


def test_unknown_batch_settings_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown Batch settings: retention") as info:
        Batch("Org", tmp_path / "job.sqlite", retention=3)
    _one_line(info.value)
