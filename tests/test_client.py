"""The API client: HMAC signing (spec 1.1 vectors), re-signing on retries, token auth,
configuration errors, TLS verification, and secrets kept out of logs, errors and reprs."""

from __future__ import annotations

import logging
import time as real_time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from e2e_helpers import FAST_RETRY, make_batch, make_client, requests_to, tc  # noqa: F401

import streambatch.client as client_mod
from streambatch.client import (ApiConfig, ApiError, Client, ConfigError, HmacAuth, RetryPolicy, TokenAuth,
                                TransientApiError, sign)
from streambatch.emulator import Emulator
from streambatch.pipeline import BatchJobError

VECTORS = [
    ("/api/v2/batch/createAndUpload?includeAdditional=true", "POST", "NHGKcuwdKcyH1incTI0Yehmoc8jgbH4An2+JGQpsUEQ="),
    ("/api/v2/batch/12345?includeAdditional=true", "GET", "97aIjzVhElZuhq+WC0LL+ZTnRC5c2XUZXqZR1sfiTgg="),
    ("/api/v2/groups/documents/abc-xid/upload?owner=Demo+Org&updateIfExists=true", "POST",
     "S44OHxzaHykwdnuLfT9vbd1pgj9QlxUYRVn8h1Evt0Q="),
]


@pytest.mark.parametrize("path, method, expected", VECTORS)
def test_sign_spec_vectors(path: str, method: str, expected: str) -> None:
    assert sign("secret-key", path, method, "1700000000") == expected
    assert sign("secret-key", path, method.lower(), "1700000000") == expected  # method upper-cased


def test_hmac_auth_signs_the_path_as_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_mod, "time", SimpleNamespace(time=lambda: 1700000000.7))
    req = requests.Request("POST", "https://h.example/api/v2/groups/documents/abc-xid/upload",
                           params={"owner": "Demo Org", "updateIfExists": "true"}).prepare()
    HmacAuth("my-id", "secret-key")(req)
    assert req.headers["Timestamp"] == "1700000000"
    assert req.headers["Authorization"] == f"TC my-id:{VECTORS[2][2]}"


def _signature_ok(entry: dict, secret: str) -> bool:
    access, signature = entry["headers"]["Authorization"][3:].split(":", 1)
    return sign(secret, entry["raw_uri"], entry["method"], entry["headers"]["Timestamp"]) == signature


def test_every_retry_is_signed_afresh(tc: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter(range(0, 1000, 7))
    fake = SimpleNamespace(time=lambda: real_time.time() + next(ticks), monotonic=real_time.monotonic,
                           sleep=real_time.sleep)
    monkeypatch.setattr(client_mod, "time", fake)
    tc.set_faults([{"kind": "status", "method": "GET", "path": "/v2/owners", "status": 503, "times": 3}])
    client = make_client(tc)
    assert any(o["name"] == tc.owner for o in client.owners())
    sent = requests_to(tc, "GET", "/v2/owners")
    assert [e["status"] for e in sent] == [503, 503, 503, 200]
    stamps = [e["headers"]["Timestamp"] for e in sent]
    assert len(set(stamps)) == 4  # a fresh Timestamp per attempt ...
    assert all(_signature_ok(e, tc.secret_key) for e in sent)  # ... each with its own valid signature


def test_retried_post_is_resigned_and_accepted(tc: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter(range(0, 1000, 5))
    monkeypatch.setattr(client_mod, "time", SimpleNamespace(time=lambda: real_time.time() + next(ticks),
                                                            monotonic=real_time.monotonic, sleep=real_time.sleep))
    tc.set_faults([{"kind": "status", "method": "POST", "path": "/v2/batch/createAndUpload", "status": 429,
                    "retry_after": 0.01}])
    batch = make_batch(tc, tmp_path / "job.sqlite")
    batch.host("signed.example.com")
    batch.submit_all()
    sent = requests_to(tc, "POST", "/v2/batch/createAndUpload")
    assert [e["status"] for e in sent] == [429, 200]
    assert sent[0]["headers"]["Timestamp"] != sent[1]["headers"]["Timestamp"]
    assert all(_signature_ok(e, tc.secret_key) for e in sent)


def test_token_auth(tc: Emulator, tmp_path: Path) -> None:
    client = make_client(tc, token=True)
    assert isinstance(client.session.auth, TokenAuth)
    assert any(o["name"] == tc.owner for o in client.owners())
    batch = make_batch(tc, tmp_path / "job.sqlite", client=client)
    batch.host("token.example.com")
    [result] = batch.submit_all()
    assert result["status"] == "Completed"
    assert tc.store.indicator(tc.owner, "Host", "token.example.com") is not None
    assert all(e["headers"]["Authorization"] == f"TC-Token {tc.token}" for e in tc.requests)


def test_wrong_secret_is_an_api_error_without_retries(tc: Emulator) -> None:
    client = Client(ApiConfig(tc.url, tc.access_id, "not-the-secret"), retry=FAST_RETRY)
    with pytest.raises(ApiError) as info:
        client.owners()
    assert info.value.status == 401 and not isinstance(info.value, TransientApiError)
    assert len(tc.requests) == 1
    assert "not-the-secret" not in str(info.value)


def test_hmac_wins_over_token_when_both_are_set() -> None:
    cfg = ApiConfig.from_env(environ={"TC_API_PATH": "https://h/api", "TC_API_ACCESS_ID": "id",
                                      "TC_API_SECRET_KEY": "sk", "TC_TOKEN": "tok"})
    assert isinstance(cfg.auth(), HmacAuth)
    half = ApiConfig.from_env(environ={"TC_API_PATH": "https://h/api", "TC_API_ACCESS_ID": "id", "TC_TOKEN": "tok"})
    assert isinstance(half.auth(), TokenAuth)


@pytest.mark.parametrize("env", [
    {"TC_API_PATH": "https://h/api"},
    {"TC_API_PATH": "https://h/api", "TC_API_ACCESS_ID": "id"},
    {"TC_API_PATH": "https://h/api", "TC_API_SECRET_KEY": "sk"},
    {"TC_API_ACCESS_ID": "id", "TC_API_SECRET_KEY": "sk"},
    {"TC_TOKEN": "tok"},
])
def test_half_configured_is_a_config_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        ApiConfig.from_env(environ=env)
    for secret in ("sk", "tok"):
        if secret in env.values():
            assert f"'{secret}'" not in str(info.value) and f" {secret}" not in str(info.value)


def test_nothing_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ApiConfig.from_env(environ={}) is None
    for name in ("TC_API_PATH", "TC_API_ACCESS_ID", "TC_API_SECRET_KEY", "TC_TOKEN", "TC_VERIFY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError):
        Client.from_env()


def test_arguments_win_over_environment() -> None:
    cfg = ApiConfig.from_env(api_path="https://arg/api/", environ={"TC_API_PATH": "https://env/api", "TC_TOKEN": "t"})
    assert cfg.api_path == "https://arg/api"


def test_tls_verification_is_on_by_default() -> None:
    assert Client(ApiConfig("https://h/api", "id", "sk")).session.verify is True
    assert ApiConfig.from_env(environ={"TC_API_PATH": "https://h/api", "TC_TOKEN": "t"}).verify is True
    cfg = ApiConfig.from_env(environ={"TC_API_PATH": "https://h/api", "TC_TOKEN": "t"})
    assert Client(cfg).session.verify is True
    off = ApiConfig.from_env(environ={"TC_API_PATH": "https://h/api", "TC_TOKEN": "t", "TC_VERIFY": "false"})
    assert off.verify is False
    bundle = ApiConfig("https://h/api", token="t", verify="/etc/ca.pem")
    assert Client(bundle).session.verify == "/etc/ca.pem"


def test_retry_policy_bounds() -> None:
    policy = RetryPolicy(backoff=1, max_backoff=4)
    assert policy.delay(0, "2") == 2.0
    assert policy.delay(0, "600") == 4  # Retry-After capped at max_backoff
    assert all(0.5 <= policy.delay(0) <= 1 for _ in range(50))
    assert all(2 <= policy.delay(5) <= 4 for _ in range(50))


def _no_secret(text: str, secrets: list[str]) -> None:
    for s in secrets:
        assert s not in text, f"a secret leaked into: {text[:300]}"


@pytest.mark.parametrize("use_token", [False, True])
def test_no_secret_in_logs_errors_or_reprs(tmp_path: Path, caplog: pytest.LogCaptureFixture, use_token: bool) -> None:
    caplog.set_level(logging.DEBUG)
    with Emulator(db=tmp_path / "emu.sqlite", synchronous_batch_save_limit=0,
                  secret_key="S3CRET-key-value-xyz", token="APIV2:1:tok:123:T0KEN-value-abc") as tc:
        secrets = [tc.secret_key, tc.token]
        client = make_client(tc, token=use_token)
        batch = make_batch(tc, tmp_path / "job.sqlite", client=client, max_records=5)
        batch.save_all([{"type": "Host", "summary": f"s{i}.example.com", "xid": f"s-{i}"} for i in range(10)])
        batch.document("doc", file_name="d.txt", file_content=lambda xid: (_ for _ in ()).throw(ValueError("boom")),
                       xid="sdoc")
        batch.halt_on_file_error = False
        tc.set_faults([
            {"kind": "status", "method": "POST", "path": "/v2/batch/createAndUpload", "status": 429, "retry_after": 0.01},
            {"kind": "status", "method": "GET", "path": "/v2/batch/[0-9]*", "status": 503, "times": 2},
            {"kind": "status", "method": "POST", "path": "/v2/batch/createAndUpload", "status": 400, "nth": 3},
        ])
        errors: list[BaseException] = []
        try:
            batch.submit_all()
        except BatchJobError as exc:
            errors.append(exc)
        tc.set_faults([{"kind": "status", "method": "POST", "path": "/v2/batch/createAndUpload", "status": 500,
                        "times": 0}])
        batch.save({"type": "Host", "summary": "late.example.com", "xid": "late"})
        try:
            batch.submit_all()
        except BatchJobError as exc:
            errors.append(exc)
        bad = Client(ApiConfig(tc.url, tc.access_id, "wrong-" + tc.secret_key), retry=FAST_RETRY)
        try:
            bad.owners()
        except ApiError as exc:
            errors.append(exc)
        assert errors and any(r.levelno >= logging.WARNING for r in caplog.records)
        for exc in errors:
            chain: BaseException | None = exc
            while chain is not None:
                _no_secret(str(chain), secrets)
                _no_secret(repr(chain), secrets)
                _no_secret(str(getattr(chain, "body", "") or ""), secrets)
                chain = chain.__cause__ or chain.__context__
        for record in caplog.records:
            _no_secret(record.getMessage(), secrets)
            _no_secret(repr(record.args), secrets)
        for obj in (client, client.config, client.session.auth, batch, bad, bad.config, bad.session.auth,
                    HmacAuth("id", tc.secret_key), TokenAuth(tc.token), ApiConfig(tc.url, token=tc.token)):
            _no_secret(repr(obj), secrets)
            _no_secret(str(obj), secrets)
        # the job file does not keep credentials either
        batch.close()
        _no_secret((tmp_path / "job.sqlite").read_bytes().decode("latin-1"), secrets)
