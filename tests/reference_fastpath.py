"""The fast path of normalize as it was before it was reshaped (commit 1e40831), kept as the
oracle of tests/test_build_equivalence.py; its per-type plan is kept under its own memo key.
Kept as it was, on purpose.

The common case of :func:`streambatch.model.normalize`, checked with less work.

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

from streambatch import validate as v
from streambatch.types import ATTRIBUTE_MAX, DEFAULT_ATTRIBUTE_MAX, TypeSpec

_MAX_SHAPES = 256  # distinct key sets remembered per type; a feed has a handful
_XID_MAX, _NAME_MAX, _TAG_MAX, _text_bad = v.XID_MAX, v.NAME_MAX, v.TAG_MAX, v.text_bad
_TAGS_MAX, _ATTRIBUTES_MAX = v.TAGS_MAX, v.ATTRIBUTES_MAX


class _Plan:
    """What the fast path needs to know about one indicator type, and the raw-dict shapes
    (key sets, in order) it has seen: for each, the scalar fields to check in output order."""

    __slots__ = ("spec", "fields", "summary_check", "is_file", "shapes")

    def __init__(self, spec: TypeSpec) -> None:
        self.spec = spec
        # raw key -> (wire key, check) of a scalar field, for every accepted spelling
        self.fields = {key: (field.key, field.check) for key, field in spec.by_key.items()
                       if key not in spec.value_keys}
        self.summary_check: Callable[[Any], str] | None = spec.values[0].check if len(spec.values) == 1 else None
        self.is_file = spec.is_file
        self.shapes: dict[tuple[str, ...], tuple[tuple[str, str, Callable[[Any], Any]], ...] | None] = {}

    def steps(self, shape: tuple[str, ...]) -> tuple[tuple[str, str, Callable[[Any], Any]], ...] | None:
        """The scalar fields of a raw dict with these keys, as (raw key, wire key, check) in
        output order; ``None`` if the shape is not one the fast path takes."""
        try:
            return self.shapes[shape]
        except KeyError:
            pass
        steps: list[tuple[str, str, Callable[[Any], Any]]] | None = []
        wire_keys: set[str] = set()
        for key in shape:
            if key in _DIRECT:
                continue
            field = self.fields.get(key)
            if field is None or field[0] in wire_keys:  # unknown, or two spellings of one field
                steps = None
                break
            wire_keys.add(field[0])
            steps.append((key, *field))  # type: ignore[union-attr]
        result = None if steps is None else tuple(sorted(steps, key=lambda s: self.spec.order[s[1]]))
        if len(self.shapes) < _MAX_SHAPES:
            self.shapes[shape] = result
        return result


_DIRECT = frozenset({"type", "summary", "xid", "tag", "attribute"})


def _plan(spec: TypeSpec) -> _Plan:
    plan = spec.memo.get("fastpath-reference")
    if plan is None:
        plan = spec.memo["fastpath-reference"] = _Plan(spec)
    return plan


def indicator(spec: TypeSpec, raw: Mapping[str, Any],
              default_xid: Callable[[str, TypeSpec, str], str] | None) -> dict[str, Any] | None:
    """The canonical batch dict of a raw indicator dict of the common shape, or ``None``."""
    plan = _plan(spec)
    steps = plan.steps(tuple(raw))
    if steps is None:
        return None
    try:
        summary = raw.get("summary")
        if type(summary) is not str:
            return None
        summary = summary.strip()
        check = plan.summary_check
        if check is not None:
            ident = check(summary)
        elif plan.is_file and ":" not in summary and len(summary) in (32, 40, 64):
            ident = v.hash_value(summary)
        else:
            return None
        xid = raw.get("xid")
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
        for key, wire, check in steps:
            value = raw[key]
            if value is not None:
                out[wire] = check(value)
    except Exception:  # whatever it is, the full check reports it (naming the field) or accepts it
        return None
    for key, canonical in _LISTS:  # in the full check's order: attributes, then tags
        items = raw.get(key)
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
    names: dict[str, None] = {}
    for item in items:
        if type(item) is dict:
            if len(item) != 1:
                return None
            item = item.get("name")
        if type(item) is not str:
            return None
        name = item.strip()
        if not 0 < len(name) <= _TAG_MAX or not name.isprintable():
            return None
        names[name] = None
        if len(names) > _TAGS_MAX:
            return None
    return [{"name": name} for name in names]


_LISTS = (("attribute", _attributes), ("tag", _tags))
