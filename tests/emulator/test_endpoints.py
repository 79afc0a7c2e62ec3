"""Endpoints E1-E9: success and error replies with the documented shapes (spec §2)."""

from __future__ import annotations

import gzip
import io
import json
import zipfile

import pytest
import requests
from emu_client import Api

from streambatch.emulator import Emulator

HOST = {"indicator": [{"type": "Host", "summary": "example.com"}]}
BAD_HOST = {"indicator": [{"type": "Host", "summary": "bad_host.example.com"}]}


# ----------------------------------------------------------------------------- E1

def test_e1_create_job(api: Api, tc: Emulator) -> None:
    r = api.post("/v2/batch", json=api.settings())
    assert r.status_code == 201
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["status"] == "Success" and isinstance(body["data"]["batchId"], int)
    job = tc.store.jobs()[-1]
    assert job["id"] == body["data"]["batchId"] and job["status"] == "Created"
    assert job["settings"]["hashCollisionMode"] == "FavorIncoming"  # default filled in


def test_e1_accepts_string_booleans_like_tcex(api: Api, tc: Emulator) -> None:
    config = {"action": "Create", "attributeWriteType": "Replace", "haltOnError": "false", "owner": tc.owner,
              "playbookTriggersEnabled": "false", "securityLabelWriteType": "Replace", "tagWriteType": "Replace",
              "version": "V2"}
    assert api.post("/v2/batch", json=config).status_code == 201
    assert tc.store.jobs()[-1]["settings"]["haltOnError"] is False


@pytest.mark.parametrize("change", [
    {"action": "Update"}, {"attributeWriteType": "append"}, {"tagWriteType": "Singleton"},
    {"securityLabelWriteType": "Static"}, {"fileMergeMode": "Join"}, {"hashCollisionMode": "Favor"},
    {"version": "V3"}, {"haltOnError": "yes"}, {"playbookTriggersEnabled": 1}, {"owner": None},
    {"action": None}, {"haltOnError": None}, {"attributeWriteType": None},
])
def test_e1_refuses_bad_settings(api: Api, change: dict) -> None:
    settings = {k: v for k, v in {**api.settings(), **change}.items() if v is not None}
    r = api.post("/v2/batch", json=settings)
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["status"] == "Failure" and r.json()["message"]


def test_e1_not_json(api: Api) -> None:
    r = api.post("/v2/batch", data=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["status"] == "Failure"


def test_batch_disabled_plain_503() -> None:
    with Emulator(batch_enabled=False) as tc:
        r = Api(tc).post("/v2/batch", json=Api(tc).settings())
        assert r.status_code == 503 and r.text.startswith("Batch job api is not available.")


# ----------------------------------------------------------------------------- E2

def test_e2_upload_is_queued_then_completes(api: Api, tc: Emulator) -> None:
    job_id = api.post("/v2/batch", json=api.settings()).json()["data"]["batchId"]
    r = api.post(f"/v2/batch/{job_id}", data=json.dumps(HOST).encode(),
                 headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"status": "Queued"}
    assert api.wait(job_id)["successIndicatorCount"] == 1
    [upload] = [e for e in tc.requests if e["method"] == "POST" and e["path"] == f"/api/v2/batch/{job_id}"]
    assert upload["content_type"] == "application/octet-stream" and upload["status"] == 202


def test_e2_errors(api: Api, tc: Emulator) -> None:
    r = api.post("/v2/batch/999999", data=b"{}", headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 404 and r.json()["status"] == "Failure"
    job_id = api.post("/v2/batch", json=api.settings()).json()["data"]["batchId"]
    r = api.post(f"/v2/batch/{job_id}", data=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["status"] == "Invalid"
    api.post(f"/v2/batch/{job_id}", data=b"{}", headers={"Content-Type": "application/octet-stream"})
    again = api.post(f"/v2/batch/{job_id}", data=b"{}", headers={"Content-Type": "application/octet-stream"})
    assert again.status_code == 400 and again.json()["status"] == "Invalid"


def test_e2_and_e3_size_limit() -> None:
    with Emulator(max_upload_bytes=100) as tc:
        api = Api(tc)
        job_id = api.post("/v2/batch", json=api.settings()).json()["data"]["batchId"]
        big = json.dumps({"indicator": [{"type": "Host", "summary": f"h{i}.example.com"} for i in range(10)]})
        r = api.post(f"/v2/batch/{job_id}", data=big.encode(), headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 400
        assert r.json() == {"status": "Invalid", "description": "File size greater than allowable limit of 100"}
        assert tc.store.jobs()[-1]["status"] == "Created"
        r = api.create_and_upload(big)
        assert r.status_code == 400 and r.json()["description"].endswith("limit of 100")
        assert len(tc.store.jobs()) == 1


# ----------------------------------------------------------------------------- E3

def test_e3_sync_job_has_no_id(api: Api, tc: Emulator) -> None:
    r = api.create_and_upload(HOST)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    status = r.json()["data"]["batchStatus"]
    assert "id" not in status
    assert status == {"status": "Completed", "errorCount": 0, "successCount": 1, "unprocessCount": 0,
                      "successGroupCount": 0, "errorGroupCount": 0, "successIndicatorCount": 1,
                      "errorIndicatorCount": 0, "successAssociationCount": 0, "errorAssociationCount": 0}
    entry = tc.requests[-1]
    assert [p["name"] for p in entry["parts"]] == ["config", "content"]
    assert [p["filename"] for p in entry["parts"]] == ["config", "content"]
    assert entry["query"] == "includeAdditional=true"


def test_e3_sync_includes_id_switch() -> None:
    with Emulator(sync_includes_id=True) as tc:
        status = Api(tc).create_and_upload(HOST).json()["data"]["batchStatus"]
        assert status["id"] == tc.store.jobs()[-1]["id"] and status["status"] == "Completed"


def test_e3_plain_form_fields_accepted(api: Api, tc: Emulator) -> None:
    # multipart parts without a filename are plain form fields to werkzeug
    files = {"config": (None, json.dumps(api.settings())), "content": (None, json.dumps(HOST))}
    r = api.post("/v2/batch/createAndUpload", files=files)
    assert r.status_code == 200, r.text
    assert tc.store.indicator(tc.owner, "Host", "example.com") is not None
    assert [(p["name"], p["kind"]) for p in tc.requests[-1]["parts"]] == [("config", "field"), ("content", "field")]
    # an urlencoded form works too
    other = {"indicator": [{"type": "Host", "summary": "two.example.com"}]}
    r = api.post("/v2/batch/createAndUpload", data={"config": json.dumps(api.settings()), "content": json.dumps(other)})
    assert r.status_code == 200, r.text
    assert tc.store.indicator(tc.owner, "Host", "two.example.com") is not None


def test_e3_queued_above_sync_limit() -> None:
    with Emulator(synchronous_batch_save_limit=2) as tc:
        api = Api(tc)
        content = {"indicator": [{"type": "Host", "summary": f"h{i}.example.com"} for i in range(3)]}
        r = api.create_and_upload(content)
        assert r.status_code == 201
        status = r.json()["data"]["batchStatus"]
        assert status["status"] == "Queued" and isinstance(status["id"], int)
        assert api.wait(status["id"])["successCount"] == 3
        assert tc.store.jobs()[-1]["mode"] == "queued"


def test_e3_missing_part_and_bad_config(api: Api) -> None:
    r = api.post("/v2/batch/createAndUpload", files={"config": json.dumps(api.settings())})
    assert r.status_code == 400 and "content" in r.json()["message"]
    r = api.post("/v2/batch/createAndUpload", files={"config": "{}", "content": "{}"})
    assert r.status_code == 400 and r.json()["status"] == "Failure"


def test_e3_delete_switch() -> None:
    with Emulator(create_and_upload_delete=False) as tc:
        r = Api(tc).create_and_upload(HOST, action="Delete")
        assert r.status_code == 400
        assert r.json() == {"status": "Failure", "message": "Delete not supported by createAndUpload"}


# ----------------------------------------------------------------------------- E4

def test_e4_status_with_and_without_additional(api: Api) -> None:
    job_id = api.two_step(HOST)
    api.wait(job_id)
    plain = api.get(f"/v2/batch/{job_id}").json()
    assert plain == {"status": "Success", "data": {"batchStatus": {
        "id": job_id, "status": "Completed", "errorCount": 0, "successCount": 1, "unprocessCount": 0}}}
    assert api.get("/v2/batch/424242").status_code == 404


def test_e4_running_forms() -> None:
    for bare in (False, True):
        with Emulator(bare_running=bare, faults=[{"kind": "running"}]) as tc:
            api = Api(tc)
            job_id = api.two_step(HOST)
            assert tc.wait_idle()  # the worker has taken the job and holds it Running (not still Queued)
            body = api.get(f"/v2/batch/{job_id}").json()
            if bare:
                assert body == {"status": "Running"}
            else:
                assert body["status"] == "Success" and body["data"]["batchStatus"]["status"] == "Running"


# ------------------------------------------------------------------------- E5 / E6

def test_e5_error_file_is_gzip_json(api: Api, tc: Emulator) -> None:
    api.create_and_upload(BAD_HOST)
    job_id = api.last_job_id()
    r = api.session.get(api.tc.url + f"/v2/batch/{job_id}/errors", stream=True,
                        headers=_signed(api, "GET", f"/api/v2/batch/{job_id}/errors"))
    raw = r.raw.read()
    assert r.status_code == 200
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.headers["Content-Type"] == "application/octet-stream"
    records = json.loads(gzip.decompress(raw))
    assert len(records) == 1
    rec = records[0]
    assert set(rec) == {"code", "severity", "errorReason", "errorMessage", "errorSource"}
    assert rec["code"] == "0x1005" and rec["severity"] == "Error"
    assert rec["errorReason"].startswith("Error (0x1005): Invalid Indicator Error: ")
    assert "bad_host.example.com" in rec["errorReason"] and rec["errorSource"] == "bad_host.example.com"


def _signed(api: Api, method: str, path: str) -> dict[str, str]:
    import time

    from emu_client import sign
    stamp = int(time.time())
    return {"Timestamp": str(stamp), "Authorization": f"TC {api.tc.access_id}:{sign(api.tc.secret_key, path, method, stamp)}"}


def test_e5_e6_no_errors_404_and_running_400() -> None:
    with Emulator(faults=[{"kind": "running", "nth": 2}]) as tc:
        api = Api(tc)
        done = api.two_step(HOST)
        api.wait(done)
        assert api.get(f"/v2/batch/{done}/errors").status_code == 404
        assert api.get(f"/v2/batch/{done}/results").status_code == 404
        running = api.two_step(BAD_HOST)
        for what in ("errors", "results"):
            r = api.get(f"/v2/batch/{running}/{what}")
            assert r.status_code == 400
            assert r.json() == {"status": "Invalid", "description": "Batch still in Running state"}


def test_e6_results_filters(api: Api) -> None:
    content = {"indicator": [
        {"type": "Host", "summary": "bad_one.example.com"},
        {"type": "ASN", "summary": "AS12"},
        {"type": "Host", "summary": "ok.example.com", "tag": [{"name": "x" * 129}]},
    ]}
    api.create_and_upload(content)
    job_id = api.last_job_id()
    everything = api.get(f"/v2/batch/{job_id}/results").json()
    assert [r["code"] for r in everything] == ["0x1005", "0x1005", "0x2001"]
    assert len(api.get(f"/v2/batch/{job_id}/results", params={"code": "0x2001"}).json()) == 1
    assert len(api.get(f"/v2/batch/{job_id}/results", params={"contains": "AS12"}).json()) == 1
    assert [r["severity"] for r in api.get(f"/v2/batch/{job_id}/results", params={"severity": "warn"}).json()] == ["Warning"]
    assert len(api.get(f"/v2/batch/{job_id}/results", params={"severity": ["err", "warning"]}).json()) == 3
    assert api.get(f"/v2/batch/{job_id}/results", params={"code": "1005"}).status_code == 400
    assert api.get(f"/v2/batch/{job_id}/results", params={"severity": "fatal"}).status_code == 400
    assert api.get(f"/v2/batch/{job_id}/results", params={"code": "0x1009"}).json() == []


# ----------------------------------------------------------------------------- E7

GROUPS = {"group": [
    {"type": "Document", "name": "doc", "xid": "doc-1", "fileName": "a.txt"},
    {"type": "Report", "name": "rep", "xid": "rep-1"},
    {"type": "Document", "name": "mal", "xid": "mal-1", "malware": True, "password": "infected"},
    {"type": "Adversary", "name": "adv", "xid": "adv-1"},
]}


def _upload(api: Api, method: str, branch: str, ident: str, data: bytes, **params: str) -> requests.Response:
    return api.request(method, f"/v2/groups/{branch}/{ident}/upload", params={"owner": api.tc.owner, **params},
                       data=data, headers={"Content-Type": "application/octet-stream"})


def test_e7_post_then_401_then_put(api: Api, tc: Emulator) -> None:
    api.run(GROUPS)
    r = _upload(api, "POST", "documents", "doc-1", b"v1")
    assert r.status_code == 200 and r.json() == {"status": "Success"}
    assert tc.store.document(tc.owner, "doc-1") == b"v1"
    r = _upload(api, "POST", "documents", "doc-1", b"v2")
    assert r.status_code == 401 and r.json()["status"] == "Failure"
    assert tc.store.document(tc.owner, "doc-1") == b"v1"
    assert _upload(api, "PUT", "documents", "doc-1", b"v2").status_code == 200
    assert tc.store.document(tc.owner, "doc-1") == b"v2"
    assert _upload(api, "POST", "documents", "doc-1", b"v3", updateIfExists="true").status_code == 200
    assert tc.store.document(tc.owner, "doc-1") == b"v3"
    assert [e["method"] for e in tc.requests[-4:]] == ["POST", "POST", "PUT", "POST"]


def test_e7_by_numeric_id_and_reports(api: Api, tc: Emulator) -> None:
    api.run(GROUPS)
    rep_id = tc.store.group(tc.owner, "rep-1")["id"]
    assert _upload(api, "POST", "reports", str(rep_id), b"pdf").status_code == 200
    assert tc.store.document(tc.owner, "rep-1") == b"pdf"


def test_e7_errors(api: Api) -> None:
    api.run(GROUPS)
    assert _upload(api, "POST", "documents", "nope", b"x").status_code == 404
    assert _upload(api, "POST", "documents", "adv-1", b"x").status_code == 400
    assert _upload(api, "POST", "reports", "doc-1", b"x").status_code == 400
    r = api.post("/v2/groups/documents/doc-1/upload", params={"owner": "Nobody"}, data=b"x")
    assert r.status_code == 403


def test_e7_malware_needs_encrypted_zip(api: Api, tc: Emulator) -> None:
    api.run(GROUPS)
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as zf:
        zf.writestr("sample.bin", b"MZ")
    assert _upload(api, "POST", "documents", "mal-1", b"MZ raw malware").status_code == 400
    assert _upload(api, "POST", "documents", "mal-1", plain_zip.getvalue()).status_code == 400
    encrypted = bytearray(plain_zip.getvalue())
    encrypted[6] |= 1  # the local header's "encrypted" flag, as a password-protected zip sets it
    assert _upload(api, "POST", "documents", "mal-1", bytes(encrypted)).status_code == 200
    assert tc.store.document(tc.owner, "mal-1") == bytes(encrypted)


# ------------------------------------------------------------------------- E8 / E9

def test_e8_indicator_types_from_the_shipped_file() -> None:
    from importlib import resources
    shipped = json.loads(resources.files("streambatch").joinpath("data/indicator_types.json").read_text())
    with Emulator(custom_indicator_types=["Bitcoin Address"]) as tc:
        api = Api(tc)
        data = api.get("/v2/types/indicatorTypes").json()["data"]
        names = [t["name"] for t in data["indicatorType"]]
        assert names == [t["name"] for t in shipped["data"]["indicatorType"]] + ["Bitcoin Address"]
        assert data["resultCount"] == len(names)
        assert all(t["custom"] in ("true", "false") for t in data["indicatorType"])
        assert "keys" not in data["indicatorType"][0]
        extra = api.get("/v2/types/indicatorTypes", params={"includeAdditional": "true"}).json()["data"]
        file_type = next(t for t in extra["indicatorType"] if t["name"] == "File")
        assert file_type["keys"] == ["md5", "sha1", "sha256"]
        one = api.get("/v2/types/indicatorTypes/Registry Key").json()
        assert one["data"]["indicatorType"]["apiBranch"] == "registryKeys"
        assert api.get("/v2/types/indicatorTypes/Nope").status_code == 404
        status = api.run({"indicator": [{"type": "bitcoin address", "summary": "1abc"}]})
        assert status["successIndicatorCount"] == 1
        assert tc.store.indicator(tc.owner, "Bitcoin Address", "1abc") is not None


def test_e9_owners(api: Api) -> None:
    body = api.get("/v2/owners").json()
    assert body["status"] == "Success"
    assert body["data"]["owner"][0] == {"id": 1, "name": "Demo Organization", "type": "Organization"}


def test_unknown_route_and_method(api: Api) -> None:
    r = api.get("/v2/nothing")
    assert r.status_code == 404 and r.json() == {"status": "Failure", "message": "The requested resource was not found"}
    assert api.get("/v2/batch/createAndUpload").status_code in (404, 405)
