"""Submitting through the emulator's fault plans: throttling, 5xx bursts, dropped connections,
jobs that never complete. Runs must finish (or stop clearly) without losing or duplicating data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import chunk_rows, hosts, make_batch, requests_to

from streambatch.emulator import Emulator
from streambatch.pipeline import BatchJobError, PollTimeout

CAU = "/v2/batch/createAndUpload"


def _records(n: int = 30) -> list[dict[str, Any]]:
    return hosts(n, attribute=[{"type": "Description", "value": "one"}], tag=[{"name": "t"}])


def _assert_exactly_once(tc: Emulator, n: int = 30) -> None:
    assert tc.store.count(tc.owner, "indicator") == n
    for i in range(n):
        got = tc.store.indicator(tc.owner, "Host", f"h{i}.example.com")
        assert got is not None and got["attribute"] == [{"type": "Description", "value": "one"}], got
        assert got["tag"] == [{"name": "t"}]


@pytest.fixture(params=["sync", "queued"])
def tc(request: pytest.FixtureRequest, tmp_path: Path):
    limit = 1000 if request.param == "sync" else 0
    with Emulator(db=tmp_path / "emu.sqlite", synchronous_batch_save_limit=limit) as emulator:
        yield emulator


@pytest.fixture
def queued(tmp_path: Path):
    with Emulator(db=tmp_path / "emu.sqlite", synchronous_batch_save_limit=0) as emulator:
        yield emulator


def test_429_with_retry_after_is_retried(tc: Emulator, tmp_path: Path) -> None:
    tc.set_faults([{"kind": "status", "method": "POST", "path": CAU, "status": 429, "retry_after": 0.05, "times": 2}])
    batch = make_batch(tc, tmp_path / "job.sqlite")
    batch.save_all(_records())
    [result] = batch.submit_all()
    assert result["status"] == "Completed"
    assert result["successCount"] == 30 and result["errorCount"] == 0  # the retry carried the data
    assert [r["status"] for r in requests_to(tc, "POST", CAU)][:2] == [429, 429]
    assert len(requests_to(tc, "POST", CAU)) == 3
    assert len(tc.store.jobs()) == 1  # the refused attempts made no job
    _assert_exactly_once(tc)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_burst_on_polling_is_retried(queued: Emulator, tmp_path: Path, status: int) -> None:
    tc = queued
    tc.set_faults([{"kind": "status", "method": "GET", "path": "/v2/batch/[0-9]*", "status": status, "times": 3}])
    batch = make_batch(tc, tmp_path / "job.sqlite")
    batch.save_all(_records())
    [result] = batch.submit_all()
    assert result["status"] == "Completed"
    [chunk] = chunk_rows(batch)
    polls = requests_to(tc, "GET", f"/v2/batch/{chunk['batch_id']}")
    assert [p["status"] for p in polls[:3]] == [status] * 3 and polls[-1]["status"] == 200
    assert chunk["state"] == "done"
    assert len(requests_to(tc, "POST", CAU)) == 1
    _assert_exactly_once(tc)


@pytest.mark.parametrize("process", [False, True])
def test_5xx_on_create_and_upload_retried_with_replace(tc: Emulator, tmp_path: Path, process: bool) -> None:
    """Default attributeWriteType Replace: a repeat converges, so the POST is retried, even when
    the server processed the failed attempt."""
    tc.set_faults([{"kind": "status", "method": "POST", "path": CAU, "status": 500, "times": 2, "process": process}])
    batch = make_batch(tc, tmp_path / "job.sqlite")
    assert batch.attribute_write_type == "Replace"
    batch.save_all(_records())
    [result] = batch.submit_all()
    assert result["status"] == "Completed"
    assert result["successCount"] == 30 and result["errorCount"] == 0  # the retry carried the data
    assert [r["status"] for r in requests_to(tc, "POST", CAU)][:2] == [500, 500]
    assert len(requests_to(tc, "POST", CAU)) == 3
    assert chunk_rows(batch)[0]["state"] == "done"
    _assert_exactly_once(tc)


def test_500_on_create_and_upload_with_append_stops_and_resumes(tc: Emulator, tmp_path: Path) -> None:
    tc.set_faults([{"kind": "status", "method": "POST", "path": CAU, "status": 500, "times": 0}])
    batch = make_batch(tc, tmp_path / "job.sqlite", attribute_write_type="Append")
    batch.save_all(_records())
    with pytest.raises(BatchJobError) as info:
        batch.submit_all()
    message = str(info.value)
    assert "createAndUpload" in message and "500" in message and "pending" in message
    assert len(requests_to(tc, "POST", CAU)) == 1  # not retried: a repeat could append twice
    [chunk] = chunk_rows(batch)
    assert chunk["state"] == "built" and chunk["batch_id"] is None
    assert tc.store.count(tc.owner) == 0

    tc.set_faults([])
    [result] = batch.submit_all()
    assert result["status"] == "Completed"
    assert chunk_rows(batch)[0]["state"] == "done"
    assert len(requests_to(tc, "POST", CAU)) == 2
    _assert_exactly_once(tc)


def test_append_resume_in_a_new_process(tc: Emulator, tmp_path: Path) -> None:
    """The same, resumed by a new Batch object on the same job file (a new process)."""
    tc.set_faults([{"kind": "status", "method": "POST", "path": CAU, "status": 502, "times": 0}])
    batch = make_batch(tc, tmp_path / "job.sqlite", attribute_write_type="Append", max_records=10)
    batch.save_all(_records())
    with pytest.raises(BatchJobError):
        batch.submit_all()
    batch.close()
    tc.set_faults([])
    again = make_batch(tc, tmp_path / "job.sqlite")
    assert again.attribute_write_type == "Append"
    results = again.submit_all()
    assert [r["status"] for r in results] == ["Completed"] * 3
    assert [c["state"] for c in chunk_rows(again)] == ["done"] * 3
    _assert_exactly_once(tc)


def test_dropped_connection_on_create_and_upload(tc: Emulator, tmp_path: Path) -> None:
    """The server processed the job, then the connection broke mid-response: with Replace the
    chunk is sent again and converges."""
    tc.set_faults([{"kind": "drop", "method": "POST", "path": CAU}])
    batch = make_batch(tc, tmp_path / "job.sqlite")
    batch.save_all(_records())
    [result] = batch.submit_all()
    assert result["status"] == "Completed" and result["successCount"] == 30 and result["errorCount"] == 0
    assert chunk_rows(batch)[0]["state"] == "done"
    assert tc.faults.as_list()[0]["fired"] == 1
    assert len(requests_to(tc, "POST", CAU)) == 2
    _assert_exactly_once(tc)


def test_dropped_connection_on_polling(queued: Emulator, tmp_path: Path) -> None:
    tc = queued
    tc.set_faults([{"kind": "drop", "method": "GET", "path": "/v2/batch/[0-9]*", "times": 2}])
    batch = make_batch(tc, tmp_path / "job.sqlite")
    batch.save_all(_records())
    [result] = batch.submit_all()
    assert result["status"] == "Completed" and result["successCount"] == 30
    assert tc.faults.as_list()[0]["fired"] == 2
    assert chunk_rows(batch)[0]["state"] == "done"
    assert len(requests_to(tc, "POST", CAU)) == 1
    _assert_exactly_once(tc)


def test_dropped_connection_with_append_is_not_resent_blindly(tc: Emulator, tmp_path: Path) -> None:
    """The server processed the job, then the connection broke: with Append the client cannot
    know, so it stops and keeps the chunk pending instead of sending it twice."""
    tc.set_faults([{"kind": "drop", "method": "POST", "path": CAU}])
    batch = make_batch(tc, tmp_path / "job.sqlite", attribute_write_type="Append")
    batch.save_all(_records())
    with pytest.raises(BatchJobError):
        batch.submit_all()
    assert len(requests_to(tc, "POST", CAU)) == 1
    assert chunk_rows(batch)[0]["state"] == "built"


def test_job_that_never_completes(queued: Emulator, tmp_path: Path) -> None:
    tc = queued
    tc.set_faults([{"kind": "running"}])
    batch = make_batch(tc, tmp_path / "job.sqlite", poll_timeout=0.5)
    batch.save_all(_records())
    with pytest.raises(PollTimeout) as info:
        batch.submit_all()
    [chunk] = chunk_rows(batch)
    assert chunk["state"] == "submitted" and chunk["batch_id"] is not None
    message = str(info.value)
    assert str(chunk["batch_id"]) in message and "did not complete" in message and "Running" in message
    assert tc.store.job(chunk["batch_id"])["status"] == "Running"

    tc.set_faults([])
    [result] = batch.submit_all()
    assert result["status"] == "Completed" and result["id"] == chunk["batch_id"]
    assert len(requests_to(tc, "POST", CAU)) == 1  # polled again, never re-sent
    assert chunk_rows(batch)[0]["state"] == "done"
    _assert_exactly_once(tc)


def test_job_that_never_completes_resumed_by_a_new_batch(queued: Emulator, tmp_path: Path) -> None:
    tc = queued
    tc.set_faults([{"kind": "running"}])
    batch = make_batch(tc, tmp_path / "job.sqlite", poll_timeout=0.3)
    batch.save_all(_records())
    with pytest.raises(PollTimeout):
        batch.submit_all()
    batch.close()
    tc.set_faults([])
    again = make_batch(tc, tmp_path / "job.sqlite")
    results = again.submit_all()
    assert [r["status"] for r in results] == ["Completed"]
    assert len(requests_to(tc, "POST", CAU)) == 1
    _assert_exactly_once(tc)


def test_bare_running_poll_replies(tmp_path: Path) -> None:
    with Emulator(db=tmp_path / "emu.sqlite", synchronous_batch_save_limit=0, bare_running=True) as tc:
        tc.set_faults([{"kind": "slow", "rate": 200}])
        batch = make_batch(tc, tmp_path / "job.sqlite")
        batch.save_all(_records())
        [result] = batch.submit_all()
        assert result["status"] == "Completed"
        [chunk] = chunk_rows(batch)
        assert len(requests_to(tc, "GET", f"/v2/batch/{chunk['batch_id']}")) >= 2
        _assert_exactly_once(tc)
