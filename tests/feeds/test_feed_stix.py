"""STIX 2.1 bundles built with the stix2 library."""

from __future__ import annotations

from pathlib import Path

import stix2

from streambatch import Batch
from streambatch.feeds import read_feed

MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
T = "2024-03-01T12:00:00Z"


def _bundle(tmp_path: Path) -> tuple[Path, dict]:
    ind_ip = stix2.Indicator(name="C2 server", description="Seen in March", pattern_type="stix", valid_from=T,
                             pattern="[ipv4-addr:value = '198.51.100.7']", confidence=85,
                             indicator_types=["malicious-activity"], labels=["c2"], object_marking_refs=[stix2.TLP_AMBER])
    ind_or = stix2.Indicator(pattern_type="stix", valid_from=T,
                             pattern="[domain-name:value = 'Evil.Example.com'] OR [url:value = 'http://evil.example.com/p']"
                                     " OR [ipv6-addr:value = '2001:db8::7'] OR [email-addr:value = 'bad@evil.example.com']")
    ind_file = stix2.Indicator(pattern_type="stix", valid_from=T,
                               pattern=f"[file:hashes.MD5 = '{MD5}' AND file:hashes.'SHA-256' = '{SHA256}'] "
                                       f"OR [file:hashes.'SHA-1' = '{SHA1}']")
    ind_bad = stix2.Indicator(pattern_type="stix", valid_from=T,
                              pattern="[ipv4-addr:value = '203.0.113.1'] FOLLOWEDBY [domain-name:value = 'x.example.com']")
    groups = [
        stix2.ThreatActor(name="APT Example", description="An actor", labels=["nation-state"], created=T),
        stix2.Campaign(name="Operation Example", first_seen=T),
        stix2.Malware(name="ExampleRAT", is_family=True),
        stix2.IntrusionSet(name="Example Set"),
        stix2.AttackPattern(name="Spearphishing"),
        stix2.Vulnerability(name="CVE-2024-0001"),
        stix2.Tool(name="Mimikatz"),
    ]
    report = stix2.Report(name="Example report", published=T, object_refs=[ind_ip.id, groups[0].id])
    identity = stix2.Identity(name="Analyst", identity_class="individual")
    rels = [
        stix2.Relationship(ind_ip, "indicates", groups[2]),  # indicator -> malware
        stix2.Relationship(groups[0], "uses", groups[2]),  # actor -> malware
        stix2.Relationship(ind_or, "indicates", groups[1]),  # 4 indicators -> campaign
        stix2.Relationship(ind_bad, "indicates", groups[0]),  # points to an unmapped indicator
        stix2.Relationship(identity, "attributed-to", groups[0]),  # an unmapped end
    ]
    late = stix2.Indicator(pattern_type="stix", valid_from=T, pattern="[ipv4-addr:value = '192.0.2.9']")
    forward = stix2.Relationship(late, "indicates", groups[6])  # the indicator comes later in the bundle
    note = stix2.Note(content="a note", object_refs=[groups[0].id])
    bundle = stix2.Bundle(identity, ind_ip, ind_or, ind_file, ind_bad, *groups, forward, report, *rels, late, note,
                          allow_custom=True)
    path = tmp_path / "bundle.json"
    path.write_text(bundle.serialize())
    ids = {"ip": ind_ip.id, "or": ind_or.id, "bad": ind_bad.id, "report": report.id, "note": note.id,
           **{g.type: g.id for g in groups}}
    return path, ids


def test_stix_mapping(tmp_path: Path) -> None:
    path, ids = _bundle(tmp_path)
    items = list(read_feed(path, "stix", options={"tags": ["feed:stix"]}))
    records = [i.record for i in items if i.record]
    errors = [i for i in items if i.error]
    indicators = {(r["type"], r["summary"]): r for r in records if "summary" in r}
    assert set(indicators) == {
        ("Address", "198.51.100.7"), ("Host", "evil.example.com"), ("URL", "http://evil.example.com/p"),
        ("Address", "2001:db8::7"), ("EmailAddress", "bad@evil.example.com"),
        ("File", f"{MD5} : {SHA256}"), ("File", SHA1), ("Address", "192.0.2.9"),
    }
    ip = indicators[("Address", "198.51.100.7")]
    assert ip["confidence"] == 85 and ip["firstSeen"] == T
    assert ip["tag"] == [{"name": "malicious-activity"}, {"name": "c2"}, {"name": "feed:stix"}]
    assert ip["attribute"] == [{"type": "Description", "value": "C2 server\n\nSeen in March"}]
    assert ip["securityLabel"] == [{"name": "TLP:AMBER"}]

    groups = {r["type"]: r for r in records if "name" in r}
    assert set(groups) == {"Adversary", "Campaign", "Malware", "Intrusion Set", "Attack Pattern", "Vulnerability",
                           "Tool", "Report"}
    actor = groups["Adversary"]
    assert actor["xid"] == ids["threat-actor"] and actor["name"] == "APT Example"
    assert actor["attribute"] == [{"type": "Description", "value": "An actor"}]
    assert actor["tag"] == [{"name": "nation-state"}] and actor["externalDateAdded"] == T
    assert groups["Campaign"]["firstSeen"] == T and groups["Report"]["publishDate"] == T
    assert groups["Vulnerability"]["xid"] == ids["vulnerability"]

    assocs = [r["association"] for r in records if "association" in r]
    malware, campaign = ids["malware"], ids["campaign"]
    assert {"ref_1": "198.51.100.7", "type_1": "Address", "ref_2": malware} in assocs
    assert {"ref_1": ids["threat-actor"], "ref_2": malware} in assocs
    assert sum(1 for a in assocs if a["ref_2"] == campaign) == 4  # one per indicator of the OR pattern
    assert {"ref_1": ids["report"], "ref_2": "198.51.100.7", "type_2": "Address"} in assocs
    assert {"ref_1": ids["report"], "ref_2": ids["threat-actor"]} in assocs
    assert {"ref_1": "192.0.2.9", "type_1": "Address", "ref_2": ids["tool"]} in assocs  # forward reference
    assert len(assocs) == 9

    reasons = sorted(e.error for e in errors)
    assert any("FOLLOWEDBY" in r and ids["bad"] in r for r in reasons)
    assert any("was not mapped" in r and ids["bad"] in r for r in reasons)
    assert any("identity--" in r and "not a mapped STIX object" in r for r in reasons)
    assert any("'note' is not mapped" in r for r in reasons)
    assert len(errors) == 4 and all(e.line >= 1 and e.raw for e in errors)


def test_stix_records_go_into_a_batch(tmp_path: Path) -> None:
    path, _ = _bundle(tmp_path)
    items = [i for i in read_feed(path, "stix") if i.record]
    with Batch("Org", tmp_path / "job.sqlite") as batch:
        staged = batch.save_all((i.record for i in items if "association" not in i.record), on_error="raise")
        for item in items:
            if "association" in item.record:
                batch.add_association(item.record["association"])
    assert staged == 16


def test_unmappable_patterns_are_bad_rows(tmp_path: Path) -> None:
    patterns = {
        "[file:name = 'x.exe']": "not a mapped observable property",
        "[ipv4-addr:value != '1.2.3.4']": "negated",
        "[ipv4-addr:value = '1.2.3.4'] WITHIN 10 SECONDS": "qualifiers",
        "[ipv4-addr:value = '1.2.3.4'] AND [url:value = 'http://a.example.com']": "AND of observations",
        "[file:hashes.'SHA-512' = '" + "a" * 128 + "']": "is not MD5, SHA-1 or SHA-256",
        "[url:value MATCHES '^http']": "Regex",
        "[ipv4-addr:value ISSUBSET '10.0.0.0/8']": None,  # mappable: a CIDR
    }
    objs = [stix2.Indicator(pattern_type="stix", valid_from=T, pattern=p) for p in patterns]
    objs.append(stix2.Indicator(pattern_type="snort", valid_from=T, pattern="alert tcp any any -> any any"))
    (tmp_path / "b.json").write_text(stix2.Bundle(*objs).serialize())
    items = list(read_feed(tmp_path / "b.json", "stix"))
    assert len(items) == len(objs)
    for item, expected in zip(items, list(patterns.values()) + ["pattern_type 'snort'"]):
        if expected is None:
            assert item.record == {"type": "CIDR", "summary": "10.0.0.0/8", "firstSeen": T,
                                   "externalDateAdded": item.record["externalDateAdded"],
                                   "externalLastModified": item.record["externalLastModified"]}
        else:
            assert item.record is None and expected in item.error, (item.error, expected)
