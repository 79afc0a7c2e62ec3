"""The Submit section of the incumbent's batch guide, run against the emulator: Option 1
(submit_all and the halt overrides) and Option 2 (each step by hand)."""

from __future__ import annotations

from pathlib import Path

from e2e_helpers import make_batch, requests_to
from streambatch.emulator import Emulator


def _stage(batch) -> None:
    adversary = batch.adversary("seed adversary", xid="seed-adv")
    adversary.tag("Example Tag")
    document = batch.document("seed document", "seed.txt", xid="seed-doc",
                              file_content=lambda xid: f"content of {xid}".encode())
    document.association("seed-adv")
    for i in range(30):
        batch.address(f"10.30.0.{i}").association("seed-adv")
    batch.add_indicator({"type": "Host", "summary": "seed.example.com", "xid": "seed-host",
                         "associatedGroups": [{"groupXid": "no-such-group"}]})  # the server refuses the link


def test_option_1_submit_all(tmp_path: Path) -> None:
    with Emulator(db=tmp_path / "emu.sqlite", synchronous_batch_save_limit=0) as tc:
        batch = make_batch(tc, tmp_path / "job.sqlite")
        batch.halt_on_batch_error = False
        batch.halt_on_file_error = False
        batch.halt_on_poll_error = False
        _stage(batch)
        batch_data = batch.submit_all()
        errors = []
        [errors.extend(d.get("errors", [])) for d in batch_data if d.get("errors", None)]
        assert [(e["xid"], e["code"]) for e in errors] == [("seed-host", "0x1007")]
        assert sum(d["successCount"] for d in batch_data) == 33
        assert tc.store.document(tc.owner, "seed-doc") == b"content of seed-doc"
        assert tc.store.group(tc.owner, "seed-adv")["tag"] == [{"name": "Example Tag"}]
        batch.close()


def test_option_2_each_step(tmp_path: Path) -> None:
    with Emulator(db=tmp_path / "emu.sqlite", synchronous_batch_save_limit=0) as tc:
        batch = make_batch(tc, tmp_path / "job.sqlite")
        _stage(batch)
        # submit batch job create and upload request
        batch_data = batch.submit_create_and_upload().get("data").get("batchStatus")
        # check if job requires polling
        batch_id = batch_data.get("id")
        assert batch_id is not None  # queued: the emulator processes nothing inline here
        batch_status = batch.poll(batch_id)
        assert batch_status["data"]["batchStatus"]["status"] == "Completed"
        # check for errors
        assert batch_status.get("data", {}).get("batchStatus", {}).get("errorCount", 0) > 0
        errors = batch.errors(batch_id)
        assert [(e["xid"], e["code"]) for e in errors] == [("seed-host", "0x1007")]
        # submit any documents or reports
        upload_status = batch.submit_files()
        assert upload_status == [{"xid": "seed-doc", "uploaded": True}]
        assert tc.store.document(tc.owner, "seed-doc") == b"content of seed-doc"
        # the job file followed along: the chunk is done, its errors stored
        assert batch.job.conn.execute("SELECT state, batch_id, errors_fetched FROM chunks").fetchall() == \
            [("done", batch_id, 1)]
        batch.close()


def test_synchronous_job_has_no_id_to_poll(tmp_path: Path) -> None:
    with Emulator(db=tmp_path / "emu.sqlite") as tc:  # small jobs are processed inline
        batch = make_batch(tc, tmp_path / "job.sqlite")
        batch.save(batch.address("10.31.0.1"))
        batch_data = batch.submit_create_and_upload().get("data").get("batchStatus")
        assert batch_data.get("id") is None and batch_data["status"] == "Completed"
        assert requests_to(tc, "GET", "/v2/batch/1") == []
        batch.close()


def test_two_step_job_and_data(tmp_path: Path) -> None:
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        batch = make_batch(tc, tmp_path / "job.sqlite")
        batch_id = batch.submit_job()
        assert batch.submit_data(batch_id, {"indicator": [{"type": "Address", "summary": "10.32.0.1",
                                                          "xid": "two-step"}]}) == {"status": "Queued"}
        assert batch.poll(batch_id)["data"]["batchStatus"]["successCount"] == 1
        assert tc.store.indicator(tc.owner, "Address", "10.32.0.1")["xid"] == "two-step"
        batch.close()
