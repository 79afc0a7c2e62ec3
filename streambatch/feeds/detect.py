"""Indicator type detection for feed values.

:func:`detect_type` turns one raw feed value into ``(type_name, canonical_value)`` or ``None``.
It never re-implements a check: every candidate is confirmed (and canonicalized) by the
functions of :mod:`streambatch.validate`, the same ones the object model runs later, so a value
that is detected here is a value the batch will accept.

Defanged values are refanged first (:func:`refang`): ``hxxp://`` / ``hXXps://`` / ``fxp://``,
``[.]`` ``(.)`` ``{.}`` ``[dot]`` ``(dot)``, ``[:]``, ``[://]``, ``[@]`` ``(@)`` ``[at]``.

Order of the checks (first match wins): URL (``scheme://``), ASN (``AS123``/``ASN 123``),
CIDR (contains ``/``), Address (IPv4/IPv6), File (md5/sha1/sha256 hex), EmailAddress
(contains ``@``), Host. A bare word without a dot, or anything else, is ``None``.
"""

from __future__ import annotations

import re

from .. import validate as v

_SCHEME_RE = re.compile(r"^(?:h[xX*]{2}p|hxxp|meow)(s?)(?=\[?:)", re.I)
_FXP_RE = re.compile(r"^fxp(s?)(?=\[?:)", re.I)
_DOTS_RE = re.compile(r"\s?(?:\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\})\s?", re.I)
_AT_RE = re.compile(r"\s?(?:\[@\]|\(@\)|\{@\}|\[at\]|\(at\))\s?", re.I)
_COLON_RE = re.compile(r"\[:\]|\(:\)|\{:\}")
_SLASHES_RE = re.compile(r"\[://\]|\(://\)")
_MAYBE_DEFANGED_RE = re.compile(r"[\[({]|^(?:h..p|fxp|meow)", re.I)
_SPACE_RE = re.compile(r"\s")
_ASN_RE = re.compile(r"AS(?:N)?[\s-]?(\d{1,10})\Z", re.I)

#: the types :func:`detect_type` can return, with the check that confirms each one
CHECKS = {
    "Address": v.address,
    "CIDR": v.cidr,
    "ASN": v.asn,
    "URL": v.url,
    "EmailAddress": v.email_address,
    "File": v.hash_value,
    "Host": v.host,
}


def refang(value: str) -> str:
    """Undo the usual defanging of IOCs (``hxxp://evil[.]com`` -> ``http://evil.com``)."""
    if not _MAYBE_DEFANGED_RE.search(value):
        return value
    out = _SLASHES_RE.sub("://", value)
    out = _COLON_RE.sub(":", out)
    out = _DOTS_RE.sub(".", out)
    out = _AT_RE.sub("@", out)
    out = _SCHEME_RE.sub(lambda m: "http" + m.group(1), out)
    out = _FXP_RE.sub(lambda m: "ftp" + m.group(1), out)
    return out


def detect_type(value: object) -> tuple[str, str] | None:
    """Detect the indicator type of one feed value.

    Returns ``(type_name, canonical_value)`` -- e.g. ``("ASN", "ASN123")`` for ``"AS123"`` --
    or ``None`` when the value is none of Address, CIDR, ASN, URL, EmailAddress, File (md5,
    sha1, sha256) or Host.
    """
    if not isinstance(value, str):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        else:
            return None
    raw = refang(value.strip())
    m = _ASN_RE.match(raw)
    if m:
        return "ASN", f"ASN{int(m.group(1))}"
    if not raw or _SPACE_RE.search(raw):
        return None
    try:
        if "://" in raw:
            return "URL", v.url(raw)
        if "/" in raw:
            return "CIDR", v.cidr(raw)
    except ValueError:
        return None
    for type_name, check in (("Address", v.address), ("File", v.hash_value)):
        try:
            return type_name, check(raw)
        except ValueError:
            pass
    try:
        if "@" in raw:
            return "EmailAddress", v.email_address(raw)
        return "Host", v.host(raw)
    except ValueError:
        return None


def check_value(type_name: str, value: object) -> str:
    """Canonicalize ``value`` for a declared type: refang and run the type's check when it is
    one of the detectable types; other types (Mutex, User Agent, custom ...) only need text.
    Raises ``ValueError`` with a short reason."""
    check = CHECKS.get(type_name)
    raw = v.text(value)
    if check is None:
        return raw
    if type_name == "ASN":
        m = _ASN_RE.match(raw)
        if m:
            raw = f"ASN{int(m.group(1))}"
    elif type_name in ("URL", "Host", "EmailAddress", "Address", "CIDR"):
        raw = refang(raw)
    return check(raw)
