"""Processing semantics: write types, haltOnError, Delete, associations, validation, file merge."""

from __future__ import annotations

import pytest
from emu_client import Api

from streambatch.emulator import Emulator

OWNER = "Demo Organization"
MD5 = "905ad8176a569a36421bf54c04ba7f95"
SHA1 = "a52b6986d68cdfac53aa740566cbeade4452124e"
SHA256 = "25bdabd23e349f5e5ea7890795b06d15d842bde1d43135c361e755f748ca05d0"
MD5_B = "b" * 32
SHA1_B = "c" * 40

SPEC_EXAMPLE = {
    "group": [
        {"name": "Ransomware Attack at Company ABC", "type": "Incident",
         "xid": "00000000-0000-0000-0000-000000000000:0001", "eventDate": "2024-08-04T00:00:00Z",
         "attribute": [{"type": "Description", "value": "A ransomware attack.", "displayed": True}],
         "securityLabel": [{"name": "TLP:AMBER"}], "tag": [{"name": "Ransomware"}],
         "associatedGroupXid": ["00000000-0000-0000-0000-000000000000:0002"]},
        {"name": "example-report", "type": "Report", "xid": "rep-1", "fileName": "r.pdf",
         "publishDate": "2026-01-15T13:00:00Z"},
        {"name": "sig", "type": "Signature", "xid": "sig-1", "fileName": "a.yar", "fileType": "YARA",
         "fileText": "rule x {condition: true}"},
    ],
    "indicator": [
        {"summary": "badguyz.com", "type": "Host", "rating": 3, "confidence": 60, "flag1": True, "flag2": False,
         "associatedGroups": [{"groupXid": "00000000-0000-0000-0000-000000000000:0001"}],
         "tag": [{"name": "Ransomware"}]},
        {"summary": f"{MD5} : {SHA1} : {SHA256}", "type": "File", "intValue1": 5366,
         "fileOccurrence": [{"fileName": "drop1.exe", "date": "2017-03-03T18:00:00-06:00"}]},
        {"summary": "HKEY_LOCAL_MACHINE\\system : TRUE : REG_DWORD", "type": "Registry Key",
         "xid": "ba60d2d6-8049-4080-9c5c-2b33d8d97767"},
    ],
    "association": [
        {"ref_1": "badguyz.com", "type_1": "Host", "id_2": 54321, "type_2": "Address",
         "associationType": "Host to Indicators"},
    ],
}


def host(name: str, **extra) -> dict:
    return {"type": "Host", "summary": name, **extra}


# ------------------------------------------------------------------------ the spec example

def test_spec_complete_example(api: Api, tc: Emulator) -> None:
    status = api.run(SPEC_EXAMPLE)
    assert status["successGroupCount"] == 3 and status["successIndicatorCount"] == 3
    assert status["successCount"] == 6 and status["unprocessCount"] == 0
    # group ...:0002 and indicator id 54321 exist nowhere: two association errors, one success
    assert status["successAssociationCount"] == 1 and status["errorAssociationCount"] == 2
    assert status["errorCount"] == 2
    incident = tc.store.group(OWNER, "00000000-0000-0000-0000-000000000000:0001")
    assert incident["type"] == "Incident" and incident["eventDate"] == "2024-08-04T00:00:00Z"
    assert incident["attribute"] == [{"type": "Description", "value": "A ransomware attack.", "displayed": True}]
    assert incident["tag"] == [{"name": "Ransomware"}] and incident["securityLabel"] == [{"name": "TLP:AMBER"}]
    assert incident["associatedIndicators"] == [{"summary": "badguyz.com", "indicatorType": "Host"}]
    h = tc.store.indicator(OWNER, "Host", "badguyz.com")
    assert (h["rating"], h["confidence"], h["flag1"], h["flag2"]) == (3, 60, True, False)
    assert h["associatedGroups"] == [{"groupXid": "00000000-0000-0000-0000-000000000000:0001"}]
    f = tc.store.indicator(OWNER, "File", SHA256)
    assert f["intValue1"] == 5366 and f["md5"] == MD5 and f["fileOccurrence"][0]["fileName"] == "drop1.exe"
    assert tc.store.indicator(OWNER, "registry key", "HKEY_LOCAL_MACHINE\\system : TRUE : REG_DWORD")["xid"]
    assert tc.store.group(OWNER, "sig-1")["fileType"] == "YARA"
    assert tc.store.count(OWNER) == 6 and tc.store.count(OWNER, "group") == 3
    errors = api.errors(api.last_job_id())
    assert {e["code"] for e in errors} == {"0x1007"}
    assert any("00000000-0000-0000-0000-000000000000:0002" in e["errorReason"] for e in errors)


def test_spec_example_with_existing_group_is_clean_but_for_the_unknown_id(api: Api, tc: Emulator) -> None:
    api.run({"group": [{"type": "Threat", "name": "t", "xid": "00000000-0000-0000-0000-000000000000:0002"}]})
    status = api.run(SPEC_EXAMPLE)
    assert status["errorAssociationCount"] == 1 and status["successAssociationCount"] == 2
    assert tc.store.group(OWNER, "00000000-0000-0000-0000-000000000000:0002")["associatedGroupXid"] == [
        "00000000-0000-0000-0000-000000000000:0001"]


# ----------------------------------------------------------------------------- write types

ATTR_A = {"type": "Description", "value": "a"}
ATTR_B = {"type": "Source", "value": "b"}
ATTR_C = {"type": "Description", "value": "c"}


@pytest.mark.parametrize("mode,expected", [
    ("Append", [ATTR_A, ATTR_B, ATTR_C]),
    ("Replace", [ATTR_C]),
    ("Singleton", [ATTR_B, ATTR_C]),
    ("Static", [ATTR_A, ATTR_B]),
])
def test_attribute_write_types(api: Api, tc: Emulator, mode: str, expected: list) -> None:
    api.run({"indicator": [host("a.example.com", attribute=[ATTR_A, ATTR_B])]}, attributeWriteType=mode)
    api.run({"indicator": [host("a.example.com", attribute=[ATTR_C])]}, attributeWriteType=mode)
    assert tc.store.indicator(OWNER, "Host", "a.example.com")["attribute"] == expected


def test_replace_without_key_keeps_attributes(api: Api, tc: Emulator) -> None:
    api.run({"indicator": [host("a.example.com", attribute=[ATTR_A])]})
    api.run({"indicator": [host("a.example.com", rating=2)]}, attributeWriteType="Replace",
            tagWriteType="Replace")
    rec = tc.store.indicator(OWNER, "Host", "a.example.com")
    assert rec["attribute"] == [ATTR_A] and rec["rating"] == 2


@pytest.mark.parametrize("mode,expected", [("Append", ["x", "y", "z"]), ("Replace", ["y", "z"])])
def test_tag_and_label_write_types(api: Api, tc: Emulator, mode: str, expected: list) -> None:
    first = {"type": "Adversary", "name": "adv", "xid": "adv-1", "tag": [{"name": "x"}, {"name": "y"}],
             "securityLabel": [{"name": "TLP:RED"}]}
    second = {"type": "adversary", "name": "adv2", "xid": "adv-1", "tag": [{"name": "y"}, {"name": "z"}],
              "securityLabel": [{"name": "TLP:GREEN"}]}
    api.run({"group": [first]}, tagWriteType=mode, securityLabelWriteType=mode)
    api.run({"group": [second]}, tagWriteType=mode, securityLabelWriteType=mode)
    group = tc.store.group(OWNER, "adv-1")
    assert [t["name"] for t in group["tag"]] == expected
    labels = [label["name"] for label in group["securityLabel"]]
    assert labels == (["TLP:RED", "TLP:GREEN"] if mode == "Append" else ["TLP:GREEN"])
    assert group["name"] == "adv2"


def test_new_label_needs_color_and_description(api: Api, tc: Emulator) -> None:
    status = api.run({"indicator": [
        host("a.example.com", securityLabel=[{"name": "Internal"}]),
        host("b.example.com", securityLabel=[{"name": "Internal", "color": "FF0000", "description": "ours"}]),
        host("c.example.com", securityLabel=[{"name": "Internal"}]),
    ]})
    assert status["successIndicatorCount"] == 3 and status["errorCount"] == 1
    assert tc.store.indicator(OWNER, "Host", "a.example.com")["securityLabel"] == []
    assert tc.store.indicator(OWNER, "Host", "c.example.com")["securityLabel"] == [{"name": "Internal"}]


def test_unknown_attribute_type_is_partial_loss() -> None:
    with Emulator(attribute_types=["Description", "Custom Note"]) as tc:
        api = Api(tc)
        status = api.run({"indicator": [host("a.example.com", attribute=[
            {"type": "custom note", "value": "ok"}, {"type": "Source", "value": "refused"}])]})
        assert status["successIndicatorCount"] == 1 and status["errorCount"] == 1
        assert tc.store.indicator(OWNER, "Host", "a.example.com")["attribute"] == [{"type": "Custom Note", "value": "ok"}]
        [err] = api.errors(api.last_job_id())
        assert err["code"] == "0x2001" and err["severity"] == "Warning" and "Source" in err["errorReason"]


# ---------------------------------------------------------------------------- haltOnError

BAD_MIDDLE = {
    "group": [{"type": "Adversary", "name": "g", "xid": "g-1"}],
    "indicator": [host("a.example.com"), host("b_bad.example.com"), host("c.example.com")],
    "association": [{"ref_1": "g-1", "ref_2": "c.example.com", "type_2": "Host"}],
}


def test_halt_on_error_true(api: Api, tc: Emulator) -> None:
    status = api.run(BAD_MIDDLE, haltOnError=True)
    assert status["status"] == "Completed"
    assert status["successCount"] == 2 and status["errorCount"] == 1
    assert status["errorIndicatorCount"] == 1
    assert status["unprocessCount"] == 2  # c.example.com and the association entry
    assert tc.store.indicator(OWNER, "Host", "a.example.com") is not None  # no rollback
    assert tc.store.indicator(OWNER, "Host", "c.example.com") is None


def test_halt_on_error_false(api: Api, tc: Emulator) -> None:
    status = api.run(BAD_MIDDLE, haltOnError=False)
    assert status["successCount"] == 3 and status["errorCount"] == 1 and status["unprocessCount"] == 0
    assert status["successAssociationCount"] == 1
    assert tc.store.indicator(OWNER, "Host", "c.example.com")["associatedGroups"] == [{"groupXid": "g-1"}]


def test_invalid_json_counts_one_error_and_nothing_unprocessed(api: Api) -> None:
    status = api.run("{not json", haltOnError=True)
    assert status["errorCount"] == 1 and status["unprocessCount"] == 0 and status["successCount"] == 0
    assert api.errors(api.last_job_id())[0]["code"] == "0x1003"


def test_non_object_items_are_json_errors(api: Api) -> None:
    status = api.run({"indicator": ["nope", host("a.example.com")], "group": [3]})
    assert status["errorIndicatorCount"] == 1 and status["errorGroupCount"] == 1 and status["successCount"] == 1


# --------------------------------------------------------------------------------- Delete

def test_delete(api: Api, tc: Emulator) -> None:
    api.run({"group": [{"type": "Adversary", "name": "g", "xid": "g-1"}],
             "indicator": [host("a.example.com", associatedGroups=[{"groupXid": "g-1"}]),
                           {"type": "File", "summary": f"{MD5} : {SHA1}"}]})
    job_id = api.two_step({"group": [{"type": "Adversary", "xid": "g-1"}, {"type": "Adversary", "xid": "g-404"}],
                           "indicator": [{"type": "HOST", "summary": "A.example.com"},
                                         {"type": "File", "summary": SHA1}]},
                          action="Delete")
    status = api.wait(job_id)
    assert status["successGroupCount"] == 1 and status["successIndicatorCount"] == 2
    assert status["errorGroupCount"] == 1
    assert api.errors(job_id)[0]["code"] == "0x1007"
    assert tc.store.count(OWNER) == 0
    assert tc.store.group(OWNER, "g-1") is None and tc.store.indicator(OWNER, "Host", "a.example.com") is None


def test_delete_in_create_and_upload(api: Api, tc: Emulator) -> None:
    api.run({"indicator": [host("a.example.com")]})
    assert api.run({"indicator": [host("a.example.com")]}, action="Delete")["successCount"] == 1
    assert tc.store.count(OWNER, "indicator") == 0


# ---------------------------------------------------------------------------- associations

def test_all_association_forms(api: Api, tc: Emulator) -> None:
    api.run({"group": [{"type": "Threat", "name": "old", "xid": "old"}], "indicator": [host("old.example.com")]})
    old_host_id = tc.store.indicator(OWNER, "Host", "old.example.com")["id"]
    old_group_id = tc.store.group(OWNER, "old")["id"]
    content = {
        "indicator": [  # indicators first, pointing forward to groups defined later
            host("h.example.com", associatedGroups=[{"groupXid": "g-2"}, "g-1"]),
            {"type": "URL", "summary": "http://www.badguyz.com/x"},
            {"type": "Address", "summary": "10.0.0.1",
             "associatedIndicators": [{"summary": "h.example.com", "indicatorType": "host"}]},
        ],
        "group": [
            {"type": "Adversary", "name": "g1", "xid": "g-1", "associatedGroupXid": ["g-2", "old"],
             "associatedIndicators": [{"summary": "http://www.badguyz.com/x", "indicatorType": "URL"}]},
            {"type": "Campaign", "name": "g2", "xid": "g-2", "associatedGroupXid": ["g-1"]},
        ],
        "association": [
            {"ref_1": "h.example.com", "type_1": "Host", "ref_2": "http://www.badguyz.com/x", "type_2": "URL",
             "associationType": "URL Host"},
            {"ref_1": "g-2", "ref_2": "http://www.badguyz.com/x", "type_2": "URL"},
            {"ref_1": "http://www.badguyz.com/x", "type_1": "URL", "ref_2": "g-2"},  # same pair reversed
            {"ref_1": "h.example.com", "type_1": "Host", "id_2": old_group_id},
            {"id_1": old_host_id, "type_1": "Host", "ref_2": "10.0.0.1", "type_2": "Address",
             "associationType": "Address to Indicators"},
            {"ref_1": "nowhere.example.com", "type_1": "Host", "ref_2": "g-1"},
            {"ref_1": "h.example.com", "type_1": "Host", "ref_2": "10.0.0.1", "type_2": "Address"},
        ],
    }
    status = api.run(content)
    assert status["successCount"] == 5
    assert status["errorAssociationCount"] == 2  # unknown ref; indicator pair without associationType
    assert status["successAssociationCount"] == 12  # 7 embedded links + 5 entries
    g1 = tc.store.group(OWNER, "g-1")
    assert sorted(g1["associatedGroupXid"]) == ["g-2", "old"]  # g-1 <-> g-2 given twice, stored once
    h = tc.store.indicator(OWNER, "Host", "h.example.com")
    assert sorted(x["groupXid"] for x in h["associatedGroups"]) == ["g-1", "g-2", "old"]
    assert sorted((x["indicatorType"], x["summary"]) for x in h["associatedIndicators"]) == [
        ("Address", "10.0.0.1"), ("URL", "http://www.badguyz.com/x")]
    url = tc.store.indicator(OWNER, "URL", "http://www.badguyz.com/x")
    assert sorted(x["groupXid"] for x in url["associatedGroups"]) == ["g-1", "g-2"]
    assert tc.store.indicator(OWNER, "Address", "10.0.0.1")["associatedIndicators"] == [
        {"summary": "h.example.com", "indicatorType": "Host"}, {"summary": "old.example.com", "indicatorType": "Host"}]


def test_cross_owner_association_refused(api: Api, tc: Emulator) -> None:
    api.run({"group": [{"type": "Threat", "name": "t", "xid": "cc-1"}]}, owner="Common Community")
    other_id = tc.store.group("Common Community", "cc-1")["id"]
    status = api.run({"indicator": [host("a.example.com")],
                      "association": [{"ref_1": "a.example.com", "type_1": "Host", "id_2": other_id}]})
    assert status["errorAssociationCount"] == 1
    assert api.errors(api.last_job_id())[0]["code"] == "0x1009"


def test_failed_item_cannot_be_associated(api: Api) -> None:
    status = api.run({"group": [{"type": "Adversary", "name": "g", "xid": "g-1",
                                 "associatedIndicators": [{"summary": "x_y.example.com", "indicatorType": "Host"}]}],
                      "indicator": [host("x_y.example.com")]})
    assert status["errorIndicatorCount"] == 1 and status["errorAssociationCount"] == 1


# ------------------------------------------------------------------------------ validation

@pytest.mark.parametrize("item,code", [
    ({"type": "Address", "summary": "300.1.1.1"}, "0x1005"),
    ({"type": "Address", "summary": "2001:db8::zz"}, "0x1005"),
    ({"type": "ASN", "summary": "12345"}, "0x1005"),
    ({"type": "ASN", "summary": "AS12345"}, "0x1005"),
    ({"type": "ASN", "summary": "ASN 12345"}, "0x1005"),
    ({"type": "CIDR", "summary": "2001:db8:1234::/48"}, "0x1005"),
    ({"type": "CIDR", "summary": "abc:def:0010:0:0:0:0:0/48"}, "0x1005"),
    ({"type": "CIDR", "summary": "10.0.0.0"}, "0x1005"),
    ({"type": "Host", "summary": "m_lena.matroschka.pl"}, "0x1005"),
    ({"type": "Host", "summary": "österreich.icom.museum"}, "0x1005"),
    ({"type": "Host", "summary": "-bad.example.com"}, "0x1005"),
    ({"type": "URL", "summary": "www.example.com/x"}, "0x1005"),
    ({"type": "URL", "summary": "http://EXAMPLE.com/x"}, "0x1005"),
    ({"type": "EmailAddress", "summary": "not-an-email"}, "0x1005"),
    ({"type": "File", "summary": "abc"}, "0x1005"),
    ({"type": "File", "summary": "z" * 32}, "0x1005"),
    ({"type": "Registry Key", "summary": "HKLM\\x : v : REG_SZ"}, "0x1005"),
    ({"type": "Registry Key", "summary": "HKEY_USERS\\x : v : REG_FOO"}, "0x1005"),
    ({"type": "Host", "summary": "ok.example.com", "rating": 6}, "0x1005"),
    ({"type": "Host", "summary": "ok.example.com", "rating": -1}, "0x1005"),
    ({"type": "Host", "summary": "ok.example.com", "confidence": 101}, "0x1005"),
    ({"type": "Host", "summary": "ok.example.com", "confidence": 50.5}, "0x1005"),
    ({"type": "Host", "summary": "ok.example.com", "firstSeen": "yesterday"}, "0x1005"),
    ({"type": "File", "summary": MD5, "fileOccurrence": [{}]}, "0x1005"),
    ({"type": "Widget", "summary": "w"}, "0x1005"),
    ({"type": "Host"}, "0x1005"),
])
def test_invalid_indicators(api: Api, item: dict, code: str) -> None:
    status = api.run({"indicator": [item]})
    assert status["errorIndicatorCount"] == 1 and status["successCount"] == 0
    [err] = api.errors(api.last_job_id())
    assert err["code"] == code
    assert err["errorReason"].startswith(f"Error ({code}): ")
    if item.get("summary"):
        assert item["summary"] in err["errorReason"] and err["errorSource"] == item["summary"]


@pytest.mark.parametrize("item", [
    {"type": "Address", "summary": "192.168.0.1"},
    {"type": "Address", "summary": "2001:db8::1"},
    {"type": "ASN", "summary": "asn12345"},
    {"type": "CIDR", "summary": "abc:def:10:0:0:0:0:0/48"},
    {"type": "CIDR", "summary": "10.0.0.0/8"},
    {"type": "Host", "summary": "xn--sterreich-z7a.icom.museum"},
    {"type": "Url", "summary": "https://example.com/A?b=C"},
    {"type": "EmailAddress", "summary": "a.b@example.com"},
    {"type": "File", "summary": f"{MD5} :  : "},
    {"type": "File", "summary": f" : {SHA1} : {SHA256}"},
    {"type": "File", "sha256": SHA256.upper(), "summary": "ignored"},
    {"type": "Registry Key", "summary": "HKEY_CURRENT_USER\\Software :   : REG_SZ"},
    {"type": "Registry Key", "Key Name": "HKEY_USERS\\x", "Value Name": "v", "Value Type": "REG_BINARY"},
    {"type": "Host", "hostName": "value-field.example.com"},
    {"type": "Mutex", "summary": "Global\\M", "rating": 4.5, "confidence": 100.0},
    {"type": "Email Subject", "value1": "hello"},
    {"type": "Host", "summary": "ok.example.com", "id": 5, "ownerName": "x", "webLink": "y", "flag3": True},
])
def test_valid_indicators(api: Api, item: dict) -> None:
    status = api.run({"indicator": [item]})
    assert status["successIndicatorCount"] == 1 and status["errorCount"] == 0, api.tc.store.errors(api.last_job_id())


def test_normalised_keys(api: Api, tc: Emulator) -> None:
    api.run({"indicator": [{"type": "ASN", "summary": "asn1"}, {"type": "CIDR", "summary": "ABC:DEF:10:0:0:0:0:0/48"},
                           {"type": "Host", "summary": "MiXeD.example.com"}]})
    api.run({"indicator": [{"type": "ASN", "summary": "ASN1", "rating": 1}, {"type": "host", "summary": "mixed.EXAMPLE.com"}]})
    assert tc.store.count(OWNER, "indicator") == 3
    assert tc.store.indicator(OWNER, "ASN", "ASN1")["summary"] == "ASN1"
    assert tc.store.indicator(OWNER, "asn", "asn1")["rating"] == 1
    assert tc.store.indicator(OWNER, "CIDR", "abc:def:10:0:0:0:0:0/48") is not None
    assert tc.store.indicator(OWNER, "Host", "mixed.example.com")["summary"] == "mixed.example.com"
    assert tc.store.indicator(OWNER, "Host", "other.example.com") is None


@pytest.mark.parametrize("group", [
    {"type": "Adversary", "xid": "x"},
    {"type": "Adversary", "name": "n"},
    {"type": "Adversary", "name": "n" * 101, "xid": "x"},
    {"type": "Gang", "name": "n", "xid": "x"},
    {"type": "Email", "name": "n", "xid": "x", "subject": "s", "header": "h"},
    {"type": "Signature", "name": "n", "xid": "x", "fileName": "f", "fileType": "Nope", "fileText": "t"},
    {"type": "Signature", "name": "n", "xid": "x", "fileName": "f", "fileType": "YARA"},
    {"type": "Document", "name": "n", "xid": "x", "malware": True},
    {"type": "Event", "name": "n", "xid": "x", "status": "Open"},
    {"type": "Event", "name": "n", "xid": "x", "eventType": "Party"},
    {"type": "Incident", "name": "n", "xid": "x", "status": "Needs Review"},
    {"type": "Report", "name": "n", "xid": "x", "insights": "i"},
    {"type": "Incident", "name": "n", "xid": "x", "eventDate": "04/08/2024"},
])
def test_invalid_groups(api: Api, group: dict) -> None:
    status = api.run({"group": [group]})
    assert status["errorGroupCount"] == 1 and status["successCount"] == 0
    [err] = api.errors(api.last_job_id())
    assert err["code"] == "0x1006" and err["errorReason"].startswith("Error (0x1006): Invalid Group Error: ")


def test_valid_groups_and_case_insensitive_enums(api: Api, tc: Emulator) -> None:
    status = api.run({"group": [
        {"type": "event", "name": "e", "xid": "e", "status": "needs review", "eventType": "Alert [flash]"},
        {"type": "Signature", "name": "s", "xid": "s", "fileName": "f", "fileType": "snort", "fileText": "t"},
        {"type": "Email", "name": "m", "xid": "m", "subject": "s", "header": "h", "body": "b", "score": 0},
        {"type": "Incident", "name": "i", "xid": "i"},
        {"type": "Document", "name": "d", "xid": "d", "malware": "true", "password": "p"},
        {"type": "Course of Action", "name": "c", "xid": "c", "unknownField": 1},
    ]})
    assert status["successGroupCount"] == 6 and status["errorCount"] == 0
    assert tc.store.group(OWNER, "e")["status"] == "Needs Review"
    assert tc.store.group(OWNER, "s")["fileType"] == "Snort"
    assert "unknownField" not in tc.store.group(OWNER, "c")


def test_duplicate_xid_and_type_change(api: Api) -> None:
    status = api.run({"group": [{"type": "Threat", "name": "a", "xid": "dup"}, {"type": "Threat", "name": "b", "xid": "dup"}]})
    assert status["successGroupCount"] == 1 and status["errorGroupCount"] == 1
    assert api.errors(api.last_job_id())[0]["code"] == "0x100A"
    status = api.run({"group": [{"type": "Tool", "name": "a", "xid": "dup"}]})
    assert status["errorGroupCount"] == 1
    status = api.run({"group": [{"type": "Threat", "name": "a", "xid": "dup"}]}, owner="Common Community")
    assert status["errorGroupCount"] == 1  # xids are unique across the instance


def test_tag_over_128_is_partial_loss(api: Api, tc: Emulator) -> None:
    status = api.run({"group": [{"type": "Threat", "name": "t", "xid": "t", "tag": [{"name": "ok"}, {"name": "x" * 129}]}]})
    assert status["successGroupCount"] == 1 and status["errorCount"] == 1
    assert tc.store.group(OWNER, "t")["tag"] == [{"name": "ok"}]
    assert api.errors(api.last_job_id())[0]["code"] == "0x2002"


def test_indicator_cap() -> None:
    with Emulator(indicator_limit=3) as tc:
        api = Api(tc)
        status = api.run({"indicator": [host(f"h{i}.example.com") for i in range(5)]})
        assert status["successIndicatorCount"] == 3 and status["errorIndicatorCount"] == 2
        errors = api.errors(api.last_job_id())
        assert {e["code"] for e in errors} == {"0x1008"}
        assert all("would exceed the number of allowed indicators" in e["errorReason"] for e in errors)


def test_v1_bare_array_and_wrapped_v2(api: Api, tc: Emulator) -> None:
    assert api.run([host("v1.example.com")], version="V1")["successCount"] == 1
    assert api.run([{"indicator": [host("wrapped.example.com")]}])["successCount"] == 1
    assert tc.store.count(OWNER) == 2


def test_strict_order() -> None:
    with Emulator(strict_order=True) as tc:
        api = Api(tc)
        status = api.run('{"association": [], "indicator": [{"type": "Host", "summary": "a.example.com"}]}')
        assert status["errorCount"] == 1 and status["successCount"] == 0


# ------------------------------------------------------------------------------ file merge

def test_file_hashes_merge_into_one(api: Api, tc: Emulator) -> None:
    api.run({"indicator": [{"type": "File", "summary": MD5, "rating": 1, "tag": [{"name": "one"}]}]})
    api.run({"indicator": [{"type": "File", "summary": SHA1, "tag": [{"name": "two"}]}]})
    assert tc.store.count(OWNER) == 2
    status = api.run({"indicator": [{"type": "File", "summary": f"{MD5} : {SHA1} : {SHA256}", "rating": 5}]})
    assert status["successIndicatorCount"] == 1
    assert tc.store.count(OWNER) == 1
    merged = tc.store.indicator(OWNER, "File", MD5)
    assert (merged["md5"], merged["sha1"], merged["sha256"], merged["rating"]) == (MD5, SHA1, SHA256, 5)
    assert sorted(t["name"] for t in merged["tag"]) == ["one", "two"]
    assert merged["summary"] == f"{MD5} : {SHA1} : {SHA256}"


def test_file_distribute(api: Api, tc: Emulator) -> None:
    api.run({"indicator": [{"type": "File", "summary": MD5}, {"type": "File", "summary": SHA1}]})
    api.run({"indicator": [{"type": "File", "summary": f"{MD5} : {SHA1}", "rating": 4}]}, fileMergeMode="Distribute")
    assert tc.store.count(OWNER) == 2
    assert tc.store.indicator(OWNER, "File", MD5)["rating"] == 4 and tc.store.indicator(OWNER, "File", SHA1)["rating"] == 4


@pytest.mark.parametrize("mode,sha1,count,warning", [
    ("FavorIncoming", SHA1_B, 1, False),
    ("FavorExisting", SHA1, 1, False),
    ("IgnoreIncoming", SHA1, 1, True),
    ("Split", SHA1, 1, True),
])
def test_hash_collision_modes(api: Api, tc: Emulator, mode: str, sha1: str, count: int, warning: bool) -> None:
    api.run({"indicator": [{"type": "File", "summary": f"{MD5} : {SHA1}"}]})
    status = api.run({"indicator": [{"type": "File", "summary": f"{MD5} : {SHA1_B}", "rating": 2}]}, hashCollisionMode=mode)
    assert tc.store.count(OWNER) == count
    rec = tc.store.indicator(OWNER, "File", MD5)
    assert rec["sha1"] == sha1
    assert rec.get("rating") == (None if mode == "IgnoreIncoming" else 2)
    assert (status["errorCount"] == 1) is warning
    if warning:
        assert api.errors(api.last_job_id())[0]["code"] == "0x2003"


def test_ignore_existing_creates_from_what_remains(api: Api, tc: Emulator) -> None:
    api.run({"indicator": [{"type": "File", "summary": f"{MD5} : {SHA1}"}]})
    api.run({"indicator": [{"type": "File", "summary": f"{MD5} : {SHA1_B} : {SHA256}"}]}, hashCollisionMode="IgnoreExisting")
    assert tc.store.count(OWNER) == 2
    assert tc.store.indicator(OWNER, "File", SHA256)["summary"] == SHA256
    assert tc.store.indicator(OWNER, "File", MD5)["sha1"] == SHA1


def test_numeric_string_ratings_and_confidences_are_read_as_numbers() -> None:
    with Emulator() as tc:
        status = Api(tc).run({"indicator": [
            {"type": "Host", "summary": "a.example.com", "rating": "3", "confidence": "80"},
            {"type": "Host", "summary": "b.example.com", "rating": "2.5", "confidence": " 40 "},
            {"type": "Host", "summary": "c.example.com", "rating": "high"}]})
        assert status["successCount"] == 2 and status["errorCount"] == 1
        a = tc.store.indicator(tc.owner, "Host", "a.example.com")
        b = tc.store.indicator(tc.owner, "Host", "b.example.com")
        assert (a["rating"], a["confidence"]) == (3, 80) and (b["rating"], b["confidence"]) == (2.5, 40)
        assert tc.store.indicator(tc.owner, "Host", "c.example.com") is None


def test_poll_replies_and_file_order_follow_the_docs_by_default() -> None:
    with Emulator(faults=[{"kind": "running"}], synchronous_batch_save_limit=0) as tc:
        api = Api(tc)
        job = api.create_and_upload({"group": [], "indicator": [{"type": "Host", "summary": "x.example.com"}],
                                     "association": []}).json()["data"]["batchStatus"]["id"]
        assert api.get(f"/v2/batch/{job}").json() == {"status": "Running"}  # bare, as documented
        tc.set_faults([])
        api.wait(job)
        late = api.run(b'{"association": [], "indicator": [{"type": "Host", "summary": "y.example.com"}]}')
        assert late["errorCount"] == 1  # association before indicator: refused, as documented
    with Emulator(bare_running=False, strict_order=False, faults=[{"kind": "running"}],
                  synchronous_batch_save_limit=0) as tc:
        api = Api(tc)
        job = api.create_and_upload({"indicator": [{"type": "Host", "summary": "x.example.com"}]}
                                    ).json()["data"]["batchStatus"]["id"]
        assert api.get(f"/v2/batch/{job}").json()["data"]["batchStatus"]["status"] == "Running"


def test_store_count_with_no_arguments_counts_every_owner() -> None:
    with Emulator() as tc:
        Api(tc).run({"indicator": [{"type": "Host", "summary": "a.example.com"}],
                     "group": [{"type": "Adversary", "name": "A", "xid": "a-1"}]})
        Api(tc).run({"indicator": [{"type": "Host", "summary": "b.example.com"}]}, owner="Common Community")
        assert (tc.store.count(), tc.store.count(kind="indicator"), tc.store.count(tc.owner)) == (3, 2, 2)
