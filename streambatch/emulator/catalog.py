"""The indicator type catalogue served by E8 and used to read indicator values.

Built-in types come from the very file the library ships (``streambatch/data/indicator_types.json``),
so client and emulator can never disagree about names or value fields; tests and users may add
custom types on top.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from typing import Any, Iterable

from .rules import Invalid


def load_builtin_types() -> list[dict[str, Any]]:
    """Read the indicator types the library ships."""
    text = resources.files("streambatch").joinpath("data/indicator_types.json").read_text("utf-8")
    return json.loads(text)["data"]["indicatorType"]


def _custom_entry(spec: str | dict[str, Any]) -> dict[str, Any]:
    """Complete a custom type given as a name or as a partial E8 entry."""
    entry = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = entry["name"]
    words = name.replace("-", " ").split()
    entity = words[0].lower() + "".join(w[:1].upper() + w[1:] for w in words[1:])
    entry.setdefault("custom", "true")
    entry.setdefault("parsable", "false")
    entry.setdefault("apiEntity", entity)
    entry.setdefault("apiBranch", entity + "s")
    entry.setdefault("casePreference", "sensitive")
    entry.setdefault("value1Label", name)
    entry.setdefault("value1Type", "text")
    labels = [entry[f"value{i}Label"] for i in (1, 2, 3) if entry.get(f"value{i}Label")]
    entry.setdefault("keys", labels)
    return entry


class IndicatorCatalog:
    """Indicator types by name (case-insensitive), with their value fields."""

    def __init__(self, custom: Iterable[str | dict[str, Any]] = ()) -> None:
        added = [_custom_entry(c) for c in custom]
        self._entries = load_builtin_types() + added
        self._by_lower = {e["name"].lower(): e for e in self._entries}
        # the value patterns of the types this instance adds (E8 ``regexes``, one per value)
        self._patterns = {e["name"]: [re.compile(r) for r in e.get("regexes", ())] for e in added}

    def check_pattern(self, name: str, summary: str) -> None:
        """Refuse (0x1005) a value of an added custom type that does not match its pattern."""
        for pattern, value in zip(self._patterns.get(name, ()), summary.split(" : ")):
            if pattern.fullmatch(value.strip()) is None:
                raise Invalid("0x1005", f"{name} '{summary}': {value.strip()!r} does not match the type's "
                                        f"pattern {pattern.pattern}")

    def canonical(self, name: Any) -> str | None:
        """The canonical type name for ``name`` (``"Url"`` -> ``"URL"``), or None."""
        entry = self._by_lower.get(name.lower()) if isinstance(name, str) else None
        return entry["name"] if entry else None

    def keys(self, name: str) -> list[str]:
        """The type-specific value field names (``ip``, ``AS Number``, ``md5``...)."""
        return list(self._by_lower[name.lower()].get("keys", []))

    def listing(self, include_additional: bool) -> list[dict[str, Any]]:
        """E8 entries; ``keys`` and ``regexes`` only with includeAdditional (spec E8)."""
        out = copy.deepcopy(self._entries)
        if not include_additional:
            for entry in out:
                entry.pop("keys", None)
                entry.pop("regexes", None)
        return out

    def entry(self, name: str, include_additional: bool) -> dict[str, Any] | None:
        """One E8 entry by name (case-insensitive), or None."""
        for entry in self.listing(include_additional):
            if entry["name"].lower() == name.lower():
                return entry
        return None
