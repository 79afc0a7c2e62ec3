"""Authentication: HMAC and token accepted; every refusal with the API's text (spec §1)."""

from __future__ import annotations

import time

import pytest
import requests

from streambatch.emulator import Emulator
from streambatch.emulator.auth import signature

from emu_client import Api, sign

VECTORS = [
    ("/api/v2/batch/createAndUpload?includeAdditional=true", "POST", "NHGKcuwdKcyH1incTI0Yehmoc8jgbH4An2+JGQpsUEQ="),
    ("/api/v2/batch/12345?includeAdditional=true", "GET", "97aIjzVhElZuhq+WC0LL+ZTnRC5c2XUZXqZR1sfiTgg="),
    ("/api/v2/groups/documents/abc-xid/upload?owner=Demo+Org&updateIfExists=true", "POST",
     "S44OHxzaHykwdnuLfT9vbd1pgj9QlxUYRVn8h1Evt0Q="),
]


@pytest.mark.parametrize("path,method,expected", VECTORS)
def test_spec_vectors(path: str, method: str, expected: str) -> None:
    assert signature("secret-key", path, method, 1700000000) == expected
    assert sign("secret-key", path, method, 1700000000) == expected


@pytest.mark.parametrize("path,method,expected", VECTORS)
def test_spec_vectors_verified_over_the_wire(path: str, method: str, expected: str) -> None:
    """The server checks the raw target: the vector's signature passes with its timestamp."""
    with Emulator(secret_key="secret-key", access_id="AID", clock=lambda: 1700000000,
                  owners=["Demo Organization", "Demo Org"]) as tc:
        url = tc.base + path
        r = requests.request(method, url, headers={"Timestamp": "1700000000", "Authorization": f"TC AID:{expected}"},
                             data=b"" if method == "POST" else None)
        assert r.status_code != 401, r.text
        bad = requests.request(method, url, headers={"Timestamp": "1700000001", "Authorization": f"TC AID:{expected}"})
        assert bad.status_code == 401
        assert bad.json() == {"status": "Failure", "message": "Signature data did not match expected result"}


def test_hmac_accepted_on_both_prefixes(api: Api) -> None:
    for prefix in ("/api", ""):
        r = api.get("/v2/owners", prefix=prefix)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/json"


def test_plus_in_query_is_verified_as_sent(tc: Emulator, api: Api) -> None:
    r = api.get("/v2/types/indicatorTypes", params={"x": "Demo Org", "includeAdditional": "true"})
    assert r.status_code == 200
    assert "x=Demo+Org" in tc.requests[-1]["raw_uri"]
    # The same request signed over a re-encoded (%20) query must be refused.
    stamp = int(time.time())
    sig = sign(tc.secret_key, "/api/v2/types/indicatorTypes?x=Demo%20Org", "GET", stamp)
    r = requests.get(tc.url + "/v2/types/indicatorTypes?x=Demo+Org",
                     headers={"Timestamp": str(stamp), "Authorization": f"TC {tc.access_id}:{sig}"})
    assert r.status_code == 401


def test_token_accepted(api: Api) -> None:
    assert api.get("/v2/owners", auth="token").status_code == 200


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"secret": "wrong"}, "Signature data did not match expected result"),
        ({"skew": -301}, "Timestamp out of acceptable time range"),  # seconds off the clock when sent
        ({"skew": 400}, "Timestamp out of acceptable time range"),
        ({"access_id": "nobody"}, "Access Denied"),
        ({"auth": "token", "token": "APIV2:nope"}, "Unauthorized"),
        ({"auth": None}, "Unauthorized"),
    ],
)
def test_refusals(api: Api, kwargs: dict, message: str) -> None:
    if "skew" in kwargs:  # taken at run time: a stamp taken when the tests are collected ages with the suite
        kwargs = {"timestamp": int(time.time()) + kwargs["skew"]}
    r = api.get("/v2/owners", **kwargs)
    assert r.status_code == 401
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"status": "Failure", "message": message}


def test_timestamp_inside_window_accepted(api: Api) -> None:
    assert api.get("/v2/owners", timestamp=int(time.time()) - 290).status_code == 200


def test_expired_token_refused() -> None:
    with Emulator(token="APIV2:tok", token_expires=time.time() - 1) as tc:
        r = Api(tc).get("/v2/owners", auth="token")
        assert r.status_code == 401 and r.json()["message"] == "Unauthorized"


def test_auth_can_be_disabled() -> None:
    with Emulator(auth=False) as tc:
        assert requests.get(tc.url + "/v2/owners").status_code == 200


def test_unknown_and_unreachable_owner_refused() -> None:
    owners = ["Demo Organization", {"name": "Hidden", "access": []}, {"name": "ReadOnly", "access": ["read"]}]
    with Emulator(owners=owners) as tc:
        api = Api(tc)
        names = [o["name"] for o in api.get("/v2/owners").json()["data"]["owner"]]
        assert names == ["Demo Organization", "ReadOnly"]
        for owner in ("Nobody Inc", "Hidden"):
            r = api.post("/v2/batch", json=api.settings(owner=owner))
            assert r.status_code == 403
            assert r.json() == {"status": "Failure", "message": "Access Denied"}
        r = api.post("/v2/batch", json=api.settings(owner="ReadOnly"))
        assert r.status_code == 401
        assert r.headers["Content-Type"].startswith("text/plain")
        assert r.text.startswith("Unable to perform the requested operation")
        assert "permission to create" in r.text
        r = api.post("/v2/batch", json=api.settings(owner="ReadOnly", action="Delete"))
        assert r.status_code == 401 and "permission to delete" in r.text


def test_repr_hides_secrets() -> None:
    with Emulator(secret_key="very-secret", token="APIV2:tok-secret") as tc:
        text = repr(tc) + repr(tc.config.credentials)
        assert "very-secret" not in text and "tok-secret" not in text
        assert tc.url in repr(tc)
