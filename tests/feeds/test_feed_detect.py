"""detect_type: a table of values, defanged forms included."""

from __future__ import annotations

import pytest

from streambatch.feeds import detect_type, refang

CASES = [
    # IPv4 / IPv6
    ("1.2.3.4", ("Address", "1.2.3.4")),
    ("  8.8.8.8  ", ("Address", "8.8.8.8")),
    ("1[.]2[.]3[.]4", ("Address", "1.2.3.4")),
    ("10(.)0(.)0(.)1", ("Address", "10.0.0.1")),
    ("2001:DB8::1", ("Address", "2001:db8::1")),
    ("::1", ("Address", "::1")),
    ("256.1.1.1", None),
    ("1.2.3", None),
    # CIDR
    ("10.0.0.0/8", ("CIDR", "10.0.0.0/8")),
    ("10.1.2.3/24", ("CIDR", "10.1.2.0/24")),
    ("2001:db8::/48", ("CIDR", "2001:db8:0:0:0:0:0:0/48")),
    ("10.0.0.0/33", None),
    # ASN
    ("AS123", ("ASN", "ASN123")),
    ("ASN123", ("ASN", "ASN123")),
    ("as64500", ("ASN", "ASN64500")),
    ("AS 42", ("ASN", "ASN42")),
    # URL
    ("http://evil.example.com/a", ("URL", "http://evil.example.com/a")),
    ("HTTPS://Evil.Example.COM/Path", ("URL", "https://evil.example.com/Path")),
    ("hxxp://evil[.]example[.]com/x", ("URL", "http://evil.example.com/x")),
    ("hXXps[:]//bad.example.net/a?b=1", ("URL", "https://bad.example.net/a?b=1")),
    ("hxxp[://]evil.example.com", ("URL", "http://evil.example.com")),
    ("fxp://files.example.com/x", ("URL", "ftp://files.example.com/x")),
    ("http://has space.com/", None),
    # email
    ("bob@example.com", ("EmailAddress", "bob@example.com")),
    ("bob[@]evil[.]example[.]com", ("EmailAddress", "bob@evil.example.com")),
    ("alice(@)Example.ORG", ("EmailAddress", "alice@example.org")),
    ("@example.com", None),
    # hashes
    ("d41d8cd98f00b204e9800998ecf8427e", ("File", "d41d8cd98f00b204e9800998ecf8427e")),
    ("DA39A3EE5E6B4B0D3255BFEF95601890AFD80709", ("File", "da39a3ee5e6b4b0d3255bfef95601890afd80709")),
    ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     ("File", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")),
    ("d41d8cd98f00b204e9800998ecf8427", None),  # 31 hex characters
    ("z41d8cd98f00b204e9800998ecf8427e", None),  # not hex: and no dot, so not a host either
    # hosts
    ("evil.example.com", ("Host", "evil.example.com")),
    ("Evil.Example.COM.", ("Host", "evil.example.com")),
    ("evil[.]example[.]com", ("Host", "evil.example.com")),
    ("evil(.)example{.}com", ("Host", "evil.example.com")),
    ("evil[dot]example[dot]com", ("Host", "evil.example.com")),
    ("xn--bcher-kva.example", ("Host", "xn--bcher-kva.example")),
    ("bücher.example", None),  # IDN must be punycode
    ("-bad-.example.com", None),
    ("localhost", None),
    # garbage
    ("", None),
    ("   ", None),
    ("not a thing", None),
    (None, None),
    (12.5, None),
]


@pytest.mark.parametrize(("value", "expected"), CASES)
def test_detect_type(value, expected) -> None:
    assert detect_type(value) == expected


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert sum(1 for v, _ in CASES if isinstance(v, str) and refang(v) != v) >= 10  # many defanged forms


def test_refang_leaves_clean_values_alone() -> None:
    assert refang("http://example.com/a(b)") == "http://example.com/a(b)"
    assert refang("hxxp://a[.]b") == "http://a.b"
