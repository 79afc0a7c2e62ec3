"""Turning one feed row (a CSV/TSV row or a JSON object) into batch records, per a mapping.

The mapping schema (a table in the feed's TOML config; every key is optional but ``value``)
----------------------------------------------------------------------------------------------

A *field reference* ("ref") is one of:

* ``"name"``: a CSV/TSV column (header name) or, for JSON, a key; JSON keys may be dotted
  paths (``"attributes.ip"``; a list index is a number: ``"ips.0"``);
* ``{"column": "name"}`` (or ``{"key": "name"}``): the same, spelled out;
* ``{"const": value}``: the same value for every row;
* ``{"template": "Threat type: {threat_type}"}``: text with column/key fields.

A reference table may also transform the value (``regex`` or ``split`` extraction, a ``map`` of
values, what to do when they do not match): see :mod:`streambatch.feeds.transforms`.

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
``expires``        ref -> ``externalDateExpires`` (the record's own expiry; it wins over the
                   feed's ``expires`` TTL, and one in the past makes the record expired).
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
from .transforms import MISSING, Ref, RowError, blank as _blank, is_ref_table

__all__ = ["MISSING", "KEYS", "Mapper", "RowError", "apply_defaults", "canonical_type", "indicator_from_value"]

_HASH_KINDS = ("md5", "sha1", "sha256")
#: The keys of a mapping.
KEYS = ("type", "value", "rating", "confidence", "tags", "tag_separator", "attributes", "description",
        "first_seen", "last_seen", "expires", "groups")
_SCALARS = ("type", "rating", "confidence", "description", "first_seen", "last_seen", "expires")


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
    "expires": v.date,
}


class Mapper:
    """Builds records from rows. ``get(name)`` reads one column/key of the current row and
    returns :data:`MISSING` when the row has none. Every reference is compiled (and checked)
    here (:class:`~streambatch.feeds.transforms.Ref`). Keeps the set of group keys already
    yielded (groups per feed are few)."""

    def __init__(self, mapping: Mapping[str, Any] | None, options: Mapping[str, Any] | None) -> None:
        self.mapping: Mapping[str, Any] = mapping or {}
        self.options: Mapping[str, Any] = options or {}
        m = self.mapping
        unknown = set(m) - set(KEYS)
        if unknown:
            from .config import did_you_mean

            first = sorted(unknown)[0]
            raise StreambatchError(f"mapping: unknown key {first!r}{did_you_mean(first, KEYS)}")
        if "value" not in m:
            raise StreambatchError("mapping: 'value' is required (a column/key, or {md5, sha1, sha256} for files)")
        self.refs: dict[str, Ref] = {key: Ref.compile(m[key], f"mapping.{key}") for key in _SCALARS if key in m}
        value = m["value"]
        self.hashes: dict[str, Ref] | None = None
        if isinstance(value, Mapping) and not is_ref_table(value):
            if not value or set(value) - set(_HASH_KINDS):
                raise StreambatchError(f"mapping.value: {value!r} is neither a field reference (a name, "
                                       "{column = ...}, {const = ...} or {template = ...}) nor a table of "
                                       "md5/sha1/sha256 refs")
            self.hashes = {k: Ref.compile(value[k], f"mapping.value.{k}") for k in _HASH_KINDS if k in value}
        else:
            self.refs["value"] = Ref.compile(value, "mapping.value")
        for key, check in _CONST_CHECKS.items():  # a constant (or a map entry) that every row would fail on
            ref = self.refs.get(key)
            if ref is None:
                continue
            if ref.is_const and not _blank(ref.const) and ref.map is None:
                try:
                    check(ref.const)
                except ValueError as exc:
                    raise StreambatchError(f"mapping.{key}: {{const = {ref.const!r}}}: {exc}") from None
            for replacement in (ref.map or {}).values():
                try:
                    check(replacement)
                except ValueError as exc:
                    raise StreambatchError(f"mapping.{key}: map: {exc}") from None
        self._tag_sep = m.get("tag_separator", ",")
        self.tag_refs, self.tag_sep, self.const_tags = self._tags(m.get("tags"))
        attributes = m.get("attributes") or {}
        if not isinstance(attributes, Mapping):
            raise StreambatchError("mapping.attributes must be a table of attribute type = reference")
        self.attributes = {atype: Ref.compile(ref, f"mapping.attributes.{atype}") for atype, ref in attributes.items()}
        self.groups: list[tuple[Ref, Ref]] = []
        for i, entry in enumerate(m.get("groups") or []):
            if not isinstance(entry, Mapping) or "type" not in entry or "name" not in entry:
                raise StreambatchError(f"mapping.groups: {entry!r} needs 'type' and 'name'")
            gtype = entry["type"]
            if isinstance(gtype, str):
                try:
                    gtype = {"const": canonical_type(gtype, "group")}
                except ValueError as exc:
                    raise StreambatchError(f"mapping.groups: {exc}") from None
            self.groups.append((Ref.compile(gtype, f"mapping.groups[{i}].type"),
                                Ref.compile(entry["name"], f"mapping.groups[{i}].name")))
        if self.groups and not self.options.get("owner"):
            raise StreambatchError("mapping.groups needs options['owner'] to compute the group xids")
        self._seen_groups: set[tuple[str, str]] = set()
        self._default_type = Ref.compile({"const": self.options["type"]}, "options.type") \
            if self.options.get("type") else None
        header = self.options.get("header")
        if isinstance(header, list) and header:
            self._check_header([str(h) for h in header])

    def _tags(self, tags: Any) -> tuple[list[Ref], str, list[str]]:
        if tags is None:
            return [], self._tag_sep, []
        if isinstance(tags, list):
            return [Ref.compile(t, f"mapping.tags[{i}]") for i, t in enumerate(tags)], self._tag_sep, []
        if isinstance(tags, Mapping) and ("columns" in tags or "keys" in tags or "const" in tags) \
                and not ({"column", "key", "template"} & set(tags)):
            const = tags.get("const") or []
            columns = tags.get("columns", tags.get("keys", []))
            return ([Ref.compile(t, f"mapping.tags.columns[{i}]") for i, t in enumerate(columns)],
                    tags.get("separator", self._tag_sep), [const] if isinstance(const, str) else list(const))
        return [Ref.compile(tags, "mapping.tags")], self._tag_sep, []

    def _all_refs(self) -> list[Ref]:
        refs = [self.refs[k] for k in _SCALARS if k in self.refs]
        refs.extend(self.hashes.values() if self.hashes is not None else [self.refs["value"]])
        refs.extend(self.tag_refs)
        refs.extend(self.attributes.values())
        for gtype, name in self.groups:
            refs.extend((gtype, name))
        return refs

    def columns(self) -> list[str]:
        """Every column/key name the mapping reads."""
        return list(dict.fromkeys(c for ref in self._all_refs() for c in ref.columns))

    def _check_header(self, header: list[str]) -> None:
        """With ``options["header"]`` the columns are known now: every reference must name one."""
        shown = ", ".join(header[:30])
        for ref in self._all_refs():
            for column in ref.columns:
                if column in header:
                    continue
                if ref.template is not None:
                    raise StreambatchError(f"{ref.where}: template {ref.template!r} names column {column!r}, which "
                                           f"options.header lacks (header: {shown})")
                raise StreambatchError(f"{ref.where}: column {column!r} is not in options.header (header: {shown})")

    def records(self, get: Callable[[str], Any]) -> Iterator[dict[str, Any]]:
        """The records of one row: new groups first, then the indicator. Raises RowError."""
        refs, opts = self.refs, self.options
        record = self._indicator(get)
        if "rating" in refs and not _blank(r := refs["rating"].read(get)):
            record["rating"] = _checked("rating", v.rating, r)
        if "confidence" in refs and not _blank(c := refs["confidence"].read(get)):
            record["confidence"] = _checked("confidence", v.confidence, c)
        for key, wire in (("first_seen", "firstSeen"), ("last_seen", "lastSeen"), ("expires", "externalDateExpires")):
            if key in refs and not _blank(d := refs[key].read(get)):
                record[wire] = _checked(key, v.date, d)
        sep = self.tag_sep
        tags = list(self.const_tags)
        for ref in self.tag_refs:
            raw = ref.read(get)
            if _blank(raw):
                continue
            pieces = raw if isinstance(raw, list) else str(raw).split(sep) if sep else [str(raw)]
            tags.extend(str(p).strip() for p in pieces if not _blank(p))
        attributes: list[dict[str, Any]] = []
        if "description" in refs and not _blank(d := refs["description"].read(get)):
            attributes.append({"type": "Description", "value": str(d).strip()})
        for atype, ref in self.attributes.items():
            if not _blank(a := ref.read(get)):
                attributes.append({"type": atype, "value": a if isinstance(a, str) else str(a)})
        apply_defaults(record, opts, tags, attributes)
        group_xids: list[str] = []
        for gtype_ref, name_ref in self.groups:
            name = name_ref.read(get)
            if _blank(name):
                continue
            gtype_raw = gtype_ref.read(get)
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

    def _indicator(self, get: Callable[[str], Any]) -> dict[str, Any]:
        type_ref = self.refs.get("type", self._default_type)
        declared = None
        if type_ref is not None:
            raw_type = type_ref.read(get)
            if not _blank(raw_type):  # an empty type cell: detect the type from the value
                try:
                    declared = canonical_type(str(raw_type).strip(), "indicator")
                except ValueError as exc:
                    raise RowError(str(exc)) from None
        if self.hashes is not None:
            if declared not in (None, "File"):
                raise RowError(f"hash columns mapped but the type is {declared}")
            out: dict[str, Any] = {"type": "File"}
            for kind, ref in self.hashes.items():
                if not _blank(h := ref.read(get)):
                    out[kind] = _checked(kind, lambda x, k=kind: v.hash_value(x, k), h)
            if len(out) == 1:
                raise RowError(f"no hash: the {'/'.join(self.hashes)} columns are empty")
            return out
        ref = self.refs["value"]
        raw = ref.read(get)
        if _blank(raw):
            shown = f"value {ref.name!r} is empty" if ref.name else "value is empty"
            if ref.steps:
                shown += f', or its {ref.steps} gave no value (unmatched = "{ref.unmatched}")'
            raise RowError(shown)
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
