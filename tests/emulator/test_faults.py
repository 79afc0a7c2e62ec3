"""Fault injection (start-up plan and control endpoint) and the emulator-only control routes."""

from __future__ import annotations

import json
import time

import pytest
import requests
from emu_client import Api, batch_status, control

from streambatch.emulator import Emulator
from streambatch.emulator.server import redact_headers

HOST = {"indicator": [{"type": "Host", "summary": "example.com"}]}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_status_fault_on_nth_request(status: int) -> None:
    plan = [{"kind": "status", "method": "GET", "path": "/v2/owners", "nth": 2, "times": 2, "status": status}]
    with Emulator(faults=plan) as tc:
        api = Api(tc)
        codes = [api.get("/v2/owners", prefix=p).status_code for p in ("/api", "", "/api", "")]
        assert codes == [200, status, status, 200]
        assert [e["fault"] for e in tc.requests] == [None, ["status"], ["status"], None]


def test_429_with_retry_after_and_request_not_processed(tc: Emulator, api: Api) -> None:
    control(tc, "POST", "faults", {"kind": "status", "method": "POST", "path": "/v2/batch/createAndUpload",
                                   "status": 429, "retry_after": 3})
    r = api.create_and_upload(HOST)
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert r.headers["Content-Type"] == "application/json" and r.json()["status"] == "Failure"
    assert tc.store.jobs() == []  # refused before processing
    assert api.create_and_upload(HOST).status_code == 200  # times=1: only the first


def test_status_fault_after_processing(tc: Emulator, api: Api) -> None:
    tc.set_faults([{"kind": "status", "path": "/v2/batch/createAndUpload", "status": 502, "process": True}])
    assert api.create_and_upload(HOST).status_code == 502
    assert len(tc.store.jobs()) == 1 and tc.store.count(tc.owner) == 1


def test_delay(tc: Emulator, api: Api) -> None:
    tc.set_faults([{"kind": "delay", "path": "/v2/owners", "seconds": 0.3}])
    started = time.monotonic()
    assert api.get("/v2/owners").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    api.get("/v2/owners")
    assert time.monotonic() - started < 0.3


def test_drop_mid_response_after_processing(tc: Emulator, api: Api) -> None:
    tc.set_faults([{"kind": "drop", "method": "POST", "path": "/v2/batch"}])
    with pytest.raises(requests.exceptions.RequestException):
        api.post("/v2/batch", json=api.settings())
    assert len(tc.store.jobs()) == 1  # the server did create the job
    api.session = requests.Session()
    assert api.post("/v2/batch", json=api.settings()).status_code == 201  # server still healthy


def test_drop_before_processing(tc: Emulator, api: Api) -> None:
    tc.set_faults([{"kind": "drop", "path": "/v2/batch/createAndUpload", "process": False}])
    with pytest.raises(requests.exceptions.RequestException):
        api.create_and_upload(HOST)
    assert tc.store.jobs() == []


def test_slow_processing() -> None:
    content = {"indicator": [{"type": "Host", "summary": f"h{i}.example.com"} for i in range(40)]}
    with Emulator(synchronous_batch_save_limit=0, faults=[{"kind": "slow", "rate": 100}]) as tc:
        api = Api(tc)
        started = time.monotonic()
        api.run(content)
        assert time.monotonic() - started >= 0.3  # 40 records at 100/s
        job_id = api.last_job_id()
        assert tc.store.job(job_id)["counters"]["successIndicatorCount"] == 40


def test_running_state_is_observable_with_rate() -> None:
    content = {"indicator": [{"type": "Host", "summary": f"h{i}.example.com"} for i in range(30)]}
    with Emulator(synchronous_batch_save_limit=0, rate=100) as tc:
        api = Api(tc)
        job_id = api.create_and_upload(content).json()["data"]["batchStatus"]["id"]
        states = []
        while not states or states[-1] != "Completed":
            states.append(batch_status(api.get(f"/v2/batch/{job_id}").json())["status"])
            time.sleep(0.02)
        assert "Running" in states and states[-1] == "Completed"


def test_running_forever_until_fault_removed() -> None:
    with Emulator(faults=[{"kind": "running"}]) as tc:
        api = Api(tc)
        r = api.create_and_upload(HOST)  # small, but held jobs are never answered inline
        assert r.status_code == 201
        job_id = r.json()["data"]["batchStatus"]["id"]
        time.sleep(0.2)
        for _ in range(3):
            assert batch_status(api.get(f"/v2/batch/{job_id}").json())["status"] == "Running"
        second = api.create_and_upload(HOST).json()["data"]["batchStatus"]
        assert second["status"] == "Completed"  # the fault held only the first job
        control(tc, "DELETE", "faults")
        assert api.wait(job_id)["successCount"] == 1


def test_fault_plan_control_endpoint_validation(tc: Emulator) -> None:
    r = requests.post(f"{tc.base}/_emulator/faults", json={"kind": "explode"})
    assert r.status_code == 400
    r = requests.post(f"{tc.base}/_emulator/faults", json={"kind": "delay", "colour": "red"})
    assert r.status_code == 400
    plan = control(tc, "PUT", "faults", [{"kind": "status", "status": 500, "path": "/v2/*"}])
    assert plan[0]["status"] == 500 and plan[0]["times"] == 1
    assert control(tc, "GET", "faults")[0]["kind"] == "status"
    assert control(tc, "DELETE", "faults") == []


def test_state_requests_and_reset(tc: Emulator, api: Api) -> None:
    api.run({"group": [{"type": "Document", "name": "d", "xid": "d-1"}],
             "indicator": [{"type": "Host", "summary": "a.example.com", "associatedGroups": [{"groupXid": "d-1"}]}]})
    api.request("POST", "/v2/groups/documents/d-1/upload", params={"owner": tc.owner}, data=b"abc",
                headers={"Content-Type": "application/octet-stream"})
    state = control(tc, "GET", "state")
    demo = state["owners"][tc.owner]
    assert [g["xid"] for g in demo["groups"]] == ["d-1"]
    assert [i["summary"] for i in demo["indicators"]] == ["a.example.com"]
    assert demo["associations"][0]["sides"][0]["kind"] == "group"
    assert demo["files"] == [{"xid": "d-1", "type": "Document", "size": 3}]
    assert state["owners"]["Common Community"]["groups"] == []
    assert len(state["jobs"]) == 1
    log = control(tc, "GET", "requests")
    assert [e["method"] for e in log] == ["POST", "POST"]
    # over HTTP (unauthenticated) credential values are redacted; in the process they are kept
    assert log[0]["headers"]["Authorization"] == "<redacted>"
    assert tc.requests[0]["headers"]["Authorization"].startswith(f"TC {tc.access_id}:")
    assert "Timestamp" in log[0]["headers"]
    assert log[1]["content_type"] == "application/octet-stream" and log[1]["query"] == "owner=Demo+Organization"
    assert log == json.loads(json.dumps([{**e, "headers": redact_headers(e["headers"])} for e in tc.requests]))
    control(tc, "POST", "reset")
    assert tc.store.count(tc.owner) == 0 and tc.store.jobs() == [] and tc.requests == []
    assert tc.store.document(tc.owner, "d-1") is None


def test_reset_method_and_persistence(tmp_path) -> None:
    db = tmp_path / "emu.sqlite"
    with Emulator(db=db) as tc:
        Api(tc).run(HOST)
    with Emulator(db=db) as tc:  # the data file survives a restart
        assert tc.store.indicator(tc.owner, "Host", "example.com") is not None
        assert len(tc.store.jobs()) == 1
        tc.reset()
        assert tc.store.count(tc.owner) == 0


def test_concurrent_requests(tc: Emulator) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def submit(i: int) -> int:
        api = Api(tc)
        content = {"indicator": [{"type": "Host", "summary": f"c{i}-{j}.example.com"} for j in range(20)]}
        return api.run(content)["successIndicatorCount"]

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(submit, range(16))) == 320
    assert tc.store.count(tc.owner) == 320
