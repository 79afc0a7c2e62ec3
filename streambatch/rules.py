"""Pre-flight: the instance's own rules, read from it and applied before a record is staged.

Three rule sets, each from its own endpoint (docs/rules.md, docs/decisions.md):

``indicatorTypes``
    ``GET /v2/types/indicatorTypes?includeAdditional=true``: custom indicator types, with their
    value labels, ``casePreference`` and value patterns (``regexes``), added to the batch's
    type table, so a type defined only on the instance works and a value failing its pattern
    is refused where it is checked.
``attributeTypes``
    ``GET /v3/attributeTypes`` (paged): every attribute type and its ``maxSize``; an attribute
    of a type the instance lacks, or not allowed on the record's type, is refused; an
    over-long value is refused or, with ``truncate_attributes``, cut to ``maxSize`` and counted.
``exclusionLists``
    ``GET /v3/security/exclusionLists?owner=&fields=values`` (paged): the System's and the
    owner's Indicator Exclusion Lists; an indicator value on one is refused as "excluded by
    <list>" unless ``bypass_exclusions``.

:class:`Rules` is what was read (and when); it is kept in the job file (meta ``rules``), so a
resumed job applies the same rules without asking again and a job made offline still has them,
and, for feeds, in the state file, asked again once older than ``rules_refresh``. A rule set
the instance will not give (404 on an older instance, 401/403 without permission, or no
answer) is left out and said once in the log; the others apply. :class:`Checker` applies them
to one canonical batch dict, raising :class:`RuleError` (a ValidationError naming the record
and field), so a refused record becomes a local reject like any other bad input.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError
from .types import TypeRegistry, TypeSpec

log = logging.getLogger("streambatch.rules")

RULE_SETS = ("indicatorTypes", "attributeTypes", "exclusionLists")
DEFAULT_REFRESH = "24h"  # how old a feed's cached rules may be before they are asked again


class RuleError(ValidationError):
    """A record (or part of one) that the instance's own rules refuse."""


@dataclass
class Rules:
    """What an instance enforces for one owner, as read at ``fetched`` (epoch seconds).
    ``None`` for a rule set means it was not available (``unavailable`` says why)."""

    owner: str
    fetched: float
    indicator_types: list[dict[str, Any]] | None = None
    attribute_types: list[dict[str, Any]] | None = None
    exclusion_lists: list[dict[str, Any]] | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    transient: bool = field(default=False, compare=False)  # a set was left out for a reason that may pass

    @property
    def active(self) -> list[str]:
        loaded = (self.indicator_types, self.attribute_types, self.exclusion_lists)
        return [name for name, value in zip(RULE_SETS, loaded) if value is not None]

    def as_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "fetched": self.fetched, "active": self.active, "unavailable": self.unavailable,
                "indicatorTypes": self.indicator_types, "attributeTypes": self.attribute_types,
                "exclusionLists": self.exclusion_lists}

    @classmethod
    def from_json(cls, doc: Any) -> "Rules | None":
        """Rules as :meth:`as_json` wrote them; None for anything else."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("owner"), str):
            return None
        try:
            return cls(doc["owner"], float(doc["fetched"]), doc.get("indicatorTypes"), doc.get("attributeTypes"),
                       doc.get("exclusionLists"), dict(doc.get("unavailable") or {}))
        except (KeyError, TypeError, ValueError):
            return None

    def describe(self) -> str:
        """One log line: which rule sets are active and which are not (and why)."""
        counts = {"indicatorTypes": self.indicator_types, "attributeTypes": self.attribute_types,
                  "exclusionLists": self.exclusion_lists}
        active = ", ".join(f"{name} ({len(counts[name])})" for name in self.active) or "none"
        line = f"pre-flight rules for owner {self.owner!r}: active: {active}"
        if self.unavailable:
            line += "; unavailable, not applied: " + ", ".join(f"{k} ({v})" for k, v in self.unavailable.items())
        return line


def fetch(client: Any, owner: str, clock: Callable[[], float] = time.time) -> Rules:
    """Read the instance's rules for ``owner``. Never raises for a rule set the instance will
    not give: it is left out, with the reason in ``unavailable``. Asked with few retries, so
    an unreachable instance delays a job by seconds, not minutes."""
    from .client import ApiError, Client, RetryPolicy, TransientApiError

    quick = client
    if isinstance(client, Client):
        quick = Client(client.config, retry=RetryPolicy(attempts=2, backoff=0.2, max_backoff=1.0, total=15),
                       timeout=(5.0, 60.0), user_agent=client.session.headers.get("User-Agent", "streambatch"))
    rules = Rules(owner, clock())
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("indicatorTypes", lambda: _custom_types(quick.indicator_types(include_additional=True))),
        ("attributeTypes", lambda: [_attribute_type(e) for e in quick.attribute_types() if e.get("name")]),
        ("exclusionLists", lambda: [_exclusion_list(e) for e in quick.exclusion_lists(owner) if _applies(e, owner)]),
    ]
    unreachable: str | None = None
    try:
        for name, step in steps:
            if unreachable:
                rules.unavailable[name] = unreachable
                continue
            try:
                value = step()
            except TransientApiError as exc:  # no answer (the others are not asked), or 429/5xx
                rules.unavailable[name] = f"HTTP {exc.status}" if exc.status else "instance not reachable"
                unreachable = None if exc.status else rules.unavailable[name]
                rules.transient = True
                continue
            except ApiError as exc:
                rules.unavailable[name] = f"HTTP {exc.status}" if exc.status else str(exc)[:200]
                continue
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                rules.unavailable[name] = f"unexpected reply: {exc}"[:200]
                continue
            setattr(rules, {"indicatorTypes": "indicator_types", "attributeTypes": "attribute_types",
                            "exclusionLists": "exclusion_lists"}[name], value)
    finally:
        if quick is not client:
            quick.close()
    return rules


def _custom_types(doc: Any) -> list[dict[str, Any]]:
    data = doc.get("data", doc) if isinstance(doc, Mapping) else doc
    entries = data.get("indicatorType", []) if isinstance(data, Mapping) else data
    return [dict(e) for e in entries if isinstance(e, Mapping) and e.get("name")
            and str(e.get("custom", "")).lower() == "true"]


def _attribute_type(entry: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": str(entry["name"])}
    if isinstance(entry.get("maxSize"), int) and not isinstance(entry.get("maxSize"), bool):
        out["maxSize"] = entry["maxSize"]
    if entry.get("types"):  # the record types it may be added to (inferred; absent: every type)
        out["types"] = [str(t) for t in entry["types"]]
    return out


def _applies(entry: Mapping[str, Any], owner: str) -> bool:
    return entry.get("active", True) is not False and entry.get("owner") in (None, owner)


def _exclusion_list(entry: Mapping[str, Any]) -> dict[str, Any]:
    def values(key: str) -> list[str]:
        part = entry.get(key) or {}
        return [str(v["value"]) for v in part.get("data", ()) if isinstance(v, Mapping) and v.get("value")]

    return {"name": str(entry["name"]), "owner": entry.get("owner"), "fixed": values("fixedValues"),
            "variable": values("variableValues")}


def refresh_seconds(value: Any) -> float:
    """``rules_refresh`` as seconds: a number, or an interval such as ``"24h"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    from .feeds.config import parse_interval

    return parse_interval(str(value), "rules_refresh")


def load(cached: Any, client: Any, owner: str, max_age: float | None = None,
         clock: Callable[[], float] = time.time) -> Rules | None:
    """The rules to apply: ``cached`` (a job's or a feed's copy) if it is this owner's and, with
    ``max_age``, fresh enough; else read from ``client`` (None when there is no client)."""
    rules = Rules.from_json(cached)
    if rules is not None and rules.owner == owner and (max_age is None or clock() - rules.fetched < max_age):
        return rules
    if client is None:
        return rules if rules is not None and rules.owner == owner else None
    rules = fetch(client, owner, clock)
    (log.warning if rules.unavailable else log.info)("%s", rules.describe())
    return rules


class Checker:
    """Applies :class:`Rules` to canonical batch dicts (``check``); counts what it truncated."""

    def __init__(self, rules: Rules, types: TypeRegistry, truncate: bool = False, bypass_exclusions: bool = False) -> None:
        self.truncate = truncate
        self.truncated = 0
        self.attributes = ({str(e["name"]).lower(): e for e in rules.attribute_types}
                           if rules.attribute_types is not None else None)
        self.exclusions: dict[str, list[tuple[str, set[str], list[Any]]]] = {}
        if rules.exclusion_lists is not None and not bypass_exclusions:
            names = sorted((s.name for s in types if s.kind == "indicator"), key=len, reverse=True)
            for entry in rules.exclusion_lists:
                itype = _list_type(entry["name"], names)
                if itype is not None:
                    patterns = [_pattern(v) for v in entry["variable"]]
                    self.exclusions.setdefault(itype, []).append(
                        (entry["name"], {v.lower() for v in entry["fixed"]}, patterns))

    def check(self, spec: TypeSpec, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` as it may be sent (attributes truncated, when asked), or :class:`RuleError`."""
        if spec.kind == "indicator" and spec.name in self.exclusions:
            self._excluded(spec, data)
        if self.attributes is None:
            return data
        out = data
        for key, atype in (("description", "Description"), ("source", "Source")):
            if spec.kind == "indicator" and isinstance(data.get(key), str):
                value = self._fit(spec, data, atype, key, data[key], known_only=True)
                if value is not data[key]:
                    out = {**out, key: value}
        attrs = data.get("attribute")
        if attrs:
            fitted = []
            for attr in attrs:
                value = self._fit(spec, data, attr["type"], f"attribute[{attr['type']}].value", attr["value"])
                fitted.append(attr if value is attr["value"] else {**attr, "value": value})
            if any(a is not b for a, b in zip(fitted, attrs)):
                out = {**out, "attribute": fitted}
        return out

    def _excluded(self, spec: TypeSpec, data: dict[str, Any]) -> None:
        summary = data["summary"]
        values = [v.strip().lower() for v in summary.split(" : ")] if spec.is_file else [summary.lower()]
        for name, fixed, patterns in self.exclusions[spec.name]:
            for value in values:
                if value in fixed or any(_listed(p, value) for p in patterns):
                    raise RuleError(spec.name, "summary", summary, f"excluded by {name}", data.get("xid"))

    def _fit(self, spec: TypeSpec, data: dict[str, Any], atype: str, where: str, value: str,
             known_only: bool = False) -> str:
        assert self.attributes is not None
        entry = self.attributes.get(atype.lower())
        xid = data.get("xid")
        if entry is None:
            if known_only:
                return value
            raise RuleError(spec.name, f"attribute[{atype}]", atype, "is not an attribute type of this instance", xid)
        allowed = entry.get("types")
        if allowed and spec.name.lower() not in {t.lower() for t in allowed}:
            raise RuleError(spec.name, f"attribute[{atype}]", atype,
                            f"is not allowed on {spec.name} (the instance allows it on {', '.join(allowed)})", xid)
        limit = entry.get("maxSize")
        if limit is None or len(value) <= limit:
            return value
        if self.truncate:
            self.truncated += 1
            return value[:limit]
        raise RuleError(spec.name, where, value, f"is {len(value):,} characters, more than the instance's maxSize of "
                                                 f"{limit:,} for {entry['name']} (truncate_attributes cuts it)", xid)


def _list_type(name: str, type_names: list[str]) -> str | None:
    """The indicator type an exclusion list is for: ``Indicator-Address-IPv4`` -> Address."""
    rest = name.removeprefix("Indicator-").lower()
    return next((t for t in type_names if rest == t.lower() or rest.startswith(t.lower() + "-")), None)


def _pattern(value: str) -> Any:
    """A variable value: a CIDR range, or text where ``*`` stands for any characters."""
    if "/" in value:
        try:
            return ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            pass
    return re.compile(".*".join(re.escape(part) for part in value.strip().lower().split("*")))


def _listed(pattern: Any, value: str) -> bool:
    if isinstance(pattern, re.Pattern):
        return pattern.fullmatch(value) is not None
    try:
        return ipaddress.ip_address(value) in pattern
    except ValueError:
        return False


__all__ = ["Checker", "DEFAULT_REFRESH", "RULE_SETS", "RuleError", "Rules", "fetch", "load", "refresh_seconds"]
