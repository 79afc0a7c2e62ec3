"""Bad records of every kind, through every interface: each one is a ValidationError that names
the record type, the field and the reason; with ``save_all(..., on_error='reject')`` it is kept
in the job file's ``rejected`` table and the rest of the batch is staged."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streambatch import Batch, ValidationError
from streambatch import validate as v

S = "\ud800"  # a lone surrogate: no UTF-8 encoding
MD5 = "43c3609411c83f363e051d455ade78a6"
HKLM = "HKEY_LOCAL_MACHINE\\Software"
BEFORE = {"type": "Host", "summary": "before.example.com", "xid": "before"}
AFTER = {"type": "Adversary", "name": "after", "xid": "after"}


@pytest.fixture
def batch(tmp_path):
    b = Batch("MyOrg", tmp_path / "job.sqlite")
    yield b
    b.close()


def rejected(b: Batch) -> list[tuple]:
    b._flush()
    return b.job.conn.execute("SELECT type, field, reason, xid, raw FROM rejected ORDER BY id").fetchall()


def staged(b: Batch) -> int:
    b._flush()
    return b.job.count("group") + b.job.count("indicator")


def host(**extra):
    return {"type": "Host", "summary": "bad.example.com", "xid": "bad", **extra}


def doc(**extra):
    return {"type": "Document", "name": "d", "xid": "doc", "fileName": "d.txt", **extra}


def email(**extra):
    return {"type": "Email", "name": "e", "xid": "em", "subject": "s", "header": "h", "body": "b", **extra}


# (id, raw dict, expected type, expected field)
BAD = [
    # lone surrogates, in every kind of string
    ("surrogate-summary", {"type": "Mutex", "summary": "m" + S, "xid": "m"}, "Mutex", "summary"),
    ("surrogate-value-field", {"type": "User Agent", "User Agent String": S, "xid": "u"}, "User Agent",
     "User Agent String"),
    ("surrogate-tag", host(tag=["t" + S]), "Host", "tag"),
    ("surrogate-tag-object", host(tag=[{"name": S}]), "Host", "tag"),
    ("surrogate-attribute-value", host(attribute=[{"type": "Description", "value": "d" + S}]), "Host",
     "attribute[Description].value"),
    ("surrogate-attribute-type", host(attribute=[{"type": S, "value": "d"}]), "Host", "attribute[0].type"),
    ("surrogate-attribute-source", host(attribute=[{"type": "Source", "value": "d", "source": S}]), "Host",
     "attribute[Source].source"),
    ("surrogate-group-name", {"type": "Adversary", "name": "n" + S, "xid": "a"}, "Adversary", "name"),
    ("surrogate-xid", {"type": "Adversary", "name": "n", "xid": "x" + S}, "Adversary", "xid"),
    ("surrogate-indicator-xid", host(xid=S), "Host", "xid"),
    ("surrogate-type", {"type": "T" + S, "name": "n", "xid": "t"}, None, "type"),
    ("surrogate-unknown-key", host(**{"k" + S: 1}), "Host", None),
    ("surrogate-label", host(securityLabel=[{"name": S}]), "Host", "securityLabel.name"),
    ("surrogate-description", host(description=S), "Host", "description"),
    ("surrogate-association", {"type": "Adversary", "name": "n", "xid": "a", "associatedGroupXid": [S]},
     "Adversary", "associatedGroupXid"),
    ("surrogate-email-body", email(body="b" + S), "Email", "body"),
    ("surrogate-file-content", doc(fileContent="c" + S), "Document", "fileContent"),
    # integers beyond 64 bits
    ("huge-confidence", host(confidence=2**64), "Host", "confidence"),
    ("huge-rating", host(rating=2**64), "Host", "rating"),
    ("huge-size", {"type": "File", "summary": MD5, "xid": "f", "size": 2**64}, "File", "intValue1"),
    ("huge-size-text", {"type": "File", "summary": MD5, "xid": "f", "intValue1": str(2**63)}, "File", "intValue1"),
    ("negative-huge-size", {"type": "File", "summary": MD5, "xid": "f", "size": -2**63 - 1}, "File", "intValue1"),
    ("huge-score", email(score=2**64), "Email", "score"),
    ("huge-date", host(firstSeen=2**64), "Host", "firstSeen"),
    ("huge-flag", host(active=2**64), "Host", "active"),
    # wrong types for fileContent
    ("int-file-content", doc(fileContent=5), "Document", "fileContent"),
    ("dict-file-content", doc(fileContent={"a": 1}), "Document", "fileContent"),
    ("list-file-content", doc(fileContent=[b"x"]), "Document", "fileContent"),
    ("file-content-on-adversary", {"type": "Adversary", "name": "a", "xid": "a", "fileContent": b"x"},
     "Adversary", "fileContent"),
    # NaN and infinity
    ("nan-rating", host(rating=float("nan")), "Host", "rating"),
    ("inf-confidence", host(confidence=float("inf")), "Host", "confidence"),
    ("nan-date", host(firstSeen=float("nan")), "Host", "firstSeen"),
    ("inf-date", host(lastSeen=float("-inf")), "Host", "lastSeen"),
    ("nan-description", host(description=float("nan")), "Host", "description"),
    ("inf-tag", host(tag=[float("inf")]), "Host", "tag"),
    ("nan-summary", {"type": "Mutex", "summary": float("nan"), "xid": "m"}, "Mutex", "summary"),
    ("nan-attribute", host(attribute=[{"type": "Description", "value": float("nan")}]), "Host",
     "attribute[Description].value"),
    ("nan-name", {"type": "Adversary", "name": float("nan"), "xid": "a"}, "Adversary", "name"),
    ("nan-size", {"type": "File", "summary": MD5, "xid": "f", "size": float("nan")}, "File", "intValue1"),
    # NUL and control characters
    ("nul-summary", {"type": "Mutex", "summary": "a\x00b", "xid": "m"}, "Mutex", "summary"),
    ("nul-tag", host(tag=["a\x00b"]), "Host", "tag"),
    ("nul-attribute", host(attribute=[{"type": "Description", "value": "a\x00b"}]), "Host",
     "attribute[Description].value"),
    ("nul-name", {"type": "Adversary", "name": "a\x00b", "xid": "a"}, "Adversary", "name"),
    ("nul-xid", host(xid="a\x00b"), "Host", "xid"),
    ("nul-email-body", email(body="a\x00b"), "Email", "body"),
    ("control-tag", host(tag=["a\x1bb"]), "Host", "tag"),
    ("control-name", {"type": "Adversary", "name": "a\x07b", "xid": "a"}, "Adversary", "name"),
    ("control-summary", {"type": "User Agent", "summary": "ua\x08", "xid": "u"}, "User Agent", "summary"),
    # deep nesting and other wrong types
    ("deep-summary", host(summary=[[[[[[[["x"]]]]]]]]), "Host", "summary"),
    ("deep-tag", host(tag=[[[[[]]]]]), "Host", "tag"),
    ("tuple-key", {**host(), (1, 2): 1}, "Host", None),
    ("not-a-dict", ["x"], None, "record"),
]


@pytest.mark.parametrize("raw, type_name, field", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_reject_mode_keeps_a_bad_record_and_stages_the_rest(batch, raw, type_name, field):
    assert batch.save_all([BEFORE, raw, AFTER], on_error="reject") == 2
    rows = rejected(batch)
    assert len(rows) == 1
    row_type, row_field, reason, _xid, row_raw = rows[0]
    assert reason and row_raw
    if type_name is not None:
        assert row_type == type_name
    if field is not None:
        assert row_field == field
    assert staged(batch) == 2
    assert batch.job.count("group") == 1 and batch.get("after") is not None


@pytest.mark.parametrize("raw, type_name, field", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_raise_mode_and_interface3_raise_a_validation_error(batch, raw, type_name, field):
    with pytest.raises(ValidationError) as info:
        batch.save_all([raw])
    if type_name is not None:
        assert info.value.type == type_name
    if field is not None:
        assert info.value.field == field
    assert info.value.reason
    kind = "group" if isinstance(raw, dict) and raw.get("type") in ("Adversary", "Document", "Email") else "indicator"
    with pytest.raises(ValidationError) as again:
        (batch.add_group if kind == "group" else batch.add_indicator)(raw)
    assert again.value.field == info.value.field
    assert staged(batch) == 0


def test_the_rejected_row_keeps_a_readable_reason_and_raw_input(batch):
    batch.save_all([{"type": "Mutex", "summary": "m" + S, "xid": "m" + S}], on_error="reject")
    (_type, field, reason, xid, raw), = rejected(batch)
    assert field == "summary"
    assert "surrogate" in reason and "\\ud800" in reason
    assert "\\ud800" in raw
    xid.encode("utf-8")  # stored as valid UTF-8, whatever the input held


INTERFACE1 = [
    ("address-surrogate", lambda b: b.address("1.2.3.4" + S), "Address", "ip"),
    ("address-xid-surrogate", lambda b: b.address("1.2.3.4", xid=S), "Address", "xid"),
    ("group-xid-int", lambda b: b.adversary("a", xid=[1]), "Adversary", "xid"),
    ("group-xid-surrogate", lambda b: b.adversary("a", xid="x" + S), "Adversary", "xid"),
    ("mutex-surrogate", lambda b: b.mutex(S), "Mutex", "Mutex"),
    ("tag-surrogate", lambda b: b.host("a.com").tag(S), "Host", "tag"),
    ("tag-nul", lambda b: b.host("a.com").tag("a\x00"), "Host", "tag"),
    ("attribute-surrogate", lambda b: b.host("a.com").attribute("Description", S), "Host",
     "attribute[Description].value"),
    ("attribute-source-surrogate", lambda b: b.host("a.com").attribute("Description", "d", source=S), "Host",
     "attribute[Description].source"),
    ("label-surrogate", lambda b: b.host("a.com").security_label(S), "Host", "securityLabel.name"),
    ("association-surrogate", lambda b: b.host("a.com").association(S), "Host", "association"),
    ("occurrence-surrogate", lambda b: b.file(MD5).occurrence(S), "File", "fileOccurrence.fileName"),
    ("name-surrogate", lambda b: b.adversary("a" + S), "Adversary", "name"),
    ("confidence-huge", lambda b: b.address("1.2.3.4", confidence=2**64), "Address", "confidence"),
    ("rating-nan", lambda b: b.address("1.2.3.4", rating=float("nan")), "Address", "rating"),
    ("size-huge", lambda b: b.file(MD5, size=2**64), "File", "intValue1"),
    ("description-inf", lambda b: b.host("a.com", description=float("inf")), "Host", "description"),
    ("document-int-content", lambda b: b.document("d", "f.txt", file_content=5), "Document", "fileContent"),
    ("document-dict-content", lambda b: b.document("d", "f.txt", file_content={"a": 1}), "Document",
     "fileContent"),
    ("document-surrogate-content", lambda b: b.document("d", "f.txt", file_content=S), "Document", "fileContent"),
    ("report-content-setter", lambda b: setattr(b.report("r"), "file_content", 3.5), "Report", "fileContent"),
    ("add-file-int", lambda b: b.document("d").add_file("f.txt", 7), "Document", "fileContent"),
    ("association-type-int", lambda b: b.add_association(ref_1="a", ref_2="b", associationType=[1]), "association",
     "associationType"),
    ("association-id-huge", lambda b: b.add_association(id_1=2**64, ref_2="b"), "association", "id_1"),
]


@pytest.mark.parametrize("action, type_name, field", [c[1:] for c in INTERFACE1], ids=[c[0] for c in INTERFACE1])
def test_interface1_raises_validation_errors(batch, action, type_name, field):
    with pytest.raises(ValidationError) as info:
        action(batch)
    assert info.value.type == type_name
    assert info.value.field == field


def test_json_text_with_a_lone_surrogate_escape_is_refused():
    """orjson refuses a lone surrogate escape outright (a jsonl row is then malformed JSON);
    the standard library decodes it, and the record is refused by the checks."""
    line = '{"type": "Mutex", "summary": "\\ud800", "xid": "j"}'
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(line)
    with tempfile.TemporaryDirectory() as tmp, Batch("MyOrg", Path(tmp) / "j.sqlite") as b:
        assert b.save_all([json.loads(line)], on_error="reject") == 0
        assert rejected(b)[0][1] == "summary"


# -- an xid keeps its group type ----------------------------------------------------------------


def test_interface3_cannot_retype_a_pending_group(batch):
    batch.add_group({"type": "Adversary", "name": "a", "xid": "X"})
    with pytest.raises(ValidationError) as info:
        batch.add_group({"type": "Campaign", "name": "c", "xid": "X"})
    assert (info.value.type, info.value.field) == ("Campaign", "xid")
    assert "Adversary" in info.value.reason


@pytest.mark.parametrize("flushed", [False, True])
def test_save_all_cannot_retype_a_staged_group(batch, flushed):
    batch.save_all([{"type": "Adversary", "name": "a", "xid": "X"}])
    if flushed:
        batch._flush()
    with pytest.raises(ValidationError) as info:
        batch.save_all([{"type": "Campaign", "name": "c", "xid": "X"}])
    assert info.value.field == "xid"
    assert batch.save_all([{"type": "Campaign", "name": "c", "xid": "X"}, AFTER], on_error="reject") == 1
    assert rejected(batch)[0][:2] == ("Campaign", "xid")
    with pytest.raises(ValidationError):
        batch.add_group({"type": "Campaign", "name": "c", "xid": "X"})
    with pytest.raises(ValidationError):
        batch.campaign("c", xid="X")
    assert batch.get("X").type == "Adversary"
    assert batch.get("X").data["name"] == "a"


def test_a_pending_group_keeps_its_xid_from_a_raw_dict(batch):
    pending = batch.adversary("a", xid="X")
    assert batch.save_all([{"type": "Campaign", "name": "c", "xid": "X"}], on_error="reject") == 0
    batch.save(pending)
    assert batch.get("X").type == "Adversary"


def test_same_type_still_merges(batch):
    batch.save_all([{"type": "Adversary", "name": "a", "xid": "X", "tag": ["one"]}])
    batch._flush()
    batch.save_all([{"type": "adversary", "name": "a", "xid": "X", "tag": ["two"]}])
    batch._flush()
    assert batch.get("X").tags == ["one", "two"]


# -- a Document whose content is refused is not staged ------------------------------------------


def test_a_document_with_refused_content_is_not_staged(tmp_path):
    with Batch("MyOrg", tmp_path / "job.sqlite") as b:
        assert b.save_all([doc(fileContent=5), doc(xid="doc2", fileContent="c" + S)], on_error="reject") == 0
        with pytest.raises(ValidationError):
            b.save(doc(fileContent={"a": 1}))
        with pytest.raises(ValidationError):
            b.document("d3", "d.txt", file_content=5, xid="doc3")
        assert staged(b) == 0
        assert b.job.conn.execute("SELECT count(*) FROM files").fetchone()[0] == 0
        assert len(rejected(b)) == 2


def test_document_content_of_every_accepted_kind_is_staged(batch, tmp_path):
    path = tmp_path / "c.bin"
    path.write_bytes(b"content")
    for i, content in enumerate([b"b", bytearray(b"ba"), memoryview(b"mv"), "text\n", path, lambda xid: b"cb"]):
        batch.save(doc(xid=f"d{i}", fileContent=content))
    assert batch.job.conn.execute("SELECT count(*) FROM files").fetchone()[0] == 0  # still buffered
    batch._flush()
    assert batch.job.conn.execute("SELECT count(*) FROM files").fetchone()[0] == 6


# -- text: NaN, NUL, control characters ---------------------------------------------------------


def test_multiline_fields_keep_tabs_newlines_and_other_controls(batch):
    rec = batch.add_indicator(host(description="line 1\n\tline 2\x0c", attribute=[
        {"type": "Description", "value": "a\r\nb\x1b[0m"}]))
    assert rec.data["description"] == "line 1\n\tline 2\x0c".strip()
    assert rec.data["attribute"][0]["value"] == "a\r\nb\x1b[0m"
    body = batch.add_group(email(body="x\x0cy", header="Received: a\r\n\tb"))
    assert body.data["body"] == "x\x0cy"


def test_single_line_fields_allow_tab_newline_and_cr_only(batch):
    assert batch.adversary("a\tb").data["name"] == "a\tb"
    assert batch.mutex("a\r\nb").summary == "a\r\nb"
    for bad in ("\x01", "\x0b", "\x0c", "\x1f"):
        with pytest.raises(ValidationError) as info:
            batch.adversary(f"a{bad}b")
        assert f"U+{ord(bad):04X}" in info.value.reason
    with pytest.raises(ValidationError) as info:
        batch.adversary("a\x00b")
    assert "NUL" in info.value.reason


def test_the_strings_nan_and_inf_are_text(batch):
    assert batch.mutex("nan").summary == "nan"
    with pytest.raises(ValidationError):
        batch.address("1.2.3.4", rating="nan")
    with pytest.raises(ValidationError):
        batch.address("1.2.3.4", confidence="inf")


# -- length limits --------------------------------------------------------------------------------

LIMITS = [
    # (id, make a raw dict from a value of n characters, field, limit)
    ("xid", lambda s: host(xid=s), "xid", v.XID_MAX),
    ("group-xid", lambda s: {"type": "Adversary", "name": "a", "xid": s}, "xid", v.XID_MAX),
    ("group-name", lambda s: {"type": "Adversary", "name": s, "xid": "a"}, "name", v.NAME_MAX),
    ("tag", lambda s: host(tag=[s]), "tag", v.TAG_MAX),
    ("label-name", lambda s: host(securityLabel=[{"name": s}]), "securityLabel.name", v.NAME_MAX),
    ("label-description", lambda s: host(securityLabel=[{"name": "L", "description": s}]),
     "securityLabel[L].description", v.TEXT_MAX),
    ("attribute-type", lambda s: host(attribute=[{"type": s, "value": "v"}]), "attribute[0].type", v.NAME_MAX),
    ("attribute-value", lambda s: host(attribute=[{"type": "Description", "value": s}]),
     "attribute[Description].value", v.TEXT_MAX),
    ("attribute-source", lambda s: host(attribute=[{"type": "Description", "value": "v", "source": s}]),
     "attribute[Description].source", v.LINE_MAX),
    ("mutex", lambda s: {"type": "Mutex", "summary": s, "xid": "m"}, "summary", v.LINE_MAX),
    ("user-agent", lambda s: {"type": "User Agent", "User Agent String": s, "xid": "u"}, "User Agent String",
     v.LINE_MAX),
    ("custom-type", lambda s: {"type": "Hashtag", "summary": s, "xid": "h"}, "summary", v.LINE_MAX),
    ("url", lambda s: {"type": "URL", "summary": "http://a.com/" + s[13:], "xid": "u"}, "summary", v.LINE_MAX),
    ("registry-key", lambda s: {"type": "Registry Key", "xid": "r", "Key Name": HKLM + "\\" + s[len(HKLM) + 1:],
                                "Value Name": "v", "Value Type": "REG_SZ"}, "Key Name", v.LINE_MAX),
    ("description", lambda s: host(description=s), "description", v.TEXT_MAX),
    ("source", lambda s: host(source=s), "source", v.TEXT_MAX),
    ("occurrence-path", lambda s: {"type": "File", "summary": MD5, "xid": "f", "fileOccurrence": [{"path": s}]},
     "fileOccurrence.path", v.LINE_MAX),
    ("association", lambda s: host(associatedGroups=[{"groupXid": s}]), "associatedGroups", v.XID_MAX),
    ("file-name", lambda s: doc(fileName=s), "fileName", v.LINE_MAX),
    ("email-subject", lambda s: email(subject=s), "subject", v.LINE_MAX),
    ("email-body", lambda s: email(body=s), "body", v.LARGE_TEXT_MAX),
    ("signature-text", lambda s: {"type": "Signature", "name": "s", "xid": "s", "fileName": "a.yar",
                                  "fileType": "YARA", "fileText": s}, "fileText", v.LARGE_TEXT_MAX),
    ("insights", lambda s: {"type": "Report", "name": "r", "xid": "r", "insights": s, "aiProvider": "p"},
     "insights", v.TEXT_MAX),
]


@pytest.mark.parametrize("make, field, limit", [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS])
def test_text_fields_have_length_limits(batch, make, field, limit):
    batch.save(make("x" * limit))  # at the limit: accepted
    with pytest.raises(ValidationError) as info:
        batch.save(make("x" * (limit + 1)))
    assert info.value.field == field
    assert f"longer than {limit} characters" in info.value.reason


def test_a_ten_megabyte_record_is_refused(batch):
    assert batch.save_all([host(description="x" * 10_000_000), BEFORE], on_error="reject") == 1
    assert rejected(batch)[0][1] == "description"


# -- Document and Report xids fit the upload path -------------------------------------------------


@pytest.mark.parametrize("xid, char", [("a/b", "/"), ("/", "/"), ("a\\b", "\\"), (".", "."), ("..", "..")])
@pytest.mark.parametrize("group_type", ["Document", "Report"])
def test_document_and_report_xids_must_fit_the_upload_path(batch, group_type, xid, char):
    with pytest.raises(ValidationError) as info:
        batch.group(group_type, "d", xid=xid)
    assert (info.value.type, info.value.field) == (group_type, "xid")
    assert "cannot be used in the upload path" in info.value.reason
    assert repr(char) in info.value.reason
    with pytest.raises(ValidationError):
        batch.add_group({"type": group_type, "name": "d", "xid": xid})
    assert batch.save_all([{"type": group_type, "name": "d", "xid": xid}], on_error="reject") == 0
    # other groups and indicators are never uploaded to: their xids may hold them
    assert batch.adversary("a", xid=xid).xid == xid
    assert batch.add_indicator({"type": "Host", "summary": "a.com", "xid": xid}).xid == xid


def test_the_slash_message(batch):
    with pytest.raises(ValidationError) as info:
        batch.document("d", "f.txt", xid="feed/123")
    assert info.value.reason == "an xid with '/' cannot be used in the upload path"


# -- a failed save leaves nothing behind ------------------------------------------------------------


def test_close_after_a_failed_save_raises_nothing(tmp_path):
    with Batch("MyOrg", tmp_path / "job.sqlite") as b:
        d = b.document("d", "f.txt", malware=True)
        with pytest.raises(ValidationError):
            b.save(d)
        e = b.email("e", None, "h", "b")
        with pytest.raises(ValidationError):
            b.save_all([e])
        s = b.signature("s", "a.yar", "YARA", None)
        assert b.save_all([s], on_error="reject") == 0
        c = b.add_group({"type": "Campaign", "name": "c", "xid": "X"})
        b.save_all([{"type": "Adversary", "name": "a", "xid": "Y"}])
        c2 = b.group("Campaign", "c2", xid="Z")
        b.save_all([{"type": "Adversary", "name": "a", "xid": "Z"}], on_error="reject")  # rejected: Z is pending
        b.save(c)
        b.save(c2)
    with Batch("MyOrg", tmp_path / "job.sqlite") as b:
        assert sorted(r.type for r in (b.get("X"), b.get("Y"), b.get("Z"))) == ["Adversary", "Campaign", "Campaign"]
        assert b.get(d.xid) is None and b.get(e.xid) is None
        assert len(rejected(b)) == 2


def test_close_still_reports_records_never_saved(tmp_path):
    b = Batch("MyOrg", tmp_path / "job.sqlite")
    b.email("e", None, "h", "b")
    with pytest.raises(ValidationError) as info:
        b.close()
    assert info.value.field == "subject"


# -- property: nothing but ValidationError, and every input is accounted for -----------------------

SPECIAL_TEXT = st.sampled_from([S, "a\udc00b", "\x00", "a\x01b", "x" * 3000, "", " ", "nan", "1e999",
                                "10.0.0.1", "a.example.com", "http://a.com/x", MD5, "a/b", ".", "ASN1",
                                "HKEY_LOCAL_MACHINE\\x : v : REG_SZ", "2024-01-02", "true", "3"])
SPECIAL_NUMBERS = st.sampled_from([2**64, -2**63 - 1, 2**63, 10**400, float("nan"), float("inf"), float("-inf"),
                                   -0.0, 1e308, 0, 1, 5, 100, 3.5])


def nest(value, depth):
    for _ in range(depth):
        value = [value]
    return value


scalars = st.one_of(st.none(), st.booleans(), st.integers(), SPECIAL_NUMBERS,
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8), SPECIAL_TEXT,
                    st.binary(max_size=4))
json_like = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.one_of(st.text(max_size=4), SPECIAL_TEXT),
                                                                          inner, max_size=3)), max_leaves=8)
values = st.one_of(json_like, json_like, st.integers(150, 250).map(lambda n: nest("x", n)))

TYPES = ["Address", "Host", "URL", "File", "Mutex", "Registry Key", "Hashtag", "Adversary", "Campaign",
         "Document", "Report", "Email", "Event", "Signature", S, 3, None]
KEYS = ["summary", "name", "xid", "rating", "confidence", "description", "source", "size", "intValue1",
        "firstSeen", "eventDate", "status", "fileName", "fileContent", "fileText", "fileType", "subject", "header",
        "body", "score", "tag", "attribute", "securityLabel", "associatedGroups", "associatedGroupXid",
        "associatedIndicators", "fileOccurrence", "malware", "password", "ip", "hostName", "md5", "id", S, "bogus"]
PLAUSIBLE = {
    "summary": st.sampled_from(["10.0.0.1", "a.example.com", "http://a.com/x", MD5, "m"]),
    "name": st.sampled_from(["n1", "n2"]), "xid": st.sampled_from(["x1", "x2", "x3", "a/b"]),
    "tag": st.lists(st.sampled_from(["t", S, "\x00", "x" * 129]), max_size=2),
    "attribute": st.lists(st.fixed_dictionaries({"type": st.just("Description"), "value": values}), max_size=2),
}
raw_records = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={k: (st.one_of(PLAUSIBLE[k], values) if k in PLAUSIBLE else values) for k in KEYS})


def mostly(good, bad=values):
    """Three times in four a good value."""
    return st.integers(0, 3).flatmap(lambda i: bad if i == 3 else good)


# plausible records, so that many are staged (a few of their values are wild)
OPTIONAL = {"tag": mostly(st.lists(st.sampled_from(["t1", "t2", " t3 "]), max_size=2)),
            "attribute": mostly(st.lists(st.fixed_dictionaries({"type": st.just("Description"),
                                                                "value": mostly(st.text(min_size=1, max_size=5))}),
                                         max_size=2)),
            "securityLabel": mostly(st.just([{"name": "TLP:AMBER"}]))}
good_records = st.one_of(
    st.fixed_dictionaries({"type": st.just("Host"), "summary": st.sampled_from(["a.example.com", "b.example.com"]),
                           "xid": mostly(st.sampled_from(["x1", "x2"]))},
                          optional={"rating": mostly(st.integers(0, 5)), "confidence": mostly(st.integers(0, 100)),
                                    **OPTIONAL}),
    st.fixed_dictionaries({"type": st.sampled_from(["Adversary", "Campaign", "Document", "Report"]),
                           "name": mostly(st.sampled_from(["n1", "n2"])), "xid": mostly(st.sampled_from(["g1", "g2"]))},
                          optional={"fileContent": mostly(st.one_of(st.binary(max_size=4), st.text(max_size=4))),
                                    **OPTIONAL}),
    st.fixed_dictionaries({"type": st.just("Mutex"), "summary": mostly(st.sampled_from(["m1", "m2"])),
                           "xid": st.just("m")}, optional=OPTIONAL),
)
inputs = st.lists(st.one_of(raw_records, good_records, good_records, values), min_size=1, max_size=6)


def _interface1(b: Batch, raw) -> None:
    """The same input through interfaces 1 to 3; only ValidationError may come out, and every
    record made is saved (or fails to save)."""
    if not isinstance(raw, dict):
        raw = {"type": "Host", "summary": raw}
    get = raw.get
    makers = [
        lambda: b.indicator(get("type"), get("summary"), rating=get("rating"), xid=get("xid")),
        lambda: b.group(get("type"), get("name"), xid=get("xid")),
        lambda: b.document(get("name"), get("fileName"), file_content=get("fileContent"), xid=get("xid")),
        lambda: b.address(get("summary"), confidence=get("confidence")),
        lambda: b.add_indicator(raw),
        lambda: b.add_group(raw),
        lambda: b.host("h.example.com"),
        lambda: b.adversary("adv"),
        lambda: b.file(MD5),
    ]
    additions = [
        lambda rec: rec.tag(get("name")),
        lambda rec: rec.attribute(get("name"), get("summary"), source=get("source")),
        lambda rec: rec.security_label(get("name"), get("description"), get("xid")),
        lambda rec: rec.association(get("xid")),
        lambda rec: rec.add_key_value("description" if rec.kind == "indicator" else "firstSeen", get("description")),
        lambda rec: rec.kind == "indicator" and rec.occurrence(get("fileName"), get("summary"), get("firstSeen")),
    ]
    for make in makers:
        try:
            rec = make()
        except ValidationError:
            continue
        for add in additions:
            try:
                add(rec)
            except ValidationError:
                pass
        try:
            b.save(rec)
        except ValidationError:
            pass


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(inputs)
def test_arbitrary_values_are_staged_or_rejected(items):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "job.sqlite"
        b = Batch("MyOrg", path, buffer_size=3)
        try:
            for raw in items[:2]:
                _interface1(b, raw)
            before = len(rejected(b))
            n = b.save_all(items, on_error="reject")
            after = len(rejected(b))
            assert n + (after - before) == len(items)
        finally:
            b.close()  # every failed save left nothing behind: nothing to raise here
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_validation_error_about_an_unprintable_value_still_has_a_message() -> None:
    from streambatch.errors import ValidationError

    deep: list = []
    for _ in range(5000):
        deep = [deep]
    for value in (deep, 10 ** 5000):
        message = str(ValidationError("Address", "summary", value, "is not valid"))
        assert "cannot be shown" in message and "summary" in message
