"""The feed recipes of data/feeds/: each folder's <name>.toml is run through ``streambatch run``
against its sample (the TAXII recipe against medallion on loopback, loaded with the STIX
recipe's bundle; the MISP recipe against its sample feed folder), and what lands in the
emulator is checked: exit 0, the exact rejected rows, the record counts and a few exact values.
A recipe folder without a check here fails."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from feed_cli import OWNER, Run, attributes, run_json, tags
from taxii_server import PASSWORD, USER, TaxiiServer, collection

from streambatch.emulator import Emulator
from streambatch.emulator.rules import DEFAULT_ATTRIBUTE_TYPES

RECIPES = Path(__file__).resolve().parents[2] / "data" / "feeds"


@pytest.fixture
def tc(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(db=tmp_path / "emu.sqlite", attribute_types=(*DEFAULT_ATTRIBUTE_TYPES, "Port")) as emulator:
        yield emulator


def types(tc: Emulator) -> dict[str, int]:
    """How many indicators of each type the emulator holds."""
    out: dict[str, int] = {}
    for record in tc.store.indicators(OWNER):
        out[record["type"]] = out.get(record["type"], 0) + 1
    return out


def labels(record: dict) -> set[str]:
    return {label["name"] for label in record.get("securityLabel") or []}


def check_urlhaus(tc: Emulator, done: Run) -> None:
    assert (done.run["read"], done.run["rejected"], done.run["new"]) == (20, 0, 20)
    assert types(tc) == {"URL": 20}
    mozi = tc.store.indicator(OWNER, "URL", "http://115.55.237.117:50133/Mozi.m")
    assert tags(mozi) == {"32-bit", "elf", "mips", "Mozi", "malware_download", "feed:urlhaus"}
    assert attributes(mozi) == {"Source": ["https://urlhaus.abuse.ch/url/3412861/"], "Port": ["50133"]}
    assert mozi["firstSeen"] == "2026-11-30T10:04:07Z" and mozi["rating"] == 3 and mozi["confidence"] == 80
    offline = tc.store.indicator(OWNER, "URL", "http://42.230.36.154:42917/bin.sh")
    assert "lastSeen" not in offline  # an empty last_online is left out
    query = tc.store.indicator(OWNER, "URL", "http://docs-viewer.example.info/view.php?id=8812&t=doc")
    assert "Port" not in attributes(query) and tags(query) >= {"js", "doc", "Qakbot"}
    assert tags(tc.store.indicator(OWNER, "URL", "http://store-checkout.example-shop.biz/js/jquery.min.php")) == {
        "malware_download", "feed:urlhaus"}  # an empty tags cell


def check_feodo(tc: Emulator, done: Run) -> None:
    assert (done.run["read"], done.run["rejected"]) == (15, 0)
    assert types(tc) == {"Address": 15}
    ip = tc.store.indicator(OWNER, "Address", "141.98.6.93")
    assert attributes(ip) == {"Port": ["8443"], "Additional Analysis and Context": [
        "BumbleBee botnet C2 on port 8443, online when last checked"]}
    assert tags(ip) == {"BumbleBee", "feed:feodotracker", "botnet-c2"}
    assert ip["firstSeen"] == "2024-07-22T17:30:02Z" and ip["lastSeen"] == "2026-11-30T00:00:00Z"
    assert ip["rating"] == 4 and ip["confidence"] == 90


def check_threatfox(tc: Emulator, done: Run) -> None:
    assert (done.run["read"], done.run["rejected"]) == (15, 0)
    store = tc.store
    assert types(tc) == {"Address": 6, "Host": 3, "URL": 3, "File": 3}
    cobalt = store.indicator(OWNER, "Address", "45.155.205.233")
    assert attributes(cobalt) == {"Port": ["443"], "Additional Analysis and Context": [
        "Threat type: botnet_cc; malware: Cobalt Strike (win.cobalt_strike)"]}
    assert tags(cobalt) == {"c2", "CobaltStrike", "Cobalt Strike", "threat:botnet_cc", "feed:threatfox"}
    assert cobalt["confidence"] == 100 and cobalt["firstSeen"] == "2026-11-30T09:58:12Z"
    url = store.indicator(OWNER, "URL", "http://198.51.100.7:8080/gate.php")
    assert attributes(url)["Port"] == ["8080"] and tags(url) == {"Agent Tesla", "threat:botnet_cc", "feed:threatfox"}
    vidar = store.indicator(OWNER, "URL", "https://panel.example-c2.top/login/index.php")
    assert "Port" not in attributes(vidar) and vidar["lastSeen"] == "2026-11-30T10:01:00Z"
    host = store.indicator(OWNER, "Host", "update-checker.example-soft.net")
    assert host["confidence"] == 75 and "Source" not in attributes(host)  # an empty reference
    assert store.indicator(OWNER, "File", "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12") is not None  # sha1_hash
    remcos = store.indicator(OWNER, "File", "d41d8cd98f00b204e9800998ecf8427e")
    assert attributes(remcos)["Source"] == [
        "https://bazaar.abuse.ch/sample/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/"]


def check_openphish(tc: Emulator, done: Run) -> None:
    assert (done.run["read"], done.run["rejected"]) == (22, 0)
    assert types(tc) == {"URL": 22}
    url = tc.store.indicator(OWNER, "URL", "https://www.office-365-sharepoint.example-files.com/sites/finance/"
                                           "Shared%20Documents/Q4%20Report.html")
    assert tags(url) == {"feed:openphish", "phishing"} and url["rating"] == 3 and url["confidence"] == 70


def check_spamhaus_drop(tc: Emulator, done: Run) -> None:
    assert (done.run["read"], done.run["rejected"]) == (25, 0)  # the 4 header lines are comments
    assert types(tc) == {"CIDR": 25}
    cidr = tc.store.indicator(OWNER, "CIDR", "1.10.16.0/20")
    assert cidr["summary"] == "1.10.16.0/20" and tags(cidr) == {"feed:spamhaus-drop"} and cidr["rating"] == 4
    assert tc.store.indicator(OWNER, "CIDR", "185.215.113.0/24") is not None


def check_et_compromised(tc: Emulator, done: Run) -> None:
    assert (done.run["read"], done.run["rejected"]) == (40, 0)
    assert types(tc) == {"Address": 40}
    ip = tc.store.indicator(OWNER, "Address", "194.169.175.36")
    assert tags(ip) == {"feed:et-compromised"} and ip["confidence"] == 60


def _check_bundle(tc: Emulator, done: Run, tag: str) -> None:
    # 9 indicator objects (one with two addresses), 3 groups + a report, 9 associations; the
    # network-traffic pattern cannot be a ThreatConnect indicator: rejected, with its reason
    assert done.run["rejected"] == 1
    [bad] = done.rejected
    assert bad["reason"].endswith(": network-traffic:dst_port is not a mapped observable property")
    assert "[network-traffic:dst_port = 4444]" in bad["raw"]
    store = tc.store
    assert types(tc) == {"Address": 3, "CIDR": 1, "Host": 1, "URL": 1, "File": 2, "EmailAddress": 1}
    assert sorted(g["type"] for g in store.groups(OWNER)) == ["Adversary", "Campaign", "Malware", "Report"]
    ip = store.indicator(OWNER, "Address", "198.51.100.23")
    assert labels(ip) == {"TLP:AMBER"} and ip["confidence"] == 80
    assert tags(ip) == {"malicious-activity", "conti", "initial-access", tag}
    assert attributes(ip) == {"Description": ["C2 server"]}
    malware = next(g for g in store.groups(OWNER) if g["name"] == "Conti")
    assert ip["associatedGroups"] == [{"groupXid": malware["xid"]}] and labels(malware) == {"TLP:GREEN"}
    assert store.indicator(OWNER, "CIDR", "192.0.2.0/24") is not None
    assert store.indicator(OWNER, "EmailAddress", "billing@example-billing.com") is not None
    assert len(store.associations(OWNER)) == 9


def check_stix_bundle(tc: Emulator, done: Run) -> None:
    assert done.rejected[0]["line"] == 15 and done.run["read"] == 23
    _check_bundle(tc, done, "feed:stix-bundle")


def check_taxii(tc: Emulator, done: Run) -> None:
    _check_bundle(tc, done, "feed:taxii")


def check_misp(tc: Emulator, done: Run) -> None:
    # 14 attributes in 2 events and a file object: 11 indicators; link, text, ssdeep (no
    # ThreatConnect type) and an AS not flagged to_ids are skipped
    assert (done.run["read"], done.run["rejected"], done.run["new"]) == (13, 0, 13)
    store = tc.store
    assert types(tc) == {"URL": 1, "Host": 2, "Address": 2, "EmailAddress": 1, "File": 2, "Mutex": 1,
                         "User Agent": 1, "Registry Key": 1}
    assert sorted(g["name"] for g in store.groups(OWNER)) == ["OSINT - Loader C2 infrastructure",
                                                              "OSINT - Phishing kit targeting webmail users"]
    c2 = store.indicator(OWNER, "Address", "203.0.113.45")
    assert attributes(c2) == {"Port": ["8443"], "Description": ["C2"]} and labels(c2) == {"TLP:AMBER"}
    assert tags(c2) == {"type:OSINT", "SmokeLoader", "misp-category:Network activity", "feed:misp"}
    assert c2["confidence"] == 60
    assert c2["associatedGroups"] == [{"groupXid": "misp:event:8e2f1a4b-9c3d-4e5f-a6b7-c8d9e0f1a2b3"}]
    url = store.indicator(OWNER, "URL", "https://webmail-login.example-phish.test/owa/auth.php")
    assert labels(url) == {"TLP:GREEN"} and "TA558" in tags(url) and attributes(url) == {"Description": ["landing page"]}
    dropped = store.indicator(OWNER, "File", "a3f5c1e2d4b6a8c0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8")
    assert [o["fileName"] for o in dropped["fileOccurrence"]] == ["invoice.html"]
    loader = store.indicator(OWNER, "File", "5d41402abc4b2a76b9719d911017c592")
    assert [o["fileName"] for o in loader["fileOccurrence"]] == ["loader.dll"]
    assert store.indicator(OWNER, "Registry Key", "HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion"
                                                  "\\Run\\updater :   : REG_NONE") is not None
    assert store.indicator(OWNER, "ASN", "ASN64496") is None  # not flagged to_ids


CHECKS: dict[str, Callable[[Emulator, Run], None]] = {
    "urlhaus": check_urlhaus,
    "feodo": check_feodo,
    "threatfox": check_threatfox,
    "openphish": check_openphish,
    "spamhaus-drop": check_spamhaus_drop,
    "et-compromised": check_et_compromised,
    "stix-bundle": check_stix_bundle,
    "taxii": check_taxii,
    "misp": check_misp,
}


def recipe_folders() -> list[str]:
    return sorted(p.name for p in RECIPES.iterdir() if p.is_dir() and not p.name.endswith(".streambatch"))


def test_every_recipe_has_a_check() -> None:
    assert recipe_folders() == sorted(CHECKS), "a recipe folder in data/feeds/ needs a check in CHECKS"
    for name in recipe_folders():
        assert (RECIPES / name / f"{name}.toml").is_file(), f"data/feeds/{name}/ has no {name}.toml"


@pytest.mark.parametrize("name", recipe_folders())
def test_recipe_config_names_the_real_feed_and_defaults_to_its_sample(name: str) -> None:
    text = (RECIPES / name / f"{name}.toml").read_text(encoding="utf-8")
    assert re.search(r"^#.*https://\S+", text, re.M), f"{name}: no public URL in a comment"
    source = re.search(r'^source = "([^"]+)"', text, re.M).group(1)
    if name == "taxii":  # the server and its credentials come from the environment
        assert source == "taxii2+${TAXII_URL}" and "${TAXII_USER}" in text and "${TAXII_PASSWORD}" in text
    elif source.startswith("misp+"):  # a MISP feed is a folder
        assert (RECIPES / name / source[len("misp+"):] / "manifest.json").is_file(), f"{name}: no sample folder"
    else:
        assert (RECIPES / name / source).is_file(), f"{name}: the default source {source!r} is not the sample"


@pytest.mark.parametrize("name", recipe_folders())
def test_recipe_runs_against_its_sample(name: str, tmp_path: Path, tc: Emulator) -> None:
    folder = tmp_path / name
    shutil.copytree(RECIPES / name, folder)
    cfg = folder / f"{name}.toml"
    with cfg.open("a") as fh:
        fh.write("\n[batch]\npoll_interval = 0.02\n")
    env: dict[str, str] = {}
    server = None
    if name == "taxii":
        objects = json.loads((RECIPES / "stix-bundle" / "bundle.json").read_text())["objects"]
        server = TaxiiServer([collection("91a7b528-80eb-42ed-a74d-c6fbd5a26116", "Indicators", objects)]).start()
        env = {"TAXII_URL": server.discovery_url, "TAXII_USER": USER, "TAXII_PASSWORD": PASSWORD}
    try:
        done = run_json(tc, cfg, **env)
    finally:
        if server is not None:
            server.stop()
    assert done.code == 0, (done.run, done.stderr[-3000:])
    assert done.run["failed"] == 0 and done.run["warned"] == 0, done.run
    CHECKS[name](tc, done)
