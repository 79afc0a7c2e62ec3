"""Server-side validation rules of the emulated Batch API (spec §5.6).

This module is deliberately independent of the client library's own validation: the emulator
is the second opinion that catches a client which lets bad records through. Each check either
returns a normalised value or raises :class:`Invalid` carrying a batch error code (§5.5) and a
human-readable detail that names the offending item.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Any

#: Batch error codes and their short descriptions (spec §5.5).
ERROR_CODES: dict[str, str] = {
    "0x1001": "General Error",
    "0x1002": "Permission Error",
    "0x1003": "JsonSyntax Error",
    "0x1004": "Internal Error",
    "0x1005": "Invalid Indicator Error",
    "0x1006": "Invalid Group Error",
    "0x1007": "Item Not Found Error",
    "0x1008": "Indicator Limit Error",
    "0x1009": "Association Error",
    "0x100A": "Duplicate Item Error",
    "0x100B": "File IO Error",
    "0x2001": "Indicator Partial Loss Error",
    "0x2002": "Group Partial Loss Error",
    "0x2003": "File Hash Merge Error",
    "0x3001": "File Hash Merge Error",
}


def severity_of(code: str) -> str:
    """0x1xxx codes are errors; 0x2xxx and 0x3xxx are warnings (spec §5.5, unconfirmed)."""
    return "Error" if code.startswith("0x1") else "Warning"


class Invalid(Exception):
    """A record, or part of one, that the server refuses."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


# --------------------------------------------------------------------------- group catalogue

#: Batch group types -> v2 REST branch (spec §4.5).
GROUP_TYPES: dict[str, str] = {
    "Adversary": "adversaries",
    "Attack Pattern": "attackPatterns",
    "Campaign": "campaigns",
    "Course of Action": "coursesOfAction",
    "Document": "documents",
    "Email": "emails",
    "Event": "events",
    "Incident": "incidents",
    "Intrusion Set": "intrusionSets",
    "Malware": "malware",
    "Report": "reports",
    "Signature": "signatures",
    "Tactic": "tactics",
    "Threat": "threats",
    "Tool": "tools",
    "Vulnerability": "vulnerabilities",
}
_GROUP_TYPES_CI = {name.lower(): name for name in GROUP_TYPES}

EVENT_STATUS = (
    "Completed", "Escalated", "False Positive", "In Progress", "Needs Review", "New",
    "No Further Action", "Reopened",
)
INCIDENT_STATUS = (
    "New", "Open", "Stalled", "Containment Achieved", "Restoration Achieved",
    "Incident Reported", "Closed", "Rejected", "Deleted",
)
EVENT_TYPES = (
    "Alert", "Alert [flash]", "Alert [hyper-local]", "Alert [local]", "Alert [urgent]", "Breach",
    "Campaign", "Compliance / Regulatory", "Disclosure", "Emerging Threat", "Exercise", "Exposure",
    "Finding [Compliance violations]", "Finding [Configuration weaknesses]",
    "Finding [Missing patches]", "Finding [Security posture gaps]", "Investigation", "None",
    "Operation", "Physical Security", "Response Action", "Social Engineering (non-phishing)",
    "Third Party Reported", "Trend",
)
SIGNATURE_FILE_TYPES = (
    "Bro", "ClamAV", "CybOX", "Iris Search Hash", "KQL", "OpenIOC", "Regex", "SPL", "Sigma",
    "Snort", "Suricata", "TQL Query", "YARA",
)

#: Scalar fields kept on every group, and per group type (everything else is ignored).
GROUP_COMMON_FIELDS = (
    "firstSeen", "lastSeen", "externalDateAdded", "externalDateExpires", "externalLastModified",
)
_AI_FIELDS = ("insights", "aiProvider", "aiLastRetrievalDate")
GROUP_TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    "Document": ("fileName", "malware", "password", *_AI_FIELDS),
    "Email": ("subject", "header", "body", "from", "to", "score"),
    "Event": ("eventDate", "eventType", "status", *_AI_FIELDS),
    "Incident": ("eventDate", "status"),
    "Report": ("fileName", "publishDate", *_AI_FIELDS),
    "Signature": ("fileName", "fileType", "fileText"),
}
GROUP_NAME_MAX = 100

#: Field aliases accepted on input and stored under the canonical name (spec §4.2).
ALIASES = {
    "externalDateCreated": "externalDateAdded",
    "externalDateLastModified": "externalLastModified",
    "dnsActive": "flag1",
    "whoisActive": "flag2",
    "size": "intValue1",
}
DATE_FIELDS = frozenset({
    "firstSeen", "lastSeen", "externalDateAdded", "externalDateExpires", "externalLastModified",
    "eventDate", "publishDate", "aiLastRetrievalDate",
})

#: Scalar fields kept on every indicator, and per indicator type.
INDICATOR_COMMON_FIELDS = (
    "rating", "confidence", "active", "activeLocked", "privateFlag", "description", "source",
    "firstSeen", "lastSeen", "externalDateAdded", "externalDateExpires", "externalLastModified",
)
INDICATOR_TYPE_FIELDS: dict[str, tuple[str, ...]] = {"Host": ("flag1", "flag2"), "File": ("intValue1",)}
_COMMON_INDICATOR_FIELDS = frozenset(INDICATOR_COMMON_FIELDS)
_INDICATOR_FIELDS = {t: _COMMON_INDICATOR_FIELDS | set(f) for t, f in INDICATOR_TYPE_FIELDS.items()}

DEFAULT_ATTRIBUTE_TYPES = (
    "Description", "Source", "External Date Created", "Additional Analysis and Context",
)
#: Security labels that exist on every instance, so they need no colour or description.
SYSTEM_LABELS = (
    "TLP:WHITE", "TLP:CLEAR", "TLP:GREEN", "TLP:AMBER", "TLP:AMBER+STRICT", "TLP:RED",
)
TAG_MAX = 128


def canonical_group_type(name: Any) -> str:
    """Return the canonical group type name, matching case-insensitively."""
    found = _GROUP_TYPES_CI.get(str(name).lower()) if isinstance(name, str) else None
    if found is None:
        raise Invalid("0x1006", f"unknown group type {name!r}")
    return found


def _enum(value: Any, allowed: tuple[str, ...], what: str) -> str:
    if isinstance(value, str):
        for choice in allowed:
            if choice.lower() == value.lower():
                return choice
    raise Invalid("0x1006", f"{what} {value!r} is not one of {', '.join(allowed)}")


def check_date(field: str, value: Any, code: str, who: str = "") -> None:
    """DateTime fields must be ISO-8601 (``Z`` or an offset accepted); ``who`` names the item."""
    if value is None:
        return
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
            return
        except ValueError:
            pass
    raise Invalid(code, f"{who}{field} {value!r} is not an ISO-8601 date")


def check_group(gtype: str, group: dict[str, Any]) -> dict[str, Any]:
    """Validate a group's own fields and return the scalar fields to store (canonicalised)."""
    name = group.get("name")
    xid = group.get("xid")
    if not isinstance(xid, str) or not xid.strip():
        raise Invalid("0x1006", f"{gtype} {name!r} has no xid")
    if not isinstance(name, str) or not name.strip():
        raise Invalid("0x1006", f"{gtype} {xid} has no name")
    if len(name) > GROUP_NAME_MAX:
        raise Invalid("0x1006", f"{gtype} {xid} name is longer than {GROUP_NAME_MAX} characters")
    fields: dict[str, Any] = {}
    for key, value in group.items():
        key = ALIASES.get(key, key)
        if key in GROUP_COMMON_FIELDS or key in GROUP_TYPE_FIELDS.get(gtype, ()):
            fields[key] = value
    for key, value in fields.items():
        if key in DATE_FIELDS:
            check_date(key, value, "0x1006", f"{gtype} {xid}: ")
    if gtype == "Email":
        for key in ("subject", "header", "body"):
            if not fields.get(key):
                raise Invalid("0x1006", f"Email {xid} requires {key}")
    if gtype == "Signature":
        for key in ("fileName", "fileType", "fileText"):
            if not fields.get(key):
                raise Invalid("0x1006", f"Signature {xid} requires {key}")
        fields["fileType"] = _enum(fields["fileType"], SIGNATURE_FILE_TYPES, f"Signature {xid} fileType")
    if gtype == "Document":
        malware = fields.get("malware", False)
        if malware not in (True, False, "true", "false"):
            raise Invalid("0x1006", f"Document {xid} malware must be a boolean")
        fields["malware"] = malware in (True, "true")
        if fields["malware"] and not fields.get("password"):
            raise Invalid("0x1006", f"Document {xid} is malware and requires a password")
    if gtype == "Event":
        if fields.get("status") is not None:
            fields["status"] = _enum(fields["status"], EVENT_STATUS, f"Event {xid} status")
        if fields.get("eventType") is not None:
            fields["eventType"] = _enum(fields["eventType"], EVENT_TYPES, f"Event {xid} eventType")
    if gtype == "Incident" and fields.get("status") is not None:
        fields["status"] = _enum(fields["status"], INCIDENT_STATUS, f"Incident {xid} status")
    if fields.get("insights") and not fields.get("aiProvider"):
        raise Invalid("0x1006", f"{gtype} {xid} has insights without aiProvider")
    return fields


# ----------------------------------------------------------------------- indicator values

_HEX = re.compile(r"^[0-9a-fA-F]+$")
HASH_KINDS = {32: "md5", 40: "sha1", 64: "sha256"}
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_ASN = re.compile(r"^ASN\d+$", re.IGNORECASE)
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<auth>[^/?#]*)(?P<rest>.*)$")
_SPACE = re.compile(r"\s")  # exactly the characters str.isspace() accepts
_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
REGISTRY_HIVES = (
    "HKEY_CLASSES_ROOT", "HKEY_CURRENT_CONFIG", "HKEY_CURRENT_USER",
    "HKEY_CURRENT_USER_LOCAL_SETTINGS", "HKEY_LOCAL_MACHINE", "HKEY_PERFORMANCE_DATA",
    "HKEY_PERFORMANCE_NLSTEXT", "HKEY_PERFORMANCE_TEXT", "HKEY_USERS",
)
REGISTRY_VALUE_TYPES = (
    "REG_NONE", "REG_BINARY", "REG_DWORD", "REG_DWORD_LITTLE_ENDIAN", "REG_DWORD_BIG_ENDIAN",
    "REG_EXPAND_SZ", "REG_LINK", "REG_MULTI_SZ", "REG_QWORD", "REG_QWORD_LITTLE_ENDIAN", "REG_SZ",
)


def split_summary(summary: str) -> list[str]:
    """Split a multi-value summary on ``" : "`` into at most three parts (spec §4.3)."""
    return summary.split(" : ", 2)


def file_hashes(summary: str) -> dict[str, str]:
    """Classify each non-empty summary token by its length; return {kind: lower-case hash}."""
    hashes: dict[str, str] = {}
    for token in summary.split(" : "):
        token = token.strip()
        if not token:
            continue
        kind = HASH_KINDS.get(len(token))
        if kind is None or not _HEX.match(token):
            raise Invalid("0x1005", f"File '{summary}': {token!r} is not an MD5, SHA1 or SHA256 hash")
        if kind in hashes and hashes[kind] != token.lower():
            raise Invalid("0x1005", f"File '{summary}' carries two different {kind} hashes")
        hashes[kind] = token.lower()
    if not hashes:
        raise Invalid("0x1005", f"File '{summary}' has no hash")
    return hashes


def file_summary(hashes: dict[str, str]) -> str:
    """The stored summary of a File: its hashes in md5, sha1, sha256 order, present ones only."""
    return " : ".join(hashes[k] for k in ("md5", "sha1", "sha256") if hashes.get(k))


def is_hostname(value: str) -> bool:
    """RFC 952/1123 host name: ASCII labels of letters, digits and ``-``, at least one dot."""
    if not value or len(value) > 253 or not value.isascii():
        return False
    labels = value.split(".")
    return len(labels) >= 2 and all(_LABEL.match(label) for label in labels)


def _check_host(summary: str) -> str:
    if not summary.isascii():
        raise Invalid("0x1005", f"Host '{summary}' is not ASCII; use Punycode")
    if "_" in summary:
        raise Invalid("0x1005", f"Host '{summary}' contains '_', which is not a valid hostname character")
    if not is_hostname(summary):
        raise Invalid("0x1005", f"Host '{summary}' is not a valid RFC 952/1123 host name")
    return summary.lower()


def _check_address(summary: str) -> str:
    try:
        ip = ipaddress.ip_address(summary)
    except ValueError:
        raise Invalid("0x1005", f"Address '{summary}' is not a valid IPv4 or IPv6 address") from None
    return summary.lower() if ip.version == 6 else summary


def _check_cidr(summary: str) -> str:
    network, sep, prefix = summary.partition("/")
    if not sep or not prefix.isdigit():
        raise Invalid("0x1005", f"CIDR '{summary}' is not network/prefix")
    if ":" in network:
        hextets = network.split(":")
        if "" in hextets:
            raise Invalid("0x1005", f"CIDR '{summary}': compressed IPv6 ('::') is not accepted")
        if len(hextets) != 8 or any(len(h) > 4 or not _HEX.match(h) for h in hextets):
            raise Invalid("0x1005", f"CIDR '{summary}' is not a valid IPv6 network")
        if any(len(h) > 1 and h.startswith("0") for h in hextets):
            raise Invalid("0x1005", f"CIDR '{summary}': IPv6 groups must not be zero-padded")
        if int(prefix) > 128:
            raise Invalid("0x1005", f"CIDR '{summary}': prefix out of range")
    else:
        try:
            ipaddress.IPv4Network(summary, strict=False)
        except ValueError:
            raise Invalid("0x1005", f"CIDR '{summary}' is not a valid IPv4 network") from None
    return summary.lower()


def _check_url(summary: str) -> str:
    match = _URL.match(summary)
    if not match:
        raise Invalid("0x1005", f"URL '{summary}' has no protocol")
    if not summary.isascii() or _SPACE.search(summary):
        raise Invalid("0x1005", f"URL '{summary}' must be ASCII without spaces")
    host = match["auth"].rpartition("@")[2]
    host = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
    if not host:
        raise Invalid("0x1005", f"URL '{summary}' has no host")
    if host != host.lower():
        raise Invalid("0x1005", f"URL '{summary}': the host part must be lower case")
    return summary


def _check_email(summary: str) -> str:
    local, sep, domain = summary.rpartition("@")
    if not sep or not local or not _EMAIL_LOCAL.match(local) or not is_hostname(domain):
        raise Invalid("0x1005", f"EmailAddress '{summary}' is not a valid email address")
    return summary.lower()


def _check_asn(summary: str) -> str:
    if not _ASN.match(summary):
        raise Invalid("0x1005", f"ASN '{summary}' must be 'ASN' followed by digits")
    return summary.upper()


def _check_registry_key(summary: str) -> str:
    parts = split_summary(summary)
    if len(parts) != 3:
        raise Invalid("0x1005", f"Registry Key '{summary}' needs 'key : value name : value type'")
    key, value_name, value_type = parts
    hive = key.split("\\", 1)[0]
    if hive not in REGISTRY_HIVES:
        raise Invalid("0x1005", f"Registry Key '{summary}': key must start with a full hive name such as HKEY_LOCAL_MACHINE")
    if value_name == "":
        raise Invalid("0x1005", f"Registry Key '{summary}': value name is required (use ' ' for none)")
    if value_type not in REGISTRY_VALUE_TYPES:
        raise Invalid("0x1005", f"Registry Key '{summary}': value type {value_type!r} is not valid")
    return summary


def _check_file(summary: str) -> str:
    return file_summary(file_hashes(summary))


_VALUE_CHECKS = {
    "Address": _check_address,
    "ASN": _check_asn,
    "CIDR": _check_cidr,
    "EmailAddress": _check_email,
    "File": _check_file,
    "Host": _check_host,
    "Registry Key": _check_registry_key,
    "URL": _check_url,
}


def indicator_key(itype: str, summary: Any) -> str:
    """Validate an indicator value and return its normalised key (ASN upper, CIDR/host lower...)."""
    if not isinstance(summary, str) or not summary.strip():
        raise Invalid("0x1005", f"{itype} indicator has no summary")
    check = _VALUE_CHECKS.get(itype)
    return check(summary) if check else summary


def check_indicator_fields(itype: str, summary: str, item: dict[str, Any]) -> dict[str, Any]:
    """Validate an indicator's scalar fields and return those to store."""
    fields: dict[str, Any] = {}
    kept = _INDICATOR_FIELDS.get(itype, _COMMON_INDICATOR_FIELDS)
    for key, value in item.items():
        key = ALIASES.get(key, key)
        if key in kept:
            fields[key] = value
    for key in ("rating", "confidence"):  # a server reading JSON leniently takes "3" for 3 (inferred)
        value = fields.get(key)
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                continue  # refused below, naming the value
            fields[key] = int(number) if number.is_integer() else number
    rating = fields.get("rating")
    if rating is not None:
        if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not 0 <= rating <= 5:
            raise Invalid("0x1005", f"{itype} '{summary}': rating {rating!r} is not between 0 and 5")
    confidence = fields.get("confidence")
    if confidence is not None:
        if isinstance(confidence, float) and confidence.is_integer():
            confidence = fields["confidence"] = int(confidence)
        if isinstance(confidence, bool) or not isinstance(confidence, int) or not 0 <= confidence <= 100:
            raise Invalid("0x1005", f"{itype} '{summary}': confidence {confidence!r} is not an integer 0-100")
    for key in ("active", "activeLocked", "privateFlag", "flag1", "flag2"):
        value = fields.get(key)
        if value is not None:
            if value in ("true", "false"):
                fields[key] = value == "true"
            elif not isinstance(value, bool):
                raise Invalid("0x1005", f"{itype} '{summary}': {key} must be a boolean")
    if fields.get("intValue1") is not None:
        size = fields["intValue1"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise Invalid("0x1005", f"{itype} '{summary}': size {size!r} is not a non-negative integer")
    for key, value in fields.items():
        if key in DATE_FIELDS:
            check_date(key, value, "0x1005", f"{itype} '{summary}': ")
    return fields


def check_occurrences(summary: str, occurrences: Any) -> list[dict[str, Any]]:
    """Each FileOccurrence needs fileName, path or date (spec §4.6)."""
    if not isinstance(occurrences, list):
        raise Invalid("0x1005", f"File '{summary}': fileOccurrence must be an array")
    out = []
    for occ in occurrences:
        if not isinstance(occ, dict) or not any(occ.get(k) for k in ("fileName", "path", "date")):
            raise Invalid("0x1005", f"File '{summary}': a fileOccurrence needs fileName, path or date")
        check_date("fileOccurrence.date", occ.get("date"), "0x1005", f"File '{summary}': ")
        out.append({k: occ[k] for k in ("fileName", "path", "date") if occ.get(k) is not None})
    return out


# --------------------------------------------------------------------------------- metadata

def check_attribute(attr: Any, accepted: dict[str, dict[str, Any]], record_type: str = "") -> dict[str, Any]:
    """Validate one attribute; ``accepted`` maps lower-case type name -> its attribute type entry
    (:func:`attribute_type_entry`): the type must exist, be allowed on ``record_type`` and the
    value fit in its ``maxSize``."""
    if not isinstance(attr, dict):
        raise Invalid("0x1003", "attribute is not an object")
    atype, value = attr.get("type"), attr.get("value")
    if not isinstance(atype, str) or not atype:
        raise Invalid("0x1001", "attribute has no type")
    entry = accepted.get(atype.lower())
    if entry is None:
        raise Invalid("0x1001", f"attribute type {atype!r} is not accepted")
    canonical = entry["name"]
    if value is None or value == "":
        raise Invalid("0x1001", f"attribute {canonical!r} has no value")
    allowed = entry.get("types")
    if record_type and allowed and record_type.lower() not in {t.lower() for t in allowed}:
        raise Invalid("0x1001", f"attribute type {canonical!r} is not allowed on {record_type}")
    if isinstance(value, str) and len(value) > entry["maxSize"]:
        raise Invalid("0x1001", f"attribute {canonical!r} is {len(value):,} characters, longer than its maxSize "
                                f"of {entry['maxSize']:,}")
    out: dict[str, Any] = {"type": canonical, "value": value}
    for key in ("displayed", "pinned", "source", "securityLabel"):
        if key in attr and attr[key] is not None:
            out[key] = attr[key]
    return out


def check_tag(tag: Any) -> str:
    """A tag is ``{"name": ...}`` with 1-128 characters."""
    name = tag.get("name") if isinstance(tag, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise Invalid("0x1001", "tag has no name")
    if len(name) > TAG_MAX:
        raise Invalid("0x1001", f"tag {name[:40]!r}... is longer than {TAG_MAX} characters")
    return name


def check_label(label: Any) -> dict[str, Any]:
    """A security label needs a name; colour and description are checked against the store."""
    name = label.get("name") if isinstance(label, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise Invalid("0x1001", "security label has no name")
    return {k: label[k] for k in ("name", "description", "color") if label.get(k) is not None}


# ------------------------------------------------------------------ the instance's own rules
#
# Attribute types (GET /v3/attributeTypes), indicator exclusion lists (GET
# /v3/security/exclusionLists) and the patterns of custom indicator types (E8 ``regexes``), as
# the emulated instance is configured with them. Shapes follow the developer docs; what they do
# not say (which record types an attribute type allows, how a variable value matches, the
# error a job reports) is inferred (docs/decisions.md, "The instance's own rules").

DEFAULT_ATTRIBUTE_MAX = 65_500


def attribute_type_entry(spec: str | dict[str, Any], index: int) -> dict[str, Any]:
    """A v3 attribute type from a name or a partial entry; ``types`` (inferred) lists the group
    and indicator types it may be added to (absent: every type)."""
    entry = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = entry["name"]
    entry.setdefault("id", index + 1)
    entry.setdefault("description", name)
    entry.setdefault("maxSize", DEFAULT_ATTRIBUTE_MAX)
    entry.setdefault("allowMarkdown", False)
    entry.setdefault("errorMessage", f"Please enter valid {name}.")
    entry.setdefault("systemRequired", False)
    return entry


def exclusion_list_entry(spec: dict[str, Any], index: int, owner_ids: dict[str, int]) -> dict[str, Any]:
    """A v3 Indicator Exclusion List from ``{"name", "owner" (None: System level), "fixed",
    "variable", "active"}``, in the documented response shape (values under ``fixedValues`` and
    ``variableValues``)."""
    fixed, variable = list(spec.get("fixed", ())), list(spec.get("variable", ()))
    entry: dict[str, Any] = {"id": spec.get("id", index + 1)}
    if spec.get("owner") is not None:
        entry["owner"] = spec["owner"]
        entry["ownerId"] = owner_ids.get(spec["owner"], 0)
    entry["name"] = spec["name"]
    entry["description"] = spec.get("description", f"{len(fixed)} fixed, {len(variable)} variable")
    entry["fixedValues"] = {"data": [{"value": v} for v in fixed], "count": len(fixed)}
    entry["variableValues"] = {"data": [{"value": v} for v in variable], "count": len(variable)}
    entry["active"] = bool(spec.get("active", True))
    entry["managed"] = bool(spec.get("managed", False))
    return entry


class Exclusions:
    """Which exclusion list, if any, holds an indicator value. A list applies to the indicator
    type its name gives (``Indicator-Host``, ``Indicator-Address-IPv4``: the type, then an
    optional qualifier); a fixed value matches exactly, a variable one as a ``*`` wildcard or,
    for addresses, a CIDR range (inferred); case is ignored."""

    def __init__(self, lists: list[dict[str, Any]], type_names: list[str]) -> None:
        names = sorted(type_names, key=len, reverse=True)
        self._lists: list[tuple[str | None, str, str, set[str], list[Any]]] = []
        for entry in lists:
            if not entry.get("active", True):
                continue
            rest = entry["name"].removeprefix("Indicator-")
            itype = next((t for t in names if rest.lower() == t.lower() or rest.lower().startswith(t.lower() + "-")),
                         None)
            if itype is None:
                continue
            fixed = {v["value"].lower() for v in entry["fixedValues"]["data"]}
            patterns = [_variable(v["value"]) for v in entry["variableValues"]["data"]]
            self._lists.append((entry.get("owner"), itype, entry["name"], fixed, patterns))

    def match(self, owner: str, itype: str, summary: str) -> str | None:
        """The name of the first list (of the System or of ``owner``) holding the value."""
        parts = [p.strip() for p in summary.split(" : ")] if itype == "File" else [summary]
        for list_owner, list_type, name, fixed, patterns in self._lists:
            if list_type != itype or list_owner not in (None, owner):
                continue
            for part in parts:
                low = part.lower()
                if low in fixed or any(_matches(p, low) for p in patterns):
                    return name
        return None


def _variable(value: str) -> Any:
    if "/" in value:
        try:
            return ipaddress.ip_network(value, strict=False)
        except ValueError:
            pass
    return re.compile("".join(".*" if ch == "*" else re.escape(ch) for ch in value.lower()))


def _matches(pattern: Any, value: str) -> bool:
    if isinstance(pattern, re.Pattern):
        return pattern.fullmatch(value) is not None
    try:
        return ipaddress.ip_address(value) in pattern
    except ValueError:
        return False
