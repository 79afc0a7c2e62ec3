"""Threat-intel records: groups and indicators with their metadata, built from the types table.

A record holds canonical values only: every setter runs the field's check from
:mod:`streambatch.types`, so a bad value fails where it is set, with a
:class:`~streambatch.errors.ValidationError` that names the type, the field and the xid.
``record.data`` is the record's batch JSON dict; :func:`parse` is its inverse for raw dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import fastpath
from . import validate as v
from .errors import ValidationError
from .types import ATTRIBUTE_MAX, DEFAULT_ATTRIBUTE_MAX, TypeRegistry, TypeSpec
from .xid import group_key, indicator_key

# Fields that appear in exports (GET /v2/indicators/bulk/json) but mean nothing in batch input.
# They are dropped from raw dicts; any other unknown key is an error.
EXPORT_ONLY = frozenset({
    "id", "ownerName", "webLink", "threatAssessRating", "threatAssessConfidence",
    "threatAssessScore", "threatAssessScoreObserved", "threatAssessScoreFalsePositive",
    "publishRootItem", "flag3", "intValue2", "intValue3", "observationCount",
    "falsePositiveCount", "lastObserved", "falsePositiveLastReported", "value1", "value2", "value3",
})


def _check(type_name: str | None, xid: str | None, field: str, check: Callable[[Any], Any], value: Any) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise ValidationError(type_name, field, value, str(exc), xid) from None


def too_many(field: str, given: int, limit: int, what: str) -> ValidationError:
    """The error for a list with more than ``limit`` distinct entries (:mod:`streambatch.validate`,
    ``TAGS_MAX`` ...); the caller names the record."""
    return ValidationError(None, field, f"{given:,} {what}", f"has more than {limit:,} {what}, the most one record "
                                                              "may carry")


def check_xid(spec: TypeSpec, value: Any) -> str:
    """A record's xid, checked. A Document's or Report's xid is also a segment of its content's
    upload path (``/v2/groups/documents/{xid}/upload``), so it must be one a server keeps whole:
    no '/' or '\\' (even percent-encoded, servers split on or refuse them) and not '.' or '..'."""
    try:
        xid = v.text(value, v.XID_MAX)
    except ValueError as exc:
        raise ValidationError(spec.name, "xid", value, str(exc)) from None
    if spec.has_file:
        for char in ("/", "\\"):
            if char in xid:
                raise ValidationError(spec.name, "xid", xid, f"an xid with {char!r} cannot be used in the upload path",
                                      xid)
        if xid in (".", ".."):
            raise ValidationError(spec.name, "xid", xid, f"an xid of {xid!r} cannot be used in the upload path", xid)
    return xid


def check_file_content(spec: TypeSpec, value: Any, xid: str | None) -> Any:
    """Document/Report content as given (see :func:`streambatch.validate.file_content`)."""
    if value is None:
        return None
    if not spec.has_file:
        raise ValidationError(spec.name, "fileContent", "<content>",
                              "only Document and Report groups carry file content", xid)
    try:
        return v.file_content(value)
    except ValueError as exc:
        raise ValidationError(spec.name, "fileContent", f"<{type(value).__name__}>", str(exc), xid) from None


class SecurityLabel:
    """A security label; ``color`` and ``description`` matter only when the label is new."""

    __slots__ = ("name", "_color", "_description")

    def __init__(self, name: str, description: str | None = None, color: str | None = None) -> None:
        checked = name.strip() if type(name) is str else None
        if checked is not None and 0 < len(checked) <= v.NAME_MAX and checked.isprintable():  # v.name's common case
            self.name = checked
        else:
            self.name = _check(None, None, "securityLabel.name", v.name, name)
        self._color: str | None = None
        self._description: str | None = None
        if color is not None:
            self.color = color
        if description is not None:
            self.description = description

    @property
    def color(self) -> str | None:
        return self._color

    @color.setter
    def color(self, value: str | None) -> None:
        self._color = None if value is None else _check(None, None, f"securityLabel[{self.name}].color", v.color, value)

    @property
    def description(self) -> str | None:
        return self._description

    @description.setter
    def description(self, value: str | None) -> None:
        self._description = None if value is None else _check(None, None, f"securityLabel[{self.name}].description",
                                                                 v.long_text, value)

    @property
    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self._color is not None:
            out["color"] = self._color
        if self._description is not None:
            out["description"] = self._description
        return out

    def merge(self, other: "SecurityLabel") -> None:
        self._color = other._color or self._color
        self._description = other._description or self._description


def _labels_from(items: Any, where: str) -> dict[str, SecurityLabel]:
    out: dict[str, SecurityLabel] = {}
    for item in _listify(items, where):
        if isinstance(item, SecurityLabel):
            label = item
        elif isinstance(item, Mapping):
            label = SecurityLabel(item.get("name"), item.get("description"), item.get("color"))
        else:
            label = SecurityLabel(item)
        if label.name in out:
            out[label.name].merge(label)
        else:
            out[label.name] = label
            if len(out) > v.LABELS_MAX:
                raise too_many(where, len(items), v.LABELS_MAX, "security labels")
    return out


def _listify(items: Any, where: str) -> list[Any]:
    if items is None:
        return []
    if isinstance(items, (list, tuple)):
        return list(items)
    raise ValidationError(None, where, items, "must be a list")


_typeof = type  # the builtin, for where a parameter is named ``type``


class Attribute:
    """An attribute of a record: type and value, plus displayed/pinned/source/labels."""

    __slots__ = ("type", "_value", "_displayed", "_pinned", "_source", "_labels", "_max")

    def __init__(self, type: str, value: Any, displayed: bool = False, source: str | None = None,
                 pinned: bool = False, max_length: int | None = None) -> None:
        atype = type.strip() if _typeof(type) is str else None
        if atype is not None and 0 < len(atype) <= v.NAME_MAX and atype.isprintable():  # v.text's common case
            self.type = atype
        else:
            try:
                self.type = v.text(type, v.NAME_MAX)
            except ValueError as exc:
                raise ValidationError(None, "attribute.type", type, str(exc)) from None
        self._max = max_length or ATTRIBUTE_MAX.get(self.type, DEFAULT_ATTRIBUTE_MAX)
        self._labels: dict[str, SecurityLabel] = {}
        text = value.strip() if _typeof(value) is str else None
        if text is not None and 0 < len(text) <= self._max and text.isprintable():  # v.long_text's common case
            self._value = text
        else:
            self.value = value
        if displayed is False and pinned is False and source is None:  # the usual case, nothing to check
            self._displayed = self._pinned = False
            self._source = None
        else:
            self.displayed = displayed
            self.pinned = pinned
            self.source = source

    @property
    def value(self) -> str:
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        try:
            self._value = v.long_text(value, self._max)
        except ValueError as exc:
            raise ValidationError(None, f"attribute[{self.type}].value", value, str(exc)) from None

    @property
    def displayed(self) -> bool:
        return self._displayed

    @displayed.setter
    def displayed(self, value: Any) -> None:
        self._displayed = _check(None, None, f"attribute[{self.type}].displayed", v.boolean, value)

    @property
    def pinned(self) -> bool:
        return self._pinned

    @pinned.setter
    def pinned(self, value: Any) -> None:
        self._pinned = _check(None, None, f"attribute[{self.type}].pinned", v.boolean, value)

    @property
    def source(self) -> str | None:
        return self._source

    @source.setter
    def source(self, value: Any) -> None:
        self._source = None if value is None else _check(None, None, f"attribute[{self.type}].source", v.text, value)

    def security_label(self, name: str, description: str | None = None, color: str | None = None) -> SecurityLabel:
        new = SecurityLabel(name, description, color)
        label = self._labels.get(new.name)
        if label is None:
            if len(self._labels) >= v.LABELS_MAX:
                raise too_many(f"attribute[{self.type}].securityLabel", len(self._labels) + 1, v.LABELS_MAX,
                               "security labels")
            label = self._labels[new.name] = SecurityLabel(new.name)
        label.merge(new)
        return label

    @property
    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "value": self._value}
        if self._displayed:
            out["displayed"] = True
        if self._pinned:
            out["pinned"] = True
        if self._source is not None:
            out["source"] = self._source
        if self._labels:
            out["securityLabel"] = [label.data for label in self._labels.values()]
        return out

    @classmethod
    def from_data(cls, item: Any, where: str = "attribute") -> "Attribute":
        if not isinstance(item, Mapping):
            raise ValidationError(None, where, item, "must be an object with type and value")
        attr = cls(item.get("type"), item.get("value"), item.get("displayed", False),
                   item.get("source"), item.get("pinned", False))
        attr._labels = _labels_from(item.get("securityLabel"), f"{where}.securityLabel")
        return attr


class FileOccurrence:
    """Where and when a file was seen (File indicators only)."""

    __slots__ = ("_file_name", "_path", "_date")

    def __init__(self, file_name: str | None = None, path: str | None = None, date: Any = None) -> None:
        self.file_name = file_name
        self.path = path
        self.date = date

    @property
    def file_name(self) -> str | None:
        return self._file_name

    @file_name.setter
    def file_name(self, value: Any) -> None:
        self._file_name = None if value is None else _check("File", None, "fileOccurrence.fileName", v.text, value)

    @property
    def path(self) -> str | None:
        return self._path

    @path.setter
    def path(self, value: Any) -> None:
        self._path = None if value is None else _check("File", None, "fileOccurrence.path", v.text, value)

    @property
    def date(self) -> str | None:
        return self._date

    @date.setter
    def date(self, value: Any) -> None:
        self._date = None if value is None else _check("File", None, "fileOccurrence.date", v.date, value)

    @property
    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._file_name is not None:
            out["fileName"] = self._file_name
        if self._path is not None:
            out["path"] = self._path
        if self._date is not None:
            out["date"] = self._date
        return out

    def _key(self) -> tuple:
        return (self._file_name, self._path, self._date)


class FieldProperty:
    """A record property backed by one field of the record's type (``document.malware``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, record: "Record | None", owner: type | None = None) -> Any:
        if record is None:
            return self
        field = record.spec.field(self.name)
        return None if field is None else record._fields.get(field.key)

    def __set__(self, record: "Record", value: Any) -> None:
        record.add_key_value(self.name, value)


def summary_of(spec: TypeSpec, values: Mapping[str, Any], xid: str | None = None) -> str:
    """The canonical summary of an indicator from its value fields (keyed by wire key)."""
    slots = spec.values
    if len(slots) == 1 and not spec.is_file:  # one value: the loop below, unrolled
        slot = slots[0]
        raw = values.get(slot.key)
        if raw is None or (raw == "" and slot.key != "Value Name"):
            if not slot.optional:
                raise ValidationError(spec.name, slot.key, raw, "is required", xid)
            return ""
        try:
            return slot.check(raw)
        except ValueError as exc:
            raise ValidationError(spec.name, slot.key, raw, str(exc), xid) from None
    if spec.is_file:
        hashes = [_check(spec.name, xid, slot.key, slot.check, values[slot.key])
                  for slot in spec.values if values.get(slot.key) not in (None, "")]
        if not hashes:
            raise ValidationError(spec.name, "summary", None, "needs at least one of md5, sha1, sha256", xid)
        return v.SUMMARY_SEPARATOR.join(hashes)
    parts: list[str] = []
    missing: str | None = None
    for slot in spec.values:
        raw = values.get(slot.key)
        if raw is None or (raw == "" and slot.key != "Value Name"):
            if not slot.optional:
                raise ValidationError(spec.name, slot.key, raw, "is required", xid)
            missing = missing or slot.key
            continue
        if missing:
            raise ValidationError(spec.name, missing, None, f"is required when {slot.key} is given", xid)
        parts.append(_check(spec.name, xid, slot.key, slot.check, raw))
    return v.SUMMARY_SEPARATOR.join(parts)


_HASH_KINDS = {32: "md5", 40: "sha1", 64: "sha256"}
_HASH_SLOTS = {"md5": 0, "sha1": 1, "sha256": 2}


def parse_summary(spec: TypeSpec, summary: Any, xid: str | None = None) -> str:
    """Canonicalize an indicator summary given as one string (``'a : b : c'`` for multi-value
    types; File hashes are recognised by length, whatever their position)."""
    if len(spec.values) == 1:  # every value check starts with the text check
        return _check(spec.name, xid, "summary", spec.values[0].check, summary)
    raw = _check(spec.name, xid, "summary", v.long_text, summary)  # each value is held to its own limit
    if spec.is_file and ":" not in raw:
        kind = _HASH_KINDS.get(len(raw))
        if kind is not None:
            return _check(spec.name, xid, kind, spec.values[_HASH_SLOTS[kind]].check, raw)
    tokens = [t.strip() for t in raw.split(":")] if spec.is_file else v.split_summary(raw)
    if spec.is_file:
        found: dict[str, str] = {}
        for token in filter(None, tokens):
            kind = {32: "md5", 40: "sha1", 64: "sha256"}.get(len(token))
            if kind is None or kind in found:
                raise ValidationError(spec.name, "summary", summary,
                                      f"{token!r} is not an md5, sha1 or sha256 digest (or repeats one)", xid)
            found[kind] = token
        return summary_of(spec, found, xid)
    return summary_of(spec, {slot.key: tok for slot, tok in zip(spec.values, tokens)}, xid)


class Record:
    """A group or an indicator. Use :attr:`data` for its batch JSON dict."""

    kind = ""
    _identity_key = ""  # "name" for groups, "summary" for indicators

    _occurrences: Any = ()  # File indicators have a list of them

    def __init__(self, spec: TypeSpec, identity: Any, xid: str) -> None:
        self.spec = spec
        checked = xid.strip() if type(xid) is str and not spec.has_file else None
        if checked is not None and 0 < len(checked) <= v.XID_MAX and checked.isprintable():  # check_xid's common case
            self.xid: str = checked
        else:
            self.xid = check_xid(spec, xid)
        self._fields: dict[str, Any] = {}
        self._attributes: list[Attribute] = []
        self._tags: dict[str, None] = {}
        self._labels: dict[str, SecurityLabel] = {}
        self._group_xids: dict[str, None] = {}
        self._indicator_refs: dict[tuple[str, str], None] = {}
        self._set_identity(identity)

    def _set_identity(self, identity: Any) -> None:
        raise NotImplementedError

    def _error(self, field: str, value: Any, reason: str) -> ValidationError:
        return ValidationError(self.spec.name, field, value, reason, self.xid)

    def _too_many(self, field: str, given: int, limit: int, what: str) -> ValidationError:
        err = too_many(field, given, limit, what)
        return self._error(err.field, err.value, err.reason)

    @property
    def type(self) -> str:
        return self.spec.name

    @property
    def key(self) -> int:
        """The record's identity key in a job file (from its xid, or type and summary)."""
        return self._key

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.type} {self._fields.get(self._identity_key)!r} xid={self.xid}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self.data == other.data

    __hash__ = None  # type: ignore[assignment]

    # -- fields --------------------------------------------------------------------------

    def add_key_value(self, key: str, value: Any) -> None:
        """Set one field by its batch API name (``eventDate``), an alias (``dnsActive``) or its
        keyword name (``event_date``). ``None`` removes the field."""
        field = self.spec.field(key)
        if field is None:
            raise self._error(key, value, f"is not a field of {self.spec.kind} type {self.spec.name}")
        if value is None:
            self._fields.pop(field.key, None)
            return
        try:
            self._fields[field.key] = field.check(value)
        except ValueError as exc:
            raise ValidationError(self.spec.name, field.key, value, str(exc), self.xid) from None

    def _set_many(self, values: Mapping[str, Any]) -> None:
        """:meth:`add_key_value` for each value that is not ``None``, with its common case (a
        field of the type's table) inline; any other key goes through ``add_key_value``."""
        by_key, fields = self.spec.by_key, self._fields
        for key, value in values.items():
            if value is not None:
                field = by_key.get(key)
                if field is None:
                    self.add_key_value(key, value)
                    continue
                try:
                    fields[field.key] = field.check(value)
                except ValueError as exc:
                    raise ValidationError(self.spec.name, field.key, value, str(exc), self.xid) from None

    # -- metadata ------------------------------------------------------------------------

    def attribute(self, attr_type: str, attr_value: Any, displayed: bool = False, source: str | None = None,
                  formatter: Callable[[Any], Any] | None = None, unique: bool | str = True,
                  pinned: bool = False) -> Attribute:
        """Add an attribute and return it. ``unique=True`` keeps one per (type, value);
        ``unique='Type'`` keeps one per type (the new one replaces the old); ``False`` allows
        duplicates."""
        if formatter is not None:
            attr_value = formatter(attr_value)
        try:
            attr = Attribute(attr_type, attr_value, displayed, source, pinned)
        except ValidationError as exc:
            raise ValidationError(self.spec.name, exc.field, exc.value, exc.reason, self.xid) from None
        if unique is True:
            for old in self._attributes:
                if old.type == attr.type and old.value == attr.value:
                    return old
        elif isinstance(unique, str) and unique.lower() == "type":
            self._attributes = [a for a in self._attributes if a.type != attr.type]
        if len(self._attributes) >= v.ATTRIBUTES_MAX:
            raise self._too_many("attribute", len(self._attributes) + 1, v.ATTRIBUTES_MAX, "attributes")
        self._attributes.append(attr)
        return attr

    @property
    def attributes(self) -> list[Attribute]:
        return list(self._attributes)

    def tag(self, name: str, formatter: Callable[[Any], Any] | None = None) -> str:
        if formatter is not None:
            name = formatter(name)
        if type(name) is str:
            out = name.strip()
            tags = self._tags
            if 0 < len(out) <= v.TAG_MAX and out.isprintable() and (out in tags or len(tags) < v.TAGS_MAX):
                tags[out] = None  # v.tag's common case
                return out
        out = _check(self.spec.name, self.xid, "tag", v.tag, name)
        if out not in self._tags and len(self._tags) >= v.TAGS_MAX:
            raise self._too_many("tag", len(self._tags) + 1, v.TAGS_MAX, "tags")
        self._tags[out] = None
        return out

    @property
    def tags(self) -> list[str]:
        return list(self._tags)

    def security_label(self, name: str, description: str | None = None, color: str | None = None) -> SecurityLabel:
        try:
            new = SecurityLabel(name, description, color)
        except ValidationError as exc:
            raise ValidationError(self.spec.name, exc.field, exc.value, exc.reason, self.xid) from None
        if new.name not in self._labels and len(self._labels) >= v.LABELS_MAX:
            raise self._too_many("securityLabel", len(self._labels) + 1, v.LABELS_MAX, "security labels")
        label = self._labels.setdefault(new.name, new)
        if label is not new:
            label.merge(new)
        return label

    @property
    def security_labels(self) -> list[SecurityLabel]:
        return list(self._labels.values())

    def association(self, group_xid: str) -> None:
        """Associate this record with a group, by the group's xid."""
        xid = _check(self.spec.name, self.xid, "association", v.xid, group_xid)
        if xid not in self._group_xids and len(self._group_xids) >= v.ASSOCIATIONS_MAX:
            raise self._too_many("associatedGroupXid" if self.kind == "group" else "associatedGroups",
                                 len(self._group_xids) + 1, v.ASSOCIATIONS_MAX, "associations")
        self._group_xids[xid] = None

    @property
    def associated_group_xids(self) -> list[str]:
        return list(self._group_xids)

    def associate_indicator(self, indicator_type: str, summary: str, registry: TypeRegistry | None = None) -> None:
        """Associate this record with an indicator, by its type and summary."""
        ref = _indicator_ref(registry, indicator_type, summary, self)
        if ref not in self._indicator_refs and len(self._indicator_refs) >= v.ASSOCIATIONS_MAX:
            raise self._too_many("associatedIndicators", len(self._indicator_refs) + 1, v.ASSOCIATIONS_MAX,
                                 "associations")
        self._indicator_refs[ref] = None

    # -- output --------------------------------------------------------------------------

    @property
    def data(self) -> dict[str, Any]:
        """The batch JSON dict of this record (file content is never part of it)."""
        out: dict[str, Any] = {"type": self.spec.name}
        out[self._identity_key] = self._fields[self._identity_key]
        out["xid"] = self.xid
        fields = self._fields
        if len(fields) > 1:
            order = self.spec.order
            keys = [k for k in fields if k in order]
            if len(keys) > 1:
                keys.sort(key=order.__getitem__)
            for key in keys:
                out[key] = fields[key]
        if self._attributes:
            out["attribute"] = [a.data for a in self._attributes]
        if self._tags:
            out["tag"] = [{"name": t} for t in self._tags]
        if self._labels:
            out["securityLabel"] = [label.data for label in self._labels.values()]
        if self._occurrences or self._group_xids or self._indicator_refs:
            self._extra_data(out)
        return out

    def _extra_data(self, out: dict[str, Any]) -> None:
        if self._indicator_refs:
            out["associatedIndicators"] = [{"summary": s, "indicatorType": t} for t, s in self._indicator_refs]

    def validate(self) -> None:
        """Check what can only be checked once the record is complete (required fields)."""
        check_complete(self.spec, self._fields, self.xid)


def _indicator_ref(registry: TypeRegistry | None, indicator_type: Any, summary: Any, record: Record) -> tuple[str, str]:
    registry = registry or DEFAULT_TYPES
    spec = registry.get(indicator_type)
    if spec is None or spec.kind != "indicator":
        raise record._error("associatedIndicators.indicatorType", indicator_type, "is not an indicator type")
    return spec.name, parse_summary(spec, summary, record.xid)


class Group(Record):
    """A group: Adversary, Campaign, Document, Event, Report ..."""

    kind = "group"
    _identity_key = "name"

    name = FieldProperty()
    date_added = FieldProperty()
    first_seen = FieldProperty()
    last_seen = FieldProperty()
    external_date_added = FieldProperty()
    external_date_expires = FieldProperty()
    external_last_modified = FieldProperty()
    file_name = FieldProperty()
    malware = FieldProperty()
    password = FieldProperty()
    insights = FieldProperty()
    ai_provider = FieldProperty()
    ai_last_retrieval_date = FieldProperty()
    subject = FieldProperty()
    header = FieldProperty()
    body = FieldProperty()
    from_addr = FieldProperty()
    to_addr = FieldProperty()
    score = FieldProperty()
    event_date = FieldProperty()
    event_type = FieldProperty()
    status = FieldProperty()
    publish_date = FieldProperty()
    file_type = FieldProperty()
    file_text = FieldProperty()

    def __init__(self, spec: TypeSpec, name: Any, xid: str) -> None:
        self._file_content: Any = None
        super().__init__(spec, name, xid)

    def _set_identity(self, identity: Any) -> None:
        self._fields["name"] = _check(self.spec.name, self.xid, "name", v.name, identity)
        self._key = group_key(self.xid)

    def add_key_value(self, key: str, value: Any) -> None:
        if key == "name":
            self._set_identity(value)
        elif key in ("fileContent", "file_content"):
            self.file_content = value
        else:
            super().add_key_value(key, value)

    @property
    def file_content(self) -> Any:
        """Document/Report content: bytes, str, a :class:`pathlib.Path`, or a callable that
        takes the xid and returns the content at upload time."""
        return self._file_content

    @file_content.setter
    def file_content(self, value: Any) -> None:
        self._file_content = check_file_content(self.spec, value, self.xid)

    def add_file(self, filename: str, file_content: Any) -> None:
        """Set the file name and its content (Document and Report)."""
        self.add_key_value("fileName", filename)
        self.file_content = file_content

    def _extra_data(self, out: dict[str, Any]) -> None:
        if self._group_xids:
            out["associatedGroupXid"] = list(self._group_xids)
        super()._extra_data(out)


class Indicator(Record):
    """An indicator: Address, Host, URL, File ... or a custom type."""

    kind = "indicator"
    _identity_key = "summary"

    rating = FieldProperty()
    confidence = FieldProperty()
    active = FieldProperty()
    active_locked = FieldProperty()
    private_flag = FieldProperty()
    description = FieldProperty()
    source = FieldProperty()
    date_added = FieldProperty()
    first_seen = FieldProperty()
    last_seen = FieldProperty()
    last_modified = FieldProperty()
    external_date_added = FieldProperty()
    external_date_expires = FieldProperty()
    external_last_modified = FieldProperty()
    size = FieldProperty()
    dns_active = FieldProperty()
    whois_active = FieldProperty()

    def __init__(self, spec: TypeSpec, summary: str, xid: str, key: int | None = None) -> None:
        self._occurrences: list[FileOccurrence] = []
        self._key = key  # indicator_key(type, summary), when the caller has it already
        super().__init__(spec, summary, xid)

    def _set_identity(self, identity: Any) -> None:
        self._fields["summary"] = identity  # canonical already: built by summary_of/parse_summary
        if self._key is None:
            self._key = indicator_key(self.spec.name, identity)

    @property
    def summary(self) -> str:
        return self._fields["summary"]

    def occurrence(self, file_name: str | None = None, path: str | None = None, date: Any = None) -> FileOccurrence:
        """Add a file occurrence (File indicators only) and return it; its properties can be
        set afterwards."""
        if not self.spec.is_file:
            raise self._error("fileOccurrence", file_name, f"file occurrences can only be added to a File, not {self.type}")
        occ = FileOccurrence(file_name, path, date)
        if len(self._occurrences) >= v.OCCURRENCES_MAX:
            raise self._too_many("fileOccurrence", len(self._occurrences) + 1, v.OCCURRENCES_MAX, "file occurrences")
        self._occurrences.append(occ)
        return occ

    @property
    def occurrences(self) -> list[FileOccurrence]:
        return list(self._occurrences)

    def _extra_data(self, out: dict[str, Any]) -> None:
        if self._occurrences:
            seen: dict[tuple, dict] = {}
            for occ in self._occurrences:
                seen.setdefault(occ._key(), occ.data)
            out["fileOccurrence"] = list(seen.values())
        if self._group_xids:
            out["associatedGroups"] = [{"groupXid": x} for x in self._group_xids]
        super()._extra_data(out)

    def validate(self) -> None:
        super().validate()
        for occ in self._occurrences:
            if not occ.data:
                raise self._error("fileOccurrence", None, "needs at least one of fileName, path, date")


DEFAULT_TYPES = TypeRegistry().load()

_META_KEYS = frozenset({"type", "xid", "name", "summary", "attribute", "tag", "securityLabel",
                        "fileOccurrence", "associatedGroups", "associatedGroupXid",
                        "associatedIndicators", "fileContent"})


_METADATA = _META_KEYS - {"type", "xid", "name", "summary", "fileContent"}
_ATTRIBUTE_KEYS = frozenset({"type", "value", "displayed", "pinned", "source", "securityLabel", "id", "dateAdded",
                             "lastModified", "xid"})


def identity(spec: TypeSpec, data: Mapping[str, Any]) -> tuple[int, str]:
    """The identity key of a canonical batch dict and what it stands for (a group's name, an
    indicator's summary): groups are keyed by xid, indicators by type and summary."""
    if spec.kind == "group":
        return group_key(data["xid"]), data["name"]
    return indicator_key(spec.name, data["summary"]), data["summary"]


def check_complete(spec: TypeSpec, fields: Mapping[str, Any], xid: str | None) -> None:
    """The checks that need the whole record: required fields and fields that need others."""
    for key in spec.required:
        if fields.get(key) in (None, ""):
            raise ValidationError(spec.name, key, None, f"is required for {spec.name}", xid)
    if fields.get("malware") and not fields.get("password"):
        raise ValidationError(spec.name, "password", None, "is required when malware is true", xid)
    if "insights" in fields and "aiProvider" not in fields:
        raise ValidationError(spec.name, "aiProvider", None, "is required when insights is given", xid)


def normalize(registry: TypeRegistry, raw: Mapping[str, Any], kind: str | None = None,
              default_xid: Callable[[str, TypeSpec, str], str] | None = None) -> tuple[TypeSpec, dict[str, Any], Any]:
    """Check a raw batch dict (interface 3) and return ``(spec, data, file_content)``, where
    ``data`` is the canonical batch dict, equal to ``parse(...).data``.

    The dict must have an ``xid`` unless ``default_xid(kind, spec, name_or_summary)`` is given.
    Unknown keys are errors, except the export-only fields in :data:`EXPORT_ONLY`, which are
    dropped. ``fileContent`` is returned apart: it never goes into the batch JSON.
    """
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise ValidationError(None, "record", raw, "must be a dict")
    spec = registry.get(raw.get("type"))
    xid = raw.get("xid")
    if spec is None:
        raise ValidationError(str(raw.get("type")), "type", raw.get("type"), "is not a known group or indicator type", xid)
    if kind is not None and spec.kind != kind:
        raise ValidationError(spec.name, "type", raw.get("type"), f"is not a {kind} type", xid)
    if xid is None and default_xid is None:
        raise ValidationError(spec.name, "xid", None, "is required")
    group = spec.kind == "group"
    if not group:
        data = fastpath.indicator(spec, raw, default_xid)
        if data is not None:
            return spec, data, None
    if group:
        ident_key = "name"
        ident = _check(spec.name, xid, "name", v.name, raw.get("name"))
    else:
        ident_key = "summary"
        ident = _raw_summary(spec, raw, xid)
    if xid is None:
        xid = default_xid("group" if group else "indicator", spec, ident)  # type: ignore[misc]
    else:
        xid = check_xid(spec, xid)
    values = spec.value_keys
    by_key = spec.by_key
    found: dict[str, Any] = {}
    has_meta = False
    for key, value in raw.items():
        if value is None:
            continue
        if key in _META_KEYS:
            has_meta = has_meta or key in _METADATA
            continue
        if key in values:
            continue
        field = by_key.get(key)
        if field is None:
            if key in EXPORT_ONLY:
                continue
            raise ValidationError(spec.name, key, value, f"is not a field of {spec.kind} type {spec.name}", xid)
        try:
            found[field.key] = field.check(value)
        except ValueError as exc:
            raise ValidationError(spec.name, field.key, value, str(exc), xid) from None
    check_complete(spec, found, xid)
    out: dict[str, Any] = {"type": spec.name, ident_key: ident, "xid": xid}
    if found:
        for field in spec.fields:
            if field.key in found:
                out[field.key] = found[field.key]
    if has_meta:
        try:
            _normalize_metadata(registry, spec, raw, out)
        except ValidationError as exc:
            raise exc.with_xid(xid) if exc.type else ValidationError(spec.name, exc.field, exc.value, exc.reason, xid) from None
    return spec, out, check_file_content(spec, raw.get("fileContent"), xid)


def _raw_summary(spec: TypeSpec, raw: Mapping[str, Any], xid: str | None) -> str:
    slots = {s.key: raw[s.key] for s in spec.values if raw.get(s.key) not in (None, "")}
    if slots:  # value fields win over summary, as on the server
        return summary_of(spec, slots, xid)
    if raw.get("summary") is None and raw.get("value1") is not None:
        values = [raw.get(f"value{n}") for n in (1, 2, 3)]
        return summary_of(spec, {s.key: val for s, val in zip(spec.values, values)}, xid)
    return parse_summary(spec, raw.get("summary"), xid)


def _attribute_data(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise ValidationError(None, where, item, "must be an object with type and value")
    try:
        atype = v.text(item.get("type"), v.NAME_MAX)
    except ValueError as exc:
        raise ValidationError(None, f"{where}.type", item.get("type"), str(exc)) from None
    try:
        value = v.long_text(item.get("value"), ATTRIBUTE_MAX.get(atype, DEFAULT_ATTRIBUTE_MAX))
    except ValueError as exc:
        raise ValidationError(None, f"attribute[{atype}].value", item.get("value"), str(exc)) from None
    out: dict[str, Any] = {"type": atype, "value": value}
    if len(item) == 2:
        return out
    for key in item:
        if key not in _ATTRIBUTE_KEYS:
            raise ValidationError(None, f"attribute[{atype}].{key}", item, "is not an attribute field")
    for flag in ("displayed", "pinned"):
        if item.get(flag) is not None and _check(None, None, f"attribute[{atype}].{flag}", v.boolean, item[flag]):
            out[flag] = True
    if item.get("source") is not None:
        out["source"] = _check(None, None, f"attribute[{atype}].source", v.text, item["source"])
    if item.get("securityLabel"):
        out["securityLabel"] = [lab.data for lab in _labels_from(item["securityLabel"], f"{where}.securityLabel").values()]
    return out


def _normalize_metadata(registry: TypeRegistry, spec: TypeSpec, raw: Mapping[str, Any], out: dict[str, Any]) -> None:
    items = raw.get("attribute")
    if items:
        attrs: dict[tuple[str, str], dict] = {}
        for i, item in enumerate(_listify(items, "attribute")):
            a = _attribute_data(item, f"attribute[{i}]")
            attrs.setdefault((a["type"], a["value"]), a)
            if len(attrs) > v.ATTRIBUTES_MAX:
                raise too_many("attribute", len(items), v.ATTRIBUTES_MAX, "attributes")
        out["attribute"] = list(attrs.values())
    items = raw.get("tag")
    if items:
        tags: dict[str, None] = {}
        for item in _listify(items, "tag"):
            name = item.get("name") if isinstance(item, Mapping) else item
            try:
                tags[v.tag(name)] = None
            except ValueError as exc:
                raise ValidationError(None, "tag", name, str(exc)) from None
            if len(tags) > v.TAGS_MAX:
                raise too_many("tag", len(items), v.TAGS_MAX, "tags")
        out["tag"] = [{"name": t} for t in tags]
    items = raw.get("securityLabel")
    if items:
        out["securityLabel"] = [lab.data for lab in _labels_from(items, "securityLabel").values()]
    group = spec.kind == "group"
    key, other = ("associatedGroupXid", "associatedGroups") if group else ("associatedGroups", "associatedGroupXid")
    if raw.get(other) is not None:
        raise ValidationError(None, other, raw.get(other), f"is not a {spec.kind} field; use {key}")
    occurrences = raw.get("fileOccurrence")
    if occurrences is not None:
        if not spec.is_file:
            raise ValidationError(None, "fileOccurrence", occurrences, f"file occurrences can only be added to a File, not {spec.name}")
        seen: dict[tuple, dict] = {}
        for item in _listify([occurrences] if isinstance(occurrences, Mapping) else occurrences, "fileOccurrence"):
            if not isinstance(item, Mapping):
                raise ValidationError(None, "fileOccurrence", item, "entries must be objects")
            occ = FileOccurrence(item.get("fileName"), item.get("path"), item.get("date"))
            if not occ.data:
                raise ValidationError(None, "fileOccurrence", item, "needs at least one of fileName, path, date")
            seen.setdefault(occ._key(), occ.data)
            if len(seen) > v.OCCURRENCES_MAX:
                raise too_many("fileOccurrence", len(occurrences), v.OCCURRENCES_MAX, "file occurrences")
        if seen:
            out["fileOccurrence"] = list(seen.values())
    items = raw.get(key)
    if items:
        xids: dict[str, None] = {}
        for item in _listify(items, key):
            ref = item.get("groupXid") if isinstance(item, Mapping) else item
            xids[_check(None, None, key, v.xid, ref)] = None
            if len(xids) > v.ASSOCIATIONS_MAX:
                raise too_many(key, len(items), v.ASSOCIATIONS_MAX, "associations")
        out[key] = list(xids) if group else [{"groupXid": x} for x in xids]
    items = raw.get("associatedIndicators")
    if items:
        refs: dict[tuple[str, str], None] = {}
        for item in _listify(items, "associatedIndicators"):
            if not isinstance(item, Mapping):
                raise ValidationError(None, "associatedIndicators", item, "entries must be {summary, indicatorType}")
            target = registry.get(item.get("indicatorType"))
            if target is None or target.kind != "indicator":
                raise ValidationError(None, "associatedIndicators.indicatorType", item.get("indicatorType"),
                                      "is not an indicator type")
            refs[(target.name, parse_summary(target, item.get("summary")))] = None
            if len(refs) > v.ASSOCIATIONS_MAX:
                raise too_many("associatedIndicators", len(items), v.ASSOCIATIONS_MAX, "associations")
        out["associatedIndicators"] = [{"summary": s, "indicatorType": t} for t, s in refs]


def parse(registry: TypeRegistry, raw: Mapping[str, Any], kind: str | None = None,
          default_xid: Callable[[str, TypeSpec, str], str] | None = None) -> Record:
    """Build a record object from a raw batch dict (interface 3), checking every field."""
    spec, data, content = normalize(registry, raw, kind, default_xid)
    return from_data(spec, data, content)


def from_data(spec: TypeSpec, data: Mapping[str, Any], file_content: Any = None) -> Record:
    """A record object from a canonical batch dict (one that :func:`normalize` returned)."""
    rec: Record
    if spec.kind == "group":
        rec = Group(spec, data["name"], data["xid"])
        rec._file_content = file_content
        for x in data.get("associatedGroupXid", ()):
            rec._group_xids[x] = None
    else:
        rec = Indicator(spec, data["summary"], data["xid"])
        for g in data.get("associatedGroups", ()):
            rec._group_xids[g["groupXid"]] = None
        for o in data.get("fileOccurrence", ()):
            rec._occurrences.append(FileOccurrence(o.get("fileName"), o.get("path"), o.get("date")))
    for field in spec.fields:
        if field.key in data:
            rec._fields[field.key] = data[field.key]
    for a in data.get("attribute", ()):
        rec._attributes.append(Attribute.from_data(a))
    for t in data.get("tag", ()):
        rec._tags[t["name"]] = None
    for lab in data.get("securityLabel", ()):
        rec._labels[lab["name"]] = SecurityLabel(lab["name"], lab.get("description"), lab.get("color"))
    for ref in data.get("associatedIndicators", ()):
        rec._indicator_refs[(ref["indicatorType"], ref["summary"])] = None
    return rec


def merge_data(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two batch dicts of the same record: scalar fields take the newest value; tags,
    security labels, file occurrences and associations are unioned; attributes are kept once
    per (type, value), the newest copy winning. The first xid is kept."""
    out = dict(old)
    for key, value in new.items():
        if key == "xid":
            continue
        if key not in _LIST_KEYS or key not in out:
            out[key] = value
            continue
        keyfn = _LIST_KEYS[key]
        merged: dict[Any, Any] = {keyfn(item): item for item in out[key]}
        for item in value:
            k = keyfn(item)
            if key == "securityLabel" and k in merged:
                merged[k] = {**merged[k], **item}
            else:
                merged[k] = item
        out[key] = list(merged.values())
    return out


def _frozen(item: Any) -> Any:
    return tuple(sorted((k, str(v)) for k, v in item.items())) if isinstance(item, Mapping) else item


_LIST_KEYS: dict[str, Callable[[Any], Any]] = {
    "attribute": lambda a: (a["type"], a["value"]),
    "tag": lambda t: t["name"],
    "securityLabel": lambda s: s["name"],
    "fileOccurrence": _frozen,
    "associatedGroups": lambda g: g["groupXid"],
    "associatedGroupXid": lambda x: x,
    "associatedIndicators": lambda i: (i["indicatorType"], i["summary"]),
}
