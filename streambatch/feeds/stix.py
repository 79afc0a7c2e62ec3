"""STIX 2.1 bundles -> batch records.

The bundle is streamed with :mod:`ijson` over ``objects.item``; ``line`` of each
:class:`~streambatch.feeds.readers.FeedItem` is the 1-based index of the object in ``objects``.
A bundle that does not parse to its end (truncated, a syntax error, a number such as ``1e999``)
raises :class:`~streambatch.errors.IncompleteReadError` naming the object, after every object
before it has been yielded (held relationships whose two ends were seen included; those still
missing an end are not reported, since that end may have been in the part that was lost).

Indicators (``type: indicator``, ``pattern_type: stix``)
    The pattern is parsed with the ``stix2-patterns`` library (the OASIS reference grammar)
    and walked. Mappable: comparisons ``=`` on ``ipv4-addr:value`` / ``ipv6-addr:value``
    (Address; a value with a prefix is a CIDR, ``/32`` and ``/128`` are an Address),
    ``ISSUBSET`` on them (CIDR), ``domain-name:value`` (Host), ``url:value`` (URL),
    ``email-addr:value`` (EmailAddress), ``autonomous-system:number`` (ASN),
    ``file:hashes.MD5`` / ``'SHA-1'`` / ``'SHA-256'`` (File; hashes ANDed within one
    observation make one File with several hashes), joined by ``OR`` (comparison or observation
    level), each term giving one indicator. Anything else (``AND`` of different objects,
    ``FOLLOWEDBY``, qualifiers such as ``WITHIN``, ``NOT``/``!=``/``LIKE``/``MATCHES``, other object
    types or properties) cannot be expressed as plain indicators: the object is a bad row
    naming the reason. Field mapping: ``confidence`` -> confidence, ``valid_from`` -> firstSeen,
    ``valid_until`` -> externalDateExpires, ``created`` -> externalDateAdded, ``modified`` ->
    externalLastModified, ``labels`` + ``indicator_types`` -> tags, ``name`` and ``description``
    (joined by a blank line) -> a Description attribute, ``revoked: true`` -> ``active: false``.

Groups (xid = the STIX id, so reruns update the same group)
    ``threat-actor`` Adversary, ``campaign`` Campaign, ``malware`` Malware, ``intrusion-set``
    Intrusion Set, ``attack-pattern`` Attack Pattern, ``report`` Report, ``vulnerability``
    Vulnerability, ``tool`` Tool, ``course-of-action`` Course of Action. ``name`` -> name (cut
    to the 100 characters TC allows, ending in ``...``), ``description`` -> Description
    attribute, ``labels`` -> tags, ``created`` -> externalDateAdded, ``modified`` ->
    externalLastModified, ``first_seen``/``last_seen`` -> firstSeen/lastSeen, report
    ``published`` -> publishDate.

Both kinds: ``object_marking_refs`` to the standard TLP marking definitions -> a
``TLP:WHITE|GREEN|AMBER|RED`` security label; ``options`` defaults (rating, confidence, tags,
attributes) are applied to indicators.

Associations
    ``relationship`` objects, and the ``object_refs`` of a ``report``, become association
    records ``{"association": {"ref_1", "type_1"?, "ref_2", "type_2"?}}`` (see
    :mod:`streambatch.feeds.readers`): a group side is ``ref_N`` = its STIX id (its xid) with
    no type; an indicator side is ``ref_N`` = summary, ``type_N`` = indicator type, one
    association per indicator the STIX indicator produced. Indicator <-> indicator links need
    an ``associationType``: set ``options["association_type"]`` or they are bad rows.
    References to objects that are not mapped (identity, observed-data, ...) are bad rows.

Memory note: to resolve indicator sides, the reader keeps a map *STIX indicator id -> list of
(type, summary)* for every indicator seen (ids and summaries only, never bodies). A
relationship that points to an indicator appearing *later* in the bundle is held (its two ids
only) until the end of the bundle and resolved then. Everything else is streamed.

Objects carrying no intel of their own (``identity``, ``marking-definition``,
``extension-definition``, ``language-content``) are skipped; any other unmapped object type is
reported as a bad row, so nothing disappears silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import orjson

from .. import validate as v
from .detect import check_value
from .mapping import apply_defaults

GROUP_TYPES = {
    "threat-actor": "Adversary",
    "campaign": "Campaign",
    "malware": "Malware",
    "intrusion-set": "Intrusion Set",
    "attack-pattern": "Attack Pattern",
    "report": "Report",
    "vulnerability": "Vulnerability",
    "tool": "Tool",
    "course-of-action": "Course of Action",
}
SKIPPED_TYPES = frozenset({"identity", "marking-definition", "extension-definition", "language-content"})
TLP_MARKINGS = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "TLP:WHITE",
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "TLP:GREEN",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "TLP:AMBER",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "TLP:RED",
}
_HASHES = {"md5": "md5", "sha1": "sha1", "sha-1": "sha1", "sha256": "sha256", "sha-256": "sha256"}
_VALUE_TYPES = {
    ("ipv4-addr", "value"): "Address",
    ("ipv6-addr", "value"): "Address",
    ("domain-name", "value"): "Host",
    ("url", "value"): "URL",
    ("email-addr", "value"): "EmailAddress",
    ("autonomous-system", "number"): "ASN",
}
_NAME_MAX = 100


class Unmappable(ValueError):
    """A pattern (or object) that cannot be expressed as batch records."""


# -- patterns -----------------------------------------------------------------------------------

def pattern_indicators(pattern: str) -> list[tuple[str, str]]:
    """The ``(type, summary)`` pairs a STIX pattern stands for; raises :class:`Unmappable`."""
    from stix2patterns.exceptions import ParseException
    from stix2patterns.v21.pattern import Pattern

    try:
        tree = Pattern(pattern)
    except ParseException as exc:
        raise Unmappable(f"pattern does not parse: {exc}") from None
    terms = tree.visit(_Walker())
    out: dict[tuple[str, str], None] = {}
    for term in terms:
        out[_term_indicator(term)] = None
    return list(out)


class _Walker:
    """Turns the parse tree into a disjunction of terms; a term is a list of comparisons
    ``(object_type, path, value)`` that all hold (AND)."""

    def visit(self, ctx: Any) -> list[list[tuple[str, tuple[str, ...], Any]]]:
        from stix2patterns.v21.grammars import STIXPatternParser as P

        parser = P.STIXPatternParser
        if isinstance(ctx, parser.PatternContext):
            return self.visit(ctx.observationExpressions())
        if isinstance(ctx, parser.ObservationExpressionsContext):
            if ctx.FOLLOWEDBY():
                raise Unmappable("FOLLOWEDBY sequences cannot be mapped to indicators")
            return self._children(ctx)
        if isinstance(ctx, parser.ObservationExpressionOrContext):
            return self._children(ctx)
        if isinstance(ctx, parser.ObservationExpressionAndContext):
            if ctx.AND():
                raise Unmappable("an AND of observations cannot be mapped to indicators")
            return self._children(ctx)
        if isinstance(ctx, parser.ObservationExpressionSimpleContext):
            return self.visit(ctx.comparisonExpression())
        if isinstance(ctx, parser.ObservationExpressionCompoundContext):
            return self.visit(ctx.observationExpressions())
        if isinstance(ctx, (parser.ObservationExpressionWithinContext, parser.ObservationExpressionRepeatedContext,
                            parser.ObservationExpressionStartStopContext)):
            raise Unmappable("qualifiers (WITHIN, REPEATS, START/STOP) cannot be mapped to indicators")
        if isinstance(ctx, parser.ComparisonExpressionContext):
            return self._children(ctx)
        if isinstance(ctx, parser.ComparisonExpressionAndContext):
            parts = [self.visit(c) for c in self._rules(ctx)]
            terms: list[list[Any]] = [[]]
            for alternatives in parts:  # distribute AND over OR
                terms = [t + a for t in terms for a in alternatives]
            return terms
        if isinstance(ctx, parser.PropTestParenContext):
            return self.visit(ctx.comparisonExpression())
        if isinstance(ctx, parser.PropTestEqualContext):
            if ctx.NOT() or ctx.NEQ():
                raise Unmappable("negated comparisons cannot be mapped to indicators")
            obj_type, path = _object_path(ctx.objectPath().getText())
            return [[(obj_type, path, _literal(ctx.primitiveLiteral().getText()))]]
        if isinstance(ctx, parser.PropTestIsSubsetContext):
            obj_type, path = _object_path(ctx.objectPath().getText())
            if ctx.NOT() or obj_type not in ("ipv4-addr", "ipv6-addr"):
                raise Unmappable(f"ISSUBSET on {obj_type} cannot be mapped to indicators")
            return [[(obj_type, ("__subset__",), _literal(ctx.StringLiteral().getText()))]]
        op = type(ctx).__name__.replace("PropTest", "").replace("Context", "")
        raise Unmappable(f"{op} comparisons cannot be mapped to indicators")

    def _rules(self, ctx: Any) -> list[Any]:
        from antlr4 import ParserRuleContext

        return [c for c in ctx.getChildren() if isinstance(c, ParserRuleContext)]

    def _children(self, ctx: Any) -> list[list[Any]]:
        out: list[list[Any]] = []
        for child in self._rules(ctx):
            out.extend(self.visit(child))
        return out


_PATH_RE = re.compile(r"'((?:[^'\\]|\\.)*)'|([^.\[\]]+)|\[(\d+|\*)\]")


def _object_path(text: str) -> tuple[str, tuple[str, ...]]:
    obj_type, _, rest = text.partition(":")
    parts = []
    for m in _PATH_RE.finditer(rest):
        if m.group(1) is not None:
            parts.append(re.sub(r"\\(.)", r"\1", m.group(1)))
        elif m.group(2) is not None:
            parts.append(m.group(2))
        else:
            parts.append(f"[{m.group(3)}]")
    return obj_type, tuple(parts)


def _literal(text: str) -> Any:
    if text.startswith("'") and text.endswith("'"):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    raise Unmappable(f"literal {text} is not a string")


def _term_indicator(term: list[tuple[str, tuple[str, ...], Any]]) -> tuple[str, str]:
    if all(obj == "file" and len(path) == 2 and path[0] == "hashes" for obj, path, _ in term):
        hashes: dict[str, str] = {}
        for _, path, value in term:
            kind = _HASHES.get(path[1].lower())
            if kind is None:
                raise Unmappable(f"file hash {path[1]} is not MD5, SHA-1 or SHA-256")
            try:
                digest = v.hash_value(value, kind)
            except ValueError as exc:
                raise Unmappable(f"file:hashes.{path[1]} {str(value)[:80]!r} {exc}") from None
            if hashes.setdefault(kind, digest) != digest:
                raise Unmappable(f"file:hashes.{path[1]} is compared with two different values in one AND")
        return "File", " : ".join(hashes[k] for k in ("md5", "sha1", "sha256") if k in hashes)
    if len(term) != 1:
        shown = " AND ".join(f"{o}:{'.'.join(p)}" for o, p, _ in term)
        raise Unmappable(f"{shown} combines several properties; only file hashes can be ANDed")
    obj_type, path, value = term[0]
    if path == ("__subset__",):
        type_name = "CIDR"
    else:
        type_name = _VALUE_TYPES.get((obj_type, ".".join(path)))
        if type_name is None:
            raise Unmappable(f"{obj_type}:{'.'.join(path)} is not a mapped observable property")
    if type_name == "Address" and isinstance(value, str) and "/" in value:
        prefix = value.rpartition("/")[2]
        if prefix == ("32" if obj_type == "ipv4-addr" else "128"):
            value = value.rpartition("/")[0]
        else:
            type_name = "CIDR"
    if type_name == "ASN":
        value = f"ASN{value}"
    try:
        return type_name, check_value(type_name, value)
    except ValueError as exc:
        raise Unmappable(f"{obj_type}:{'.'.join(path)} {str(value)[:200]!r} {exc}") from None


# -- objects ------------------------------------------------------------------------------------

def _date(value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        return v.date(value)
    except ValueError:
        return None


def _common(obj: Mapping[str, Any], record: dict[str, Any], tag_keys: tuple[str, ...]) -> None:
    for src, dst in (("created", "externalDateAdded"), ("modified", "externalLastModified")):
        d = _date(obj.get(src))
        if d:
            record[dst] = d
    tags: dict[str, None] = {}
    for key in tag_keys:
        for label in obj.get(key) or []:
            if isinstance(label, str) and label.strip():
                tags[label.strip()[: v.TAG_MAX]] = None
    if tags:
        record["tag"] = [{"name": t} for t in tags]
    labels = [TLP_MARKINGS[m] for m in obj.get("object_marking_refs") or [] if m in TLP_MARKINGS]
    if labels:
        record["securityLabel"] = [{"name": n} for n in dict.fromkeys(labels)]


def _description(*parts: Any) -> list[dict[str, Any]]:
    text = "\n\n".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())
    return [{"type": "Description", "value": text[:65500]}] if text else []


def group_record(obj: Mapping[str, Any]) -> dict[str, Any]:
    type_name = GROUP_TYPES[obj["type"]]
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        raise Unmappable(f"{obj['type']} {obj.get('id')} has no name")
    name = name.strip()
    if len(name) > _NAME_MAX:
        name = name[: _NAME_MAX - 3] + "..."
    record: dict[str, Any] = {"type": type_name, "name": name, "xid": obj["id"]}
    for src, dst in (("first_seen", "firstSeen"), ("last_seen", "lastSeen")):
        d = _date(obj.get(src))
        if d:
            record[dst] = d
    if type_name == "Report" and _date(obj.get("published")):
        record["publishDate"] = _date(obj.get("published"))
    _common(obj, record, ("labels",))
    attrs = _description(obj.get("description"))
    if attrs:
        record["attribute"] = attrs
    return record


def indicator_records(obj: Mapping[str, Any], options: Mapping[str, Any]) -> list[dict[str, Any]]:
    if obj.get("pattern_type", "stix") != "stix":
        raise Unmappable(f"pattern_type {obj.get('pattern_type')!r} is not 'stix'")
    pattern = obj.get("pattern")
    if not isinstance(pattern, str):
        raise Unmappable("indicator has no pattern")
    pairs = pattern_indicators(pattern)
    base: dict[str, Any] = {}
    if obj.get("confidence") is not None:
        try:
            base["confidence"] = v.confidence(obj["confidence"])
        except ValueError as exc:
            raise Unmappable(f"confidence {obj['confidence']!r} {exc}") from None
    for src, dst in (("valid_from", "firstSeen"), ("valid_until", "externalDateExpires")):
        d = _date(obj.get(src))
        if d:
            base[dst] = d
    if obj.get("revoked") is True:
        base["active"] = False
    _common(obj, base, ("indicator_types", "labels"))
    attrs = _description(obj.get("name"), obj.get("description"))
    out = []
    for type_name, summary in pairs:
        record = {"type": type_name, "summary": summary, **base}
        record = {k: (list(x) if isinstance(x, list) else x) for k, x in record.items()}
        if attrs:
            record["attribute"] = [dict(a) for a in attrs]
        out.append(apply_defaults(record, options))
    return out


def _kind_of(stix_id: Any) -> str | None:
    if not isinstance(stix_id, str) or "--" not in stix_id:
        return None
    prefix = stix_id.partition("--")[0]
    if prefix == "indicator":
        return "indicator"
    if prefix in GROUP_TYPES:
        return "group"
    return None


def read_stix(stream: BinaryIO, options: Mapping[str, Any]) -> Iterator[Any]:
    from ..errors import IncompleteReadError

    indicators: dict[str, list[tuple[str, str]]] = {}
    deferred: list[tuple[int, str, str, str | None, str]] = []  # (index, ref1, ref2, relationship type, raw)
    try:
        yield from _read_objects(stream, options, indicators, deferred)
    except IncompleteReadError:
        yield from _resolve_deferred(deferred, indicators, options, complete=False)
        raise
    yield from _resolve_deferred(deferred, indicators, options, complete=True)


def _read_objects(stream: BinaryIO, options: Mapping[str, Any], indicators: dict[str, list[tuple[str, str]]],
                  deferred: list) -> Iterator[Any]:
    from .readers import BadJsonItem, FeedItem, _bad, json_items, shown

    for number, obj in json_items(stream, "objects.item", "object"):
        if isinstance(obj, BadJsonItem):  # a lone surrogate escape somewhere in the object
            item = obj.item if isinstance(obj.item, Mapping) else None
            if item is None:
                yield _bad(number, f"bundle object: {obj.reason}", obj.raw)
                continue
            if item.get("type") == "indicator":
                indicators[str(item.get("id"))] = []  # its relationships say it was not mapped
            yield _bad(number, f"{shown(str(item.get('type')))} {shown(str(item.get('id')))}: {obj.reason}", obj.raw)
            continue
        if not isinstance(obj, Mapping):
            yield _bad(number, f"bundle object is a JSON {type(obj).__name__}, not an object", str(obj))
            continue
        stype = obj.get("type")
        try:
            if stype == "indicator":
                records = indicator_records(obj, options)
                indicators[str(obj.get("id"))] = [(r["type"], r["summary"]) for r in records]
                for record in records:
                    yield FeedItem(number, record, None)
            elif stype in GROUP_TYPES:
                yield FeedItem(number, group_record(obj), None)
                if stype == "report":
                    for ref in obj.get("object_refs") or []:
                        if _kind_of(ref) is None:
                            continue  # a report may reference anything; only mapped objects are linked
                        yield from _associate(number, obj["id"], ref, None, indicators, deferred, options, "")
            elif stype == "relationship":
                raw = orjson.dumps(obj).decode()[:1000]
                yield from _associate(number, obj.get("source_ref"), obj.get("target_ref"),
                                      obj.get("relationship_type"), indicators, deferred, options, raw)
            elif stype in SKIPPED_TYPES:
                continue
            else:
                raise Unmappable(f"STIX object type {stype!r} is not mapped")
        except Unmappable as exc:
            if stype == "indicator":
                indicators[str(obj.get("id"))] = []
            yield _bad(number, f"{stype} {obj.get('id')}: {exc}", orjson.dumps(obj, default=str).decode()[:1000])


def _resolve_deferred(deferred: list, indicators: dict[str, list[tuple[str, str]]], options: Mapping[str, Any],
                      complete: bool) -> Iterator[Any]:
    """The relationships held for an indicator that came later. Once the bundle was read to its
    end an end still unknown is a bad row; if it was not (``complete`` false), such
    relationships are left out: the end may have been in the part that could not be read."""
    from .readers import _bad

    for index, ref1, ref2, _rel, raw in deferred:
        for end in (ref1, ref2):
            if _kind_of(end) == "indicator" and end not in indicators:
                if complete:
                    yield _bad(index, f"relationship refers to indicator {end}, which is not in the bundle", raw)
                break
        else:
            yield from _associate(index, ref1, ref2, _rel, indicators, None, options, raw)


def _associate(index: int, ref1: Any, ref2: Any, rel_type: str | None, indicators: dict[str, list[tuple[str, str]]],
               deferred: list | None, options: Mapping[str, Any], raw: str) -> Iterator[Any]:
    from .readers import FeedItem, _bad

    sides = []
    for ref in (ref1, ref2):
        kind = _kind_of(ref)
        if kind is None:
            yield _bad(index, f"relationship {rel_type or ''} end {ref!r} is not a mapped STIX object "
                              f"(indicator or one of {', '.join(GROUP_TYPES)})", raw)
            return
        if kind == "indicator":
            if ref not in indicators:
                if deferred is not None:
                    deferred.append((index, ref1, ref2, rel_type, raw))
                    return
                yield _bad(index, f"relationship refers to indicator {ref}, which is not in the bundle", raw)
                return
            pairs = indicators[ref]
            if not pairs:
                yield _bad(index, f"relationship refers to indicator {ref}, which was not mapped (see its own error)", raw)
                return
            sides.append([{"ref": s, "type": t} for t, s in pairs])
        else:
            sides.append([{"ref": ref}])
    both_indicators = "type" in sides[0][0] and "type" in sides[1][0]
    assoc_type = options.get("association_type") if both_indicators else None
    if both_indicators and not assoc_type:
        yield _bad(index, "indicator-to-indicator relationships need an associationType; set options.association_type",
                   raw)
        return
    for a in sides[0]:
        for b in sides[1]:
            entry: dict[str, Any] = {"ref_1": a["ref"]}
            if "type" in a:
                entry["type_1"] = a["type"]
            entry["ref_2"] = b["ref"]
            if "type" in b:
                entry["type_2"] = b["type"]
            if assoc_type:
                entry["associationType"] = assoc_type
            yield FeedItem(index, {"association": entry}, None)
