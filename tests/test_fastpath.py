"""The fast path of normalize: whatever it accepts, it canonicalizes exactly as the full check
does (same dict, same key order); whatever it cannot vouch for, it hands back (None)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streambatch import fastpath
from streambatch.errors import ValidationError
from streambatch.model import DEFAULT_TYPES, normalize


def full_check(raw, default_xid=None):
    """normalize() with the fast path switched off."""
    saved = fastpath.indicator
    fastpath.indicator = lambda *a: None
    try:
        return normalize(DEFAULT_TYPES, raw, default_xid=default_xid)
    finally:
        fastpath.indicator = saved


def default_xid(kind, spec, ident):
    return f"{kind}:{spec.name}:{ident}"


SUMMARIES = st.one_of(
    st.sampled_from(["10.0.0.1", " 10.0.0.2 ", "10.0.0.256", "2001:DB8::1", "::ffff:1.2.3.4", "Example.COM",
                     "bad_host", "a.b.", "1.2.3.4", "https://Ex.com/A?b=1", "ftp://h", "no-scheme.com",
                     "d41d8cd98f00b204e9800998ecf8427e", "D41D8CD98F00B204E9800998ECF8427E",
                     "da39a3ee5e6b4b0d3255bfef95601890afd80709", "zz" * 16,
                     "d41d8cd98f00b204e9800998ecf8427e : da39a3ee5e6b4b0d3255bfef95601890afd80709",
                     "asn123", "ASN 1", "10.0.0.0/8", "user@Example.com", "", "  ", "x : y : z",
                     "HKEY_LOCAL_MACHINE\\x : v : REG_SZ"]),
    st.text(max_size=12), st.integers(), st.floats(allow_nan=False), st.none(), st.booleans())
TYPES = st.sampled_from(["Address", "Host", "URL", "File", "ASN", "CIDR", "EmailAddress", "Mutex",
                         "Registry Key", "User Agent", "address", " Host ", "Email Subject", "Hashtag"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 200), st.floats(-1, 6, allow_nan=False),
                    st.sampled_from(["3", "50", "true", "False", "yes", "", " text ", "2024-01-02", "x"]))
TAG = st.one_of(st.text(max_size=6), st.sampled_from(["t", " t ", "T", "", "x" * 129]), st.integers(), st.none(),
                st.fixed_dictionaries({"name": st.one_of(st.text(max_size=5), st.none(), st.integers())}),
                st.fixed_dictionaries({"name": st.just("t"), "extra": st.just(1)}))
ATTRIBUTE = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["Description", " Source ", "", "External Date Created"]),
                           "value": st.one_of(st.sampled_from(["v", " v ", "", "y" * 70]), st.integers(), st.none())}),
    st.fixed_dictionaries({"type": st.just("Description"), "value": st.just("v"),
                           "displayed": st.one_of(st.booleans(), st.just("true"))}),
    st.sampled_from(["Description", None, 3]))
RAW = st.fixed_dictionaries(
    {"type": TYPES, "summary": SUMMARIES},
    optional={
        "xid": st.one_of(st.none(), st.sampled_from(["x1", " x2 ", "", "  "]), st.integers()),
        "rating": SCALARS, "confidence": SCALARS, "active": SCALARS, "description": SCALARS,
        "dnsActive": SCALARS, "flag1": SCALARS, "dns_active": SCALARS, "size": SCALARS, "intValue1": SCALARS,
        "firstSeen": SCALARS, "ownerName": st.just("Org"), "name": st.just("n"), "ip": st.just("10.1.1.1"),
        "value1": st.just("10.2.2.2"), "fileContent": st.just(b"x"), "unknownKey": st.just(1),
        "tag": st.one_of(st.none(), st.lists(TAG, max_size=3), st.tuples(st.just("t")), st.just("t")),
        "attribute": st.one_of(st.none(), st.lists(ATTRIBUTE, max_size=3), st.just({"type": "a"})),
    })


PAIRS = st.sampled_from([
    ("Address", "10.0.0.1"), ("Address", "2001:DB8::1"), ("Host", " Example.COM "), ("URL", "HTTPS://Ex.com/A?b"),
    ("File", "D41D8CD98F00B204E9800998ECF8427E"), ("File", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    ("ASN", "asn7"), ("CIDR", "10.1.0.0/16"), ("EmailAddress", "a@B.com"), ("Mutex", " m "),
    ("User Agent", "ua"), ("Hashtag", "#Tag"), ("Email Subject", "s")])
LIKELY = st.tuples(PAIRS, st.fixed_dictionaries({}, optional={
    "xid": st.sampled_from(["x1", " x2 "]),
    "rating": st.sampled_from([0, 3, "2.5", 5.0, None]), "confidence": st.sampled_from([0, 50, "75", None]),
    "active": st.sampled_from([True, "false", None]), "description": st.text(min_size=1, max_size=5),
    "dnsActive": st.booleans(), "size": st.sampled_from([1, "20"]), "firstSeen": st.just("2024-01-02"),
    "tag": st.lists(st.one_of(st.sampled_from(["a", " b ", "a"]), st.fixed_dictionaries({"name": st.just("c")})),
                    max_size=3),
    "attribute": st.lists(st.fixed_dictionaries({"type": st.sampled_from(["Description", "Source"]),
                                                 "value": st.sampled_from(["v", " w ", "v"])}), max_size=3),
})).map(lambda t: {"type": t[0][0], "summary": t[0][1], **t[1]})


def check_agreement(raw, dx):
    """Accepted by the fast path: equal to the full check, key order included. Refused by the
    full check: never accepted by the fast path."""
    spec = DEFAULT_TYPES.get(raw["type"])
    fast = fastpath.indicator(spec, raw, dx) if spec is not None and spec.kind == "indicator" else None
    try:
        _, expected, content = full_check(raw, dx)
    except ValidationError:
        assert fast is None
        return
    if fast is not None:
        assert content is None
        assert fast == expected
        assert list(fast) == list(expected)
        assert [list(a) for a in fast.get("attribute", [])] == [list(a) for a in expected.get("attribute", [])]
    return fast


@settings(max_examples=1000, deadline=None)
@given(RAW, st.booleans())
def test_fast_path_agrees_with_the_full_check_on_wild_input(raw, with_default):
    check_agreement(raw, default_xid if with_default else None)


@settings(max_examples=1000, deadline=None)
@given(LIKELY, st.booleans())
def test_fast_path_agrees_with_the_full_check_on_likely_input(raw, with_default):
    check_agreement(raw, default_xid if with_default else None)


@pytest.mark.parametrize("raw", [
    {"type": "Address", "summary": "10.0.0.1", "xid": "a", "rating": 3, "confidence": 50,
     "tag": [{"name": "bench"}], "attribute": [{"type": "Description", "value": "d"}]},
    {"summary": "Example.com", "type": "Host", "confidence": "40", "rating": "2.5", "dnsActive": "true",
     "tag": ["one", " two ", "one"]},
    {"type": "File", "summary": "D41D8CD98F00B204E9800998ECF8427E", "size": 10},
    {"type": "URL", "summary": "HTTPS://Ex.com/Path", "attribute": [{"type": "Source", "value": "s"},
                                                                   {"type": "Source", "value": "s"}]},
])
def test_the_common_shapes_take_the_fast_path(raw):
    spec = DEFAULT_TYPES.get(raw["type"])
    fast = fastpath.indicator(spec, raw, default_xid)
    assert fast is not None
    assert fast == full_check(raw, default_xid)[1]


def test_an_error_still_names_the_field():
    """A value the fast path cannot take falls through to the full check and its message."""
    raw = {"type": "Address", "summary": "10.0.0.1", "xid": "a", "rating": 9}
    spec = DEFAULT_TYPES.get("Address")
    assert fastpath.indicator(spec, raw, None) is None
    with pytest.raises(ValidationError) as err:
        normalize(DEFAULT_TYPES, raw)
    assert err.value.field == "rating" and err.value.xid == "a"


def test_fields_come_out_in_the_types_order_whatever_the_input_order():
    spec = DEFAULT_TYPES.get("Host")
    a = fastpath.indicator(spec, {"type": "Host", "summary": "a.com", "xid": "x", "flag2": True, "confidence": 1,
                                  "rating": 1}, None)
    b = fastpath.indicator(spec, {"rating": 1, "flag2": True, "xid": "x", "confidence": 1, "summary": "a.com",
                                  "type": "Host"}, None)
    assert a is not None and b is not None
    assert list(a) == list(b) == ["type", "summary", "xid", "rating", "confidence", "flag2"]
