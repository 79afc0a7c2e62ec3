"""A tiny independent HTTP client for the emulator tests.

The client here signs requests itself (spec §1.1) with ``requests``; it deliberately does not
use the library's client, so the emulator is checked on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import requests

from streambatch.emulator import Emulator


def sign(secret: str, path_and_query: str, method: str, timestamp: int | str) -> str:
    message = f"{path_and_query}:{method}:{timestamp}".encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


DEFAULT_SETTINGS = {
    "version": "V2", "owner": "Demo Organization", "haltOnError": False, "action": "Create",
    "attributeWriteType": "Append", "tagWriteType": "Append", "securityLabelWriteType": "Append",
}


class Api:
    """Signed requests against an emulator, plus batch helpers."""

    def __init__(self, tc: Emulator, mode: str = "hmac") -> None:
        self.tc = tc
        self.mode = mode
        self.session = requests.Session()

    def request(self, method: str, path: str, *, auth: str | None = "default", timestamp: int | None = None,
                secret: str | None = None, access_id: str | None = None, token: str | None = None,
                prefix: str | None = None, **kwargs: Any) -> requests.Response:
        base = self.tc.url if prefix is None else self.tc.base + prefix
        prepared = self.session.prepare_request(requests.Request(method, base + path, **kwargs))
        mode = self.mode if auth == "default" else auth
        stamp = int(time.time()) if timestamp is None else timestamp
        if mode == "hmac":
            sig = sign(secret or self.tc.secret_key, prepared.path_url, method, stamp)
            prepared.headers["Timestamp"] = str(stamp)
            prepared.headers["Authorization"] = f"TC {access_id or self.tc.access_id}:{sig}"
        elif mode == "token":
            prepared.headers["Timestamp"] = str(stamp)
            prepared.headers["Authorization"] = f"TC-Token {token or self.tc.token}"
        return self.session.send(prepared, timeout=30)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    # ------------------------------------------------------------------ batch helpers

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {**DEFAULT_SETTINGS, "owner": self.tc.owner, **overrides}

    def create_and_upload(self, content: Any, **settings: Any) -> requests.Response:
        config = json.dumps(self.settings(**settings))
        body = content if isinstance(content, (str, bytes)) else json.dumps(content)
        return self.post("/v2/batch/createAndUpload", params={"includeAdditional": "true"},
                         files={"config": config, "content": body})

    def run(self, content: Any, **settings: Any) -> dict[str, Any]:
        """Submit a job, wait for it, and return its final batchStatus (with extra counters)."""
        r = self.create_and_upload(content, **settings)
        assert r.ok, r.text
        status = r.json()["data"]["batchStatus"]
        if status["status"] == "Completed":
            return status
        return self.wait(status["id"])

    def two_step(self, content: Any, **settings: Any) -> int:
        r = self.post("/v2/batch", json=self.settings(**settings))
        assert r.status_code == 201, r.text
        job_id = r.json()["data"]["batchId"]
        body = content if isinstance(content, bytes) else json.dumps(content).encode()
        r = self.post(f"/v2/batch/{job_id}", data=body, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        return job_id

    def wait(self, job_id: int, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            r = self.get(f"/v2/batch/{job_id}", params={"includeAdditional": "true"})
            assert r.status_code == 200, r.text
            status = batch_status(r.json())
            if status["status"] == "Completed":
                return status
            assert time.monotonic() < deadline, f"job {job_id} still {status['status']}"
            time.sleep(0.02)

    def errors(self, job_id: int) -> list[dict[str, Any]]:
        r = self.get(f"/v2/batch/{job_id}/errors")
        assert r.status_code == 200, r.text
        return r.json()

    def last_job_id(self) -> int:
        return self.tc.store.jobs()[-1]["id"]


def control(tc: Emulator, method: str, name: str, body: Any = None) -> Any:
    r = requests.request(method, f"{tc.base}/_emulator/{name}", json=body, timeout=10)
    assert r.ok, r.text
    return r.json()


def batch_status(body: dict[str, Any]) -> dict[str, Any]:
    """The batchStatus of a poll reply: enveloped, or the documented bare ``{"status": "Running"}``
    (the emulator's default, as in the docs)."""
    return body["data"]["batchStatus"] if "data" in body else body
