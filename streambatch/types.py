"""The one declarative table of threat-intel types.

Every group and indicator type is a :class:`TypeSpec` row: its name, kind, API branch, the
interface-1 method name, its value fields (indicators) and its own fields, each with the check
that canonicalizes it. The object model, the interface-1 methods, validation and the chunker all
read this table; adding a type is adding a row (or a line in an indicatorTypes file).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from . import validate as v

Kind = Literal["group", "indicator"]
Check = Callable[[Any], Any]


@dataclass(frozen=True)
class Field:
    """One JSON field of a record: its wire key, its check, and its Python keyword name."""

    key: str
    check: Check
    kwarg: str = ""
    aliases: tuple[str, ...] = ()  # other accepted spellings (wire or keyword)

    def __post_init__(self) -> None:
        if not self.kwarg:
            object.__setattr__(self, "kwarg", snake(self.key))


@dataclass(frozen=True)
class ValueSlot:
    """One value of an indicator (``ip``, ``md5``, ``Key Name`` ...)."""

    key: str
    check: Check
    kwarg: str = ""
    optional: bool = False

    def __post_init__(self) -> None:
        if not self.kwarg:
            object.__setattr__(self, "kwarg", snake(self.key))


@dataclass(frozen=True)
class TypeSpec:
    name: str
    kind: Kind
    branch: str
    values: tuple[ValueSlot, ...] = ()
    fields: tuple[Field, ...] = ()
    required: tuple[str, ...] = ()
    custom: bool = False
    has_file: bool = False  # Document and Report carry file content
    method: str = ""
    by_key: Mapping[str, Field] = field(default_factory=dict, compare=False, repr=False)
    value_keys: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    order: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)  # field key -> position
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # per-type caches of other modules

    def __post_init__(self) -> None:
        if not self.method:
            object.__setattr__(self, "method", snake(self.name))
        common = GROUP_FIELDS if self.kind == "group" else INDICATOR_FIELDS
        allf = tuple(common) + tuple(self.fields)
        object.__setattr__(self, "fields", allf)
        index: dict[str, Field] = {}
        for f in allf:
            for name in (f.key, f.kwarg, *f.aliases):
                index[name] = f
        object.__setattr__(self, "by_key", index)
        object.__setattr__(self, "value_keys", frozenset(s.key for s in self.values))
        object.__setattr__(self, "order", {f.key: i for i, f in enumerate(allf)})

    @property
    def is_file(self) -> bool:
        return self.name == "File"

    def field(self, key: str) -> Field | None:
        """The field a wire key, an alias or a keyword name refers to."""
        return self.by_key.get(key)


def snake(name: str) -> str:
    """``EmailAddress`` -> ``email_address``, ``Registry Key`` -> ``registry_key``,
    ``AS Number`` -> ``as_number``, ``URL`` -> ``url``."""
    s = re.sub(r"[^0-9A-Za-z]+", "_", name.strip())
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return s.lower().strip("_")


# -- common fields -------------------------------------------------------------------------

_DATES = (
    Field("dateAdded", v.date),
    Field("firstSeen", v.date),
    Field("lastSeen", v.date),
    Field("externalDateAdded", v.date, aliases=("externalDateCreated", "external_date_created")),
    Field("externalDateExpires", v.date),
    Field("externalLastModified", v.date, aliases=("externalDateLastModified", "external_date_last_modified")),
)
GROUP_FIELDS: tuple[Field, ...] = _DATES
INDICATOR_FIELDS: tuple[Field, ...] = (
    Field("rating", v.rating),
    Field("confidence", v.confidence),
    Field("active", v.boolean),
    Field("activeLocked", v.boolean),
    Field("privateFlag", v.boolean),
    Field("description", v.long_text),  # the default Description attribute
    Field("source", v.long_text),  # the default Source attribute
    *_DATES,
    Field("lastModified", v.date),
)

EVENT_STATUS = ("Completed", "Escalated", "False Positive", "In Progress", "Needs Review",
                "New", "No Further Action", "Reopened")
INCIDENT_STATUS = ("New", "Open", "Stalled", "Containment Achieved", "Restoration Achieved",
                   "Incident Reported", "Closed", "Rejected", "Deleted")
EVENT_TYPES = ("Alert", "Alert [flash]", "Alert [hyper-local]", "Alert [local]", "Alert [urgent]",
               "Breach", "Campaign", "Compliance / Regulatory", "Disclosure", "Emerging Threat",
               "Exercise", "Exposure", "Finding [Compliance violations]",
               "Finding [Configuration weaknesses]", "Finding [Missing patches]",
               "Finding [Security posture gaps]", "Investigation", "None", "Operation",
               "Physical Security", "Response Action", "Social Engineering (non-phishing)",
               "Third Party Reported", "Trend")
SIGNATURE_TYPES = ("Bro", "ClamAV", "CybOX", "Iris Search Hash", "KQL", "OpenIOC", "Regex", "SPL",
                   "Sigma", "Snort", "Suricata", "TQL Query", "YARA")

_AI = (Field("insights", v.long_text), Field("aiProvider", v.text), Field("aiLastRetrievalDate", v.date))
_FILE_NAME = Field("fileName", v.text)


def _group(name: str, branch: str, *fields: Field, required: tuple[str, ...] = (), has_file=False) -> TypeSpec:
    return TypeSpec(name, "group", branch, fields=fields, required=required, has_file=has_file)


def _indicator(name: str, branch: str, *values: ValueSlot, fields: tuple[Field, ...] = (), custom=False) -> TypeSpec:
    return TypeSpec(name, "indicator", branch, values=values, fields=fields, custom=custom)


BUILTIN_TYPES: tuple[TypeSpec, ...] = (
    _group("Adversary", "adversaries"),
    _group("Attack Pattern", "attackPatterns"),
    _group("Campaign", "campaigns"),
    _group("Course of Action", "coursesOfAction"),
    _group("Document", "documents", _FILE_NAME, Field("malware", v.boolean), Field("password", v.text), *_AI,
           has_file=True),
    _group("Email", "emails", Field("subject", v.text), Field("header", v.large_text), Field("body", v.large_text),
           Field("from", v.text, kwarg="from_addr"), Field("to", v.text, kwarg="to_addr"),
           Field("score", v.integer), required=("subject", "header", "body")),
    _group("Event", "events", Field("eventDate", v.date), Field("eventType", v.choice(EVENT_TYPES)),
           Field("status", v.choice(EVENT_STATUS)), *_AI),
    _group("Incident", "incidents", Field("eventDate", v.date), Field("status", v.choice(INCIDENT_STATUS))),
    _group("Intrusion Set", "intrusionSets"),
    _group("Malware", "malware"),
    _group("Report", "reports", _FILE_NAME, Field("publishDate", v.date), *_AI, has_file=True),
    _group("Signature", "signatures", _FILE_NAME, Field("fileType", v.choice(SIGNATURE_TYPES)),
           Field("fileText", v.large_text), required=("fileName", "fileType", "fileText")),
    _group("Tactic", "tactics"),
    _group("Threat", "threats"),
    _group("Tool", "tools"),
    _group("Vulnerability", "vulnerabilities"),
    _indicator("Address", "addresses", ValueSlot("ip", v.address)),
    _indicator("ASN", "asns", ValueSlot("AS Number", v.asn)),
    _indicator("CIDR", "cidrBlocks", ValueSlot("Block", v.cidr, kwarg="block")),
    _indicator("EmailAddress", "emailAddresses", ValueSlot("address", v.email_address)),
    _indicator("File", "files",
               ValueSlot("md5", lambda x: v.hash_value(x, "md5"), optional=True),
               ValueSlot("sha1", lambda x: v.hash_value(x, "sha1"), optional=True),
               ValueSlot("sha256", lambda x: v.hash_value(x, "sha256"), optional=True),
               fields=(Field("intValue1", v.integer, kwarg="size", aliases=("size",)),)),
    _indicator("Host", "hosts", ValueSlot("hostName", v.host, kwarg="hostname"),
               fields=(Field("flag1", v.boolean, kwarg="dns_active", aliases=("dnsActive",)),
                       Field("flag2", v.boolean, kwarg="whois_active", aliases=("whoisActive",)))),
    _indicator("Mutex", "mutexes", ValueSlot("Mutex", v.text)),
    _indicator("Registry Key", "registryKeys",
               ValueSlot("Key Name", v.registry_key_name),
               ValueSlot("Value Name", v.registry_value_name),
               ValueSlot("Value Type", v.registry_value_type)),
    _indicator("URL", "urls", ValueSlot("text", v.url)),
    _indicator("User Agent", "userAgents", ValueSlot("User Agent String", v.text, kwarg="text")),
)

# Attribute types the object model knows a maximum length for (characters). Others use
# DEFAULT_ATTRIBUTE_MAX.
DEFAULT_ATTRIBUTE_MAX = v.TEXT_MAX
ATTRIBUTE_MAX = {"Description": DEFAULT_ATTRIBUTE_MAX, "Source": DEFAULT_ATTRIBUTE_MAX,
                 "Additional Analysis and Context": DEFAULT_ATTRIBUTE_MAX, "External Date Created": 64}


def _custom_from_api(entry: Mapping[str, Any]) -> TypeSpec:
    """A custom indicator type from one entry of ``/v2/types/indicatorTypes``."""
    case = str(entry.get("casePreference", "sensitive")).lower()

    multi = bool(str(entry.get("value2Label") or "").strip())
    patterns = _patterns(entry)

    def check(value: object, _case=case, _pattern: re.Pattern[str] | None = None) -> str:
        out = v.part(value) if multi else v.text(value)
        out = out.upper() if _case == "upper" else out.lower() if _case == "lower" else out
        if _pattern is not None and _pattern.fullmatch(out) is None:
            raise ValueError(f"does not match the type's pattern {_pattern.pattern}")
        return out

    slots = []
    for n in (1, 2, 3):
        label = str(entry.get(f"value{n}Label") or "").strip()
        if label:
            pattern = patterns[n - 1] if n <= len(patterns) else None
            slots.append(ValueSlot(label, check if pattern is None else partial(check, _pattern=pattern),
                                   optional=n > 1))
    if not slots:
        raise ValueError(f"indicator type {entry.get('name')!r} has no value1Label")
    return _indicator(str(entry["name"]), str(entry.get("apiBranch") or snake(entry["name"])), *slots, custom=True)


def _patterns(entry: Mapping[str, Any]) -> list[re.Pattern[str] | None]:
    """A type's value patterns (``regexes`` of ``includeAdditional=true``, one per value); one
    that is not a valid regular expression here is not applied."""
    out: list[re.Pattern[str] | None] = []
    for regex in entry.get("regexes") or ():
        try:
            out.append(re.compile(str(regex)) if regex else None)
        except re.error:
            out.append(None)
    return out


class TypeRegistry:
    """Every type a batch knows: the built-in rows plus custom indicator types.

    Lookups are case-insensitive, as the server's are.
    """

    def __init__(self, extra: Iterable[TypeSpec] = ()) -> None:
        self._by_name: dict[str, TypeSpec] = {}
        self._exact: dict[str, TypeSpec] = {}  # by the name as spelled in the table
        for spec in (*BUILTIN_TYPES, *extra):
            self.add(spec)

    def add(self, spec: TypeSpec) -> None:
        self._by_name[spec.name.lower()] = spec
        self._exact = {s.name: s for s in self._by_name.values()}

    def get(self, name: object) -> TypeSpec | None:
        spec = self._exact.get(name) if type(name) is str else None
        if spec is not None:
            return spec
        return self._by_name.get(str(name).strip().lower()) if name is not None else None

    def __iter__(self):
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return self.get(name) is not None

    def load(self, source: str | Path | Mapping[str, Any] | Iterable[Mapping[str, Any]] | None = None,
             replace: bool = False) -> "TypeRegistry":
        """Add the custom indicator types of an indicatorTypes document (the API's
        ``/v2/types/indicatorTypes`` reply, its ``data`` part, or a plain list). Built-in
        types already in the table keep their own rules; with ``replace``, a custom type already
        known (from the shipped file, say) takes the new definition. ``None`` loads the shipped
        file."""
        if source is None:
            doc: Any = json.loads(resources.files("streambatch").joinpath("data/indicator_types.json").read_text())
        elif isinstance(source, (str, Path)):
            doc = json.loads(Path(source).read_text(encoding="utf-8"))
        else:
            doc = source
        if isinstance(doc, Mapping):
            doc = doc.get("data", doc)
            doc = doc.get("indicatorType", doc) if isinstance(doc, Mapping) else doc
        for entry in doc:
            known = self.get(entry.get("name"))
            if known is None or (replace and known.custom):
                self.add(_custom_from_api(entry))
        return self


def default_registry() -> TypeRegistry:
    return TypeRegistry().load()
