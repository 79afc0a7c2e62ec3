"""Pre-flight: the instance's own rules (custom indicator types and their patterns, attribute
types and their limits, indicator exclusion lists) are read from the instance, cached in the job
file, and applied before a record is staged, so a record the server would refuse is a local
reject that never reaches a request body. The emulator serves and enforces the same rules, so
the same record sent with pre-flight off is refused by the server with the matching error."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest
from e2e_helpers import make_batch, make_client

from streambatch import Batch
from streambatch.emulator import Emulator
from streambatch.outcome import outcome

OWNER = "Demo Organization"
RULES: dict[str, Any] = {
    "custom_indicator_types": [{"name": "Ticket", "value1Label": "Ticket ID", "regexes": [r"TKT-\d{4}"]}],
    "attribute_types": [
        {"name": "Description", "maxSize": 500},
        {"name": "Source", "maxSize": 100},
        {"name": "Short Note", "maxSize": 10, "types": ["Host", "Address"]},
    ],
    "exclusion_lists": [
        {"name": "Indicator-Host", "fixed": ["safe.example.com"], "variable": ["*.trusted.example"]},
        {"name": "Indicator-Address-IPv4", "owner": OWNER, "variable": ["10.0.0.0/8"]},
        {"name": "Indicator-Host", "owner": "Common Community", "fixed": ["community-only.example.com"]},
    ],
}


@pytest.fixture
def tc(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(db=tmp_path / "emu.sqlite", **RULES) as emulator:
        yield emulator


def sent_bodies(tc: Emulator) -> bytes:
    """Everything the emulator received as job input, every job."""
    return b"\n".join(tc.store.job_input(j["id"]) or b"" for j in tc.store.jobs())


def gets(tc: Emulator, path: str) -> int:
    return sum(1 for r in tc.requests if r["method"] == "GET" and r["path"].endswith(path))


def host(name: str, *attributes: tuple[str, str], **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"type": "Host", "summary": name, **extra}
    if attributes:
        rec["attribute"] = [{"type": t, "value": v} for t, v in attributes]
    return rec


def rejects(batch: Batch) -> list[tuple[str, str, str]]:
    batch.flush()
    rows = batch.job.conn.execute("SELECT xid, field, reason FROM rejected ORDER BY id").fetchall()
    return [tuple(r) for r in rows]


LONG = "x" * 600
BAD = [
    {"type": "Ticket", "summary": "TKT-12", "xid": "bad-regex"},
    host("long.example.com", ("Description", LONG), xid="bad-long"),
    host("unknown-attr.example.com", ("Threat Score Notes", "hi"), xid="bad-type"),
    {"type": "URL", "summary": "https://notallowed.example/x", "xid": "bad-target",
     "attribute": [{"type": "Short Note", "value": "hi"}]},
    host("safe.example.com", xid="bad-fixed"),
    host("www.trusted.example", xid="bad-wildcard"),
    {"type": "Address", "summary": "10.1.2.3", "xid": "bad-cidr"},
]


def test_a_custom_type_defined_only_on_the_instance_is_accepted_and_sent(tc: Emulator, tmp_path: Path) -> None:
    with make_batch(tc, tmp_path / "job.sqlite") as batch:
        assert batch.save_all([{"type": "Ticket", "summary": "TKT-1234", "rating": 2}]) == 1
        batch.ticket("TKT-9876").tag("from-method")  # an interface-1 method, as for any custom type
        batch.flush()
        batch.submit_all()
        assert batch.errors() == []
    assert tc.store.indicator(OWNER, "Ticket", "TKT-1234") is not None
    assert tc.store.indicator(OWNER, "Ticket", "TKT-9876") is not None


def test_each_rule_violation_is_rejected_locally_and_never_sent(tc: Emulator, tmp_path: Path) -> None:
    good = host("good.example.com", ("Description", "fine"), ("Short Note", "ok"))
    with make_batch(tc, tmp_path / "job.sqlite") as batch:
        assert batch.save_all([*BAD, good], on_error="reject") == 1
        batch.submit_all()
        assert batch.errors() == []
        got = {xid: (field, reason) for xid, field, reason in rejects(batch)}
        assert outcome(batch.job)["rejected"] == len(BAD)
    assert set(got) == {r["xid"] for r in BAD}
    assert got["bad-regex"][0] == "summary" and "TKT-\\d{4}" in got["bad-regex"][1]
    assert got["bad-long"] == ("attribute[Description].value",
                               got["bad-long"][1]) and "maxSize of 500" in got["bad-long"][1]
    assert got["bad-type"][0] == "attribute[Threat Score Notes]" and "not an attribute type" in got["bad-type"][1]
    assert got["bad-target"][0] == "attribute[Short Note]" and "not allowed on URL" in got["bad-target"][1]
    for xid, listed in (("bad-fixed", "Indicator-Host"), ("bad-wildcard", "Indicator-Host"),
                        ("bad-cidr", "Indicator-Address-IPv4")):
        assert got[xid][0] == "summary" and f"field 'summary': excluded by {listed} (value" in got[xid][1]
    body = sent_bodies(tc)
    assert b"good.example.com" in body
    for needle in (b"TKT-12", LONG.encode(), b"Threat Score Notes", b"notallowed", b"safe.example.com",
                   b"www.trusted.example", b"10.1.2.3"):
        assert needle not in body
    assert tc.store.count(OWNER, "indicator") == 1


def test_the_fast_path_and_the_full_check_apply_the_same_rules(tc: Emulator, tmp_path: Path) -> None:
    """A raw dict the fast path takes and one only the full check takes (a security label)
    are held to the same attribute limit."""
    fast = host("fast.example.com", ("Description", LONG), xid="fast")
    full = host("full.example.com", ("Description", LONG), xid="full", securityLabel=[{"name": "TLP:AMBER"}])
    with make_batch(tc, tmp_path / "job.sqlite") as batch:
        assert batch.save_all([fast, full], on_error="reject") == 0
        assert [r[0] for r in rejects(batch)] == ["fast", "full"]


def test_an_owner_level_exclusion_list_applies_to_its_owner_only(tc: Emulator, tmp_path: Path) -> None:
    with make_batch(tc, tmp_path / "job.sqlite") as batch:
        assert batch.save_all([host("community-only.example.com")], on_error="reject") == 1
    with Batch("Common Community", tmp_path / "community.sqlite", client=make_client(tc)) as batch:
        assert batch.save_all([host("community-only.example.com")], on_error="reject") == 0
        assert "excluded by Indicator-Host" in rejects(batch)[0][2]


def test_truncate_attributes_cuts_to_max_size_and_counts(tc: Emulator, tmp_path: Path) -> None:
    with make_batch(tc, tmp_path / "job.sqlite", truncate_attributes=True) as batch:
        assert batch.save_all([host("long.example.com", ("Description", LONG)),
                               host("short.example.com", ("Description", "short"))], on_error="reject") == 2
        batch.submit_all()
        assert batch.errors() == []
        o = outcome(batch.job)
    assert o["truncated"] == 1 and o["rejected"] == 0
    stored = tc.store.indicator(OWNER, "Host", "long.example.com")
    assert stored is not None and [a["value"] for a in stored["attribute"]] == ["x" * 500]
    assert LONG.encode() not in sent_bodies(tc)


def test_bypass_exclusions_sends_and_the_emulator_refuses_with_its_error(tc: Emulator, tmp_path: Path) -> None:
    with make_batch(tc, tmp_path / "job.sqlite", bypass_exclusions=True) as batch:
        assert batch.save_all([host("safe.example.com", xid="safe")], on_error="reject") == 1
        batch.submit_all()
        errors = batch.errors()
    assert b"safe.example.com" in sent_bodies(tc)
    assert [e["code"] for e in errors] == ["0x1005"]
    assert "excluded by Indicator-Host" in errors[0]["errorReason"]
    assert tc.store.indicator(OWNER, "Host", "safe.example.com") is None


def test_with_preflight_off_the_emulator_refuses_each_record_preflight_rejects(tc: Emulator, tmp_path: Path) -> None:
    """Pre-flight and server agree: what pre-flight rejects, the server refuses, naming it."""
    known = {"data": {"indicatorType": [{"name": "Ticket", "value1Label": "Ticket ID"}]}}  # without its pattern
    with make_batch(tc, tmp_path / "job.sqlite", preflight=False, indicator_types=known) as batch:
        assert batch.save_all(BAD, on_error="reject") == len(BAD)
        batch.submit_all()
        by_xid: dict[str, list[dict]] = {}
        for e in batch.errors():
            by_xid.setdefault(e["xid"], []).append(e)
    assert {x: [e["code"] for e in es] for x, es in by_xid.items()} == {
        "bad-regex": ["0x1005"], "bad-long": ["0x2001"], "bad-type": ["0x2001"], "bad-target": ["0x2001"],
        "bad-fixed": ["0x1005"], "bad-wildcard": ["0x1005"], "bad-cidr": ["0x1005"]}
    reasons = {x: es[0]["errorReason"] for x, es in by_xid.items()}
    assert "TKT-\\d{4}" in reasons["bad-regex"]
    assert "longer than its maxSize of 500" in reasons["bad-long"]
    assert "'Threat Score Notes' is not accepted" in reasons["bad-type"]
    assert "'Short Note' is not allowed on URL" in reasons["bad-target"]
    assert "excluded by Indicator-Host" in reasons["bad-fixed"] and "excluded by Indicator-Host" in reasons["bad-wildcard"]
    assert "excluded by Indicator-Address-IPv4" in reasons["bad-cidr"]


def test_rules_are_cached_in_the_job_file_and_reused_on_resume(tc: Emulator, tmp_path: Path) -> None:
    job = tmp_path / "job.sqlite"
    with make_batch(tc, job) as batch:
        batch.save_all([host("first.example.com")])
        cached = batch.job.get_meta("rules")
    assert cached["owner"] == OWNER and cached["fetched"] > 0
    assert sorted(cached["active"]) == ["attributeTypes", "exclusionLists", "indicatorTypes"]
    asked = (gets(tc, "/v3/attributeTypes"), gets(tc, "/v3/security/exclusionLists"),
             gets(tc, "/v2/types/indicatorTypes"))
    assert asked == (1, 1, 1)
    with make_batch(tc, job) as batch:  # resumed: the same rules, not asked again
        assert batch.save_all([host("safe.example.com", xid="again"), {"type": "Ticket", "summary": "TKT-0001"}],
                              on_error="reject") == 1
        assert ["excluded by Indicator-Host" in r[2] for r in rejects(batch)] == [True]
        batch.submit_all()
    assert (gets(tc, "/v3/attributeTypes"), gets(tc, "/v3/security/exclusionLists"),
            gets(tc, "/v2/types/indicatorTypes")) == asked
    assert tc.store.indicator(OWNER, "Ticket", "TKT-0001") is not None


def test_a_job_made_offline_uses_the_rules_cached_in_it(tc: Emulator, tmp_path: Path) -> None:
    job = tmp_path / "job.sqlite"
    with make_batch(tc, job) as batch:
        batch.save_all([host("first.example.com")])
    with Batch(OWNER, job, preflight=True) as batch:  # no API at all: the cached rules still apply
        assert batch.save_all([host("www.trusted.example")], on_error="reject") == 0
        assert "excluded by Indicator-Host" in rejects(batch)[0][2]


def test_an_instance_without_the_v3_endpoints_degrades_with_one_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Emulator(db=tmp_path / "emu.sqlite", v3=False, **RULES) as tc:
        caplog.set_level(logging.INFO, logger="streambatch")
        with make_batch(tc, tmp_path / "job.sqlite") as batch:
            assert batch.save_all([host("safe.example.com"), {"type": "Ticket", "summary": "TKT-1234"},
                                   host("long.example.com", ("Description", LONG))], on_error="reject") == 3
            batch.submit_all()
            rules = batch.job.get_meta("rules")
        assert rules["active"] == ["indicatorTypes"]
        assert tc.store.indicator(OWNER, "Ticket", "TKT-1234") is not None
    lines = [r.getMessage() for r in caplog.records if "pre-flight" in r.getMessage()]
    unavailable = [m for m in lines if "unavailable" in m]
    assert len(unavailable) == 1, lines
    assert "attributeTypes (HTTP 404)" in unavailable[0] and "exclusionLists (HTTP 404)" in unavailable[0]
    assert "active: indicatorTypes" in unavailable[0]


def test_no_permission_on_one_endpoint_disables_that_rule_set_only(tc: Emulator, tmp_path: Path) -> None:
    tc.set_faults([{"kind": "status", "method": "GET", "path": "/v3/security/exclusionLists*", "status": 403,
                    "times": 0}])
    client = make_client(tc)
    with make_batch(tc, tmp_path / "job.sqlite", client=client) as batch:
        assert batch.save_all([host("safe.example.com"), host("long.example.com", ("Description", LONG))],
                              on_error="reject") == 1
        rules = batch.job.get_meta("rules")
    assert sorted(rules["active"]) == ["attributeTypes", "indicatorTypes"]
    assert rules["unavailable"] == {"exclusionLists": "HTTP 403"}


def test_the_rules_endpoints_follow_the_documented_shapes(tc: Emulator) -> None:
    client = make_client(tc)
    page = client._json(client.request("GET", "/v3/attributeTypes", params={"resultLimit": 2}, idempotent=True))
    assert page["status"] == "Success" and len(page["data"]) == 2 and "next" in page
    assert set(page["data"][0]) >= {"id", "name", "maxSize", "allowMarkdown", "errorMessage", "systemRequired"}
    lists = client._json(client.request("GET", "/v3/security/exclusionLists",
                                        params={"owner": OWNER, "fields": "values"}, idempotent=True))
    names = [(e["name"], e.get("owner")) for e in lists["data"]]
    assert names == [("Indicator-Host", None), ("Indicator-Address-IPv4", OWNER)]
    assert lists["data"][0]["fixedValues"] == {"data": [{"value": "safe.example.com"}], "count": 1}
    assert lists["data"][1]["variableValues"]["data"] == [{"value": "10.0.0.0/8"}]
    plain = client._json(client.request("GET", "/v3/security/exclusionLists", params={"owner": OWNER},
                                        idempotent=True))
    assert "fixedValues" not in plain["data"][0] and plain["data"][0]["managed"] is False
    types = client._json(client.request("GET", "/v2/types/indicatorTypes", params={"includeAdditional": "true"},
                                        idempotent=True))
    ticket = next(t for t in types["data"]["indicatorType"] if t["name"] == "Ticket")
    assert ticket["regexes"] == [r"TKT-\d{4}"]
    client.close()



class DictCache(dict):
    """A feed state file's meta, as Batch(rules_cache=) uses it."""

    def put(self, key: str, value: Any) -> None:
        self[key] = value


def test_a_fresh_cached_copy_is_used_and_an_outage_is_not_cached(tc: Emulator, tmp_path: Path) -> None:
    cache = DictCache()
    with make_batch(tc, tmp_path / "one.sqlite", rules_cache=cache) as batch:
        batch.save_all([host("one.example.com")])
    assert cache["rules"]["owner"] == OWNER and gets(tc, "/v3/attributeTypes") == 1
    with make_batch(tc, tmp_path / "two.sqlite", rules_cache=cache, rules_refresh="1h") as batch:
        assert batch.save_all([host("safe.example.com")], on_error="reject") == 0  # the cached lists apply
    assert gets(tc, "/v3/attributeTypes") == 1

    stale = DictCache(rules={**cache["rules"], "fetched": cache["rules"]["fetched"] - 7200})
    tc.set_faults([{"kind": "status", "method": "GET", "path": "/v3/attributeTypes", "status": 503, "times": 0}])
    with make_batch(tc, tmp_path / "three.sqlite", rules_cache=stale, rules_refresh="1h") as batch:
        assert batch.rules is not None and batch.rules.unavailable == {"attributeTypes": "HTTP 503"}
    assert stale["rules"]["fetched"] == cache["rules"]["fetched"] - 7200  # not replaced by a partial read


def test_rules_are_read_from_the_api_the_environment_configures(tc: Emulator, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TC_API_PATH", tc.url)
    monkeypatch.setenv("TC_API_ACCESS_ID", tc.access_id)
    monkeypatch.setenv("TC_API_SECRET_KEY", tc.secret_key)
    with Batch(OWNER, tmp_path / "job.sqlite") as batch:
        assert batch.save_all([host("safe.example.com"), {"type": "Ticket", "summary": "TKT-4321"}],
                              on_error="reject") == 1
    assert gets(tc, "/v3/security/exclusionLists") == 1


def test_an_unreachable_instance_is_said_once_and_staging_goes_on(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from streambatch.client import ApiConfig, Client

    caplog.set_level(logging.INFO, logger="streambatch")
    client = Client(ApiConfig("http://127.0.0.1:9/api", "id", "secret"))
    with Batch(OWNER, tmp_path / "job.sqlite", client=client) as batch:
        assert batch.save_all([host("a.example.com")]) == 1
        assert batch.rules is not None and batch.rules.active == []
    lines = [r.getMessage() for r in caplog.records if "pre-flight" in r.getMessage()]
    assert len(lines) == 1 and "instance not reachable" in lines[0], lines
