"""Feed configuration files (TOML).

The smallest config names a source, its format and the owner; everything else has a default::

    source = "iocs.txt"          # a path relative to this file, or an http(s) URL
    format = "text"              # text, csv, tsv, jsonl, json, stix
    owner = "Demo Organization"

Optional keys:

``schedule``
    when ``streambatch worker`` runs the feed: an interval after the last run started
    (``"30s"``, ``"15m"``, ``"1h"``, ``"1d"``; default ``"1h"``), or a cron expression
    (``"0 */6 * * *"``, UTC, the next match after the last run started). A feed that has never
    run is due at once either way.
``state_dir``
    where the feed keeps its state and job files (default: ``<config name>.streambatch/``
    next to the config file).
``removed``
    what happens to records that disappeared from the feed: ``"keep"`` (default: left alone in
    ThreatConnect), ``"inactive"`` (indicators are sent again with ``active = false``) or
    ``"delete"`` (deleted with a Delete job once missing for ``grace``).
``grace``
    how long a record must be missing before ``removed = "delete"`` deletes it (default ``"1d"``).
``history_jsonl``
    a file to append one JSON line per cycle to, for log shippers.
``[options]``
    passed to the reader: ``rating``, ``confidence``, ``tags``, ``attributes``, ``type``,
    ``delimiter``, ``encoding``, ``path`` ... (see :mod:`streambatch.feeds.readers`).
``[mapping]``
    column/key mapping for csv, tsv, jsonl and json (see :mod:`streambatch.feeds.mapping`).
``[batch]``
    job settings and limits: ``max_records``, ``max_bytes``, ``attribute_write_type``,
    ``tag_write_type``, ``security_label_write_type``, ``halt_on_error`` ...
``retention``
    how many finished job files to keep (default 3).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StreambatchError

FORMATS = ("text", "csv", "tsv", "jsonl", "json", "stix")
REMOVED = ("keep", "inactive", "delete")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ConfigError(StreambatchError):
    """A feed config file that cannot be used, with the file and the key named."""


def parse_interval(text: str, where: str = "schedule") -> float:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"1d"``, ``"1h30m"`` -> seconds."""
    raw = str(text).strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhdw])", raw)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smhdw])", "", raw).strip():
        raise ConfigError(f"{where}: {text!r} is not an interval like '30s', '15m', '1h' or '1d'")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"{where}: the interval must be positive")
    return seconds


def _schedule(value: object, path: Path) -> tuple[float, str | None]:
    """An interval (seconds, None) or a cron expression (0, expression)."""
    text = str(value).strip()
    if len(text.split()) == 5:
        from croniter import croniter

        if not croniter.is_valid(text):
            raise ConfigError(f"{path}: schedule {text!r} is not a valid cron expression")
        return 0.0, text
    return parse_interval(text, f"{path}: schedule"), None


@dataclass
class FeedConfig:
    path: Path
    source: str
    format: str
    owner: str
    schedule: float = 3600.0
    cron: str | None = None
    state_dir: Path = field(default_factory=Path)
    removed: str = "keep"
    grace: float = 86400.0
    history_jsonl: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    mapping: dict[str, Any] | None = None
    batch: dict[str, Any] = field(default_factory=dict)
    retention: int = 3

    @property
    def name(self) -> str:
        return self.path.stem

    def next_due(self, last_started: float | None, now: float) -> float:
        """When the next cycle is due (epoch seconds)."""
        if last_started is None:
            return now
        if self.cron:
            from croniter import croniter

            return float(croniter(self.cron, last_started).get_next(float))
        return last_started + self.schedule

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @classmethod
    def load(cls, path: str | Path) -> "FeedConfig":
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such feed config") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
        known = {"source", "format", "owner", "schedule", "state_dir", "removed", "grace", "history_jsonl",
                 "options", "mapping", "batch", "retention"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{p}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        for key in ("source", "format", "owner"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise ConfigError(f"{p}: {key!r} is required (a string)")
        fmt = raw["format"].strip().lower()
        if fmt not in FORMATS:
            raise ConfigError(f"{p}: format {raw['format']!r} is not one of {', '.join(FORMATS)}")
        removed = str(raw.get("removed", "keep")).lower()
        if removed not in REMOVED:
            raise ConfigError(f"{p}: removed {raw.get('removed')!r} is not one of {', '.join(REMOVED)}")
        state_dir = Path(raw["state_dir"]) if raw.get("state_dir") else Path(p.stem + ".streambatch")
        if not state_dir.is_absolute():
            state_dir = p.parent / state_dir
        history = raw.get("history_jsonl")
        schedule, cron = _schedule(raw.get("schedule", "1h"), p)
        for table in ("options", "mapping", "batch"):
            if raw.get(table) is not None and not isinstance(raw[table], dict):
                raise ConfigError(f"{p}: [{table}] must be a table")
        return cls(
            path=p, source=raw["source"].strip(), format=fmt, owner=raw["owner"].strip(),
            schedule=schedule, cron=cron,
            state_dir=state_dir, removed=removed, grace=parse_interval(raw.get("grace", "1d"), f"{p}: grace"),
            history_jsonl=(p.parent / history) if history else None,
            options=dict(raw.get("options") or {}), mapping=raw.get("mapping"), batch=dict(raw.get("batch") or {}),
            retention=int(raw.get("retention", 3)),
        )
