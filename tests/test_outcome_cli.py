"""What the API did with a job's records (streambatch.outcome), and the commands that show it and
act on it: status, errors, rejected, retry, resume. Every job file here was submitted to the
emulator over HTTP; every command runs through the CLI (click's runner, and a subprocess for the
entry point and for a lock held by another process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from e2e_helpers import chunk_rows, hosts, make_batch, requests_to, tc  # noqa: F401 (the tc fixture)

from streambatch.cli import main
from streambatch.emulator import Emulator
from streambatch.feeds.config import FeedConfig
from streambatch.feeds.state import FeedState
from streambatch.inspect import ERROR_KEYS, REJECTED_KEYS
from streambatch.outcome import OUTCOME_KEYS, failed_xids, outcome, outcome_line
from streambatch.store import JobFile

OWNER = "Demo Organization"

MIXED = [
    {"type": "Adversary", "name": "fine group", "xid": "grp-ok"},
    {"type": "Incident", "name": "reuses an Adversary xid", "xid": "dup-x"},  # 0x100A Error
    *[{"type": "Host", "summary": f"good{i}.example.com", "xid": f"good-{i}"} for i in range(5)],
    {"type": "Host", "summary": "bad-attr.example.com", "xid": "ind-bad-attr",  # 0x2001 Warning
     "attribute": [{"type": "Source", "value": "not accepted here"}]},
]
INVALID = [{"type": "Address", "summary": "999.1.1.1"}, {"type": "Host", "summary": "not a host!"}]
CAU_400 = {"kind": "status", "method": "POST", "path": "/v2/batch/createAndUpload", "status": 400, "times": 1}
CAU_503 = {"kind": "status", "method": "POST", "path": "/v2/batch/createAndUpload", "status": 503, "times": 0}


def cli(*args: Any, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def env_for(tc: Emulator) -> dict[str, str | None]:
    return {"TC_API_PATH": tc.url, "TC_API_ACCESS_ID": tc.access_id, "TC_API_SECRET_KEY": tc.secret_key,
            "TC_TOKEN": None}


def seed_adversary(tc: Emulator, tmp_path: Path) -> None:
    """An Adversary that owns the xid ``dup-x``: an Incident with that xid is refused (0x100A)."""
    with make_batch(tc, tmp_path / "seed.sqlite") as seed:
        seed.adversary("the original", xid="dup-x")
        seed.submit_all()


def job_outcome(path: Path) -> tuple[dict[str, int], set[str]]:
    job = JobFile.open(path, create=False)
    try:
        return outcome(job), failed_xids(job)
    finally:
        job.close()


def chunk_state(path: Path) -> list[tuple[int, str]]:
    job = JobFile.open(path, create=False)
    try:
        return job.conn.execute("SELECT id, state FROM chunks ORDER BY id").fetchall()
    finally:
        job.close()


def chunk_message(path: Path, chunk: int) -> str:
    job = JobFile.open(path, create=False)
    try:
        return job.conn.execute("SELECT message FROM chunks WHERE id = ?", (chunk,)).fetchone()[0]
    finally:
        job.close()


# -- outcome on real job files ---------------------------------------------------------------

@pytest.mark.parametrize("mode", ["queued", "synchronous"])
def test_outcome_of_a_job_with_errors_warnings_and_rejects(tmp_path: Path, mode: str) -> None:
    knobs = {"synchronous_batch_save_limit": 0} if mode == "queued" else {}
    with Emulator(db=tmp_path / "emu.sqlite", attribute_types=["Description"], **knobs) as tc:
        seed_adversary(tc, tmp_path)
        # preflight off: what the server reports is under test (pre-flight would reject bad-attr locally)
        batch = make_batch(tc, tmp_path / "job.sqlite", preflight=False)
        batch.save_all(MIXED + INVALID, on_error="reject")
        batch.submit_all(halt_on_error=False)
        if mode == "synchronous":  # answered inline without an id, then sent again queued to itemize
            assert [j["mode"] for j in tc.store.jobs()][-2:] == ["sync", "two-step"]
        o, failed = outcome(batch.job), failed_xids(batch.job)
        batch.close()
        # what the emulator holds agrees: everything but the Incident landed, the Host lost its attribute
        assert tc.store.group(OWNER, "dup-x")["type"] == "Adversary"
        assert tc.store.group(OWNER, "grp-ok")["type"] == "Adversary"
        assert all(tc.store.indicator(OWNER, "Host", f"good{i}.example.com") for i in range(5))
        assert tc.store.indicator(OWNER, "Host", "bad-attr.example.com")["attribute"] == []
    assert failed == {"dup-x"}
    assert o == {"sent": 8, "accepted": 7, "failed": 1, "warned": 1, "unprocessed": 0, "pending": 0,
                 "dropped": 0, "rejected": 2, "truncated": 0, "attributes_dropped": 0}
    assert outcome_line(o) == "sent 8: accepted 7, failed 1, warned 1, unprocessed 0; pending 0; rejected locally 2"


def test_a_synchronous_job_whose_errors_are_not_itemized_fails_as_a_whole(tmp_path: Path) -> None:
    """With appended attributes a small job answered inline (no batch id) is not sent again to
    learn its errors: none of its records is known to have landed."""
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        batch = make_batch(tc, tmp_path / "job.sqlite", attribute_write_type="Append")
        batch.save_all([{"type": "Host", "summary": "x.example.com", "xid": "x",
                         "associatedGroups": [{"groupXid": "nowhere"}]},
                        *hosts(2, prefix="ok")])
        batch.submit_all(halt_on_error=False)
        [chunk] = chunk_rows(batch)
        assert (chunk["state"], chunk["batch_id"], chunk["error_count"], chunk["errors_fetched"]) == ("done", None, 1, 0)
        assert failed_xids(batch.job) == {"x", "ok-0", "ok-1"}
        assert outcome(batch.job) == {"sent": 3, "accepted": 0, "failed": 3, "warned": 0, "unprocessed": 0,
                                      "pending": 0, "dropped": 0, "rejected": 0, "truncated": 0, "attributes_dropped": 0}
        batch.close()
    job = tmp_path / "job.sqlite"
    errors = cli("errors", job)
    assert errors.exit_code == 0, errors.output
    assert errors.stdout.splitlines() == [
        "0 error records from the API: 0 errors, 0 warnings",
        "chunk 1: 3 records: the API reported 1 error without naming them (processed synchronously); "
        "none of them is known to have landed"]
    status = cli("status", job)
    assert status.exit_code == 0
    assert "sent 3: accepted 0, failed 3, warned 0, unprocessed 0; pending 0; rejected locally 0" in status.stdout
    assert "chunk #1: 3 records: the API reported 1 error without naming them (processed synchronously)" in status.stdout


def test_an_error_naming_no_record_fails_its_whole_chunk(tmp_path: Path) -> None:
    with Emulator(db=tmp_path / "emu.sqlite", synchronous_batch_save_limit=0) as tc:
        batch = make_batch(tc, tmp_path / "job.sqlite")
        batch.save_all(hosts(3))
        batch.add_association({"ref_1": "nope-1", "ref_2": "nope-2"})  # groups that exist nowhere
        batch.submit_all(halt_on_error=False)
        assert batch.job.conn.execute("SELECT xid, code FROM errors").fetchall() == [(None, "0x1007")]
        assert failed_xids(batch.job) == {"h-0", "h-1", "h-2"}
        assert outcome(batch.job) == {"sent": 4, "accepted": 0, "failed": 4, "warned": 0, "unprocessed": 0,
                                      "pending": 0, "dropped": 0, "rejected": 0, "truncated": 0, "attributes_dropped": 0}
        batch.close()
    out = cli("errors", tmp_path / "job.sqlite")
    assert out.exit_code == 0
    lines = out.stdout.splitlines()
    assert lines[0].startswith("Error    0x1007  chunk 1    (no record named): Item Not Found Error: nope-1 <-> nope-2")
    assert lines[1:] == ["1 error record from the API: 1 error, 0 warnings",
                         "chunk 1: 4 records: the API reported 1 error naming no record of the chunk; "
                         "none of them is known to have landed"]


# -- status ---------------------------------------------------------------------------------

def test_status_shows_the_outcome_and_messages_and_json(tmp_path: Path) -> None:
    with Emulator(db=tmp_path / "emu.sqlite", attribute_types=["Description"]) as tc:
        seed_adversary(tc, tmp_path)
        with make_batch(tc, tmp_path / "job.sqlite", preflight=False) as batch:  # the server's warning under test
            batch.save_all(MIXED + INVALID, on_error="reject")
            batch.submit_all(halt_on_error=False)
    job = tmp_path / "job.sqlite"
    text = cli("status", job)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert "sent 8: accepted 7, failed 1, warned 1, unprocessed 0; pending 0; rejected locally 2" in lines
    assert "records succeeded" not in text.stdout  # the server's errorCount counts warnings too
    by_code = lines[lines.index("errors by code:") + 1:][:2]
    assert by_code[0].split()[:3] == ["0x100A", "Error", "1"]
    assert "Duplicate Item Error: Incident dup-x: the xid already belongs to a Adversary" in by_code[0]
    assert by_code[1].split()[:3] == ["0x2001", "Warning", "1"]
    assert "attribute type 'Source' is not accepted" in by_code[1]
    assert "not done:" not in text.stdout

    data = json.loads(cli("status", "--json", job).stdout)
    assert set(data) == {"job", "chunks", "outcome", "errors_by_code"}
    assert data["job"] == str(job) and data["chunks"] == {"done": 1}
    assert set(data["outcome"]) == set(OUTCOME_KEYS)
    assert data["outcome"] == job_outcome(job)[0]
    assert all(set(e) == {"code", "severity", "count", "sample"} for e in data["errors_by_code"])
    assert [(e["code"], e["severity"], e["count"]) for e in data["errors_by_code"]] == [
        ("0x100A", "Error", 1), ("0x2001", "Warning", 1)]
    assert data["errors_by_code"][0]["sample"].startswith("Error (0x100A): Duplicate Item Error: Incident dup-x")
    assert all(len(e["sample"]) <= 160 for e in data["errors_by_code"])


# -- refused chunks: status, resume, retry ---------------------------------------------------

def refused_job(tc: Emulator, path: Path) -> str:
    """Ten hosts in two chunks; the API refuses the first with HTTP 400. Returns its message."""
    tc.set_faults([CAU_400])
    with make_batch(tc, path, max_records=5) as batch:
        batch.save_all(hosts(10))
        batch.submit_all(halt_on_error=False)
    tc.set_faults([])
    assert chunk_state(path) == [(1, "failed"), (2, "done")]
    return chunk_message(path, 1)


def test_refused_chunk_is_reported_then_retried_and_resumed(tc: Emulator, tmp_path: Path) -> None:
    job = tmp_path / "job.sqlite"
    message = refused_job(tc, job)
    assert "400" in message

    status = cli("status", job)
    assert status.exit_code == 0
    assert "sent 5: accepted 5, failed 0, warned 0, unprocessed 0; pending 5; rejected locally 0" in status.stdout
    assert f"  chunk #1 failed: {message}" in status.stdout
    assert f"refused chunks: fix the cause and run `streambatch retry {job}`" in status.stdout

    sent_before = len(requests_to(tc, "POST", "/v2/batch/createAndUpload"))
    resume = cli("resume", job, env=env_for(tc))
    assert resume.exit_code == 1, resume.output
    assert "nothing pending" not in resume.stdout
    assert resume.stdout.splitlines() == [
        "found:",
        f"  - 1 chunk(s) (#1) refused by the API: {message}; fix the cause and run `streambatch retry {job}`, "
        f"or give them up with `streambatch retry --drop {job}`"]
    assert len(requests_to(tc, "POST", "/v2/batch/createAndUpload")) == sent_before  # nothing was sent

    retry = cli("retry", job)
    assert retry.exit_code == 0, retry.output
    assert retry.stdout.splitlines() == [
        f"chunk 1: 5 records, refused by the API: {message}: set back to built",
        f"1 chunk (5 records) to send again: sent by `streambatch resume {job}`"]
    assert chunk_state(job) == [(1, "built"), (2, "done")]
    again = cli("retry", job)
    assert again.exit_code == 1
    assert again.stderr.strip() == (f"error: {job}: no chunk refused by the API (state failed), nothing to retry "
                                    "(chunks: built 1, done 1)")

    resume = cli("resume", job, "--quiet", env=env_for(tc))
    assert resume.exit_code == 0, resume.output
    assert resume.stdout.splitlines()[:2] == ["found:", f"  - 1 chunk(s) failed to send earlier ({message}): sent again"]
    assert chunk_state(job) == [(1, "done"), (2, "done")]
    assert all(tc.store.indicator(OWNER, "Host", f"h{i}.example.com") for i in range(10))
    data = json.loads(cli("status", "--json", job).stdout)
    assert data["chunks"] == {"done": 2}
    assert data["outcome"] == {"sent": 10, "accepted": 10, "failed": 0, "warned": 0, "unprocessed": 0,
                               "pending": 0, "dropped": 0, "rejected": 0, "truncated": 0, "attributes_dropped": 0}
    assert cli("resume", job, env=env_for(tc)).stdout.strip() == "nothing pending in this job file"


def test_retry_drop_gives_the_chunk_up(tc: Emulator, tmp_path: Path) -> None:
    job = tmp_path / "job.sqlite"
    message = refused_job(tc, job)
    drop = cli("retry", "--drop", job)
    assert drop.exit_code == 0, drop.output
    assert drop.stdout.splitlines() == [f"chunk 1: 5 records, refused by the API: {message}: dropped",
                                        "1 chunk (5 records) dropped: given up; never sent in this job"]
    assert chunk_state(job) == [(1, "dropped"), (2, "done")]
    o, failed = job_outcome(job)
    assert o == {"sent": 5, "accepted": 5, "failed": 0, "warned": 0, "unprocessed": 0, "pending": 0,
                 "dropped": 5, "rejected": 0, "truncated": 0, "attributes_dropped": 0}
    # the dropped records are exactly the ones the emulator does not have
    missing = {f"h-{i}" for i in range(10) if tc.store.indicator(OWNER, "Host", f"h{i}.example.com") is None}
    assert failed == missing and len(missing) == 5

    status = cli("status", job).stdout
    assert "sent 5: accepted 5, failed 0, warned 0, unprocessed 0; pending 0; dropped 5; rejected locally 0" in status
    assert (f"chunk #1: 5 records: given up (dropped) by `streambatch retry --drop` after the API refused the chunk: "
            f"{message}; none of them was sent") in status
    errors = cli("errors", job)
    assert errors.stdout.splitlines()[-1].startswith("chunk 1: 5 records: given up (dropped)")
    resume = cli("resume", job, env=env_for(tc))
    assert (resume.exit_code, resume.stdout.strip()) == (0, "nothing pending in this job file")
    assert cli("retry", "--drop", job).exit_code == 1


def test_a_send_that_failed_and_will_be_retried_is_shown_as_such(tmp_path: Path) -> None:
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        job = tmp_path / "job.sqlite"
        tc.set_faults([CAU_503])  # every try: the retries run out, the chunk stays built
        with make_batch(tc, job) as batch:
            batch.save_all(hosts(3))
            batch.submit_all(halt_on_error=False)
        tc.set_faults([])
        assert chunk_state(job) == [(1, "built")]
        message = chunk_message(job, 1)
        assert "503" in message
        assert retry_refuses_without_failed(job)
        resume = cli("resume", job, "--quiet", env=env_for(tc))
        assert resume.exit_code == 0, resume.output
        assert resume.stdout.splitlines()[:2] == ["found:", f"  - 1 chunk(s) failed to send earlier ({message}): sent again"]
        assert chunk_state(job) == [(1, "done")]
        assert tc.store.indicator(OWNER, "Host", "h2.example.com") is not None


def retry_refuses_without_failed(job: Path) -> bool:
    out = cli("retry", job)
    return out.exit_code == 1 and "no chunk refused by the API" in out.stderr


def test_retry_never_changes_a_job_in_use(tc: Emulator, tmp_path: Path) -> None:
    job = tmp_path / "job.sqlite"
    refused_job(tc, job)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from streambatch import Batch; b = Batch(sys.argv[1], sys.argv[2]); "
         "print('ready', flush=True); sys.stdin.read(); b.close()", OWNER, str(job)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        out = cli("retry", job)
        assert out.exit_code == 1
        assert out.stderr.strip() == (f"error: {job}: in use by another streambatch process (pid {holder.pid}); "
                                      f"wait for it to finish (lock file {job}.lock)")
        assert chunk_state(job) == [(1, "failed"), (2, "done")]
    finally:
        holder.communicate("", timeout=30)
    assert cli("retry", job).exit_code == 0
    assert chunk_state(job) == [(1, "built"), (2, "done")]


# -- feeds: JOB_OR_FEED, errors, rejected, retry ---------------------------------------------

def jsonl_feed(folder: Path, rows: list[Any], extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "feed.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    cfg = folder / "feed.toml"
    cfg.write_text(f'source = "feed.jsonl"\nformat = "jsonl"\nowner = "{OWNER}"\n[batch]\npoll_interval = 0.02\n{extra}')
    return cfg


def feed_job(cfg: Path, run: dict) -> Path:
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        return state.job_path(run["job"])
    finally:
        state.close()


def runs_of(cfg: Path) -> list[dict]:
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        return state.runs(100)
    finally:
        state.close()


def test_feed_status_errors_and_rejected(tmp_path: Path) -> None:
    with Emulator(db=tmp_path / "emu.sqlite", attribute_types=["Description"]) as tc:
        seed_adversary(tc, tmp_path)
        cfg = jsonl_feed(tmp_path / "feeds", [*MIXED, "{bad json", {"type": "Address", "summary": "999.1.1.1"}],
                         "preflight = false\n")  # the server's warning for the attribute type is under test
        missing = cli("status", cfg)
        assert missing.exit_code == 1
        assert missing.stderr.startswith("error: feed feed: no runs yet")
        assert not FeedConfig.load(cfg).state_dir.exists()  # asking created nothing

        first = cli("run", cfg, env=env_for(tc))  # its exit status is the run command's business
        [run1] = runs_of(cfg)
        assert run1["status"] == "done", first.output
        job1 = feed_job(cfg, run1)
        header = f"feed feed: run 1 (done), job file {job1}"

        status = cli("status", cfg)
        assert status.exit_code == 0, status.output
        assert status.stdout.splitlines()[0] == header
        assert "sent 8: accepted 7, failed 1, warned 1, unprocessed 0; pending 0; rejected locally 2" in status.stdout
        data = json.loads(cli("status", "--json", cfg).stdout)
        assert data["job"] == str(job1)
        assert data["outcome"]["failed"] == run1["failed"] == 1  # the run's count and status agree

        errors = cli("errors", cfg)
        assert errors.exit_code == 0, errors.output
        lines = errors.stdout.splitlines()
        assert lines[0] == header
        assert lines[1].startswith("Error    0x100A  chunk 1    Incident 'reuses an Adversary xid' (xid dup-x): "
                                   "Duplicate Item Error: Incident dup-x: the xid already belongs to a Adversary")
        assert lines[2].startswith("Warning  0x2001  chunk 1    Host 'bad-attr.example.com' (xid ind-bad-attr): "
                                   "Indicator Partial Loss Error")
        assert lines[3:] == ["2 error records from the API: 1 error, 1 warning"]

        records = [json.loads(line) for line in cli("errors", "--json", cfg).stdout.splitlines()]
        assert [set(r) for r in records] == [set(ERROR_KEYS)] * 2
        dup = records[0]
        assert {k: dup[k] for k in ("chunk", "severity", "code", "xid", "type", "summary")} == {
            "chunk": 1, "severity": "Error", "code": "0x100A", "xid": "dup-x", "type": "Incident",
            "summary": "reuses an Adversary xid"}
        assert isinstance(dup["batch_id"], int) and dup["reason"].startswith("Error (0x100A): Duplicate Item Error")
        assert "Last processed group[" in dup["message"]
        warnings = [json.loads(x) for x in cli("errors", "--json", "--severity", "warning", cfg).stdout.splitlines()]
        assert [(w["xid"], w["code"], w["type"], w["summary"]) for w in warnings] == [
            ("ind-bad-attr", "0x2001", "Host", "bad-attr.example.com")]
        limited = cli("errors", "--limit", "1", cfg).stdout.splitlines()
        assert limited[2:] == ["... and 1 more (use --limit)", "2 error records from the API: 1 error, 1 warning"]

        rejected = cli("rejected", cfg)
        assert rejected.exit_code == 0
        lines = rejected.stdout.splitlines()
        assert lines[0] == header
        assert lines[1].startswith("line 9 of feed.jsonl: ") and "malformed JSON" in lines[1]
        assert lines[1].endswith("raw: {bad json")
        assert lines[2].startswith("line 10 of feed.jsonl: Address") and "999.1.1.1" in lines[2]
        assert lines[3:] == ["2 records rejected locally (never sent)"]
        rows = [json.loads(x) for x in cli("rejected", "--json", cfg).stdout.splitlines()]
        assert [set(r) for r in rows] == [set(REJECTED_KEYS)] * 2
        assert [(r["line"], r["source"], r["raw"]) for r in rows][0] == (9, "feed.jsonl", "{bad json")
        assert rows[1]["type"] == "Address" and rows[1]["field"] == "summary"
        assert cli("rejected", "--limit", "1", cfg).stdout.splitlines()[2:] == [
            "... and 1 more (use --limit)", "2 records rejected locally (never sent)"]

        # the next cycle sends again only what failed: the Incident, refused again
        second = cli("run", cfg, env=env_for(tc))
        assert runs_of(cfg)[0]["status"] == "done", second.output
        status2 = cli("status", cfg).stdout
        assert status2.splitlines()[0].startswith("feed feed: run 2 (done), job file ")
        assert "sent 1: accepted 0, failed 1, warned 0, unprocessed 0; pending 0; rejected locally 2" in status2
        status1 = cli("status", "--run", "1", cfg).stdout
        assert status1.splitlines()[0] == header and "sent 8: accepted 7" in status1
        nope = cli("status", "--run", "99", cfg)
        assert nope.exit_code == 1 and "feed feed: no run 99" in nope.stderr
        wrong = cli("errors", "--run", "1", job1)
        assert wrong.exit_code == 1 and "--run applies to a feed config" in wrong.stderr


def test_feed_refused_chunk_retried_by_the_next_run(tmp_path: Path) -> None:
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        folder = tmp_path / "feeds"
        folder.mkdir()
        (folder / "feed.txt").write_text("".join(f"10.88.0.{i}\n" for i in range(10)))
        cfg = folder / "feed.toml"
        cfg.write_text(f'source = "feed.txt"\nformat = "text"\nowner = "{OWNER}"\n'
                       "[batch]\npoll_interval = 0.02\nmax_records = 5\n")
        tc.set_faults([CAU_400])
        failed = cli("run", cfg, env=env_for(tc))
        assert failed.exit_code == 1
        tc.set_faults([])
        [run1] = runs_of(cfg)
        assert run1["status"] == "failed"
        job = feed_job(cfg, run1)
        message = chunk_message(job, 1)

        retry = cli("retry", cfg)
        assert retry.exit_code == 0, retry.output
        assert retry.stdout.splitlines() == [
            f"feed feed: run 1 (failed), job file {job}",
            f"chunk 1: 5 records, refused by the API: {message}: set back to built",
            "1 chunk (5 records) to send again: sent by the next `streambatch run` or worker cycle of this feed"]

        again = cli("run", cfg, env=env_for(tc))
        assert runs_of(cfg)[-1]["status"] == "done (resumed)", again.output
        assert all(tc.store.indicator(OWNER, "Address", f"10.88.0.{i}") for i in range(10))
        status = cli("status", "--run", "1", cfg)
        assert "sent 10: accepted 10, failed 0, warned 0, unprocessed 0; pending 0; rejected locally 0" in status.stdout


# -- the entry point and the help ------------------------------------------------------------

def test_entry_point_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    cfg = jsonl_feed(tmp_path, [])
    not_a_job = tmp_path / "notes.txt"
    not_a_job.write_text("hello")
    for args, expected in ((["status", cfg], "error: feed feed: no runs yet"),
                           (["errors", not_a_job], f"error: {not_a_job}: not a SQLite database"),
                           (["rejected", tmp_path / "absent.sqlite"], f"error: {tmp_path / 'absent.sqlite'}: no such job file"),
                           (["retry", tmp_path / "absent.sqlite"], f"error: {tmp_path / 'absent.sqlite'}: no such job file")):
        done = subprocess.run([sys.executable, "-m", "streambatch.cli", *map(str, args)], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 1, (args, done.stderr)
        assert done.stdout == ""
        assert done.stderr.startswith(expected) and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize("name", ["status", "errors", "rejected", "retry", "resume"])
def test_help_says_what_and_exit_codes(name: str) -> None:
    out = cli(name, "-h")
    assert out.exit_code == 0
    assert "Exit status: 0" in out.stdout and "1 " in out.stdout.split("Exit status:")[1]


def test_inspect_json_and_serve_port_validation(tc: Emulator, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from streambatch.cli import main

    with make_batch(tc, tmp_path / "job.sqlite", max_records=4) as batch:
        batch.adversary("A", xid="a-1")
        batch.save_all(hosts(6))
        batch.build()
    out = CliRunner().invoke(main, ["inspect", "--json", str(tmp_path / "job.sqlite")])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["owner"] == tc.owner and data["rejected"] == 0
    assert {(t["kind"], t["type"], t["chunked"]) for t in data["types"]} == {("group", "Adversary", 1),
                                                                             ("indicator", "Host", 6)}
    assert sum(c["indicators"] for c in data["chunks"]) == 6 and all(c["state"] == "built" for c in data["chunks"])
    bad = CliRunner().invoke(main, ["serve", "--port", "99999"])
    assert bad.exit_code == 2 and "99999" in bad.output
