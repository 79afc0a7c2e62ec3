"""End-to-end submits over HTTP against the emulator: a large mixed job lands exactly, per-record
errors map back to xids, halt flags, Delete jobs, synchronous jobs, Document content callbacks."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (api_paths, chunk_rows, error_rows, file_rows, hosts, make_batch, requests_to, tc)  # noqa: F401  (tc is a fixture)

from streambatch.emulator import Emulator
from streambatch.pipeline import BatchJobError

N_INDICATORS = 100_000
N_GROUPS = 200
N_DOCS = 50
GROUP_TYPES = ("Adversary", "Incident", "Campaign", "Threat", "Malware", "Intrusion Set", "Tool", "Tactic")


def _indicator(i: int) -> dict[str, Any]:
    """A deterministic raw indicator of one of ten types, with tags and an attribute."""
    kind = i % 10
    if kind == 0:
        typ, summary = "Host", f"h{i}.example.com"
    elif kind == 1:
        typ, summary = "Address", f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    elif kind == 2:
        typ, summary = "URL", f"http://u{i}.example.org/path/{i}"
    elif kind == 3:
        typ, summary = "EmailAddress", f"user{i}@example.net"
    elif kind == 4 and i % 100 == 4:
        # 1% Files only: the emulator's File lookup scans every File of the owner (see report)
        typ, summary = "File", hashlib.md5(str(i).encode()).hexdigest()
    elif kind == 4:
        typ, summary = "Host", f"alt{i}.example.com"
    elif kind == 5:
        typ, summary = "ASN", f"ASN{i}"
    elif kind == 6:
        typ, summary = "CIDR", f"172.{(i >> 8) & 255}.{i & 255}.0/24" if i < 65536 else f"11.{(i >> 8) & 255}.{i & 255}.0/24"
    elif kind == 7:
        typ, summary = "Mutex", f"Global\\mutex-{i}"
    elif kind == 8:
        typ, summary = "User Agent", f"agent/{i} (X11)"
    else:
        typ, summary = "Registry Key", f"HKEY_LOCAL_MACHINE\\Software\\k{i} : v{i} : REG_SZ"
    rec: dict[str, Any] = {
        "type": typ, "summary": summary, "xid": f"ind-{i}", "rating": i % 6, "confidence": i % 101,
        "tag": [{"name": f"tag-{i % 13}"}, {"name": "bulk"}],
        "attribute": [{"type": "Description", "value": f"description of {i}"}],
    }
    if i % 50 == 0:
        rec["associatedGroups"] = [{"groupXid": f"grp-{i % N_GROUPS}"}]
    return rec


def _doc_content(xid: str) -> bytes:
    return (f"content of {xid}\n".encode() * (1 + int(xid.rsplit("-", 1)[1]) * 37)) + bytes(range(256))


def test_large_mixed_job_lands_exactly(tc: Emulator, tmp_path: Path) -> None:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    batch = make_batch(tc, tmp_path / "job.sqlite", max_records=20_000, poll_timeout=120)
    owner = tc.owner

    # 200 groups via interface 1/2, with tags, attributes and group -> group associations
    for g in range(N_GROUPS):
        grp = batch.group(GROUP_TYPES[g % len(GROUP_TYPES)], f"group {g}", xid=f"grp-{g}")
        grp.tag(f"gtag-{g % 5}")
        grp.attribute("Description", f"group description {g}")
        if g > 0:
            grp.association(f"grp-{g - 1}")
        batch.save(grp)
    # 50 documents with content callbacks, each associated with a group
    calls: dict[str, int] = {}
    seen_group_first: dict[str, bool] = {}
    lock = threading.Lock()

    def content(xid: str) -> bytes:
        with lock:
            calls[xid] = calls.get(xid, 0) + 1
        seen_group_first[xid] = tc.store.group(owner, xid) is not None
        return _doc_content(xid)

    for d in range(N_DOCS):
        doc = batch.document(f"document {d}", file_name=f"doc{d}.txt", file_content=content, xid=f"doc-{d}")
        doc.association(f"grp-{d}")
        batch.save(doc)
    # indicator -> group associations through the top-level association API too
    batch.associate(batch.host("assoc-host.example.com", xid="assoc-host"), "grp-7")
    batch.save(batch.host("assoc-host.example.com", xid="assoc-host"))
    assert batch.save_all(_indicator(i) for i in range(N_INDICATORS)) == N_INDICATORS
    timings["stage"] = time.perf_counter() - started

    t = time.perf_counter()
    results = batch.submit_all()
    timings["submit_all"] = time.perf_counter() - t

    t = time.perf_counter()
    # every chunk completed, without errors, and uploaded its files
    rows = chunk_rows(batch)
    assert len(rows) >= 6  # 100,251 records cut at 20,000 per chunk
    assert {r["state"] for r in rows} == {"done"}
    assert all(r["error_count"] == 0 for r in rows)
    assert len(results) == len(rows)
    assert sum(r.get("successCount", 0) for r in results) == N_INDICATORS + 1 + N_GROUPS + N_DOCS
    assert not any(r.get("errors") for r in results)

    # counts by kind
    assert tc.store.count(owner, "indicator") == N_INDICATORS + 1
    assert tc.store.count(owner, "group") == N_GROUPS + N_DOCS
    assert len(requests_to(tc, "POST", "/v2/batch/createAndUpload")) == len(rows)

    # spot checks, field by field
    for i in list(range(0, N_INDICATORS, 397)) + [1, 2, 3, 4, 5, 6, 7, 8, 9, N_INDICATORS - 1]:
        want = _indicator(i)
        got = tc.store.indicator(owner, want["type"], want["summary"])
        assert got is not None, want
        assert got["type"] == want["type"]
        assert got["xid"] == want["xid"]
        assert got["rating"] == want["rating"]
        assert got["confidence"] == want["confidence"]
        assert sorted(t["name"] for t in got["tag"]) == sorted(t["name"] for t in want["tag"])
        assert [(a["type"], a["value"]) for a in got["attribute"]] == [("Description", f"description of {i}")]
        expected_groups = [g["groupXid"] for g in want.get("associatedGroups", [])]
        assert [g["groupXid"] for g in got["associatedGroups"]] == expected_groups
    for g in range(N_GROUPS):
        got = tc.store.group(owner, f"grp-{g}")
        assert got is not None
        assert (got["type"], got["name"]) == (GROUP_TYPES[g % len(GROUP_TYPES)], f"group {g}")
        assert [t["name"] for t in got["tag"]] == [f"gtag-{g % 5}"]
        assert [(a["type"], a["value"]) for a in got["attribute"]] == [("Description", f"group description {g}")]
        neighbours = {f"grp-{g - 1}", f"grp-{g + 1}"} & {f"grp-{k}" for k in range(N_GROUPS)}
        if g < N_DOCS:
            neighbours.add(f"doc-{g}")
        assert set(got["associatedGroupXid"]) == neighbours, g
    assoc_host = tc.store.indicator(owner, "Host", "assoc-host.example.com")
    assert assoc_host is not None and [g["groupXid"] for g in assoc_host["associatedGroups"]] == ["grp-7"]
    # associations: 199 group chain + 50 document links + 2,000 embedded + 1 top-level
    assert len(tc.store.associations(owner)) == (N_GROUPS - 1) + N_DOCS + N_INDICATORS // 50 + 1

    # documents: content callbacks called once each, after the group existed; bytes exact
    assert calls == {f"doc-{d}": 1 for d in range(N_DOCS)}
    assert all(seen_group_first.values()) and len(seen_group_first) == N_DOCS
    for d in range(N_DOCS):
        assert tc.store.document(owner, f"doc-{d}") == _doc_content(f"doc-{d}")
        assert tc.store.group(owner, f"doc-{d}")["fileName"] == f"doc{d}.txt"
    assert set(file_rows(batch).values()) == {("uploaded", None)}
    timings["verify"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    print("\n100k e2e timings: " + ", ".join(f"{k}={v:.2f}s" for k, v in timings.items()))


# -- per-record errors map back to xids ----------------------------------------------------------

EXPECTED_ERRORS = {
    ("ind-bad-assoc", "0x1007"),  # indicator -> group xid that exists nowhere
    ("ind-bad-attr", "0x2001"),  # attribute type the instance does not accept (partial loss)
    ("dup-x", "0x100A"),  # group xid already used by another group type in the owner
    ("g-bad-link", "0x1007"),  # group -> group xid that exists nowhere
}


@pytest.mark.parametrize("mode", ["queued", "sync-with-id"])
def test_per_record_errors_map_to_xids(tmp_path: Path, mode: str) -> None:
    knobs: dict[str, Any] = ({"synchronous_batch_save_limit": 0} if mode == "queued"
                             else {"synchronous_batch_save_limit": 1000, "sync_includes_id": True})
    with Emulator(db=tmp_path / "emu.sqlite", attribute_types=["Description"], **knobs) as tc:
        first = make_batch(tc, tmp_path / "first.sqlite")
        first.adversary("the original", xid="dup-x")
        first.submit_all()
        assert tc.store.group(tc.owner, "dup-x")["type"] == "Adversary"

        # all of these pass the client's own validation; preflight off: the server's errors are under test
        batch = make_batch(tc, tmp_path / "job.sqlite", preflight=False)
        batch.save_all([
            {"type": "Host", "summary": "bad-assoc.example.com", "xid": "ind-bad-assoc",
             "associatedGroups": [{"groupXid": "no-such-group"}]},
            {"type": "Host", "summary": "bad-attr.example.com", "xid": "ind-bad-attr",
             "attribute": [{"type": "Source", "value": "not accepted here"}]},
            {"type": "Incident", "name": "reuses an Adversary xid", "xid": "dup-x"},
            {"type": "Host", "summary": "good.example.com", "xid": "ind-good",
             "attribute": [{"type": "Description", "value": "fine"}]},
        ])
        bad_link = batch.adversary("bad link", xid="g-bad-link")
        bad_link.association("missing-group-2")
        batch.save(bad_link)
        results = batch.submit_all(halt_on_error=False)

        assert set(error_rows(batch)) == EXPECTED_ERRORS
        assert len(error_rows(batch)) == len(EXPECTED_ERRORS)
        reported = {(e["xid"], e["code"]) for r in results for e in r.get("errors", [])}
        assert reported == EXPECTED_ERRORS
        [chunk] = chunk_rows(batch)
        assert chunk["state"] == "done" and chunk["errors_fetched"] == 1
        assert chunk["error_count"] == len(EXPECTED_ERRORS)
        # what was valid landed; the refused group did not change the existing one
        assert tc.store.group(tc.owner, "dup-x")["type"] == "Adversary"
        assert tc.store.indicator(tc.owner, "Host", "good.example.com")["attribute"] == [
            {"type": "Description", "value": "fine"}]
        assert tc.store.indicator(tc.owner, "Host", "bad-attr.example.com")["attribute"] == []
        assert tc.store.group(tc.owner, "g-bad-link") is not None
        if mode == "queued":
            assert requests_to(tc, "GET", f"/v2/batch/{chunk['batch_id']}")


def test_a_synchronous_job_with_errors_is_sent_again_queued_to_learn_them(tmp_path: Path) -> None:
    """A small job answered Completed inline, without ``id`` (the documented default), that
    had errors: processing it again is harmless with Replace write types, so it is sent again
    as a queued job, whose id gives the per-record errors."""
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        batch = make_batch(tc, tmp_path / "job.sqlite")
        batch.save({"type": "Host", "summary": "x.example.com", "xid": "x",
                    "associatedGroups": [{"groupXid": "nowhere"}]})
        batch.save({"type": "Host", "summary": "ok.example.com", "xid": "ok"})
        [result] = batch.submit_all(halt_on_error=False)
        first, second = tc.store.jobs()
        assert (first["mode"], second["mode"]) == ("sync", "two-step")  # inline, then queued
        assert first["counters"]["errorCount"] == second["counters"]["errorCount"] == 1
        [chunk] = chunk_rows(batch)
        assert chunk["batch_id"] == second["id"] and chunk["error_count"] == 1 and chunk["errors_fetched"] == 1
        assert [e["xid"] for e in result["errors"]] == ["x"]
        assert [x for x, _code in error_rows(batch)] == ["x"]
        assert tc.store.indicator(tc.owner, "Host", "ok.example.com") is not None
        batch.close()


def test_a_synchronous_job_with_errors_and_appended_attributes_is_not_sent_again(tmp_path: Path) -> None:
    """With appended attributes a second processing would double them: the inline status is
    kept, its error count included, and no second job is made."""
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        batch = make_batch(tc, tmp_path / "job.sqlite", attribute_write_type="Append")
        batch.save({"type": "Host", "summary": "x.example.com", "xid": "x",
                    "associatedGroups": [{"groupXid": "nowhere"}],
                    "attribute": [{"type": "Description", "value": "once"}]})
        [result] = batch.submit_all(halt_on_error=False)
        assert result["errorCount"] == 1
        assert len(tc.store.jobs()) == 1
        [chunk] = chunk_rows(batch)
        assert chunk["error_count"] == 1 and chunk["batch_id"] is None
        batch.close()


@pytest.mark.parametrize("action", ["Create", "Delete"])
def test_a_job_whose_upload_failed_gets_its_data_when_polled(tmp_path: Path, action: str) -> None:
    """Create + upload (Delete jobs; and a synchronous job with errors sent again): when every
    upload attempt fails, the job waits in ``Created``; the next run uploads to it and
    finishes, instead of polling a job that can never complete."""
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        if action == "Delete":
            with make_batch(tc, tmp_path / "seed.sqlite") as seed:
                seed.save({"type": "Host", "summary": "x.example.com", "xid": "x"})
                seed.submit_all()
            batch = make_batch(tc, tmp_path / "job.sqlite", action="Delete")
            batch.save({"type": "Host", "summary": "x.example.com", "xid": "x"})
        else:
            batch = make_batch(tc, tmp_path / "job.sqlite")
            batch.save({"type": "Host", "summary": "x.example.com", "xid": "x",
                        "associatedGroups": [{"groupXid": "nowhere"}]})
        tc.set_faults([{"kind": "status", "method": "POST", "path": "/v2/batch/[0-9]*", "status": 503, "times": 0}])
        with pytest.raises(BatchJobError):
            batch.submit_all()
        tc.set_faults([])
        [chunk] = chunk_rows(batch)
        assert chunk["state"] == "submitted"
        assert tc.store.jobs()[-1]["status"] == "Created"
        [result] = batch.submit_all(halt_on_error=False)
        assert result["status"] == "Completed" and result["id"] == chunk["batch_id"]
        [chunk] = chunk_rows(batch)
        assert chunk["state"] == "done"
        if action == "Delete":
            assert tc.store.indicator(tc.owner, "Host", "x.example.com") is None
        else:
            assert [x for x, _code in error_rows(batch)] == ["x"]
        batch.close()


# -- halt flags ----------------------------------------------------------------------------------

def _two_chunk_batch(tc: Emulator, path: Path, **kwargs: Any):
    batch = make_batch(tc, path, max_records=5, **kwargs)
    batch.save_all(hosts(10))
    return batch


CAU_400 = {"kind": "status", "method": "POST", "path": "/v2/batch/createAndUpload", "status": 400, "times": 1}
CAU_500 = {"kind": "status", "method": "POST", "path": "/v2/batch/createAndUpload", "status": 500, "times": 0}


@pytest.mark.parametrize("flag, halt_on_error, raises", [
    (None, True, True), (None, False, False), (True, False, True), (False, True, False)])
def test_halt_on_batch_error_refusal_400(tc: Emulator, tmp_path: Path, flag: bool | None,
                                         halt_on_error: bool, raises: bool) -> None:
    batch = _two_chunk_batch(tc, tmp_path / "job.sqlite")
    batch.halt_on_batch_error = flag
    tc.set_faults([CAU_400])
    if raises:
        with pytest.raises(BatchJobError, match="HTTP 400"):
            batch.submit_all(halt_on_error=halt_on_error)
        assert chunk_rows(batch)[0]["state"] == "failed"
        assert tc.store.count(tc.owner) == 0
        return
    results = batch.submit_all(halt_on_error=halt_on_error)
    rows = chunk_rows(batch)
    assert [r["state"] for r in rows] == ["failed", "done"]
    assert "400" in rows[0]["message"] or "Injected" in rows[0]["message"]
    assert results[0]["status"] == "Failed" and results[0]["chunk"] == rows[0]["id"]
    assert results[1]["status"] == "Completed"
    # the run continued: the second chunk landed, the first did not
    assert tc.store.count(tc.owner, "indicator") == 5


@pytest.mark.parametrize("flag, halt_on_error, raises", [(False, True, False), (True, False, True), (None, True, True)])
def test_halt_on_batch_error_server_error_500(tc: Emulator, tmp_path: Path, flag: bool | None,
                                              halt_on_error: bool, raises: bool) -> None:
    """createAndUpload keeps failing with 500 (retries exhausted): halt_on_batch_error=False
    means log and carry on, with the chunk left failed or pending (not lost)."""
    batch = _two_chunk_batch(tc, tmp_path / "job.sqlite")
    batch.halt_on_batch_error = flag
    tc.set_faults([CAU_500])
    if raises:
        with pytest.raises(BatchJobError):
            batch.submit_all(halt_on_error=halt_on_error)
        assert chunk_rows(batch)[0]["state"] in ("built", "failed")
        return
    outcome: list[Any] = []
    runner = threading.Thread(target=lambda: outcome.append(_run(batch.submit_all, halt_on_error=halt_on_error)),
                              daemon=True)
    runner.start()
    runner.join(20)
    assert outcome, "submit_all did not return (does it keep re-sending the pending chunk?)"
    assert not isinstance(outcome[0], BaseException), f"submit_all raised {outcome[0]!r}"
    assert {r["state"] for r in chunk_rows(batch)} <= {"built", "failed"}
    assert len(chunk_rows(batch)) == 2  # both chunks were tried, none lost


def _run(fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except BaseException as exc:  # noqa: BLE001  (handed back to the test thread)
        return exc


POLL_400 = {"kind": "status", "method": "GET", "path": "/v2/batch/[0-9]*", "status": 400, "times": 0}


@pytest.mark.parametrize("flag, halt_on_error, raises", [
    (None, True, True), (None, False, False), (True, False, True), (False, True, False)])
def test_halt_on_poll_error(tc: Emulator, tmp_path: Path, flag: bool | None, halt_on_error: bool, raises: bool) -> None:
    with Emulator(db=tmp_path / "emu2.sqlite", synchronous_batch_save_limit=0) as tc2:
        batch = make_batch(tc2, tmp_path / "job.sqlite")
        batch.save_all(hosts(3))
        batch.halt_on_poll_error = flag
        tc2.set_faults([POLL_400])
        if raises:
            with pytest.raises(BatchJobError, match="polling"):
                batch.submit_all(halt_on_error=halt_on_error)
        else:
            batch.submit_all(halt_on_error=halt_on_error)
        [chunk] = chunk_rows(batch)
        assert chunk["state"] == "submitted" and chunk["batch_id"] is not None  # can be resumed
        tc2.set_faults([])
        batch.submit_all()
        assert chunk_rows(batch)[0]["state"] == "done"
        assert len(requests_to(tc2, "POST", "/v2/batch/createAndUpload")) == 1


def _raising(xid: str) -> bytes:
    raise RuntimeError(f"cannot read content for {xid}")


def _none(xid: str) -> None:
    return None


@pytest.mark.parametrize("callback, text", [(_raising, "cannot read content for doc-bad"), (_none, "None")])
@pytest.mark.parametrize("flag, halt_on_error, raises", [
    (False, True, False), (True, False, True), (None, True, True), (None, False, False)])
def test_halt_on_file_error(tc: Emulator, tmp_path: Path, callback: Any, text: str, flag: bool | None,
                            halt_on_error: bool, raises: bool) -> None:
    batch = make_batch(tc, tmp_path / "job.sqlite")
    batch.document("good doc", file_name="good.txt", file_content=lambda xid: b"good bytes", xid="doc-good")
    batch.document("bad doc", file_name="bad.txt", file_content=callback, xid="doc-bad")
    batch.halt_on_file_error = flag
    if raises:
        with pytest.raises(BatchJobError, match="doc-bad"):
            batch.submit_all(halt_on_error=halt_on_error)
    else:
        [result] = batch.submit_all(halt_on_error=halt_on_error)
        assert {f["xid"]: f["uploaded"] for f in result["files"]} == {"doc-good": True, "doc-bad": False}
        assert chunk_rows(batch)[0]["state"] == "done"
    files = file_rows(batch)
    assert files["doc-bad"][0] == "failed" and text in (files["doc-bad"][1] or "")
    assert files["doc-good"] == ("uploaded", None)
    assert tc.store.document(tc.owner, "doc-good") == b"good bytes"
    assert tc.store.document(tc.owner, "doc-bad") is None
    assert tc.store.group(tc.owner, "doc-bad") is not None


# -- Delete jobs ---------------------------------------------------------------------------------

def _delete_records() -> list[dict[str, Any]]:
    return ([{"type": "Adversary", "name": f"adv {i}", "xid": f"adv-{i}"} for i in range(5)]
            + [{"type": "Host", "summary": f"del{i}.example.com", "xid": f"del-{i}", "tag": [{"name": "t"}]}
               for i in range(150)]
            + [{"type": "Address", "summary": f"192.0.2.{i}", "xid": f"addr-{i}"} for i in range(20)])


def test_delete_job_removes_what_create_made(tc: Emulator, tmp_path: Path) -> None:
    keep = make_batch(tc, tmp_path / "keep.sqlite")
    keep.save_all(hosts(3, prefix="keep"))
    keep.submit_all()
    create = make_batch(tc, tmp_path / "create.sqlite", max_records=100)
    create.save_all(_delete_records())
    create.submit_all()
    assert tc.store.count(tc.owner, "group") == 5 and tc.store.count(tc.owner, "indicator") == 173
    cau_before = len(requests_to(tc, "POST", "/v2/batch/createAndUpload"))
    n_before = len(tc.requests)

    delete = make_batch(tc, tmp_path / "delete.sqlite", action="Delete", max_records=100)
    delete.save_all(_delete_records())
    results = delete.submit_all()
    assert tc.store.count(tc.owner, "group") == 0
    assert tc.store.count(tc.owner, "indicator") == 3  # only what the Delete job did not name
    assert all(tc.store.indicator(tc.owner, "Host", f"keep{i}.example.com") for i in range(3))
    assert all(r["errorCount"] == 0 for r in results)
    # on the wire: E1 + E2 per chunk, never createAndUpload
    wire = tc.requests[n_before:]
    assert len(requests_to(tc, "POST", "/v2/batch/createAndUpload")) == cau_before
    chunks = chunk_rows(delete)
    assert len(chunks) == 2 and all(c["state"] == "done" for c in chunks)
    e1 = [r for r in wire if r["method"] == "POST" and r["path"].endswith("/v2/batch")]
    e2 = [r for r in wire if r["method"] == "POST" and any(r["path"].endswith(f"/v2/batch/{c['batch_id']}") for c in chunks)]
    assert len(e1) == len(chunks) and len(e2) == len(chunks)
    assert all(r["content_type"] == "application/octet-stream" for r in e2)
    assert all(tc.store.job(c["batch_id"])["settings"]["action"] == "Delete" for c in chunks)


# -- synchronous jobs ----------------------------------------------------------------------------

@pytest.mark.parametrize("includes_id", [False, True])
def test_synchronous_job_is_not_polled(tmp_path: Path, includes_id: bool) -> None:
    with Emulator(db=tmp_path / "emu.sqlite", synchronous_batch_save_limit=50, sync_includes_id=includes_id) as tc:
        batch = make_batch(tc, tmp_path / "job.sqlite")
        batch.save_all(hosts(20))
        [result] = batch.submit_all()
        assert result["status"] == "Completed" and result["successCount"] == 20
        assert ("id" in result) == includes_id
        [chunk] = chunk_rows(batch)
        assert chunk["state"] == "done"
        assert (chunk["batch_id"] is not None) == includes_id
        polls = [p for m, p in api_paths(tc) if m == "GET" and p.startswith("/v2/batch/")]
        assert polls == []
        preflight = [("GET", "/v2/types/indicatorTypes"), ("GET", "/v3/attributeTypes"),
                     ("GET", "/v3/security/exclusionLists")]  # the instance's rules, read once per job
        assert api_paths(tc) == [*preflight, ("POST", "/v2/batch/createAndUpload")]
        assert tc.store.count(tc.owner, "indicator") == 20


# -- content callbacks ---------------------------------------------------------------------------

class _SlowStream:
    """A file-like object whose reads are slow; tracks how many are open at once."""

    def __init__(self, data: bytes, tracker: "_Tracker") -> None:
        self._data = data
        self._pos = 0
        self._tracker = tracker
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        time.sleep(0.01)
        end = len(self._data) if size is None or size < 0 else self._pos + size
        out = self._data[self._pos:end]
        self._pos += len(out)
        return out

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else (len(self._data) + pos if whence == 2 else self._pos + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def __len__(self) -> int:
        return len(self._data) - self._pos

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._tracker.leave()


class _Tracker:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def enter(self) -> None:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1


@pytest.mark.parametrize("concurrency", [1, 3])
def test_content_callbacks_once_after_group_and_bounded(tc: Emulator, tmp_path: Path, concurrency: int) -> None:
    tracker = _Tracker()
    calls: list[str] = []
    group_present: dict[str, bool] = {}
    owner = tc.owner

    def content(xid: str) -> _SlowStream:
        tracker.enter()
        calls.append(xid)
        group_present[xid] = tc.store.group(owner, xid) is not None
        return _SlowStream((xid.encode() + b":") * 20_000, tracker)

    batch = make_batch(tc, tmp_path / "job.sqlite", file_concurrency=concurrency, max_records=4)
    for d in range(10):
        batch.document(f"doc {d}", file_name=f"d{d}.bin", file_content=content, xid=f"sdoc-{d}")
    batch.save_all(hosts(6))
    batch.submit_all()
    assert sorted(calls) == sorted(f"sdoc-{d}" for d in range(10))  # each exactly once
    assert all(group_present.values())
    assert 1 <= tracker.peak <= concurrency
    assert tracker.active == 0  # every stream was closed
    for d in range(10):
        assert tc.store.document(owner, f"sdoc-{d}") == (f"sdoc-{d}".encode() + b":") * 20_000


def test_batch_takes_an_emulator_directly_and_errors_without_a_batch_id_are_the_jobs(tmp_path: Path) -> None:
    from streambatch import Batch

    with Emulator(db=tmp_path / "emu.sqlite") as emu:
        with Batch(emu.owner, tmp_path / "pre.sqlite", api=emu, poll_interval=0.02) as pre:
            pre.incident("Colliding", xid="g-9")
            pre.submit_all()
        with Batch(emu.owner, tmp_path / "job.sqlite", api=emu, poll_interval=0.02, max_records=3) as batch:
            batch.adversary("Adversary", xid="g-9")
            batch.save_all(hosts(5))
            batch.submit_all(halt_on_error=False)
            assert [(e["xid"], e["severity"]) for e in batch.errors()] == [("g-9", "Error")]
            assert batch.emulator is None  # the given emulator, not an embedded one
        assert emu.store.count(kind="indicator") == 5
    with pytest.raises(TypeError, match="Emulator or an ApiConfig"):
        Batch("O", tmp_path / "x.sqlite", api="http://example.invalid")
