"""The common case of :func:`streambatch.model.normalize`, checked with less work.

Feeds are mostly indicators given as a summary, an xid, a few scalar fields (rating,
confidence ...), tags and plain attributes. :func:`indicator` canonicalizes exactly that shape
and returns the same dict, key order included, as the full check. For anything else (another
key, a value of an unusual Python type, a value that fails its check) it returns ``None`` and
the caller runs the full check, which also writes the error message that names the field. So
this module decides nothing on its own: it can only be faster, never different
(``tests/test_fastpath.py`` holds it to that).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import validate as v
from .types import ATTRIBUTE_MAX, DEFAULT_ATTRIBUTE_MAX, TypeSpec

_MAX_SHAPES = 256  # distinct key sets remembered per type; a feed has a handful
_XID_MAX, _NAME_MAX, _TAG_MAX, _text_bad = v.XID_MAX, v.NAME_MAX, v.TAG_MAX, v.text_bad
_TAGS_MAX, _ATTRIBUTES_MAX = v.TAGS_MAX, v.ATTRIBUTES_MAX


class _Plan:
    """What the fast path needs to know about one indicator type, and the raw-dict shapes
    (key sets, in order) it has seen: for each, a :class:`_Shape`."""

    __slots__ = ("spec", "fields", "summary_check", "is_file", "shapes")

    def __init__(self, spec: TypeSpec) -> None:
        self.spec = spec
        # raw key -> (wire key, check) of a scalar field, for every accepted spelling
        self.fields = {key: (field.key, field.check) for key, field in spec.by_key.items()
                       if key not in spec.value_keys}
        self.summary_check: Callable[[Any], str] | None = spec.values[0].check if len(spec.values) == 1 else None
        self.is_file = spec.is_file
        self.shapes: dict[tuple[str, ...], _Shape | None] = {}

    def shape(self, keys: tuple[str, ...]) -> "_Shape | None":
        """What the fast path does with a raw dict of these keys; ``None`` if it is not a
        shape the fast path takes (an unknown key, two spellings of one field, no summary)."""
        steps: list[tuple[str, str, Callable[[Any], Any]]] | None = []
        wire_keys: set[str] = set()
        for key in keys:
            if key in _DIRECT:
                continue
            field = self.fields.get(key)
            if field is None or field[0] in wire_keys:  # unknown, or two spellings of one field
                steps = None
                break
            wire_keys.add(field[0])
            steps.append((key, *field))  # type: ignore[union-attr]
        result = None
        if steps is not None and "summary" in keys:
            result = _Shape(tuple(sorted(steps, key=lambda s: self.spec.order[s[1]])), "xid" in keys,
                            tuple(item for item in _LISTS if item[0] in keys))
        if len(self.shapes) < _MAX_SHAPES:
            self.shapes[keys] = result
        return result


class _Shape:
    """One raw-dict shape: its scalar fields as (raw key, wire key, check) in output order,
    whether it has an xid, and its lists as (key, canonical form) in output order."""

    __slots__ = ("steps", "has_xid", "lists")

    def __init__(self, steps: tuple[tuple[str, str, Callable[[Any], Any]], ...], has_xid: bool,
                 lists: tuple[tuple[str, Callable[[Any], Any]], ...]) -> None:
        self.steps, self.has_xid, self.lists = steps, has_xid, lists


_DIRECT = frozenset({"type", "summary", "xid", "tag", "attribute"})
_UNSEEN = object()


def indicator(spec: TypeSpec, raw: Mapping[str, Any],
              default_xid: Callable[[str, TypeSpec, str], str] | None) -> dict[str, Any] | None:
    """The canonical batch dict of a raw indicator dict of the common shape, or ``None``."""
    plan = spec.memo.get("fastpath")
    if plan is None:
        plan = spec.memo["fastpath"] = _Plan(spec)
    keys = tuple(raw)
    shape = plan.shapes.get(keys, _UNSEEN)
    if shape is _UNSEEN:
        shape = plan.shape(keys)
    if shape is None:
        return None
    try:
        summary = raw["summary"]
        if type(summary) is not str:
            return None
        check = plan.summary_check
        if check is not None:
            ident = check(summary)  # every value check starts with the text check, which strips
        else:
            summary = summary.strip()
            if plan.is_file and ":" not in summary and len(summary) in (32, 40, 64):
                ident = v.hash_value(summary)
            else:
                return None
        xid = raw["xid"] if shape.has_xid else None
        if xid is None:
            if default_xid is None:
                return None
            xid = default_xid("indicator", spec, ident)
        elif type(xid) is str:
            xid = xid.strip()
            if not 0 < len(xid) <= _XID_MAX or not xid.isprintable():
                return None
        else:
            return None
        out: dict[str, Any] = {"type": spec.name, "summary": ident, "xid": xid}
        for key, wire, check in shape.steps:
            value = raw[key]
            if value is not None:
                out[wire] = check(value)
    except Exception:  # whatever it is, the full check reports it (naming the field) or accepts it
        return None
    for key, canonical in shape.lists:  # in the full check's order: attributes, then tags
        items = raw[key]
        if items:
            items = canonical(items)
            if items is None:
                return None
            out[key] = items
    return out


def _attributes(items: Any) -> list[dict[str, str]] | None:
    """Plain ``{type, value}`` attributes of string values, de-duplicated (first wins), at
    most :data:`~streambatch.validate.ATTRIBUTES_MAX` of them."""
    if type(items) is not list:
        return None
    out: list[dict[str, str]] = []
    seen: set[tuple[str, str]] | None = None
    for item in items:
        if type(item) is not dict or len(item) != 2:
            return None
        atype, value = item.get("type"), item.get("value")
        if type(atype) is not str or type(value) is not str:
            return None
        atype, value = atype.strip(), value.strip()
        if (not 0 < len(atype) <= _NAME_MAX or not atype.isprintable()
                or not 0 < len(value) <= ATTRIBUTE_MAX.get(atype, DEFAULT_ATTRIBUTE_MAX)
                or (not value.isprintable() and _text_bad(value))):
            return None
        if out:
            if seen is None:
                seen = {(a["type"], a["value"]) for a in out}
            if (atype, value) in seen:
                continue
            seen.add((atype, value))
        out.append({"type": atype, "value": value})
        if len(out) > _ATTRIBUTES_MAX:
            return None  # the full check says so, naming the limit
    return out


def _tags(items: Any) -> list[dict[str, str]] | None:
    """Tags given as names or ``{name}`` objects, de-duplicated (first wins), at most
    :data:`~streambatch.validate.TAGS_MAX` of them."""
    if type(items) is not list:
        return None
    if len(items) == 1:  # the common case: nothing to de-duplicate
        name = _tag_name(items[0])
        return None if name is None else [{"name": name}]
    names: dict[str, None] = {}
    for item in items:
        name = _tag_name(item)
        if name is None:
            return None
        names[name] = None
        if len(names) > _TAGS_MAX:
            return None
    return [{"name": name} for name in names]


def _tag_name(item: Any) -> str | None:
    """One tag's canonical name, given as a name or a ``{name}`` object; ``None`` if the fast
    path cannot vouch for it."""
    if type(item) is dict:
        if len(item) != 1:
            return None
        item = item.get("name")
    if type(item) is not str:
        return None
    name = item.strip()
    if not 0 < len(name) <= _TAG_MAX or not name.isprintable():
        return None
    return name


_LISTS = (("attribute", _attributes), ("tag", _tags))
