"""Item-count limits of a record's lists (tags, attributes, security labels, associations, file
occurrences): one more distinct entry than the limit is a ValidationError naming the record, the
field and the limit, through interface 1 (objects), interface 3 (dicts) and
``save_all(on_error='reject')``; the fast path of normalize refuses exactly what the full check
refuses. Repeats of one entry count once, as they are sent once."""

from __future__ import annotations

import pytest

from streambatch import Batch, ValidationError
from streambatch import validate as v
from streambatch.model import DEFAULT_TYPES, normalize

MD5 = "43c3609411c83f363e051d455ade78a6"


def host(**extra):
    return {"type": "Host", "summary": "many.example.com", "xid": "many", **extra}


def adversary(**extra):
    return {"type": "Adversary", "name": "many", "xid": "adv-many", **extra}


def file_(**extra):
    return {"type": "File", "summary": MD5, "xid": "file-many", **extra}


# (id, make(n) -> raw dict with n distinct entries, field named, limit)
LISTS = [
    ("tags", lambda n: host(tag=[{"name": f"t{i}"} for i in range(n)]), "tag", v.TAGS_MAX),
    ("tag-names", lambda n: host(tag=[f"t{i}" for i in range(n)]), "tag", v.TAGS_MAX),
    ("attributes", lambda n: host(attribute=[{"type": "Description", "value": f"d{i}"} for i in range(n)]),
     "attribute", v.ATTRIBUTES_MAX),
    ("labels", lambda n: host(securityLabel=[{"name": f"L{i}"} for i in range(n)]), "securityLabel", v.LABELS_MAX),
    ("attribute-labels", lambda n: host(attribute=[{"type": "Description", "value": "d",
                                                    "securityLabel": [{"name": f"L{i}"} for i in range(n)]}]),
     "attribute[0].securityLabel", v.LABELS_MAX),
    ("group-labels", lambda n: adversary(securityLabel=[{"name": f"L{i}"} for i in range(n)]), "securityLabel",
     v.LABELS_MAX),
    ("associated-groups", lambda n: host(associatedGroups=[{"groupXid": f"g{i}"} for i in range(n)]),
     "associatedGroups", v.ASSOCIATIONS_MAX),
    ("associated-group-xids", lambda n: adversary(associatedGroupXid=[f"g{i}" for i in range(n)]),
     "associatedGroupXid", v.ASSOCIATIONS_MAX),
    ("associated-indicators", lambda n: adversary(associatedIndicators=[
        {"summary": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "indicatorType": "Address"} for i in range(n)]),
     "associatedIndicators", v.ASSOCIATIONS_MAX),
    ("file-occurrences", lambda n: file_(fileOccurrence=[{"fileName": f"f{i}.exe"} for i in range(n)]),
     "fileOccurrence", v.OCCURRENCES_MAX),
]


def test_the_limits_are_the_documented_ones():
    assert (v.TAGS_MAX, v.ATTRIBUTES_MAX, v.LABELS_MAX, v.ASSOCIATIONS_MAX, v.OCCURRENCES_MAX) == (
        1_000, 1_000, 100, 10_000, 1_000)


@pytest.fixture
def batch(tmp_path):
    b = Batch("MyOrg", tmp_path / "job.sqlite")
    yield b
    b.close()


def _add(batch: Batch, raw: dict) -> None:
    (batch.add_group if raw["type"] == "Adversary" else batch.add_indicator)(raw)


@pytest.mark.parametrize("name, make, field, limit", LISTS, ids=[x[0] for x in LISTS])
def test_one_entry_over_the_limit_is_refused_naming_record_field_and_limit(batch, name, make, field, limit):
    raw = make(limit + 1)
    with pytest.raises(ValidationError) as info:
        _add(batch, raw)
    err = info.value
    assert err.field == field and err.xid == raw["xid"] and err.type == raw["type"]
    assert f"{limit:,}" in err.reason and "more than" in err.reason
    assert raw["xid"] in str(err)


@pytest.mark.parametrize("name, make, field, limit", LISTS, ids=[x[0] for x in LISTS])
def test_reject_mode_keeps_it_and_stages_the_rest(batch, name, make, field, limit):
    raw = make(limit + 1)
    ok = {"type": "Host", "summary": "fine.example.com"}
    assert batch.save_all([raw, ok], on_error="reject") == 1
    batch._flush()
    rows = batch.job.conn.execute("SELECT type, field, xid, reason FROM rejected").fetchall()
    assert rows == [(raw["type"], field, raw["xid"], rows[0][3])] and f"{limit:,}" in rows[0][3]
    assert batch.job.count("indicator") == 1


@pytest.mark.parametrize("name, make, field, limit", LISTS, ids=[x[0] for x in LISTS])
def test_exactly_the_limit_is_accepted(batch, name, make, field, limit):
    assert batch.save_all([make(limit)], on_error="raise") == 1


def test_repeated_entries_count_once(batch):
    tags = [{"name": f"t{i}"} for i in range(v.TAGS_MAX)] + [{"name": "t0"}] * 50
    attrs = [{"type": "Description", "value": f"d{i}"} for i in range(v.ATTRIBUTES_MAX)] * 2
    assert batch.save_all([host(tag=tags, attribute=attrs)]) == 1


def _full_check(raw):
    from streambatch import fastpath

    saved = fastpath.indicator
    fastpath.indicator = lambda *a: None
    try:
        return normalize(DEFAULT_TYPES, raw)
    finally:
        fastpath.indicator = saved


def _outcome(fn, raw):
    try:
        return fn(raw)[1]
    except ValidationError as exc:
        return (exc.type, exc.field, exc.reason, exc.xid)


@pytest.mark.parametrize("n", [v.TAGS_MAX - 1, v.TAGS_MAX, v.TAGS_MAX + 1])
@pytest.mark.parametrize("key", ["tag", "attribute", "both"])
def test_the_fast_path_holds_the_same_limits(n, key):
    tags = [f"t{i}" for i in range(n)] if key in ("tag", "both") else ["t"]
    attrs = ([{"type": "Source", "value": f"s{i}"} for i in range(n)] if key in ("attribute", "both")
             else [{"type": "Source", "value": "s"}])
    raw = {"type": "Address", "summary": "10.9.9.9", "xid": "fast", "rating": 3, "tag": tags, "attribute": attrs}
    from streambatch import fastpath

    assert v.TAGS_MAX == v.ATTRIBUTES_MAX  # one n probes both
    assert _outcome(lambda r: normalize(DEFAULT_TYPES, r), raw) == _outcome(_full_check, raw)
    if n > v.TAGS_MAX:
        assert fastpath.indicator(DEFAULT_TYPES.get("Address"), raw, None) is None
    else:
        assert fastpath.indicator(DEFAULT_TYPES.get("Address"), raw, None) == _full_check(raw)[1]


# -- interface 1 ------------------------------------------------------------------------------------

def _over(add, limit: int) -> ValidationError:
    for i in range(limit):
        add(i)
    with pytest.raises(ValidationError) as info:
        add(limit)
    return info.value


def test_interface1_refuses_the_entry_over_each_limit(batch):
    ip = batch.address("10.8.8.8", xid="ip-x")
    err = _over(lambda i: ip.tag(f"t{i}"), v.TAGS_MAX)
    assert (err.type, err.field, err.xid) == ("Address", "tag", "ip-x") and "1,000" in err.reason
    ip.tag("t0")  # one it has already is no new entry

    err = _over(lambda i: ip.attribute("Description", f"d{i}"), v.ATTRIBUTES_MAX)
    assert (err.field, err.xid) == ("attribute", "ip-x") and "1,000" in err.reason
    err = _over(lambda i: ip.security_label(f"L{i}"), v.LABELS_MAX)
    assert (err.field, err.xid) == ("securityLabel", "ip-x") and "100" in err.reason
    err = _over(lambda i: ip.association(f"g{i}"), v.ASSOCIATIONS_MAX)
    assert (err.field, err.xid) == ("associatedGroups", "ip-x") and "10,000" in err.reason

    adv = batch.adversary("APT", xid="adv-x")
    err = _over(lambda i: adv.association(f"g{i}"), v.ASSOCIATIONS_MAX)
    assert (err.type, err.field, err.xid) == ("Adversary", "associatedGroupXid", "adv-x")
    err = _over(lambda i: adv.associate_indicator("Address", f"10.{i >> 8 & 255}.{i & 255}.1"), v.ASSOCIATIONS_MAX)
    assert (err.field, err.xid) == ("associatedIndicators", "adv-x") and "10,000" in err.reason

    attr = adv.attribute("Description", "d")
    err = _over(lambda i: attr.security_label(f"L{i}"), v.LABELS_MAX)
    assert err.field == "attribute[Description].securityLabel" and "100" in err.reason

    f = batch.file(md5=MD5, xid="file-x")
    err = _over(lambda i: f.occurrence(f"f{i}.exe"), v.OCCURRENCES_MAX)
    assert (err.type, err.field, err.xid) == ("File", "fileOccurrence", "file-x") and "1,000" in err.reason
    for rec in (ip, adv, f):
        batch.save(rec)  # what was accepted is still a valid record
