"""Value checks and canonical forms, as the Batch API applies them (spec section 5.6).

Every function takes a raw value and returns its canonical form, or raises ``ValueError`` with
a short reason. The object model turns those into :class:`streambatch.ValidationError` naming the
record and the field. Nothing here knows about records.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

_HEX = {32: "md5", 40: "sha1", 64: "sha256"}
_HEX_RE = re.compile(r"[0-9a-f]+\Z")
_hex = _HEX_RE.match
_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_HOST_RE = re.compile(r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
# re.ASCII: \d is 0-9 only, not the digits of other scripts (which the server does not take)
_IPV4_RE = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\Z", re.ASCII)
_ipv4 = _IPV4_RE.match
_HOST_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-."  # a lower-cased host's, with the dot
_SPACE_RE = re.compile(r"\s")
_ASN_RE = re.compile(r"ASN\d+\Z", re.ASCII)
_COLOR_RE = re.compile(r"[0-9A-Fa-f]{6}\Z")
_EMAIL_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}\Z")
_URL_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<auth>[^/?#@]*@)?(?P<host>\[[^\]]+\]|[^/?#:]+)(?P<rest>.*)\Z", re.S)
_url_simple = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#:@\[\]]+(?=[/?#]|\Z)").match  # scheme://host

REGISTRY_HIVES = (
    "HKEY_CLASSES_ROOT", "HKEY_CURRENT_CONFIG", "HKEY_CURRENT_USER",
    "HKEY_CURRENT_USER_LOCAL_SETTINGS", "HKEY_LOCAL_MACHINE", "HKEY_PERFORMANCE_DATA",
    "HKEY_PERFORMANCE_NLSTEXT", "HKEY_PERFORMANCE_TEXT", "HKEY_USERS",
)
REGISTRY_VALUE_TYPES = (
    "REG_NONE", "REG_BINARY", "REG_DWORD", "REG_DWORD_LITTLE_ENDIAN", "REG_DWORD_BIG_ENDIAN",
    "REG_EXPAND_SZ", "REG_LINK", "REG_MULTI_SZ", "REG_QWORD", "REG_QWORD_LITTLE_ENDIAN", "REG_SZ",
)
SUMMARY_SEPARATOR = " : "

# Length limits, in characters (docs/decisions.md, "Canonical values").
TAG_MAX = 128  # spec 5.1
NAME_MAX = 100  # group names (spec 5.1, tcex); also security label names and attribute type names
XID_MAX = 100
LINE_MAX = 2_000  # any other single-line text: indicator values, URLs, file names, sources ...
TEXT_MAX = 65_500  # multi-line text: descriptions, attribute values (the default attribute maxSize)
LARGE_TEXT_MAX = 1_000_000  # email headers and bodies, signature text
INT_MAX = 2**63 - 1  # the largest integer field value (a signed 64-bit integer, as JSON and the server hold it)

# Item-count limits of a record's lists, in distinct entries (docs/decisions.md, "Canonical
# values": the API documents none, so these are choices, far above what feeds send).
TAGS_MAX = 1_000
ATTRIBUTES_MAX = 1_000
LABELS_MAX = 100  # security labels of a record, and of each attribute
ASSOCIATIONS_MAX = 10_000  # each of associatedGroupXid, associatedGroups, associatedIndicators
OCCURRENCES_MAX = 1_000  # file occurrences of a File

# Characters no text may hold: NUL and lone surrogates (they cannot be encoded as UTF-8); and
# in single-line text also every other C0 control character except tab, newline and CR.
_LINE_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]").search
text_bad = re.compile("[\x00\ud800-\udfff]").search
"""The first character that multi-line text may not hold (a match), or None."""


def _scalar(value: object) -> str:
    """A number given where text is expected, as text."""
    if value is None:
        raise ValueError("is required")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"must be text, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    try:
        return str(value).strip()
    except ValueError:  # an integer of more digits than Python converts
        raise ValueError("is too long") from None


def _bad_char(char: str) -> ValueError:
    if char == "\x00":
        return ValueError("must not contain NUL (U+0000)")
    if "\ud800" <= char <= "\udfff":
        return ValueError(f"must not contain a lone surrogate (U+{ord(char):04X}); it cannot be encoded as UTF-8")
    return ValueError(f"must not contain the control character U+{ord(char):04X}")


def _text_check(bad_char: Callable[[str], re.Match | None], default_limit: int) -> Callable[..., str]:
    def check(value: object, limit: int = default_limit) -> str:
        out = value.strip() if type(value) is str else _scalar(value)
        if 0 < len(out) <= limit and out.isprintable():  # the common case: one scan of the string
            return out
        if not out:
            raise ValueError("must not be empty")
        if len(out) > limit:
            raise ValueError(f"is longer than {limit} characters")
        bad = bad_char(out)
        if bad:
            raise _bad_char(bad.group())
        return out

    return check


text = _text_check(_LINE_BAD, LINE_MAX)
text.__name__ = text.__qualname__ = "text"
text.__doc__ = """Single-line text: a non-empty string, trimmed, of at most ``limit`` characters, without
NUL, lone surrogates or C0 control characters other than tab, newline and CR. A finite number
is taken as its text."""
long_text = _text_check(text_bad, TEXT_MAX)
long_text.__name__ = long_text.__qualname__ = "long_text"
long_text.__doc__ = """Multi-line text (descriptions, attribute values): as :func:`text`, but control characters
other than NUL are allowed, and the default limit is :data:`TEXT_MAX`."""


def large_text(value: object) -> str:
    """Multi-line text of up to :data:`LARGE_TEXT_MAX` characters (email bodies, signatures)."""
    return long_text(value, LARGE_TEXT_MAX)


def name(value: object) -> str:
    """A name of at most :data:`NAME_MAX` characters: a group's, a security label's, an
    attribute type's."""
    return text(value, NAME_MAX)


def xid(value: object) -> str:
    """An xid: single-line text of at most :data:`XID_MAX` characters."""
    return text(value, XID_MAX)


def address(value: object) -> str:
    """IPv4 or IPv6 address; IPv6 lower-cased, otherwise as given (as the incumbent sends it:
    the server is not known to compress IPv6, so ``2001:0db8::2`` and ``2001:db8::2`` stay two
    values, as they are when sent by tcex)."""
    if type(value) is str:  # the common case: a dotted quad, already canonical
        raw = value.strip()
        if _ipv4(raw) is not None:
            return raw
    raw = text(value)
    if _ipv4(raw):  # the common case, already canonical
        return raw
    if ":" not in raw:  # not IPv4 (the pattern above is exact), and IPv6 always has a colon
        raise ValueError("is not a valid IPv4 or IPv6 address")
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise ValueError("is not a valid IPv4 or IPv6 address") from None
    return raw.lower()


def cidr(value: object) -> str:
    """network/prefix. IPv6 blocks are written as the server wants them: every hextet present,
    no leading zeros (``abc:def:10:0:0:0:0:0/48``)."""
    raw = text(value).lower()
    if "/" not in raw:
        raise ValueError("must be network/prefix")
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise ValueError("is not a valid CIDR block") from None
    if net.version == 4:
        return f"{net.network_address}/{net.prefixlen}"
    hextets = net.network_address.exploded.split(":")
    return ":".join(h.lstrip("0") or "0" for h in hextets) + f"/{net.prefixlen}"


def asn(value: object) -> str:
    """``ASN`` followed by digits, no space (``ASN12345``)."""
    raw = text(value).upper()
    if not _ASN_RE.match(raw):
        raise ValueError("must be 'ASN' followed by digits, e.g. ASN12345")
    return raw


def host(value: object) -> str:
    """An RFC 952/1123 hostname: ASCII (IDNs as punycode), labels of letters, digits and '-',
    at least one dot, at most 253 characters. Lower-cased."""
    if type(value) is str:  # the common case: printable ASCII of valid labels, no trailing dot
        raw = value.strip()
        if 0 < len(raw) <= 253 and raw.isascii() and raw.isprintable():
            raw = raw.lower()
            if (not raw.strip(_HOST_CHARS) and raw[0] not in ".-" and raw[-1] not in ".-" and "." in raw
                    and ".." not in raw and ".-" not in raw and "-." not in raw and not raw.rpartition(".")[2].isdigit()
                    and (len(raw) <= 63 or max(map(len, raw.split("."))) <= 63)):
                return raw
    raw = text(value).lower().rstrip(".")
    if not raw.isascii():
        raise ValueError("must be ASCII; write internationalised names in punycode (xn--...)")
    if len(raw) > 253:
        raise ValueError("is longer than 253 characters")
    if raw.rpartition(".")[2].isdigit():
        raise ValueError("has an all-numeric top-level label (an IP address is an Address)")
    if _HOST_RE.match(raw):
        return raw
    labels = raw.split(".")
    if len(labels) < 2:
        raise ValueError("must contain at least one dot")
    for label in labels:
        if not _LABEL_RE.match(label):
            raise ValueError(f"has an invalid label {label!r} (letters, digits and '-' only)")
    return raw


def url(value: object) -> str:
    """A URL with a scheme; scheme and host are lower-cased, as the server requires."""
    if type(value) is str:
        # The common case: printable ASCII without a space (so without any whitespace: every
        # other whitespace character is not printable), no user info, no port, no brackets.
        # Then _URL_RE's scheme and host are the match below, and its auth is empty.
        raw = value.strip()
        if 0 < len(raw) <= LINE_MAX and raw.isascii() and raw.isprintable() and " " not in raw:
            m = _url_simple(raw)
            if m is not None:
                head = m.group()
                return raw if head.islower() else head.lower() + raw[len(head):]
    raw = text(value)
    if _SPACE_RE.search(raw):
        raise ValueError("must not contain whitespace")
    m = _URL_RE.match(raw)
    if not m:
        raise ValueError("must include a protocol, e.g. http://")
    host_part = m["host"].lower()
    if not host_part.isascii():
        raise ValueError("host must be ASCII; write internationalised names in punycode")
    if not host_part.strip("[]"):
        raise ValueError("has no host")
    return f"{m['scheme'].lower()}://{m['auth'] or ''}{host_part}{m['rest']}"


def email_address(value: object) -> str:
    """local@domain with a valid domain; the domain is lower-cased."""
    raw = text(value)
    local, at, domain = raw.rpartition("@")
    if not at or not local:
        raise ValueError("must be local@domain")
    if not _EMAIL_LOCAL_RE.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise ValueError("has an invalid local part")
    try:
        domain = host(domain)
    except ValueError as exc:
        raise ValueError(f"has an invalid domain: {exc}") from None
    return f"{local}@{domain}"


def hash_value(value: object, kind: str | None = None) -> str:
    """An md5/sha1/sha256 hex digest, lower-cased; ``kind`` demands one of them."""
    if type(value) is str:  # the common case
        raw = value.strip().lower()
        found = _HEX.get(len(raw))
        if found is not None and (kind is None or kind == found) and _hex(raw) is not None:
            return raw
    raw = text(value).lower()
    found = _HEX.get(len(raw))
    if found is None or not _HEX_RE.match(raw):
        want = {"md5": 32, "sha1": 40, "sha256": 64}.get(kind or "")
        if want:
            raise ValueError(f"must be {want} hex characters ({kind})")
        raise ValueError("must be an md5 (32), sha1 (40) or sha256 (64) hex digest")
    if kind and found != kind:
        raise ValueError(f"is a {found} digest, expected {kind}")
    return raw


def part(value: object) -> str:
    """One value of a multi-value indicator: text without the ``' : '`` summary separator,
    which would make the summary ambiguous."""
    out = text(value)
    if SUMMARY_SEPARATOR in out:
        raise ValueError(f"must not contain {SUMMARY_SEPARATOR!r}, the summary separator")
    return out


def registry_key_name(value: object) -> str:
    raw = part(value)
    if raw.split("\\", 1)[0].upper() not in REGISTRY_HIVES:
        raise ValueError("must start with a full hive name such as HKEY_LOCAL_MACHINE")
    return raw


def registry_value_name(value: object) -> str:
    """Required; a single space means 'no value name' and is kept as it is."""
    if value == " ":
        return " "
    return part(value)


def registry_value_type(value: object) -> str:
    raw = text(value).upper()
    if raw not in REGISTRY_VALUE_TYPES:
        raise ValueError(f"must be one of {', '.join(REGISTRY_VALUE_TYPES)}")
    return raw


def _number_text(value: object) -> object:
    """``value``, unless it is text that Python reads as a number and no data format writes
    so: digits of other scripts (``'\u0663'``) or underscores (``'7_5'``), refused."""
    if isinstance(value, str) and (not value.isascii() or "_" in value):
        raise ValueError("is not a number")
    return value


def rating(value: object) -> float:
    kind = type(value)
    if (kind is int or kind is float) and 0 <= value <= 5:  # type: ignore[operator]  # the common case
        return float(value)  # type: ignore[arg-type]
    try:
        out = float(_number_text(value))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ValueError("must be a number from 0 to 5") from None
    if isinstance(value, bool) or not 0 <= out <= 5:
        raise ValueError("must be a number from 0 to 5")
    return out


def confidence(value: object) -> int:
    if type(value) is int and 0 <= value <= 100:  # the common case
        return value
    try:
        out = float(_number_text(value))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ValueError("must be an integer from 0 to 100") from None
    if isinstance(value, bool) or not out.is_integer() or not 0 <= out <= 100:
        raise ValueError("must be an integer from 0 to 100")
    return int(out)


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError("must be true or false")


def integer(value: object) -> int:
    if type(value) is int and 0 <= value <= INT_MAX:  # the common case
        return value
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    try:
        out = int(_number_text(str(value).strip()))  # type: ignore[arg-type]
    except (TypeError, ValueError):  # also an integer of more digits than Python converts
        raise ValueError("must be an integer") from None
    if out < 0:
        raise ValueError("must not be negative")
    if out > INT_MAX:
        raise ValueError(f"must be at most {INT_MAX}")
    return out


def color(value: object) -> str:
    raw = text(value).lstrip("#")
    if not _COLOR_RE.match(raw):
        raise ValueError("must be 6 hex digits, e.g. ffffff")
    return raw.lower()


def tag(value: object) -> str:
    return text(value, TAG_MAX)


def file_content(value: object) -> object:
    """Document/Report content as given: bytes, str (UTF-8 encodable), a path (an
    ``os.PathLike`` naming a text path without NUL) or a callable that returns it later."""
    if isinstance(value, (bytes, bytearray, memoryview)) or callable(value):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"cannot be encoded as UTF-8 ({exc.reason} at position {exc.start})") from None
        return value
    if isinstance(value, os.PathLike):
        path = value.__fspath__()
        if not isinstance(path, str) or text_bad(path):
            raise ValueError("must be a path given as text, without NUL or lone surrogates")
        return value
    raise ValueError("must be bytes, str, a pathlib.Path or a callable")


def choice(options: tuple[str, ...]):
    """A check that accepts one of ``options`` case-insensitively and returns its spelling."""
    folded = {o.lower(): o for o in options}

    def check(value: object) -> str:
        out = folded.get(text(value).lower())
        if out is None:
            raise ValueError(f"must be one of: {', '.join(options)}")
        return out

    check.options = options  # type: ignore[attr-defined]
    return check


_RELATIVE_RE = re.compile(r"(?P<n>\d+)\s*(?P<unit>second|minute|hour|day|week)s?\s+ago\Z")
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


def date(value: object, now: datetime | None = None) -> str:
    """A date/time in the form the Batch API documents: ``YYYY-MM-DDTHH:MM:SSZ`` (UTC).

    Accepts ISO 8601 (``Z``, offsets, ``T`` or a space; a date alone is midnight; no zone is
    UTC), epoch seconds, a ``datetime``, and the relative words ``now``, ``today``,
    ``yesterday``, ``tomorrow`` and ``N days ago`` (seconds, minutes, hours, days, weeks).
    """
    try:
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("is not a date (a finite number of epoch seconds)")
            moment = datetime.fromtimestamp(value, timezone.utc)
        else:
            raw = text(value)
            moment = _parse_date_text(raw, now or datetime.now(timezone.utc))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError):  # epoch seconds or an offset beyond what datetime can hold
        raise ValueError("is out of the range of dates") from None


def _parse_date_text(raw: str, now: datetime) -> datetime:
    low = raw.lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    words = {"now": now, "today": midnight, "yesterday": midnight - timedelta(days=1),
             "tomorrow": midnight + timedelta(days=1)}
    if low in words:
        return words[low]
    m = _RELATIVE_RE.match(low)
    if m:
        return now - timedelta(seconds=int(m["n"]) * _UNITS[m["unit"]])
    if re.fullmatch(r"\d{9,11}(\.\d+)?", raw):
        return datetime.fromtimestamp(float(raw), timezone.utc)
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError("is not a date (ISO 8601, epoch seconds, or words like 'yesterday')") from None


def split_summary(summary: str) -> list[str]:
    """Split a multi-value summary on ``' : '`` into at most three parts (the third keeps any
    further separators), as the Batch API and the incumbent framework do."""
    return summary.split(SUMMARY_SEPARATOR, 2)
