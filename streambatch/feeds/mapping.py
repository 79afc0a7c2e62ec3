"""Turning one feed row (a CSV/TSV row or a JSON object) into batch records, per a mapping.

The mapping schema (a table in the feed's TOML config; every key is optional but ``value``)
----------------------------------------------------------------------------------------------

A *field reference* ("ref") is one of:

* ``"name"``: a CSV/TSV column (header name) or, for JSON, a key; JSON keys may be dotted
  paths (``"attributes.ip"``; a list index is a number: ``"ips.0"``);
* ``{"column": "name"}`` (or ``{"key": "name"}``): the same, spelled out;
* ``{"const": value}``: the same value for every row.

An empty cell (``""``), a missing JSON key and JSON ``null`` all mean "no value".

=================  ==============================================================================
key                meaning
=================  ==============================================================================
``type``           ref to the indicator type (``"Host"``, ``"URL"``, ...). Absent: detected from
                   the value with :func:`~streambatch.feeds.detect.detect_type` (also when
                   the row's type cell is empty).
                   ``options["type"]`` is the same as ``{"const": ...}``.
``value``          ref to the indicator value (required). For File it may instead be a table
                   ``{"md5": ref, "sha1": ref, "sha256": ref}`` (at least one non-empty per row).
``rating``         ref; a number 0-5.
``confidence``     ref; an integer 0-100.
``tags``           a ref, a list of refs, or a table
                   ``{"columns": [ref, ...], "separator": ",", "const": ["tag", ...]}``.
                   Column values are split on ``separator`` (default ``mapping["tag_separator"]``
                   or ``","``), trimmed, empty pieces dropped. ``options["tags"]`` are added.
``tag_separator``  default separator for ``tags`` (default ``","``).
``attributes``     a table attribute type -> ref (``{"Source": "src", "Additional Analysis and
                   Context": {"const": "feed X"}}``). ``options["attributes"]`` (a list of
                   ``{type, value}``) is added.
``description``    ref -> a ``Description`` attribute.
``first_seen``     ref -> ``firstSeen``; any date :func:`streambatch.validate.date` accepts.
``last_seen``      ref -> ``lastSeen``.
``groups``         a list of tables ``{"type": "Adversary", "name": ref}``: every indicator of
                   the row is associated with that group. ``type`` is a literal group type name
                   (or ``{"column": ...}``); a row whose name is empty gets no group of that
                   entry. The group record ``{"type", "name", "xid"}`` is yielded once per
                   distinct (type, name) before the first indicator that uses it; its xid is
                   ``streambatch.xid.record_xid(options["owner"], "group", type, name)``,
                   exactly the xid the batch derives for that group, and the indicator gets
                   ``associatedGroups: [{"groupXid": xid}]``. ``options["owner"]`` is required.
=================  ==============================================================================

``options`` (per feed) may also set defaults for every record: ``rating``, ``confidence``,
``tags`` (list), ``attributes`` (list of ``{type, value}``) and ``type``; a value mapped from
the row wins over the default.

Values are checked here, so a bad row is reported with its line number: the value is
canonicalized with :mod:`streambatch.validate` for Address, CIDR, ASN, URL, EmailAddress, File
and Host (defanged forms are refanged), ``rating``/``confidence``/dates are checked too. Other
indicator types only need non-empty text; the batch's ``normalize()`` checks the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .. import validate as v
from ..errors import StreambatchError
from ..model import DEFAULT_TYPES
from ..xid import record_xid
from .detect import check_value, detect_type

MISSING: Any = object()
_HASH_KINDS = ("md5", "sha1", "sha256")


class RowError(ValueError):
    """A row that cannot become a record; the message is the reason."""


def ref_name(ref: Any) -> str | None:
    """The column/key a ref reads, or None for a constant."""
    if isinstance(ref, str):
        return ref
    if isinstance(ref, Mapping):
        if "const" in ref:
            return None
        name = ref.get("column", ref.get("key"))
        if isinstance(name, str):
            return name
    raise StreambatchError(f"mapping: {ref!r} is not a field reference (a name, {{column = ...}} or {{const = ...}})")


def _blank(value: Any) -> bool:
    return value is MISSING or value is None or (isinstance(value, str) and not value.strip())


def canonical_type(name: Any, kind: str | None = None) -> str:
    spec = DEFAULT_TYPES.get(name)
    if spec is None or (kind is not None and spec.kind != kind):
        raise ValueError(f"{name!r} is not a known {kind or 'indicator or group'} type")
    return spec.name


_CONST_CHECKS: dict[str, Callable[[Any], Any]] = {
    "type": lambda x: canonical_type(str(x).strip(), "indicator"),
    "rating": v.rating,
    "confidence": v.confidence,
    "first_seen": v.date,
    "last_seen": v.date,
}


class Mapper:
    """Builds records from rows. ``get(name)`` reads one column/key of the current row and
    returns :data:`MISSING` when the row has none. Keeps the set of group keys already
    yielded (groups per feed are few)."""

    def __init__(self, mapping: Mapping[str, Any] | None, options: Mapping[str, Any] | None) -> None:
        self.mapping: Mapping[str, Any] = mapping or {}
        self.options: Mapping[str, Any] = options or {}
        m = self.mapping
        known = {"type", "value", "rating", "confidence", "tags", "tag_separator", "attributes", "description",
                 "first_seen", "last_seen", "groups"}
        unknown = set(m) - known
        if unknown:
            from .config import did_you_mean

            first = sorted(unknown)[0]
            raise StreambatchError(f"mapping: unknown key {first!r}{did_you_mean(first, known)}")
        if "value" not in m:
            raise StreambatchError("mapping: 'value' is required (a column/key, or {md5, sha1, sha256} for files)")
        value = m["value"]
        if isinstance(value, Mapping) and not ({"const", "column", "key"} & set(value)) \
                and (not value or set(value) - set(_HASH_KINDS)):
            raise StreambatchError(f"mapping.value: {value!r} is neither a field reference (a name, {{column = ...}} "
                                   "or {const = ...}) nor a table of md5/sha1/sha256 refs")
        for key, check in _CONST_CHECKS.items():  # a constant that every row would fail on
            ref = m.get(key)
            if isinstance(ref, Mapping) and "const" in ref and not _blank(ref["const"]):
                try:
                    check(ref["const"])
                except ValueError as exc:
                    raise StreambatchError(f"mapping.{key}: {{const = {ref['const']!r}}}: {exc}") from None
        self.groups: list[dict[str, Any]] = []
        for entry in m.get("groups") or []:
            if not isinstance(entry, Mapping) or "type" not in entry or "name" not in entry:
                raise StreambatchError(f"mapping.groups: {entry!r} needs 'type' and 'name'")
            gtype = entry["type"]
            if isinstance(gtype, str):
                try:
                    gtype = {"const": canonical_type(gtype, "group")}
                except ValueError as exc:
                    raise StreambatchError(f"mapping.groups: {exc}") from None
            self.groups.append({"type": gtype, "name": entry["name"]})
        if self.groups and not self.options.get("owner"):
            raise StreambatchError("mapping.groups needs options['owner'] to compute the group xids")
        self._seen_groups: set[tuple[str, str]] = set()
        self._tag_sep = m.get("tag_separator", ",")

    def columns(self) -> list[str]:
        """Every column/key name the mapping reads."""
        refs: list[Any] = []
        m = self.mapping
        for key in ("type", "rating", "confidence", "description", "first_seen", "last_seen"):
            if key in m:
                refs.append(m[key])
        value = m["value"]
        if isinstance(value, Mapping) and not ({"const", "column", "key"} & set(value)):
            refs.extend(value[k] for k in _HASH_KINDS if k in value)
        else:
            refs.append(value)
        refs.extend(self._tag_refs()[0])
        refs.extend((m.get("attributes") or {}).values())
        for g in self.groups:
            refs.extend((g["type"], g["name"]))
        names = [ref_name(r) for r in refs]
        return list(dict.fromkeys(n for n in names if n is not None))

    def _tag_refs(self) -> tuple[list[Any], str, list[str]]:
        tags = self.mapping.get("tags")
        if tags is None:
            return [], self._tag_sep, []
        if isinstance(tags, (str, list)):
            return ([tags] if isinstance(tags, str) else list(tags)), self._tag_sep, []
        if isinstance(tags, Mapping) and ("columns" in tags or "keys" in tags or "const" in tags) and "column" not in tags:
            const = tags.get("const") or []
            return list(tags.get("columns", tags.get("keys", []))), tags.get("separator", self._tag_sep), \
                ([const] if isinstance(const, str) else list(const))
        return [tags], self._tag_sep, []

    def records(self, get: Callable[[str], Any]) -> Iterator[dict[str, Any]]:
        """The records of one row: new groups first, then the indicator. Raises RowError."""
        def read(ref: Any) -> Any:
            name = ref_name(ref)
            return ref["const"] if name is None else get(name)

        m, opts = self.mapping, self.options
        record = self._indicator(read)
        if "rating" in m and not _blank(r := read(m["rating"])):
            record["rating"] = _checked("rating", v.rating, r)
        if "confidence" in m and not _blank(c := read(m["confidence"])):
            record["confidence"] = _checked("confidence", v.confidence, c)
        for key, wire in (("first_seen", "firstSeen"), ("last_seen", "lastSeen")):
            if key in m and not _blank(d := read(m[key])):
                record[wire] = _checked(key, v.date, d)
        refs, sep, tags = self._tag_refs()
        tags = list(tags)
        for ref in refs:
            raw = read(ref)
            if _blank(raw):
                continue
            pieces = raw if isinstance(raw, list) else str(raw).split(sep) if sep else [str(raw)]
            tags.extend(str(p).strip() for p in pieces if not _blank(p))
        attributes: list[dict[str, Any]] = []
        if "description" in m and not _blank(d := read(m["description"])):
            attributes.append({"type": "Description", "value": str(d).strip()})
        for atype, ref in (m.get("attributes") or {}).items():
            if not _blank(a := read(ref)):
                attributes.append({"type": atype, "value": a if isinstance(a, str) else str(a)})
        apply_defaults(record, opts, tags, attributes)
        group_xids: list[str] = []
        for g in self.groups:
            name = read(g["name"])
            if _blank(name):
                continue
            gtype_raw = read(g["type"])
            try:
                gtype = canonical_type(gtype_raw, "group")
            except ValueError as exc:
                raise RowError(f"group type: {exc}") from None
            name = str(name).strip()
            if len(name) > 100:
                raise RowError(f"group name is longer than 100 characters: {name[:60]!r}...")
            xid = record_xid(str(opts["owner"]), "group", gtype, name)
            group_xids.append(xid)
            if (gtype, name) not in self._seen_groups:
                self._seen_groups.add((gtype, name))
                yield {"type": gtype, "name": name, "xid": xid}
        if group_xids:
            record["associatedGroups"] = [{"groupXid": x} for x in dict.fromkeys(group_xids)]
        yield record

    def _indicator(self, read: Callable[[Any], Any]) -> dict[str, Any]:
        m = self.mapping
        type_ref = m.get("type")
        if type_ref is None and self.options.get("type"):
            type_ref = {"const": self.options["type"]}
        declared = None
        if type_ref is not None:
            raw_type = read(type_ref)
            if not _blank(raw_type):  # an empty type cell: detect the type from the value
                try:
                    declared = canonical_type(str(raw_type).strip(), "indicator")
                except ValueError as exc:
                    raise RowError(str(exc)) from None
        value = m["value"]
        if isinstance(value, Mapping) and not ({"const", "column", "key"} & set(value)):
            if declared not in (None, "File"):
                raise RowError(f"hash columns mapped but the type is {declared}")
            out: dict[str, Any] = {"type": "File"}
            for kind in _HASH_KINDS:
                if kind in value and not _blank(h := read(value[kind])):
                    out[kind] = _checked(kind, lambda x, k=kind: v.hash_value(x, k), h)
            if len(out) == 1:
                raise RowError(f"no hash: the {'/'.join(k for k in _HASH_KINDS if k in value)} columns are empty")
            return out
        raw = read(value)
        if _blank(raw):
            raise RowError(f"value {ref_name(value)!r} is empty" if ref_name(value) else "value is empty")
        return indicator_from_value(raw, declared)


def indicator_from_value(raw: Any, declared: str | None) -> dict[str, Any]:
    """``{"type", "summary"}`` for one value, detected or checked against a declared type."""
    if declared is None:
        found = detect_type(raw)
        if found is None:
            shown = str(raw)
            raise RowError(f"cannot detect the indicator type of {shown[:200]!r}")
        return {"type": found[0], "summary": found[1]}
    try:
        return {"type": declared, "summary": check_value(declared, raw)}
    except ValueError as exc:
        raise RowError(f"{declared} value {str(raw)[:200]!r} {exc}") from None


def _checked(field: str, check: Callable[[Any], Any], value: Any) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise RowError(f"{field} {str(value)[:100]!r} {exc}") from None


def apply_defaults(record: dict[str, Any], options: Mapping[str, Any], tags: list[str] | None = None,
                   attributes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Add the feed-wide defaults of ``options`` (rating, confidence, tags, attributes) and the
    row's own tags/attributes to an indicator record; values already in the record win."""
    rating, confidence = options.get("rating"), options.get("confidence")
    if rating is not None and "rating" not in record:
        record["rating"] = rating
    if confidence is not None and "confidence" not in record:
        record["confidence"] = confidence
    default_tags = options.get("tags")
    if isinstance(default_tags, str):  # one tag, not one per character
        default_tags = [default_tags]
    if tags or default_tags:
        names = [*(tags or ()), *(default_tags or ())]
        if record.get("tag"):
            names = [*(t.get("name") if isinstance(t, Mapping) else t for t in record["tag"]), *names]
        record["tag"] = [{"name": n} for n in dict.fromkeys(names)]
    default_attrs = options.get("attributes")
    if attributes or default_attrs:
        record["attribute"] = [*(record.get("attribute") or ()), *(attributes or ()),
                               *(dict(a) for a in default_attrs or ())]
    return record
