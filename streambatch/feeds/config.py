"""Feed configuration files (TOML).

The smallest config names a source, its format and the owner; everything else has a default::

    source = "iocs.txt"          # a path relative to this file, or an http(s) URL
    format = "text"              # text, csv, tsv, jsonl, json, stix
    owner = "Demo Organization"

``source`` may hold ``${NAME}`` (the environment variable NAME) and ``${file:PATH}`` (the
contents of a file, relative to the config, without surrounding whitespace), so credentials
need not be in the TOML: ``source = "https://feeds.example.com/x.csv?apikey=${FEED_KEY}"``.
``source_env = "NAME"`` takes the whole source from an environment variable instead. Header
values in ``[options] headers`` take the same references, and ``[options] headers_env =
{Authorization = "NAME"}`` takes header values from environment variables. Every credential of
a source (user info, query values, header values) is redacted wherever it could be shown or
stored (:mod:`streambatch.feeds.redact`).

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
``absent_cycles``
    an integer, at least 1 (default 2): a record is retired (made inactive or deleted, per
    ``removed``) only once it has been absent from this many *consecutive complete* reads of
    the feed (and, for ``delete``, missing for ``grace``). A read that ended early
    (:class:`~streambatch.errors.IncompleteReadError`), failed, or found the source unchanged
    (HTTP 304) does not count.
``max_removed``
    the most of the feed's known records one cycle may retire: a share ``"10%"`` (the
    default; ``"0%"`` to ``"100%"``, decimals allowed: ``"2.5%"``), a count (an integer such
    as ``500``), or ``"none"`` / ``false`` for no limit. A share of ``known`` records allows
    ``floor(known * share)``, but at least 1 when the share is above 0 (``"0%"`` allows none);
    see :meth:`FeedConfig.removal_limit`. A cycle that would retire more retires nothing and
    says so (a feed that suddenly lost most of its records is more likely broken than
    cleaned); a run may allow it explicitly.
``expires``
    an interval (``"30d"``): every indicator sent gets ``externalDateExpires`` = the time of the
    cycle that sends it + this, unless the record has an expiry of its own (STIX
    ``valid_until``, a mapped ``expires`` column), which wins. See :mod:`streambatch.feeds.lifecycle`.
``keep_alive``
    an interval (``"7d"``): records still in the feed and unchanged are sent again once per
    interval, spread over the cycles (default with ``expires``: half of it; it must be shorter).
``history_jsonl``
    a file to append one JSON line per cycle to, for log shippers.
``[options]``
    passed to the reader (see :mod:`streambatch.feeds.readers`): ``rating`` (0-5),
    ``confidence`` (0-100), ``tags`` (a string or a list of strings), ``attributes`` (a list of
    ``{type, value}`` tables) for every format; ``type`` (an indicator type) for text, csv, tsv,
    and jsonl/json with a mapping; ``encoding``
    (ASCII-compatible) and ``max_line_bytes`` for text, csv, tsv and jsonl; ``delimiter`` (one
    character), ``quoting`` (``"minimal"`` / ``"none"``), ``header`` (a list of column names),
    ``multiline`` (true/false) for csv and tsv; ``comment`` (a marker or a list of them) for
    text, csv and tsv; ``path`` and ``select`` (a JMESPath expression) for json;
    ``association_type`` for stix; ``member`` (zip), ``timeout`` (seconds, or ``[connect,
    read]``) and ``headers`` (a table of strings, URL sources) for all. :data:`OPTIONS` is the
    table of them; ``owner`` is not an option (it is the top-level ``owner``).
``[mapping]``
    column/key mapping for csv, tsv (required), jsonl and json (see
    :mod:`streambatch.feeds.mapping`); text and stix feeds have none.
``[batch]``
    job settings and limits (:data:`BATCH_KEYS`): ``max_records``, ``max_bytes``,
    ``max_in_flight``, ``file_concurrency``, ``buffer_size`` (positive integers),
    ``poll_interval``, ``poll_timeout`` (positive seconds), ``halt_on_error``,
    ``playbook_triggers_enabled`` (true/false), ``attribute_write_type``, ``tag_write_type``,
    ``security_label_write_type``, ``file_merge_mode``, ``hash_collision_mode`` (one of the values
    :class:`streambatch.batch.JobSettings` accepts), ``writer`` (``auto``, ``inline``,
    ``process``: :class:`streambatch.batch.Batch`'s option).
``retention``
    how many finished job files to keep (an integer, 0 or more; default 3).
``[taxii]``
    a TAXII 2.1 collection as the source (:mod:`streambatch.feeds.taxii`), read as ``format =
    "stix"`` (the default for it; no other format is accepted). Name the server with ``source =
    "taxii2+https://host/taxii2/"`` (or ``source_env``) or with ``url`` here, not both. Keys:
    ``url`` (a discovery, API root or collection URL; HTTPS, plain ``http://`` only for a
    loopback host; no query), ``api_root`` (absolute or relative to the URL; default: the
    server's default API root, or its only one), ``collection`` (its id or title; default: the
    API root's only readable collection), ``user`` and ``password`` (basic authentication,
    both or neither; ``${NAME}`` and ``${file:PATH}`` are expanded; user info in the URL, or an
    ``Authorization`` header from ``[options] headers`` / ``headers_env``, work too, and every
    one of them is redacted), ``page_size`` (a positive integer; default: the server's page
    size), ``full_refresh`` (an interval such as ``"1d"``; default: never). Unknown keys are
    errors. Reads are incremental: the first read, and one every ``full_refresh``, reads the
    whole collection; every other read asks only for the objects added after the cursor (the
    server's ``X-TAXII-Date-Added-Last`` header of the last page of the last read), and the
    cursor of a read is committed only once the cycle's job was confirmed with no record failed,
    so a failed, interrupted or refused cycle reads the same objects again. An incremental read
    does not have the whole feed: records missing from it are neither counted as ``removed`` nor
    retired; only full reads do that (``absent_cycles`` counts full reads). ``options.member``
    does not apply.
``[misp]``
    a MISP feed (``manifest.json`` and one JSON file per event) as the source
    (:mod:`streambatch.feeds.misp`), read as ``format = "misp"`` (the default for it). Name the
    feed folder with ``source = "misp+https://host/feed/"`` (or a local folder, ``misp+path``)
    or with ``url`` here, not both. Keys: ``to_ids_only`` (default true), ``published_only``
    (default false), ``include_tags``, ``exclude_tags``, ``categories`` (lists), ``max_age`` (an
    interval), ``group_type`` (``"Event"``, ``"Incident"`` or ``"none"``, the default),
    ``category_tags`` (default true), ``port_attribute`` (an attribute type name). Only events
    whose manifest timestamp changed since the last confirmed read are downloaded; the others
    are read from a local copy in the state folder, so every read is whole. ``options.member``
    and ``[mapping]`` do not apply.

The whole file is checked when it is loaded (:meth:`FeedConfig.load`): an unknown key
anywhere (``options.confidnce``: the nearest valid spelling is suggested), an option that does
not apply to the format, a value the reader, the mapping or the batch would refuse, a mapping
the reader could not use -- each is a :class:`ConfigError` naming the file and the key, so a
bad config fails at once instead of rejecting every row at run time.
"""

from __future__ import annotations

import codecs
import difflib
import math
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from .. import validate as v
from . import redact
from ..errors import StreambatchError, ValidationError

FORMATS = ("text", "csv", "tsv", "jsonl", "json", "stix", "misp")
REMOVED = ("keep", "inactive", "delete")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
TOP_KEYS = frozenset({"source", "source_env", "format", "owner", "schedule", "state_dir", "removed", "grace",
                      "history_jsonl", "options", "mapping", "batch", "retention", "max_removed", "absent_cycles",
                      "taxii", "misp", "expires", "keep_alive"})
_REFERENCE = re.compile(r"\$\{(file:)?([^}]*)\}")


class ConfigError(StreambatchError):
    """A feed config file that cannot be used, with the file and the key named."""


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest of ``known``, else `` (known: ...)``."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


# -- value checks: each raises ValueError with the reason ---------------------------------------

def _positive_int(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("must be a positive integer")


def _positive_number(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError("must be a positive number")


def _boolean(value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")


def _writer(value: Any) -> None:
    if value not in ("auto", "inline", "process"):
        raise ValueError("must be 'auto', 'inline' or 'process'")


def _interval(value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError("must be an interval such as '24h' or '30m'")
    try:
        parse_interval(value)
    except ConfigError:
        raise ValueError("must be an interval such as '24h' or '30m'") from None


def _text(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")


def _timeout(value: Any) -> None:
    values = value if isinstance(value, list) else [value]
    if len(values) not in (1, 2) or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x < math.inf
                                        for x in values):
        raise ValueError("must be a positive number of seconds, or [connect, read]")


def _headers(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError("must be a table of header = \"value\"")
    for name, text in value.items():
        if not isinstance(text, str):
            raise ValueError(f"header {name!r} must be a string")


def _tags(value: Any) -> None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError("must be a string or a list of strings")
    for tag in items:
        if not isinstance(tag, str):
            raise ValueError(f"must be a string or a list of strings ({tag!r} is not a string)")
        try:
            v.tag(tag)
        except ValueError as exc:
            raise ValueError(f"tag {tag[:40]!r} {exc}") from None


def _attributes(value: Any) -> None:
    from ..model import _attribute_data  # the model's own check of an attribute

    if not isinstance(value, list):
        raise ValueError("must be a list of {type, value} tables")
    for i, item in enumerate(value):
        try:
            _attribute_data(item, f"attribute[{i}]")
        except ValidationError as exc:
            raise ValueError(f"{exc.field} {exc.reason}") from None


def _indicator_type(value: Any) -> None:
    from .mapping import canonical_type

    if not isinstance(value, str):
        raise ValueError("must be an indicator type name such as 'Host'")
    canonical_type(value, "indicator")


def _encoding(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an encoding name such as 'utf-8' or 'latin-1'")
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r}") from None
    sample = b"\n,;#\tabc"
    try:
        same = sample.decode(value) == sample.decode("ascii")
    except (LookupError, UnicodeError, ValueError):
        same = False
    if not same:
        raise ValueError(f"{value!r} is not ASCII-compatible (feeds are split into lines on newline bytes): "
                         "use utf-8, latin-1, cp1252 ...")


def _delimiter(value: Any) -> None:
    if not isinstance(value, str) or len(value) != 1:
        raise ValueError("must be one character, such as ',' ';' '|' or '\\t'")
    if value in "\r\n\"":
        raise ValueError("must not be a newline or the quote character")


def _quoting(value: Any) -> None:
    if not isinstance(value, str) or value.lower() not in ("minimal", "none"):
        raise ValueError("must be 'minimal' or 'none'")


def _header(value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a list of column names")
    if any(not isinstance(name, str) or not name.strip() for name in value):
        raise ValueError("column names must be non-empty strings")


def _comment(value: Any) -> None:
    marks = [value] if isinstance(value, str) else value
    if not isinstance(marks, list) or not marks:
        raise ValueError("must be a comment marker such as '#' or a list of them such as ['#', ';']")
    if any(not isinstance(m, str) or not m.strip() or m != m.strip() for m in marks):
        raise ValueError("comment markers must be non-empty strings without surrounding spaces")


def _jmespath(value: Any) -> None:
    import jmespath
    from jmespath.exceptions import JMESPathError

    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a JMESPath expression such as '*[]'")
    try:
        jmespath.compile(value)
    except JMESPathError as exc:
        reason = str(exc).splitlines()[0].strip()
        raise ValueError(f"{value!r} is not a valid JMESPath expression: {reason}") from None


def _job_setting(name: str) -> Callable[[Any], None]:
    """The check :class:`streambatch.batch.JobSettings` runs on the setting ``name``."""
    def check(value: Any) -> None:
        from ..batch import JobSettings

        try:
            JobSettings(**{name: value}).check()
        except ValidationError as exc:
            raise ValueError(exc.reason) from None
        except ValueError as exc:  # the chunk limits
            text = str(exc)
            raise ValueError(text[len(name) + 1:] if text.startswith(name + " ") else text) from None
    return check


def _all_of(*checks: Callable[[Any], None]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        for one in checks:
            one(value)
    return check


_LINE_FORMATS = ("text", "csv", "tsv", "jsonl")
_CSV_FORMATS = ("csv", "tsv")

#: Every key of ``[options]`` that the readers, the mapping, STIX or the sources read:
#: name -> (check, the formats it applies to). ``type`` applies to jsonl/json only with a mapping.
OPTIONS: dict[str, tuple[Callable[[Any], object], tuple[str, ...]]] = {
    "rating": (v.rating, FORMATS),  # mapping.apply_defaults, every format
    "confidence": (v.confidence, FORMATS),
    "tags": (_tags, FORMATS),
    "attributes": (_attributes, FORMATS),
    "type": (_indicator_type, ("text", "csv", "tsv", "jsonl", "json")),  # readers (text), mapping.Mapper
    "encoding": (_encoding, _LINE_FORMATS),  # readers._lines
    "max_line_bytes": (_positive_int, _LINE_FORMATS),
    "delimiter": (_delimiter, _CSV_FORMATS),  # readers._read_csv
    "quoting": (_quoting, _CSV_FORMATS),
    "header": (_header, _CSV_FORMATS),
    "comment": (_comment, ("text", "csv", "tsv")),  # readers._read_text, _CsvLines
    "multiline": (_boolean, _CSV_FORMATS),
    "path": (_text, ("json",)),  # readers._read_json
    "select": (_jmespath, ("json",)),  # readers._selected
    "association_type": (_text, ("stix",)),  # stix
    "member": (_text, FORMATS),  # sources: zip member
    "timeout": (_timeout, FORMATS),  # sources: URL
    "headers": (_headers, FORMATS),
    "headers_env": (_headers, FORMATS),
}

#: ``[batch]``: the settings passed to :class:`streambatch.batch.Batch`, and their checks.
BATCH_CHECKS: dict[str, Callable[[Any], None]] = {
    "max_records": _all_of(_positive_int, _job_setting("max_records")),
    "max_bytes": _all_of(_positive_int, _job_setting("max_bytes")),
    "attribute_write_type": _job_setting("attribute_write_type"),
    "tag_write_type": _job_setting("tag_write_type"),
    "security_label_write_type": _job_setting("security_label_write_type"),
    "halt_on_error": _boolean,
    "playbook_triggers_enabled": _boolean,
    "file_merge_mode": _job_setting("file_merge_mode"),
    "hash_collision_mode": _job_setting("hash_collision_mode"),
    "max_in_flight": _positive_int,
    "file_concurrency": _positive_int,
    "poll_interval": _positive_number,
    "poll_timeout": _positive_number,
    "buffer_size": _positive_int,
    "writer": _writer,  # who writes the job file while staging (streambatch.writer)
    "preflight": _boolean,  # the instance's rules (streambatch.rules, docs/rules.md)
    "truncate_attributes": _boolean,
    "bypass_exclusions": _boolean,
    "rules_refresh": _interval,
}
BATCH_KEYS = frozenset(BATCH_CHECKS)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
    max_removed: str = "10%"  # as written (normalised), for messages
    max_removed_share: Fraction | None = Fraction(1, 10)  # a share of the known records, or
    max_removed_count: int | None = None  # a count; both None: no limit
    absent_cycles: int = 2
    expires: float | None = None  # seconds: externalDateExpires = the cycle that sends a record + this
    keep_alive: float | None = None  # seconds: present, unchanged records are sent again once per interval

    @property
    def name(self) -> str:
        return self.path.stem

    def __repr__(self) -> str:  # the source and headers may carry credentials
        headers = sorted((self.options.get("headers") or {}))
        return (f"FeedConfig(path={str(self.path)!r}, source={redact.url(self.source)!r}, format={self.format!r}, "
                f"owner={self.owner!r}, removed={self.removed!r}, headers={headers!r})")

    def removal_limit(self, known: int) -> int | None:
        """The most records one cycle may retire when the feed has ``known`` records; None:
        no limit. A share gives ``floor(known * share)``, at least 1 unless the share is 0."""
        if self.max_removed_count is not None:
            return self.max_removed_count
        if self.max_removed_share is None:
            return None
        if self.max_removed_share == 0:
            return 0
        return max(1, math.floor(known * self.max_removed_share))

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
        p = Path(path).absolute()  # every path derived from it stays right whatever the working directory
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such feed config") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
        unknown = sorted(set(raw) - TOP_KEYS)
        if unknown:
            raise ConfigError(f"{p}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], TOP_KEYS)}")
        raw["source"] = _source(raw, p)
        from .taxii import settings_from_config

        taxii = settings_from_config(raw, p, _expand)  # a TAXII source: checked, its source and format normalised
        from .misp import settings_from_config as misp_settings

        misp = misp_settings(raw, p, _expand)  # a MISP feed: likewise
        for key in ("source", "format", "owner"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise ConfigError(f"{p}: {key!r} is required (a string)")
        fmt = raw["format"].strip().lower()
        if fmt not in FORMATS:
            raise ConfigError(f"{p}: format {raw['format']!r} is not one of {', '.join(FORMATS)}")
        removed = str(raw.get("removed", "keep")).lower()
        if removed not in REMOVED:
            raise ConfigError(f"{p}: removed {raw.get('removed')!r} is not one of {', '.join(REMOVED)}")
        for key in ("state_dir", "history_jsonl"):
            if key in raw and (not isinstance(raw[key], str) or not raw[key].strip()):
                raise ConfigError(f"{p}: {key} must be a path (a non-empty string), not {_shown(raw[key])}")
        state_dir = Path(raw["state_dir"]) if raw.get("state_dir") else Path(p.stem + ".streambatch")
        if not state_dir.is_absolute():
            state_dir = p.parent / state_dir
        history = raw.get("history_jsonl")
        schedule, cron = _schedule(raw.get("schedule", "1h"), p)
        for table in ("options", "mapping", "batch"):
            if raw.get(table) is not None and not isinstance(raw[table], dict):
                raise ConfigError(f"{p}: [{table}] must be a table")
        owner = raw["owner"].strip()
        options = dict(raw.get("options") or {})
        mapping = raw.get("mapping")
        batch = dict(raw.get("batch") or {})
        _check_options(p, fmt, options, bool(mapping))
        _resolve_headers(p, options)
        if taxii is not None:
            options["taxii"] = taxii  # read by streambatch.feeds.taxii (its credentials are registered)
        if misp is not None:  # read by streambatch.feeds.misp; its local copies of events live with the state
            options["misp"] = {**misp, "cache_dir": str(state_dir / "misp-events")}
        redact.register(*redact.url_secrets(raw["source"]), *(options.get("headers") or {}).values())
        _check_mapping(p, fmt, mapping, {"owner": owner, **options})
        _check_batch(p, batch)
        retention = raw.get("retention", 3)
        if isinstance(retention, bool) or not isinstance(retention, int) or retention < 0:
            raise ConfigError(f"{p}: retention must be an integer, 0 or more (not {_shown(retention)})")
        absent = raw.get("absent_cycles", 2)
        if isinstance(absent, bool) or not isinstance(absent, int) or absent < 1:
            raise ConfigError(f"{p}: absent_cycles must be an integer, at least 1 (not {_shown(absent)})")
        shown, share, count = _max_removed(raw.get("max_removed", "10%"), p)
        expires, keep_alive = _lifecycle(raw, p)
        return cls(
            path=p, source=raw["source"].strip(), format=fmt, owner=owner,
            schedule=schedule, cron=cron,
            state_dir=state_dir, removed=removed, grace=parse_interval(raw.get("grace", "1d"), f"{p}: grace"),
            history_jsonl=(p.parent / history) if history else None,
            options=options, mapping=mapping, batch=batch, retention=retention,
            max_removed=shown, max_removed_share=share, max_removed_count=count, absent_cycles=absent,
            expires=expires, keep_alive=keep_alive,
        )


def _lifecycle(raw: dict[str, Any], path: Path) -> tuple[float | None, float | None]:
    """``expires`` and ``keep_alive`` (seconds, or None). With ``expires`` and no ``keep_alive``,
    records still in the feed are kept alive every half ``expires``, so that none expires in
    ThreatConnect while the feed still lists it; a ``keep_alive`` not shorter than ``expires``
    would let them, and is refused."""
    expires = parse_interval(raw["expires"], f"{path}: expires") if "expires" in raw else None
    keep_alive = parse_interval(raw["keep_alive"], f"{path}: keep_alive") if "keep_alive" in raw else None
    if expires is not None and keep_alive is None:
        keep_alive = expires / 2
    if expires is not None and keep_alive is not None and keep_alive >= expires:
        raise ConfigError(f"{path}: keep_alive ({raw['keep_alive']!r}) must be shorter than expires "
                          f"({raw['expires']!r}): records still in the feed would expire in ThreatConnect")
    return expires, keep_alive


def _max_removed(value: object, path: Path) -> tuple[str, Fraction | None, int | None]:
    """``max_removed`` -> (as shown, share, count): ``"N%"`` -> a share N/100 (kept exact, so
    29% of 100 is 29); an integer -> a count; ``"none"`` / false -> no limit (None, None)."""
    if value is False or (isinstance(value, str) and value.strip().lower() == "none"):
        return "none", None, None
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 0:
            return str(value), None, value
        raise ConfigError(f"{path}: max_removed {value!r}: a count must be an integer, 0 or more")
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            try:
                share: Fraction | None = Fraction(text[:-1].strip()) / 100
            except (ValueError, ZeroDivisionError):
                share = None
            if share is not None and 0 <= share <= 1:
                return text, share, None
            raise ConfigError(f"{path}: max_removed {value!r}: a share must be from '0%' to '100%'")
        if text.isdigit():
            return text, None, int(text)
    raise ConfigError(f"{path}: max_removed {_shown(value)} is not a share ('10%': from '0%' to '100%'), a count "
                      "(an integer such as 500, 0 or more) or 'none' (or false) for no limit")


def _check_options(path: Path, fmt: str, options: dict[str, Any], has_mapping: bool) -> None:
    for key, value in options.items():
        if key == "owner":
            raise ConfigError(f"{path}: options.owner: the owner is the top-level 'owner' key (the batch and the "
                              "group xids use it); remove it from [options]")
        entry = OPTIONS.get(key)
        if entry is None:
            raise ConfigError(f"{path}: unknown key 'options.{key}'{did_you_mean(key, OPTIONS)}")
        check, formats = entry
        if fmt not in formats:
            raise ConfigError(f"{path}: options.{key} does not apply to format {fmt!r} (it is read for "
                              f"{', '.join(formats)})")
        try:
            check(value)
        except ValueError as exc:
            raise ConfigError(f"{path}: options.{key}: {exc} (value {_shown(value)})") from None
    if "type" in options and fmt in ("jsonl", "json") and not has_mapping:
        raise ConfigError(f"{path}: options.type applies to a {fmt} feed only with a [mapping] (without one, "
                          "every item is a batch record with its own type)")


def _check_mapping(path: Path, fmt: str, mapping: dict[str, Any] | None, options: dict[str, Any]) -> None:
    """The mapping is built as the reader builds it, so a mapping it would refuse fails here."""
    if fmt in ("text", "stix"):
        if mapping:
            raise ConfigError(f"{path}: [mapping] does not apply to format {fmt!r} (only to csv, tsv, jsonl and json)")
        return
    if not mapping:
        if fmt in ("csv", "tsv"):
            raise ConfigError(f"{path}: a {fmt} feed needs a [mapping] (at least value = \"<column>\")")
        return
    from .mapping import Mapper

    try:
        Mapper(mapping, options).columns()
    except StreambatchError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _check_batch(path: Path, batch: dict[str, Any]) -> None:
    for key, value in batch.items():
        check = BATCH_CHECKS.get(key)
        if check is None:
            raise ConfigError(f"{path}: unknown key 'batch.{key}'{did_you_mean(key, BATCH_CHECKS)}")
        try:
            check(value)
        except ValueError as exc:
            raise ConfigError(f"{path}: batch.{key}: {exc} (value {_shown(value)})") from None


def _expand(text: str, path: Path, where: str) -> str:
    """``${NAME}`` -> the environment variable; ``${file:PATH}`` -> the file's contents."""
    import os

    def one(m: re.Match[str]) -> str:
        name = m.group(2).strip()
        if m.group(1):
            target = Path(name).expanduser()
            target = target if target.is_absolute() else path.parent / target
            try:
                return target.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{path}: {where}: cannot read {target}: {exc.strerror or exc}") from None
        if not name:
            raise ConfigError(f"{path}: {where}: an empty ${{}} reference")
        if name not in os.environ:
            raise ConfigError(f"{path}: {where}: the environment variable {name} is not set")
        return os.environ[name]

    return _REFERENCE.sub(one, text)


def _source(raw: dict[str, Any], path: Path) -> Any:
    """``source`` with its references expanded, or the value of ``source_env``."""
    import os

    if "source_env" in raw:
        if "source" in raw:
            raise ConfigError(f"{path}: give either source or source_env, not both")
        name = raw["source_env"]
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}: source_env must name an environment variable")
        if name.strip() not in os.environ:
            raise ConfigError(f"{path}: source_env: the environment variable {name.strip()} is not set")
        return os.environ[name.strip()]
    source = raw.get("source")
    return _expand(source, path, "source") if isinstance(source, str) else source


def _resolve_headers(path: Path, options: dict[str, Any]) -> None:
    """Expand references in header values and merge ``headers_env`` into ``headers``."""
    import os

    headers = {name: _expand(value, path, f"options.headers.{name}")
               for name, value in (options.get("headers") or {}).items()}
    for name, var in (options.pop("headers_env", None) or {}).items():
        if var not in os.environ:
            raise ConfigError(f"{path}: options.headers_env.{name}: the environment variable {var} is not set")
        headers[name] = os.environ[var]
    if headers:
        options["headers"] = headers
