"""The value checks' shortcuts for their common cases give exactly what the checks gave before
(tests/reference_checks.py keeps those as oracles): the same canonical value of the same type,
or the same error with the same message, on generated input including the nasty kinds."""

from __future__ import annotations

import ipaddress
import re
import sys
from decimal import Decimal
from enum import IntEnum
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streambatch import validate as v

import reference_checks as ref

PROPS = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(check, *args):
    """What a check did: ('ok', type, repr of the value) or ('error', exception type, message)."""
    try:
        out = check(*args)
    except Exception as exc:  # noqa: BLE001 - the comparison is the point
        return ("error", type(exc), str(exc))
    return ("ok", type(out), repr(out))


def same(new, old, *args):
    assert outcome(new, *args) == outcome(old, *args), args


class Level(IntEnum):
    THREE = 3


class Text(str):
    pass


# every kind of character: surrogates, controls, NUL, whitespace of all sorts, non-ASCII letters
# and digits, the Kelvin sign (lower-cases to ASCII 'k') ...
ANY_CHAR = st.characters(blacklist_categories=())
NASTY_CHARS = "\x00\x01\t\n\r\x0b\x0c\x1c\x1f\x7f\x85\xa0\u1680\u2000\u2028\u2029\u3000\ufeff\ud800\udfff" \
              "\u212a\u0130\u00e9\u0661\uff11\U0001d7ce"
NASTY = st.sampled_from(NASTY_CHARS)
WHITESPACE = st.sampled_from(["", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x85", "\u3000", "\xa0"])


def padded(core):
    """A string strategy with any whitespace around it."""
    return st.tuples(WHITESPACE, core, WHITESPACE).map("".join)


def salted(core):
    """A string strategy with, now and then, a nasty character put somewhere in it."""
    return st.one_of(core, st.tuples(core, NASTY, st.integers(0, 300)).map(
        lambda t: t[0][:t[2]] + t[1] + t[0][t[2]:]))


ODD_OBJECTS = st.sampled_from([None, True, False, b"10.0.0.1", [1], {"a": 1}, (3,), 3j, object(), Level.THREE,
                               Text("example.com"), Decimal("3"), Decimal("NaN"), Fraction(7, 2), float("nan"),
                               float("inf"), -float("inf"), -0.0, 10**20, -(10**20), 2**63 - 1, 2**63, 10**5000])


# -- facts the shortcuts stand on -----------------------------------------------------------------

def test_every_whitespace_character_but_the_space_is_unprintable():
    """url's shortcut stands in for _SPACE_RE ('\\s') with isprintable() and no ' '."""
    space = re.compile(r"\s")
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        if space.match(c) and c != " ":
            assert not c.isprintable(), hex(cp)


def test_no_other_character_lowercases_to_a_hex_digit():
    """hash_value's shortcut lower-cases before it knows the text is ASCII."""
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        low = c.lower()
        if low and all(ch in "0123456789abcdef" for ch in low):
            assert c in "0123456789abcdefABCDEF", hex(cp)


# -- url ------------------------------------------------------------------------------------------

URL_CHARS = "aZ09.-_~%+:/?#@[]! \t" + NASTY_CHARS
SCHEMES = st.one_of(st.sampled_from(["http", "https", "HTTP", "hTTps", "ftp", "svn+ssh", "a.b-c", "1http", "",
                                      "ht tp", "h\u00e9", "x"]), st.text(alphabet="aZ0+.-:", max_size=6))
SEPARATORS = st.sampled_from(["://", "://", "://", ":/", ":", "", ":///", "::/"])
AUTHS = st.sampled_from(["", "", "", "user@", "User:Pass@", "@", "a@b@", "u:p", "[u]@", "%40@"])
HOSTS = st.one_of(st.sampled_from(["example.com", "Example.COM", "u1.example.net", "10.0.0.1", "[::1]", "[2001:DB8::1]",
                                    "[", "]", "[]", "[[", "a]b", "a[b", "xn--bcher-kva.example", "b\u00fccher.de",
                                    "\u212aelvin.com", "", "h:8080", "h:", ":80", "a@b"]),
                  st.text(alphabet=URL_CHARS, max_size=12), st.text(max_size=6))
RESTS = st.one_of(st.sampled_from(["", "/", "/path/1", "/A/B?c=D#E", "?q", "#f", ":8080/x", "/p@q", "/\u00e9",
                                    "/a b", "/a\tb", "/\x00", "/\ud800", "/" + "x" * 1990]),
                  st.text(alphabet=URL_CHARS, max_size=12))
URLS = st.tuples(SCHEMES, SEPARATORS, AUTHS, HOSTS, RESTS).map("".join)


@PROPS
@given(padded(salted(URLS)))
def test_url_is_unchanged_on_generated_urls(value):
    same(v.url, ref.url, value)


@PROPS
@given(st.one_of(st.text(alphabet=ANY_CHAR, max_size=30), st.text(alphabet=URL_CHARS, max_size=30), ODD_OBJECTS,
                 st.integers(), st.floats()))
def test_url_is_unchanged_on_any_input(value):
    same(v.url, ref.url, value)


def test_url_edges():
    for value in ["http://" + "a" * 1993, "http://" + "a" * 1994, "http://]", "http://[x]", "HTTP://A/B", "http://a",
                  "http://a:1", "http://u@h", "http://h?x@y", "http://h/x@y", "http://h#x", "http://h\u00e9",
                  "  http://x  ", "http://x\x00", "mailto:a@b", "//x", "h://x", "H.+-://X"]:
        same(v.url, ref.url, value)


# -- host -----------------------------------------------------------------------------------------

LABELS = st.one_of(st.sampled_from(["a", "Z", "0", "-", "a-b", "-a", "a-", "xn--bcher-kva", "\u212a", "\u00e9", "_",
                                     "a" * 63, "b" * 64, "", "123", "1a", "a1"]),
                   st.text(alphabet="aZ09-_.", min_size=1, max_size=8))
HOSTNAMES = st.tuples(st.lists(LABELS, min_size=1, max_size=6), st.sampled_from(["", "", ".", ".."])).map(
    lambda t: ".".join(t[0]) + t[1])
LONG_HOSTS = st.tuples(st.integers(1, 63), st.integers(1, 10), st.sampled_from(["com", "c0m", "123", "a-"])).map(
    lambda t: ".".join(["x" * t[0]] * t[1]) + "." + t[2])


@PROPS
@given(padded(salted(st.one_of(HOSTNAMES, LONG_HOSTS))))
def test_host_is_unchanged_on_generated_hosts(value):
    same(v.host, ref.host, value)


@PROPS
@given(st.one_of(st.text(alphabet=ANY_CHAR, max_size=20), st.text(alphabet="aZ09-._\u212a ", max_size=20),
                 ODD_OBJECTS, st.integers(), st.floats()))
def test_host_is_unchanged_on_any_input(value):
    same(v.host, ref.host, value)


def test_host_edges():
    labels63 = ".".join(["a" * 63] * 3) + "." + "b" * 61  # 253 characters
    for value in [labels63, labels63 + "b", labels63 + ".", "a." * 126 + "a", "a.b.", "A.B", "a..b", "a.-b", "a-.b",
                  ".a.b", "-a.b", "a.b-", "a.1", "a.1a", "1.2.3.4", "\u212a.com", "a.b\x00", "localhost",
                  "a." + "b" * 64]:
        same(v.host, ref.host, value)


# -- address --------------------------------------------------------------------------------------

OCTETS = st.one_of(st.integers(0, 300).map(str),
                   st.sampled_from(["00", "01", "001", "-1", "", " 1", "\u0661", "1\u0661", "\uff11", "0x1", "1e1"]))
IPV4 = st.lists(OCTETS, min_size=3, max_size=5).map(".".join)
IPV6 = st.one_of(st.integers(0, 2**128 - 1).map(lambda n: ipaddress.IPv6Address(n)).flatmap(
    lambda a: st.sampled_from([str(a), a.exploded, a.exploded.upper(), str(a).upper(), f"{a}%eth0", f"[{a}]"])),
    st.sampled_from(["::", "::1", "::ffff:1.2.3.4", "::FFFF:10.0.0.1", "1::2::3", "2001:db8::g", ":",
                     "1:2:3:4:5:6:7:8:9", "fe80::1%1", "2001:0DB8:0000:0000:0000:0000:0000:0001"]))


@PROPS
@given(padded(salted(st.one_of(IPV4, IPV6))))
def test_address_is_unchanged_on_generated_addresses(value):
    same(v.address, ref.address, value)


@PROPS
@given(st.one_of(st.text(alphabet=ANY_CHAR, max_size=20), st.text(alphabet="0123456789.:abcdefABCDEF% ", max_size=20),
                 ODD_OBJECTS, st.integers(), st.floats()))
def test_address_is_unchanged_on_any_input(value):
    same(v.address, ref.address, value)


# -- hash_value -----------------------------------------------------------------------------------

HEXES = st.tuples(st.sampled_from([31, 32, 33, 39, 40, 41, 63, 64, 65, 0, 1]),
                  st.text(alphabet="0123456789abcdefABCDEFgx", min_size=1, max_size=1)).flatmap(
    lambda t: st.text(alphabet="0123456789abcdefABCDEF", min_size=t[0], max_size=t[0]).map(
        lambda s: s if t[1] in "0123456789abcdefABCDEF" else s[:-1] + t[1] if s else s))
KINDS = st.sampled_from([None, "md5", "sha1", "sha256", "", "MD5"])


@PROPS
@given(padded(salted(HEXES)), KINDS)
def test_hash_value_is_unchanged_on_generated_digests(value, kind):
    same(v.hash_value, ref.hash_value, value, kind)


@PROPS
@given(st.one_of(st.text(alphabet=ANY_CHAR, max_size=70), ODD_OBJECTS, st.integers(), st.floats()), KINDS)
def test_hash_value_is_unchanged_on_any_input(value, kind):
    same(v.hash_value, ref.hash_value, value, kind)


# -- numbers --------------------------------------------------------------------------------------

NUMBER_TEXTS = st.sampled_from(["3", " 3 ", "3.0", "3.5", "-0", "+5", "1e2", "1e400", "0x10", "7_5", "nan", "inf",
                                "-inf", "", " ", "5.000000000000001", "\u0663", "\uff15", "100", "101", "3\x00"])
NUMBERS = st.one_of(st.integers(), st.integers(-3, 110), st.floats(), st.floats(-1, 101), st.booleans(),
                    NUMBER_TEXTS, ODD_OBJECTS, st.text(max_size=4), st.integers(0, 100).map(float),
                    st.sampled_from([2**63 - 1, 2**63, -(2**63), 10**400, 5, 0, 100, 4.9999, 5.0000001]))


@PROPS
@given(NUMBERS)
def test_rating_is_unchanged(value):
    same(v.rating, ref.rating, value)


@PROPS
@given(NUMBERS)
def test_confidence_is_unchanged(value):
    same(v.confidence, ref.confidence, value)


@PROPS
@given(NUMBERS)
def test_integer_is_unchanged(value):
    same(v.integer, ref.integer, value)


@pytest.mark.parametrize("value", [3, 3.0, 0, 5, -0.0, 2.5, True, Level.THREE, 50, 100, 2**63 - 1, 2**63])
def test_the_common_numbers_keep_their_canonical_types(value):
    """3 stays the float 3.0 for rating (the bytes sent are '3.0'), 50.0 the int 50 for confidence."""
    for new, old in ((v.rating, ref.rating), (v.confidence, ref.confidence), (v.integer, ref.integer)):
        same(new, old, value)
