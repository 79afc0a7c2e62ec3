"""Building records gives exactly what it gave before its common cases were made cheaper:
interface-1 records (type table, fields, tags, attributes, security labels, ``data``) and the
fast path of normalize, each against its previous implementation kept as an oracle
(tests/reference_model.py, tests/reference_fastpath.py), on generated input with the nasty
kinds of value; and the fast path agrees with the full check on the same generated records."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest

import reference_fastpath
import reference_model
from streambatch import fastpath, model
from streambatch.model import DEFAULT_TYPES, Group, Indicator, normalize
from test_check_equivalence import HEXES, HOSTNAMES, IPV4, IPV6, NASTY, NUMBERS, ODD_OBJECTS, URLS, padded, salted
from test_fastpath import LIKELY, RAW, default_xid, full_check

PROPS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INDICATOR_SPECS = [s for s in DEFAULT_TYPES if s.kind == "indicator"]
GROUP_SPECS = [s for s in DEFAULT_TYPES if s.kind == "group"]


def attempt(fn, *args, **kwargs):
    """What a call did: ('ok', repr of the result) or ('error', exception type, message)."""
    try:
        out = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the comparison is the point
        return ("error", type(exc).__name__, str(exc))
    return ("ok", repr(out))


def mostly(good_values, nasty):
    """Usually one of the good values, now and then a nasty one."""
    good_values = st.sampled_from(good_values)
    return st.integers(0, 9).flatmap(lambda n: nasty if n == 0 else good_values)


WORDS = st.one_of(st.sampled_from(["bench", "t", " bench ", "Bench", "", " ", "x" * 128, "x" * 129, "y" * 100,
                                   "y" * 101, "a\tb", "a\nb", "a\x00b", "\ud800", "\u212a", "é", "\x85", "Description",
                                   "Source", "External Date Created", "2024-01-02"]),
                  salted(st.text(max_size=8)), st.integers(-3, 3), st.floats(allow_nan=True), st.booleans(), st.none(),
                  ODD_OBJECTS)
LONG_VALUES = st.one_of(WORDS, st.sampled_from(["v" * 64, "v" * 65, "line\nline", "\r\n", "w" * 65_500, "w" * 65_501]))
VALUES = st.one_of(padded(salted(st.one_of(IPV4, IPV6, HOSTNAMES, URLS, HEXES))), WORDS,
                   st.sampled_from(["ASN12", "asn 1", "10.0.0.0/8", "a@B.com", "HKEY_LOCAL_MACHINE\\x", "REG_SZ"]))
GOOD = {"Address": ["10.0.0.1", " 10.1.2.3 ", "2001:DB8::1"], "Host": ["h1.example.com", "Ex.COM", "a.b."],
        "URL": ["https://u1.example.net/p/1", "HTTP://Ex.com/A?b", "ftp://u@h:21/x"],
        "File": ["d41d8cd98f00b204e9800998ecf8427e", "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709", "a" * 64],
        "ASN": ["ASN12", "asn7"], "CIDR": ["10.0.0.0/8", "2001:db8::/32"], "EmailAddress": ["a@B.com"],
        "Mutex": ["m", " M "], "User Agent": ["ua/1.0"], "Hashtag": ["#Tag"], "Email Subject": ["s"],
        "Registry Key": ["HKEY_LOCAL_MACHINE\\x : v : REG_SZ"]}
FIELD_KEYS = st.sampled_from(["rating", "confidence", "active", "activeLocked", "private_flag", "description",
                              "source", "firstSeen", "last_seen", "size", "intValue1", "dns_active", "flag2",
                              "whoisActive", "unknownKey", "name", "fileContent", "eventDate", "status", "score",
                              "malware", "password", "fileName", "subject"])
KWARGS = st.dictionaries(FIELD_KEYS, mostly([3, "3", 2.5, 50, "75", 5.0, 0, True, False, "true", "2024-01-02",
                                               "text", 20, None], st.one_of(NUMBERS, WORDS)), max_size=5)
XIDS = st.one_of(st.sampled_from(["bench-1", " x ", "", " ", "a/b", "..", "x" * 100, "x" * 101, "\x00"]), WORDS)
TAGS = mostly(["bench", " b ", "x" * 128, "x" * 129, "T", "t", ""], WORDS)
ATTRIBUTES = st.tuples(mostly(["Description", "Source", " Note ", "External Date Created", "y" * 100, "y" * 101],
                              WORDS),
                       mostly(["synthetic record 1", " v ", "a\tb", "v" * 64, "v" * 65, "w" * 65_500, "w" * 65_501,
                               "a\x00b"], LONG_VALUES),
                       st.fixed_dictionaries({}, optional={"displayed": st.one_of(st.booleans(), WORDS),
                                                           "pinned": st.one_of(st.booleans(), WORDS),
                                                           "source": WORDS,
                                                           "unique": st.sampled_from([True, False, "type", "Type"])}))
LABELS = st.tuples(mostly(["TLP:AMBER", " TLP:RED ", "y" * 100, "y" * 101], WORDS),
                   mostly([None, None, "d", " a\nb "], LONG_VALUES),
                   st.one_of(st.none(), st.sampled_from(["ffffff", "#ABCDEF", "fff", "gggggg"]), WORDS))
BUILD = st.fixed_dictionaries({
    "kind": st.sampled_from(["indicator", "indicator", "group"]),
    "spec": st.integers(0, 1000), "identity": mostly(["good"], VALUES),
    "values": st.lists(mostly(["good"], st.one_of(VALUES, st.just(""))), min_size=3, max_size=3),
    "xid": mostly(["bench-1", " x ", "a/b"], XIDS), "kwargs": KWARGS,
    "tags": st.lists(TAGS, max_size=4), "attributes": st.lists(ATTRIBUTES, max_size=3),
    "labels": st.lists(LABELS, max_size=3),
    "associations": st.lists(st.tuples(st.sampled_from(["group", "Address", "Host", "Nothing"]),
                                       mostly(["good"], XIDS)), max_size=3),
    "occurrences": st.lists(st.tuples(WORDS, WORDS, st.one_of(st.none(), WORDS)), max_size=2),
})


def good(value, spec, n=0):
    """A valid value for the spec's slot n, where the case asks for one."""
    if value != "good":
        return value
    if spec.kind == "group":
        return "a group"
    samples = GOOD.get(spec.name)
    if samples is None or len(spec.values) > 1 and spec.name != "Registry Key":
        return ["v1", "v2", "v3"][n]
    if spec.name == "Registry Key":
        return samples[0].split(" : ")[n]
    return samples[0]


def build(case):
    """Build one record as interface 1 does, noting what every step did."""
    steps = []
    if case["kind"] == "group":
        spec = GROUP_SPECS[case["spec"] % len(GROUP_SPECS)]
        identity = good(case["identity"], spec)
        made = attempt(Group, spec, identity, case["xid"])
        if made[0] == "error":
            return [made]
        rec = Group(spec, identity, case["xid"])
    else:
        spec = INDICATOR_SPECS[case["spec"] % len(INDICATOR_SPECS)]
        values = {slot.key: good(value, spec, n) for n, (slot, value) in enumerate(zip(spec.values, case["values"]))}
        summary = attempt(model.summary_of, spec, values, None)
        steps.append(summary)
        if summary[0] == "error":
            return steps
        made = attempt(Indicator, spec, model.summary_of(spec, values, None), case["xid"])
        if made[0] == "error":
            return [*steps, made]
        rec = Indicator(spec, model.summary_of(spec, values, None), case["xid"])
    steps.append(attempt(rec._set_many, case["kwargs"]))
    for name in case["tags"]:
        steps.append(attempt(rec.tag, name))
    for atype, value, options in case["attributes"]:
        steps.append(attempt(lambda: rec.attribute(atype, value, **options).data))
    for name, description, color in case["labels"]:
        steps.append(attempt(lambda: rec.security_label(name, description, color).data))
        steps.append(attempt(lambda: rec.attribute("Source", "s").security_label(name, description, color).data))
    for target, ref in case["associations"]:
        if target == "group":
            steps.append(attempt(rec.association, "g-1" if ref == "good" else ref))
        else:
            steps.append(attempt(rec.associate_indicator, target, good(ref, DEFAULT_TYPES.get(target) or spec)))
    for occurrence in case["occurrences"]:
        if isinstance(rec, Indicator):
            steps.append(attempt(lambda: rec.occurrence(*occurrence).data))
    steps.append(attempt(lambda: rec.data))
    return steps


def build_before(case):
    with reference_model.previous():
        return build(case)


@PROPS
@given(BUILD)
def test_interface_1_builds_what_it_built_before(case):
    assert build(case) == build_before(case)


@PROPS
@given(st.sampled_from(INDICATOR_SPECS), st.lists(st.one_of(VALUES, st.just("")), min_size=1, max_size=3),
       st.one_of(st.none(), XIDS))
def test_summary_of_is_unchanged(spec, given_values, xid):
    values = {slot.key: value for slot, value in zip(spec.values, given_values)}
    with reference_model.previous():
        before = attempt(model.summary_of, spec, values, xid)
    assert attempt(model.summary_of, spec, values, xid) == before


def test_the_reference_is_really_the_previous_code():
    """previous() swaps the implementations in and back out."""
    new_init = Indicator.__mro__[1].__dict__["__init__"]
    with reference_model.previous():
        assert model.Record.__init__ is reference_model.record_init
        assert model.summary_of is reference_model.summary_of
    assert model.Record.__init__ is new_init and model.summary_of is not reference_model.summary_of


# -- the fast path of normalize -------------------------------------------------------------------

NASTY_RECORDS = st.sampled_from(["Address", "Host", "URL", "File", "Mutex", "User Agent", "Hashtag", "CIDR",
                                 "ASN"]).flatmap(lambda t: st.fixed_dictionaries(
    {"type": st.just(t), "summary": st.one_of(st.sampled_from(GOOD[t]), st.sampled_from(GOOD[t]), VALUES)},
    optional={"xid": XIDS, "rating": NUMBERS, "confidence": NUMBERS, "size": NUMBERS, "dnsActive": WORDS,
              "description": LONG_VALUES, "firstSeen": WORDS,
              "tag": st.one_of(st.lists(st.one_of(WORDS, st.fixed_dictionaries({"name": WORDS})), max_size=3), WORDS),
              "attribute": st.one_of(st.lists(st.one_of(
                  st.fixed_dictionaries({"type": WORDS, "value": LONG_VALUES}),
                  st.fixed_dictionaries({"type": st.just("Description"), "value": st.just("v"), "source": WORDS}),
                  WORDS), max_size=3), WORDS)}))


TAG_ITEMS = mostly(["bench", " b ", "x" * 128, "T", "x" * 129, "", "a\x00", {"name": "t"}, {"name": ""}],
                   st.one_of(WORDS, st.fixed_dictionaries({"name": WORDS})))
ATTRIBUTE_ITEMS = st.fixed_dictionaries({"type": mostly(["Description", "Source", " Note ", "External Date Created"],
                                                        WORDS),
                                         "value": mostly(["synthetic record 1", " v ", "a\tb", "v" * 64, "v" * 65],
                                                         LONG_VALUES)})
MOSTLY_GOOD = st.sampled_from(sorted(GOOD)).flatmap(lambda t: st.fixed_dictionaries(
    {"type": st.just(t), "summary": mostly(GOOD[t], VALUES)},
    optional={"xid": mostly(["bench-1", " x "], XIDS), "rating": mostly([3, 0, 5, 2.5, 5.0], NUMBERS),
              "confidence": mostly([50, 0, 100], NUMBERS),
              **({"size": mostly([20, 0], NUMBERS)} if t == "File" else {}),
              "active": mostly([True, False], WORDS), "description": mostly(["d"], LONG_VALUES),
              "tag": st.lists(TAG_ITEMS, max_size=3), "attribute": st.lists(ATTRIBUTE_ITEMS, max_size=3)}))
RECORDS = st.one_of(RAW, LIKELY, NASTY_RECORDS, MOSTLY_GOOD, MOSTLY_GOOD, MOSTLY_GOOD)


def fast(reference, raw, dx):
    spec = DEFAULT_TYPES.get(raw.get("type"))
    if spec is None or spec.kind != "indicator":
        return ("not an indicator",)
    return attempt((reference_fastpath if reference else fastpath).indicator, spec, raw, dx)


@PROPS
@given(RECORDS, st.booleans())
def test_the_fast_path_returns_what_it_returned_before(raw, with_default):
    dx = default_xid if with_default else None
    assert fast(False, raw, dx) == fast(True, raw, dx)


@PROPS
@given(RECORDS, st.booleans())
def test_the_fast_path_and_the_full_check_agree_on_nasty_records(raw, with_default):
    dx = default_xid if with_default else None
    assert attempt(normalize, DEFAULT_TYPES, raw, default_xid=dx) == attempt(full_check, raw, dx)


def test_nasty_records_reach_the_fast_path():
    """The generated records are not all refused before the part that changed: the common
    ones come out of the fast path itself."""
    raw = {"type": "URL", "summary": " HTTPS://Ex.COM/A ", "xid": "x", "rating": 3, "confidence": 50.0,
           "tag": ["t"], "attribute": [{"type": "Description", "value": "v"}]}
    out = fastpath.indicator(DEFAULT_TYPES.get("URL"), raw, None)
    assert out == {"type": "URL", "summary": "https://ex.com/A", "xid": "x", "rating": 3.0, "confidence": 50,
                   "attribute": [{"type": "Description", "value": "v"}], "tag": [{"name": "t"}]}
    assert out == full_check(raw)[1]


TAG_SHAPES = [None, [], "t", ["t"], [" t "], [{"name": "t"}], [{"name": " t "}], [{"name": "t", "x": 1}], [""],
              ["x" * 129], ["a\x00"], [{"name": ""}], [3], [None], ["t", "t"], ["t", {"name": "t"}, "u"], ("t",)]
ATTRIBUTE_SHAPES = [None, [], [{"type": "Description", "value": "v"}], [{"type": " Source ", "value": " v "}],
                    [{"type": "External Date Created", "value": "v" * 65}], [{"type": "", "value": "v"}],
                    [{"type": "Description", "value": "a\nb"}], [{"type": "Description", "value": "a\x00b"}],
                    [{"type": "Description", "value": 3}], [{"type": "Description", "value": "v", "displayed": True}],
                    [{"type": "Description", "value": "v"}, {"type": "Description", "value": "v"}], ["Description"]]


@pytest.mark.parametrize("type_name,summary", [("Address", "10.0.0.1"), ("URL", "HTTPS://Ex.com/A"),
                                               ("File", "D41D8CD98F00B204E9800998ECF8427E")])
def test_every_tag_and_attribute_shape_gives_what_it_gave_before(type_name, summary):
    for tags, attributes in itertools.product(TAG_SHAPES, ATTRIBUTE_SHAPES):
        raw = {"type": type_name, "summary": summary, "xid": "x", "rating": 3}
        if tags is not None:
            raw["tag"] = tags
        if attributes is not None:
            raw["attribute"] = attributes
        assert fast(False, raw, None) == fast(True, raw, None), raw
        assert attempt(normalize, DEFAULT_TYPES, raw) == attempt(full_check, raw), raw
