"""The parts of streambatch.model that building a record goes through, as they were before
their common cases were made cheaper (commit 1e40831): the oracles of
tests/test_build_equivalence.py. :func:`previous` puts them back in place for the duration of
a ``with`` block. Kept as they were, on purpose."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import contextmanager
from typing import Any

from streambatch import model
from streambatch import validate as v
from streambatch.errors import ValidationError
from streambatch.model import Attribute, Record, SecurityLabel, _check, check_xid
from streambatch.types import ATTRIBUTE_MAX, DEFAULT_ATTRIBUTE_MAX, TypeSpec


def attribute_init(self, type: str, value: Any, displayed: bool = False, source: str | None = None,
                   pinned: bool = False, max_length: int | None = None) -> None:
    try:
        self.type = v.text(type, v.NAME_MAX)
    except ValueError as exc:
        raise ValidationError(None, "attribute.type", type, str(exc)) from None
    self._max = max_length or ATTRIBUTE_MAX.get(self.type, DEFAULT_ATTRIBUTE_MAX)
    self._labels: dict[str, SecurityLabel] = {}
    self.value = value
    if displayed is False and pinned is False and source is None:  # the usual case, nothing to check
        self._displayed = self._pinned = False
        self._source = None
    else:
        self.displayed = displayed
        self.pinned = pinned
        self.source = source


def security_label_init(self, name: str, description: str | None = None, color: str | None = None) -> None:
    self.name = _check(None, None, "securityLabel.name", v.name, name)
    self._color: str | None = None
    self._description: str | None = None
    self.color = color
    self.description = description


def summary_of(spec: TypeSpec, values: Mapping[str, Any], xid: str | None = None) -> str:
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


def record_init(self, spec: TypeSpec, identity: Any, xid: str) -> None:
    self.spec = spec
    self.xid: str = check_xid(spec, xid)
    self._fields: dict[str, Any] = {}
    self._attributes: list[Attribute] = []
    self._tags: dict[str, None] = {}
    self._labels: dict[str, SecurityLabel] = {}
    self._group_xids: dict[str, None] = {}
    self._indicator_refs: dict[tuple[str, str], None] = {}
    self._set_identity(identity)


def set_many(self, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if value is not None:
            self.add_key_value(key, value)


def tag(self, name: str, formatter: Callable[[Any], Any] | None = None) -> str:
    if formatter is not None:
        name = formatter(name)
    out = _check(self.spec.name, self.xid, "tag", v.tag, name)
    if out not in self._tags and len(self._tags) >= v.TAGS_MAX:
        raise self._too_many("tag", len(self._tags) + 1, v.TAGS_MAX, "tags")
    self._tags[out] = None
    return out


def data(self) -> dict[str, Any]:
    out: dict[str, Any] = {"type": self.spec.name}
    out[self._identity_key] = self._fields[self._identity_key]
    out["xid"] = self.xid
    fields = self._fields
    if len(fields) > 1:
        order = self.spec.order
        for key in sorted((k for k in fields if k in order), key=order.__getitem__):
            out[key] = fields[key]
    if self._attributes:
        out["attribute"] = [a.data for a in self._attributes]
    if self._tags:
        out["tag"] = [{"name": t} for t in self._tags]
    if self._labels:
        out["securityLabel"] = [label.data for label in self._labels.values()]
    self._extra_data(out)
    return out


_PREVIOUS = [(Attribute, "__init__", attribute_init), (SecurityLabel, "__init__", security_label_init),
             (model, "summary_of", summary_of), (Record, "__init__", record_init), (Record, "_set_many", set_many),
             (Record, "tag", tag), (Record, "data", property(data))]


@contextmanager
def previous():
    """streambatch.model with the previous implementations in place."""
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in _PREVIOUS]
    try:
        for owner, name, old in _PREVIOUS:
            setattr(owner, name, old)
        yield
    finally:
        for owner, name, new in saved:
            setattr(owner, name, new)
