"""Every submit path with gzip chunk files and without, for Create and Delete jobs, end to end
against the emulator: what lands must not depend on how the chunk file is stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_helpers import chunk_rows, hosts, make_batch, requests_to, tc  # noqa: F401

from streambatch.emulator import Emulator

N = 30


def _landed(tc: Emulator, n: int = N) -> int:
    return sum(tc.store.indicator(tc.owner, "Host", f"h{i}.example.com") is not None for i in range(n))


@pytest.mark.parametrize("gzip", [False, True])
def test_create_and_upload(tc: Emulator, tmp_path: Path, gzip: bool) -> None:
    with make_batch(tc, tmp_path / "job.sqlite", gzip=gzip, max_records=200) as batch:
        batch.save_all(hosts(N))
        batch.submit_all()
        assert {r["state"] for r in chunk_rows(batch)} == {"done"}
    assert _landed(tc) == N


@pytest.mark.parametrize("gzip", [False, True])
def test_delete_job_create_then_upload(tc: Emulator, tmp_path: Path, gzip: bool) -> None:
    with make_batch(tc, tmp_path / "add.sqlite") as batch:
        batch.save_all(hosts(N))
        batch.submit_all()
    assert _landed(tc) == N
    with make_batch(tc, tmp_path / "del.sqlite", gzip=gzip, action="Delete") as batch:
        batch.save_all(hosts(N))
        batch.submit_all()
        assert {r["state"] for r in chunk_rows(batch)} == {"done"}
    assert _landed(tc) == 0
    assert requests_to(tc, "POST", "/v2/batch")  # the two-step flow


@pytest.mark.parametrize("gzip", [False, True])
def test_synchronous_errors_sent_again_as_a_queued_job(tc: Emulator, tmp_path: Path, gzip: bool) -> None:
    with make_batch(tc, tmp_path / "pre.sqlite") as pre:
        pre.incident("Colliding", xid="g-1")
        pre.submit_all()
    with make_batch(tc, tmp_path / "job.sqlite", gzip=gzip) as batch:
        batch.adversary("Adversary", xid="g-1")
        batch.save_all(hosts(N))
        batch.submit_all(halt_on_error=False)
        rows = chunk_rows(batch)
        assert [r["state"] for r in rows] == ["done"] and rows[0]["batch_id"] is not None  # itemized
        assert [x for (x, _code) in batch.job.conn.execute("SELECT xid, code FROM errors")] == ["g-1"]
    assert _landed(tc) == N


@pytest.mark.parametrize("gzip", [False, True])
@pytest.mark.parametrize("action", ["Create", "Delete"])
def test_upload_failed_after_create_is_uploaded_again_when_polled(tc: Emulator, tmp_path: Path, gzip: bool,
                                                                   action: str) -> None:
    if action == "Delete":
        with make_batch(tc, tmp_path / "add.sqlite") as batch:
            batch.save_all(hosts(N))
            batch.submit_all()
    with make_batch(tc, tmp_path / "job.sqlite", gzip=gzip, action=action) as batch:
        batch.save_all(hosts(N))
        if action == "Create":  # make the Create job take the two-step path: an inline job with an error
            batch.adversary("Adversary", xid="g-2")
            with make_batch(tc, tmp_path / "pre.sqlite") as pre:
                pre.incident("Colliding", xid="g-2")
                pre.submit_all()
        tc.set_faults([{"kind": "status", "method": "POST", "path": "/v2/batch/[0-9]*", "status": 400, "times": 1}])
        batch.submit_all(halt_on_error=False)
        assert [r["state"] for r in chunk_rows(batch)] == ["submitted"]  # the job exists, without its data
        batch.submit_all(halt_on_error=False)  # the next run polls it, finds it Created, uploads again
        assert [r["state"] for r in chunk_rows(batch)] == ["done"]
    assert _landed(tc) == (N if action == "Create" else 0)
