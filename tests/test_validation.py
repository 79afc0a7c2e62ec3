"""Malformed input across all interfaces raises ValidationError naming the type and the offending
field (spec 5.6); well-formed input is canonicalised."""

from __future__ import annotations

import re

import pytest

from streambatch import Batch, ValidationError

MD5 = "43c3609411c83f363e051d455ade78a6"
SHA1 = "57a49b478310e4313c54c0fee46e4d70a73dd580"
SHA256 = "db31cb2a748b7e0046d8c97a32a7eb4efde32a0593e5dbd58e07a3b4ae6bf3d7"
HKLM = "HKEY_LOCAL_MACHINE\\Software"


@pytest.fixture
def batch(tmp_path):
    b = Batch("MyOrg", tmp_path / "job.sqlite")
    yield b
    b.job.close()  # not close(): that would stage (and re-validate) the broken records left in memory


def _label_color(b):
    b.adversary("a").security_label("L").color = "zzzzzz"


def _occurrence_date(b):
    b.file(MD5).occurrence().date = "not a date"


def _save_occurrence_empty(b):
    b.file(MD5).occurrence()
    b.save(b.file(MD5))


# (id, action, expected type, expected field)
CASES = [
    # unknown types
    ("group-unknown-type", lambda b: b.group("Bogus", "x"), "Bogus", "type"),
    ("indicator-unknown-type", lambda b: b.indicator("Bogus", "x"), "Bogus", "type"),
    ("indicator-type-is-a-group", lambda b: b.indicator("Adversary", "x"), "Adversary", "type"),
    ("i3-unknown-type", lambda b: b.add_group({"type": "Bogus", "name": "x", "xid": "1"}), "Bogus", "type"),
    ("i3-indicator-type-as-group", lambda b: b.add_group({"type": "Host", "name": "x", "xid": "1"}), "Host", "type"),
    # group names and xids
    ("group-missing-name", lambda b: b.group("Adversary", None), "Adversary", "name"),
    ("group-blank-name", lambda b: b.adversary("   "), "Adversary", "name"),
    ("group-name-over-100", lambda b: b.adversary("x" * 101), "Adversary", "name"),
    ("i3-missing-name", lambda b: b.add_group({"type": "Adversary", "xid": "1"}), "Adversary", "name"),
    ("i3-group-missing-xid", lambda b: b.add_group({"type": "Adversary", "name": "x"}), "Adversary", "xid"),
    ("i3-indicator-missing-xid", lambda b: b.add_indicator({"type": "Host", "summary": "a.com"}), "Host", "xid"),
    ("xid-used-by-other-type", lambda b: (b.adversary("a", xid="X"), b.threat("t", xid="X")), "Threat", "xid"),
    # Email
    ("email-missing-subject", lambda b: b.save(b.email("e", None, "h", "b")), "Email", "subject"),
    ("email-missing-header", lambda b: b.add_group({"type": "Email", "name": "e", "xid": "1", "subject": "s",
                                                    "body": "b"}), "Email", "header"),
    ("email-missing-body", lambda b: b.add_group({"type": "Email", "name": "e", "xid": "1", "subject": "s",
                                                  "header": "h"}), "Email", "body"),
    # Signature
    ("signature-missing-fileName", lambda b: b.add_group({"type": "Signature", "name": "s", "xid": "1",
                                                          "fileType": "YARA", "fileText": "r"}),
     "Signature", "fileName"),
    ("signature-missing-fileType", lambda b: b.add_group({"type": "Signature", "name": "s", "xid": "1",
                                                          "fileName": "a.yar", "fileText": "r"}),
     "Signature", "fileType"),
    ("signature-missing-fileText", lambda b: b.save(b.signature("s", "a.yar", "YARA", None)), "Signature", "fileText"),
    ("signature-bad-fileType", lambda b: b.signature("s", "a.yar", "Bogus", "r"), "Signature", "fileType"),
    # Address
    ("ipv4-octet-256", lambda b: b.address("256.1.1.1"), "Address", "ip"),
    ("ipv4-three-octets", lambda b: b.address("1.2.3"), "Address", "ip"),
    ("ipv4-leading-zero", lambda b: b.address("01.2.3.4"), "Address", "ip"),
    ("ipv6-bad-hex", lambda b: b.address("2001:db8::g"), "Address", "ip"),
    ("ipv6-nine-groups", lambda b: b.address("1:2:3:4:5:6:7:8:9"), "Address", "ip"),
    ("i3-address-bad-summary", lambda b: b.add_indicator({"type": "Address", "summary": "999.1.1.1", "xid": "1"}),
     "Address", "summary"),
    ("i3-address-bad-ip-field", lambda b: b.add_indicator({"type": "Address", "ip": "999.1.1.1", "xid": "1"}),
     "Address", "ip"),
    # CIDR
    ("cidr-no-prefix", lambda b: b.cidr("10.0.0.0"), "CIDR", "Block"),
    ("cidr-prefix-33", lambda b: b.cidr("10.0.0.0/33"), "CIDR", "Block"),
    ("cidr-bad-network", lambda b: b.cidr("300.0.0.0/8"), "CIDR", "Block"),
    # ASN
    ("asn-digits-only", lambda b: b.asn("12345"), "ASN", "AS Number"),
    ("asn-int", lambda b: b.asn(12345), "ASN", "AS Number"),
    ("asn-AS-prefix", lambda b: b.asn("AS12345"), "ASN", "AS Number"),
    ("asn-AS-space", lambda b: b.asn("AS 12345"), "ASN", "AS Number"),
    ("asn-ASN-space", lambda b: b.asn("ASN 12345"), "ASN", "AS Number"),
    # Host
    ("host-underscore", lambda b: b.host("m_lena.matroschka.pl"), "Host", "hostName"),
    ("host-leading-dash", lambda b: b.host("-bad.example.com"), "Host", "hostName"),
    ("host-trailing-dash", lambda b: b.host("bad-.example.com"), "Host", "hostName"),
    ("host-no-dot", lambda b: b.host("localhost"), "Host", "hostName"),
    ("host-non-ascii", lambda b: b.host("österreich.icom.museum"), "Host", "hostName"),
    ("host-label-64", lambda b: b.host("a" * 64 + ".com"), "Host", "hostName"),
    ("host-total-254", lambda b: b.host(".".join(["a" * 63] * 4) + ".com"), "Host", "hostName"),
    ("i2-host-underscore", lambda b: b.indicator("Host", "bad_host.example.com"), "Host", "summary"),
    # URL
    ("url-no-scheme", lambda b: b.url("www.example.com/path"), "URL", "text"),
    ("url-whitespace", lambda b: b.url("http://exa mple.com/"), "URL", "text"),
    ("url-non-ascii-host", lambda b: b.url("http://österreich.com/"), "URL", "text"),
    # EmailAddress
    ("email-no-at", lambda b: b.email_address("user.example.com"), "EmailAddress", "address"),
    ("email-no-local", lambda b: b.email_address("@example.com"), "EmailAddress", "address"),
    ("email-domain-no-dot", lambda b: b.email_address("user@example"), "EmailAddress", "address"),
    ("email-double-dot", lambda b: b.email_address("us..er@example.com"), "EmailAddress", "address"),
    ("email-bad-domain-label", lambda b: b.email_address("user@exa_mple.com"), "EmailAddress", "address"),
    # File hashes
    ("md5-non-hex", lambda b: b.file(md5="g" * 32), "File", "md5"),
    ("sha256-non-hex", lambda b: b.file(sha256="z" * 64), "File", "sha256"),
    ("md5-wrong-length", lambda b: b.file(md5="a" * 31), "File", "md5"),
    ("i3-md5-wrong-length", lambda b: b.add_indicator({"type": "File", "md5": "a" * 31, "xid": "1"}), "File", "md5"),
    ("i3-sha1-wrong-length", lambda b: b.add_indicator({"type": "File", "sha1": "a" * 41, "xid": "1"}),
     "File", "sha1"),
    ("i3-sha1-non-hex", lambda b: b.add_indicator({"type": "File", "sha1": "x" * 40, "xid": "1"}), "File", "sha1"),
    ("i3-sha256-wrong-length", lambda b: b.add_indicator({"type": "File", "sha256": "a" * 63, "xid": "1"}),
     "File", "sha256"),
    ("i2-file-bad-summary-token", lambda b: b.indicator("File", "abc : " + MD5), "File", "summary"),
    ("file-no-hash", lambda b: b.file(), "File", "summary"),
    # rating / confidence
    ("rating-negative", lambda b: b.address("1.1.1.1", rating=-1), "Address", "rating"),
    ("rating-6", lambda b: b.address("1.1.1.1", rating=6), "Address", "rating"),
    ("rating-text", lambda b: b.address("1.1.1.1", rating="x"), "Address", "rating"),
    ("rating-setter", lambda b: setattr(b.host("a.com"), "rating", 7), "Host", "rating"),
    ("confidence-negative", lambda b: b.address("1.1.1.1", confidence=-1), "Address", "confidence"),
    ("confidence-101", lambda b: b.address("1.1.1.1", confidence=101), "Address", "confidence"),
    ("confidence-fraction", lambda b: b.address("1.1.1.1", confidence=50.5), "Address", "confidence"),
    ("i3-confidence-101", lambda b: b.add_indicator({"type": "Host", "summary": "a.com", "xid": "1",
                                                     "confidence": 101}), "Host", "confidence"),
    # enumerations
    ("event-status", lambda b: b.event("e", status="Open"), "Event", "status"),
    ("incident-status", lambda b: b.incident("i", status="Needs Review"), "Incident", "status"),
    ("event-type", lambda b: b.group("Event", "e", event_type="Bogus"), "Event", "eventType"),
    ("i2-event-status-akv", lambda b: b.group("Event", "e").add_key_value("status", "Bogus"), "Event", "status"),
    # dates and booleans
    ("event-date-garbage", lambda b: b.event("e", event_date="not a date"), "Event", "eventDate"),
    ("campaign-firstSeen-garbage", lambda b: b.campaign("c", first_seen="32/13/2020"), "Campaign", "firstSeen"),
    ("document-malware-not-bool", lambda b: b.document("d", "f", malware="yes"), "Document", "malware"),
    ("host-dnsActive-not-bool", lambda b: b.host("a.com", dns_active="maybe"), "Host", "flag1"),
    ("file-size-negative", lambda b: b.file(MD5, size=-1), "File", "intValue1"),
    # attributes, tags, labels
    ("attribute-null-value", lambda b: b.adversary("a").attribute("Description", None),
     "Adversary", "attribute[Description].value"),
    ("attribute-empty-value", lambda b: b.host("a.com").attribute("Description", ""),
     "Host", "attribute[Description].value"),
    ("attribute-over-max", lambda b: b.adversary("a").attribute("External Date Created", "x" * 65),
     "Adversary", "attribute[External Date Created].value"),
    ("attribute-description-over-max", lambda b: b.adversary("a").attribute("Description", "x" * 65501),
     "Adversary", "attribute[Description].value"),
    ("i3-attribute-null-value", lambda b: b.add_group({"type": "Adversary", "name": "a", "xid": "1",
                                                       "attribute": [{"type": "Description", "value": None}]}),
     "Adversary", "attribute[Description].value"),
    ("i3-attribute-unknown-key", lambda b: b.add_indicator({"type": "Host", "summary": "a.com", "xid": "1",
                                                            "attribute": [{"type": "Description", "value": "x",
                                                                           "bogus": 1}]}),
     "Host", "attribute[Description].bogus"),
    ("tag-over-128", lambda b: b.adversary("a").tag("x" * 129), "Adversary", "tag"),
    ("tag-empty", lambda b: b.adversary("a").tag(""), "Adversary", "tag"),
    ("i3-tag-over-128", lambda b: b.add_indicator({"type": "Host", "summary": "a.com", "xid": "1",
                                                   "tag": [{"name": "x" * 129}]}), "Host", "tag"),
    ("label-bad-color", lambda b: b.adversary("a").security_label("L", "d", "fffff"),
     "Adversary", "securityLabel[L].color"),
    ("i3-label-bad-color", lambda b: b.add_group({"type": "Adversary", "name": "a", "xid": "1",
                                                  "securityLabel": [{"name": "L", "color": "red"}]}),
     "Adversary", "securityLabel[L].color"),
    # Registry Key
    ("registry-abbreviated-hive", lambda b: b.registry_key("HKLM\\Software", "v", "REG_SZ"),
     "Registry Key", "Key Name"),
    ("registry-bad-value-type", lambda b: b.registry_key(HKLM, "v", "REG_FOO"), "Registry Key", "Value Type"),
    ("registry-empty-value-name", lambda b: b.registry_key(HKLM, "", "REG_SZ"), "Registry Key", "Value Name"),
    ("i3-registry-abbreviated-hive", lambda b: b.add_indicator({"type": "Registry Key", "xid": "1",
                                                                "summary": "HKLM\\x : v : REG_SZ"}),
     "Registry Key", "Key Name"),
    ("i2-registry-missing-value-type", lambda b: b.indicator("Registry Key", HKLM + " : v"),
     "Registry Key", "Value Type"),
    # Document
    ("malware-document-without-password-at-save", lambda b: b.save(b.document("d", "f.txt", malware=True)),
     "Document", "password"),
    ("i3-malware-document-without-password", lambda b: b.add_group({"type": "Document", "name": "d", "xid": "1",
                                                                    "malware": True}), "Document", "password"),
    ("i3-insights-without-aiProvider", lambda b: b.add_group({"type": "Report", "name": "r", "xid": "1",
                                                              "insights": "x"}), "Report", "aiProvider"),
    ("i3-fileContent-on-adversary", lambda b: b.add_group({"type": "Adversary", "name": "a", "xid": "1",
                                                           "fileContent": "x"}), "Adversary", "fileContent"),
    # file occurrences
    ("occurrence-on-host", lambda b: b.host("a.com").occurrence("x.exe"), "Host", "fileOccurrence"),
    ("i3-occurrence-on-host", lambda b: b.add_indicator({"type": "Host", "summary": "a.com", "xid": "1",
                                                         "fileOccurrence": [{"fileName": "x"}]}),
     "Host", "fileOccurrence"),
    ("i3-occurrence-empty", lambda b: b.add_indicator({"type": "File", "summary": MD5, "xid": "1",
                                                       "fileOccurrence": [{}]}), "File", "fileOccurrence"),
    ("occurrence-empty-at-save", _save_occurrence_empty, "File", "fileOccurrence"),
    ("occurrence-bad-date", lambda b: b.file(MD5).occurrence("x", date="notadate"), "File", "fileOccurrence.date"),
    ("occurrence-bad-date-setter", _occurrence_date, "File", "fileOccurrence.date"),
    # unknown field names
    ("add_key_value-unknown-group-field", lambda b: b.adversary("a").add_key_value("eventDate", "today"),
     "Adversary", "eventDate"),
    ("add_key_value-unknown-indicator-field", lambda b: b.host("a.com").add_key_value("bogus", 1), "Host", "bogus"),
    ("add_indicator-unknown-key", lambda b: b.add_indicator({"type": "Host", "summary": "a.com", "xid": "1",
                                                             "bogus": 1}), "Host", "bogus"),
    ("add_group-unknown-key", lambda b: b.add_group({"type": "Adversary", "name": "a", "xid": "1", "bogus": 1}),
     "Adversary", "bogus"),
    ("add_indicator-group-association-key", lambda b: b.add_indicator({"type": "Host", "summary": "a.com",
                                                                       "xid": "1", "associatedGroupXid": ["x"]}),
     "Host", "associatedGroupXid"),
    ("add_group-indicator-association-key", lambda b: b.add_group({"type": "Adversary", "name": "a", "xid": "1",
                                                                   "associatedGroups": [{"groupXid": "x"}]}),
     "Adversary", "associatedGroups"),
    # top-level associations
    ("association-unknown-key", lambda b: b.add_association(ref_1="x", ref_2="y", bogus=1), "association", "bogus"),
    ("association-unknown-type", lambda b: b.add_association(ref_1="x", type_1="Bogus", ref_2="y"),
     "association", "type_1"),
    ("association-missing-side", lambda b: b.add_association(ref_1="x"), "association", "ref_2"),
    ("association-indicators-need-type", lambda b: b.add_association(ref_1="a.com", type_1="Host",
                                                                     ref_2="http://a.com/", type_2="URL"),
     "association", "associationType"),
    ("association-bad-indicator-ref", lambda b: b.add_association(ref_1="bad_host.com", type_1="Host", ref_2="g"),
     None, "ref_1"),
]


@pytest.mark.parametrize("action, type_name, field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_input_names_type_and_field(batch, action, type_name, field):
    with pytest.raises(ValidationError) as info:
        action(batch)
    exc = info.value
    assert exc.field == field
    assert repr(field) in str(exc)
    if type_name is not None:
        assert exc.type == type_name
        assert str(exc).startswith(type_name)
    assert exc.reason and exc.reason in str(exc)


def test_there_are_at_least_40_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 40


def test_error_names_the_record_xid_when_known(batch):
    with pytest.raises(ValidationError) as info:
        batch.add_indicator({"type": "Host", "summary": "a.com", "xid": "my-xid", "rating": 9})
    assert info.value.xid == "my-xid"
    assert "my-xid" in str(info.value)
    with pytest.raises(ValidationError) as info:
        batch.adversary("a", xid="adv-1").tag("x" * 129)
    assert info.value.xid == "adv-1"


def test_value_is_kept_and_long_values_are_shortened_in_the_message(batch):
    with pytest.raises(ValidationError) as info:
        batch.host("x" * 300 + ".com")
    assert info.value.value == "x" * 300 + ".com"
    assert len(str(info.value)) < 300


def test_label_setter_error_names_the_field(batch):
    """Setters of labels and attributes still name the field (the record type is not known to them)."""
    with pytest.raises(ValidationError) as info:
        _label_color(batch)
    assert info.value.field == "securityLabel[L].color"
    attr = batch.adversary("a").attribute("Description", "x")
    with pytest.raises(ValidationError) as info:
        attr.value = None
    assert info.value.field == "attribute[Description].value"
    with pytest.raises(ValidationError) as info:
        attr.displayed = "maybe"
    assert info.value.field == "attribute[Description].displayed"
    # the failed assignments changed nothing
    assert attr.data == {"type": "Description", "value": "x"}


def test_a_failed_save_leaves_nothing_staged(batch):
    doc = batch.document("d", "f.txt", malware=True)
    with pytest.raises(ValidationError):
        batch.save(doc)
    doc.password = "secret"
    batch.save(doc)
    assert batch.group_len == 1
    assert batch.get(doc.xid).data["password"] == "secret"


def test_registry_key_values_must_not_contain_the_summary_separator(batch):
    """A ' : ' inside a Registry Key value makes a summary that splits into different values
    (spec 4.3: at most 3 parts, the third keeps further separators), so it must be refused."""
    with pytest.raises(ValidationError) as info:
        batch.registry_key("HKEY_LOCAL_MACHINE\\a : b", "v", "REG_SZ")
    assert info.value.field == "Key Name"
    with pytest.raises(ValidationError) as info:
        batch.registry_key(HKLM, "v : w", "REG_SZ")
    assert info.value.field == "Value Name"


def test_sha1_keyword_refuses_an_md5_length_value(batch):
    """file(sha1=...) given 32 hex characters: not a SHA1 (spec 5.6: SHA1 = 40 hex)."""
    with pytest.raises(ValidationError) as info:
        batch.file(sha1="a" * 32)
    assert info.value.field == "sha1"


# -- canonical forms ------------------------------------------------------------------------------


@pytest.mark.parametrize("make, expected", [
    (lambda b: b.file("43C3609411C83F363E051D455ADE78A6"), MD5),
    (lambda b: b.file(md5=" " + MD5.upper() + " ", sha256=SHA256.upper()), f"{MD5} : {SHA256}"),
    (lambda b: b.file(sha256=SHA256, md5=MD5, sha1=SHA1), f"{MD5} : {SHA1} : {SHA256}"),
    (lambda b: b.file(SHA256), SHA256),
    (lambda b: b.indicator("File", f"{SHA256.upper()} : {MD5}"), f"{MD5} : {SHA256}"),
    (lambda b: b.indicator("File", f" : {SHA1} : "), SHA1),
    (lambda b: b.host(" WWW.Example.COM "), "www.example.com"),
    (lambda b: b.host("www.example.com."), "www.example.com"),
    (lambda b: b.host("xn--sterreich-z7a.icom.museum"), "xn--sterreich-z7a.icom.museum"),
    (lambda b: b.url("HTTP://WWW.Example.COM/Path?Q=A"), "http://www.example.com/Path?Q=A"),
    (lambda b: b.url(" https://user@EXAMPLE.com:8080/X "), "https://user@example.com:8080/X"),
    (lambda b: b.asn("asn12345"), "ASN12345"),
    (lambda b: b.asn(" ASN7 "), "ASN7"),
    (lambda b: b.address(" 10.0.0.1 "), "10.0.0.1"),
    (lambda b: b.address("2001:0DB8:0000:0000:0000:0000:0000:0001"), "2001:0db8:0000:0000:0000:0000:0000:0001"),
    (lambda b: b.address("2001:DB8::1"), "2001:db8::1"),  # lower-cased, not compressed: as the incumbent sends it
    (lambda b: b.cidr("2001:db8:1234::/48"), "2001:db8:1234:0:0:0:0:0/48"),
    (lambda b: b.cidr("0abc:0def:0010::/48"), "abc:def:10:0:0:0:0:0/48"),
    (lambda b: b.cidr("abc:def:10:0:0:0:0:0/48"), "abc:def:10:0:0:0:0:0/48"),
    (lambda b: b.cidr("ABC:DEF:10::/48"), "abc:def:10:0:0:0:0:0/48"),
    (lambda b: b.cidr("10.0.0.0/8"), "10.0.0.0/8"),
    (lambda b: b.email_address("User.Name@EXAMPLE.com"), "User.Name@example.com"),
    (lambda b: b.registry_key("HKEY_LOCAL_MACHINE\\system", " ", "reg_dword"),
     "HKEY_LOCAL_MACHINE\\system :   : REG_DWORD"),
    (lambda b: b.indicator("Registry Key", "HKEY_LOCAL_MACHINE\\system : TRUE : REG_DWORD"),
     "HKEY_LOCAL_MACHINE\\system : TRUE : REG_DWORD"),
    (lambda b: b.mutex("  MyMutex  "), "MyMutex"),
    (lambda b: b.user_agent(" Mozilla/5.0 (X11) "), "Mozilla/5.0 (X11)"),
    (lambda b: b.indicator("url", "http://X.com"), "http://x.com"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_canonical_summaries(batch, make, expected):
    rec = make(batch)
    assert rec.summary == expected
    assert rec.data["summary"] == expected


@pytest.mark.parametrize("raw, expected", [
    ("2017-03-03T18:00:00-06:00", "2017-03-04T00:00:00Z"),
    ("2017-03-03", "2017-03-03T00:00:00Z"),
    ("2017-03-03 01:02:03", "2017-03-03T01:02:03Z"),
    ("2017-03-03T01:02:03", "2017-03-03T01:02:03Z"),
    ("2017-03-03T01:02:03Z", "2017-03-03T01:02:03Z"),
    ("2017-03-03T01:02:03.999+02:00", "2017-03-02T23:02:03Z"),
    (1488510123, "2017-03-03T03:02:03Z"),
    ("1488510123", "2017-03-03T03:02:03Z"),
])
def test_canonical_dates(batch, raw, expected):
    rec = batch.event("e", event_date=raw)
    assert rec.data["eventDate"] == expected
    rec = batch.add_indicator({"type": "Host", "summary": "a.com", "xid": "1", "firstSeen": raw})
    assert rec.data["firstSeen"] == expected


def test_relative_dates(batch):
    from datetime import datetime, timedelta, timezone
    before = datetime.now(timezone.utc)
    got = batch.event("e", event_date="yesterday").data["eventDate"]
    after = datetime.now(timezone.utc)
    assert got in {f"{(d - timedelta(days=1)).date()}T00:00:00Z" for d in (before, after)}
    got = batch.event("e2", event_date="3 days ago").data["eventDate"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", got)
    moment = datetime.strptime(got, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert before - timedelta(days=3, seconds=2) <= moment <= after - timedelta(days=3) + timedelta(seconds=1)


def test_canonical_scalars(batch):
    rec = batch.indicator("host", "a.example.com", rating="2.5", confidence="70",
                          dns_active="true", whois_active=0)
    assert rec.data["type"] == "Host"
    assert rec.data["rating"] == 2.5 and type(rec.data["rating"]) is float
    assert rec.data["confidence"] == 70 and type(rec.data["confidence"]) is int
    assert rec.data["flag1"] is True and rec.data["flag2"] is False
    assert batch.file(MD5, size="123").data["intValue1"] == 123
    assert batch.event("e", status="needs review").data["status"] == "Needs Review"
    assert batch.signature("s", " a.yar ", "yara", "rule").data["fileType"] == "YARA"
    assert batch.signature("s", " a.yar ", "yara", "rule").data["fileName"] == "a.yar"
    assert batch.adversary("  padded name  ").data["name"] == "padded name"
    label = batch.adversary("a").security_label("L", "d", "#FFAA00")
    assert label.color == "ffaa00"
    assert batch.adversary("a").tag("  t  ") == "t"
    assert batch.adversary("a").tag("x" * 128) == "x" * 128
    assert batch.adversary("a").attribute("External Date Created", "x" * 64).value == "x" * 64


@pytest.mark.parametrize("field, value", [
    ("rating", 10 ** 400), ("confidence", 10 ** 400), ("firstSeen", 1e308), ("lastSeen", -1e300),
    ("lastSeen", "9999-12-31T23:00:00-05:00"),
])
def test_values_beyond_what_python_can_hold_are_validation_errors(batch, field, value):
    """An OverflowError inside a check must surface as the field's ValidationError (a rejected
    row in a feed), not crash the caller."""
    raw = {"type": "Address", "summary": "10.0.0.1", "xid": "big", field: value}
    with pytest.raises(ValidationError) as err:
        batch.save(raw)
    assert err.value.field == field and err.value.xid == "big"


@pytest.mark.parametrize("type_name, summary", [
    ("Address", "1\u0660.0.0.1"),        # an Arabic-Indic zero: not an IPv4 address
    ("Address", "\uff11.2.3.4"),         # a fullwidth one
    ("Address", "10.0.0.\u0967"),        # a Devanagari one
    ("ASN", "ASN\u0661\u0662"),          # Arabic-Indic digits after ASN
])
def test_digits_other_than_ascii_are_not_an_address_or_an_asn(batch, type_name, summary):
    """A value with digits from another script is refused naming the field, not sent as it
    is (the server takes ASCII digits only)."""
    with pytest.raises(ValidationError) as info:
        batch.save({"type": type_name, "summary": summary, "xid": "u1"})
    assert info.value.field in ("summary", "ip", "AS Number") and info.value.xid == "u1"


@pytest.mark.parametrize("field, value", [
    ("rating", "3_0"), ("rating", "\u0663"), ("rating", "\uff13"),
    ("confidence", "7_5"), ("confidence", "\u0667\u0665"), ("confidence", "1_00"),
])
def test_numbers_in_text_are_ascii_digits_without_underscores(batch, field, value):
    """Python's float() and int() read '7_5' as 75 and Arabic-Indic or fullwidth digits as
    numbers; no feed format writes numbers so, and taking them would hide a damaged value."""
    with pytest.raises(ValidationError) as info:
        batch.save({"type": "Address", "summary": "10.0.0.1", "xid": "n1", field: value})
    assert info.value.field == field


def test_file_size_in_text_is_ascii_digits_without_underscores(batch):
    for value in ("1_000", "\u0661\u0662"):
        with pytest.raises(ValidationError) as info:
            batch.file(f"{'a' * 32}", size=value)
        assert info.value.field in ("size", "intValue1")
    assert batch.file("b" * 32, size=" 1000 ").data["intValue1"] == 1000
