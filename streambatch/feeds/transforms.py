"""Field references of a mapping, compiled once: where a value comes from (a column or key, a
constant, a template) and the transforms applied to it (a regex or split extraction, then a
value map).

A reference written as a table takes these keys (:data:`REF_KEYS`); exactly one of the first
four says where the value comes from::

    column = "ioc_value"          # or key = "ioc_value": a CSV/TSV column or a JSON key
    const = "URL"                 # the same value for every row
    template = "Threat type: {threat_type}"   # text with {column} / {key} fields
    regex = '^([\\d.]+):\\d+$'     # take group 1 (or the group named 'value'; no group: the match)
    split = ":"                   # ... or split on a separator and take piece `index`
    index = 0                     # 0-based, negative from the end (default 0)
    map = { md5_hash = "File" }   # then replace the value by its entry
    unmatched = "empty"           # no match / no piece / no entry: "empty", "keep" or "reject"

Steps run in that order: read, ``regex`` or ``split``, ``map``. A value that is empty (an empty
cell, a missing key, JSON null) stays empty and no transform runs. A template whose fields are
all non-empty gives the text; one empty field makes the whole template empty (so a tag or an
attribute built from it is left out). When ``regex`` does not match, the value has no
``split`` separator (or not that many pieces), or ``map`` has no entry for it, ``unmatched``
decides: ``"empty"`` (the default: no value), ``"keep"`` (the value as it was before that step)
or ``"reject"`` (the row is rejected, the reason naming the mapping key and the value). A JSON
list (tags) is transformed item by item; empty results are dropped.

Everything is checked by :meth:`Ref.compile` (a bad regex, a template that does not parse, an
unknown key, ...), which raises :class:`~streambatch.errors.StreambatchError` naming the
mapping key, so a config with such a reference fails when it is loaded.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import StreambatchError

MISSING: Any = object()
#: The keys of a reference table.
REF_KEYS = ("column", "key", "const", "template", "regex", "split", "index", "map", "unmatched")
_SOURCES = ("column", "key", "const", "template")
UNMATCHED = ("empty", "keep", "reject")


class RowError(ValueError):
    """A row that cannot become a record; the message is the reason."""


def blank(value: Any) -> bool:
    return value is MISSING or value is None or (isinstance(value, str) and not value.strip())


def as_text(value: Any) -> str:
    """A JSON scalar as the text a transform or template sees (``75``, ``1.5``, ``true``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def is_ref_table(value: Any) -> bool:
    """A table that is a field reference (it says where its value comes from)."""
    return isinstance(value, Mapping) and any(k in value for k in _SOURCES)


class Ref:
    """One compiled field reference; ``where`` (``"mapping.tags[1]"``) names it in errors."""

    __slots__ = ("where", "name", "const", "template", "parts", "regex", "group", "split", "index", "map", "unmatched")

    def __init__(self, where: str) -> None:
        self.where = where
        self.name: str | None = None
        self.const: Any = MISSING
        self.template: str | None = None
        self.parts: list[tuple[str, str | None]] | None = None
        self.regex: re.Pattern[str] | None = None
        self.group: int | str = 0
        self.split: str | None = None
        self.index = 0
        self.map: dict[str, Any] | None = None
        self.unmatched = "empty"

    @classmethod
    def compile(cls, raw: Any, where: str) -> "Ref":
        ref = cls(where)
        if isinstance(raw, str):
            ref.name = raw
            return ref
        if not isinstance(raw, Mapping):
            raise StreambatchError(f"{where}: {raw!r} is not a field reference (a name, {{column = ...}}, "
                                   "{const = ...} or {template = ...})")
        unknown = [k for k in raw if k not in REF_KEYS]
        if unknown:
            from .config import did_you_mean

            raise StreambatchError(f"{where}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], REF_KEYS)}")
        sources = [k for k in _SOURCES if k in raw]
        if len(sources) != 1:
            raise StreambatchError(f"{where}: give one of column, key, const or template, "
                                   + ("not several" if sources else "to say where the value comes from"))
        source = sources[0]
        if source == "const":
            ref.const = raw["const"]
        elif source == "template":
            ref.parts = _template(raw["template"], where)
            ref.template = raw["template"]
        else:
            if not isinstance(raw[source], str) or not raw[source]:
                raise StreambatchError(f"{where}: {source} must be a column or key name (a non-empty string)")
            ref.name = raw[source]
        ref._transforms(raw)
        return ref

    def _transforms(self, raw: Mapping[str, Any]) -> None:
        where = self.where
        if "regex" in raw and "split" in raw:
            raise StreambatchError(f"{where}: give regex or split, not both")
        if "regex" in raw:
            pattern = raw["regex"]
            if not isinstance(pattern, str) or not pattern:
                raise StreambatchError(f"{where}: regex must be a regular expression (a non-empty string)")
            try:
                self.regex = re.compile(pattern)
            except re.error as exc:
                raise StreambatchError(f"{where}: regex {pattern!r} is not a valid regular expression: {exc}") from None
            if "value" in self.regex.groupindex:
                self.group = "value"
            elif self.regex.groups == 1:
                self.group = 1
            elif self.regex.groups > 1:
                raise StreambatchError(f"{where}: regex {pattern!r} has {self.regex.groups} groups: give it one, or "
                                       "name the one to take (?P<value>...)")
        if "index" in raw and "split" not in raw:
            raise StreambatchError(f"{where}: index applies only with split")
        if "split" in raw:
            if not isinstance(raw["split"], str) or not raw["split"]:
                raise StreambatchError(f"{where}: split must be a separator (a non-empty string)")
            self.split = raw["split"]
            index = raw.get("index", 0)
            if isinstance(index, bool) or not isinstance(index, int):
                raise StreambatchError(f"{where}: index must be an integer (0 is the first piece, -1 the last)")
            self.index = index
        if "map" in raw:
            table = raw["map"]
            if not isinstance(table, Mapping) or not table:
                raise StreambatchError(f"{where}: map must be a table of value = \"replacement\"")
            for key, value in table.items():
                if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    raise StreambatchError(f"{where}: map: the value of {key!r} must be a string or a number, "
                                           f"not {value!r}")
            self.map = {str(k).strip(): v for k, v in table.items()}
        if "unmatched" in raw:
            if raw["unmatched"] not in UNMATCHED:
                raise StreambatchError(f"{where}: unmatched must be 'empty', 'keep' or 'reject', not "
                                       f"{raw['unmatched']!r}")
            if self.regex is None and self.split is None and self.map is None:
                raise StreambatchError(f"{where}: unmatched applies only with regex, split or map")
            self.unmatched = raw["unmatched"]

    @property
    def columns(self) -> list[str]:
        """The columns/keys this reference reads."""
        if self.name is not None:
            return [self.name]
        return [f for _, f in self.parts or () if f is not None]

    @property
    def steps(self) -> str:
        """The transforms, as ``"regex"``, ``"split and map"``; ``""`` for none."""
        return " and ".join(k for k, on in (("regex", self.regex), ("split", self.split), ("map", self.map))
                            if on is not None)

    @property
    def is_const(self) -> bool:
        return self.const is not MISSING

    def read(self, get: Callable[[str], Any]) -> Any:
        """The value for the row ``get`` reads; :data:`MISSING` for no value. Raises RowError
        (``unmatched = "reject"``)."""
        if self.name is not None:
            value = get(self.name)
        elif self.parts is not None:
            value = self._fill(get)
        else:
            value = self.const
        if blank(value) or (self.regex is None and self.split is None and self.map is None):
            return value
        if isinstance(value, list):
            done = (self._transform(item) for item in value if not blank(item))
            return [item for item in done if not blank(item)]
        return self._transform(value)

    def _fill(self, get: Callable[[str], Any]) -> Any:
        out = []
        for literal, field in self.parts or ():
            out.append(literal)
            if field is not None:
                value = get(field)
                if blank(value):
                    return MISSING
                out.append(as_text(value).strip())
        return "".join(out)

    def _transform(self, value: Any) -> Any:
        text = as_text(value).strip()
        if self.regex is not None:
            match = self.regex.search(text)
            found = match.group(self.group) if match else None
            if found is None:
                return self._miss(text, f"{text[:200]!r} does not match regex {self.regex.pattern!r}")
            text = found
        elif self.split is not None:
            pieces = text.split(self.split)
            if len(pieces) == 1:
                return self._miss(text, f"{text[:200]!r} has no separator {self.split!r}")
            try:
                text = pieces[self.index].strip()
            except IndexError:
                return self._miss(text, f"{text[:200]!r} has no piece {self.index} when split on {self.split!r}")
        if self.map is not None:
            if text not in self.map:
                return self._miss(text, f"{text[:200]!r} is not in the map of {self.where}")
            return self.map[text]
        return text

    def _miss(self, text: str, reason: str) -> Any:
        if self.unmatched == "keep":
            return text
        if self.unmatched == "reject":
            label = self.where.removeprefix("mapping.")
            raise RowError(f"{label}: {reason} (unmatched = \"reject\")")
        return MISSING


def _template(text: Any, where: str) -> list[tuple[str, str | None]]:
    """``"a {x} b"`` -> ``[("a ", "x"), (" b", None)]``; ``{{`` and ``}}`` are braces."""
    if not isinstance(text, str) or not text:
        raise StreambatchError(f"{where}: template must be a non-empty string")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise StreambatchError(f"{where}: template {text!r} is not valid: {exc}") from None
    parts: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in parsed:
        if field is not None:
            if not field.strip():
                raise StreambatchError(f"{where}: template {text!r} has an empty {{}}: name a column or key")
            if spec or conversion:
                shown = (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
                raise StreambatchError(f"{where}: template {text!r}: format specs and conversions ({shown}) are "
                                       "not supported")
            field = field.strip()
        parts.append((literal, field))
    if not any(f for _, f in parts):
        raise StreambatchError(f"{where}: template {text!r} names no column or key (use const for fixed text)")
    return parts
