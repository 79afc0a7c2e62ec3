"""MISP feeds as a feed source: a folder with ``manifest.json`` and one ``<uuid>.json`` per event.

A feed names the folder with a ``misp+`` source or a ``[misp]`` table::

    source = "misp+https://www.circl.lu/doc/misp/feed-osint/"   # or misp+<a local folder>
    owner = "Demo Organization"                                  # format = "misp" is implied

    [misp]
    to_ids_only = true          # only attributes flagged for IDS (the default)
    group_type = "Event"        # each MISP event as a ThreatConnect Event (default: none)
    max_age = "365d"            # leave out events dated longer ago

(see :data:`KEYS` and :func:`settings_from_config`). The folder is an ``https://`` URL (plain
``http://`` only for a loopback host; no query: an API key goes in ``[options] headers``) or a
local folder, relative to the config. ``hashes.csv`` is not read: MISP uses it to correlate
values across feeds without downloading them, and every value it lists is in the event files.

**Reading.** ``manifest.json`` is fetched every cycle (a conditional GET: unchanged, it costs one
request and the cycle reads nothing, as for any URL source). It maps each event uuid to the
event's ``info``, ``date``, ``timestamp`` (epoch seconds) and ``Tag``; events the filters leave
out by their manifest entry (``include_tags``, ``exclude_tags``, ``max_age``) are not fetched.
An event is downloaded only when its manifest ``timestamp`` differs from the one of the last
read whose job was confirmed (the committed cursor, ``cache["cursor"]``); every other event is
read from the local copy kept in the feed's state folder (``misp-events/``, files 0600 in a
0700 folder, named by the event's uuid -- a manifest key that is not a uuid is a rejected row,
never a path -- and its timestamp). So every read yields the records of every event in the
manifest: the feed worker sees a whole read, unchanged records are recognised as unchanged
(nothing is sent for them), and the records of an event that left the manifest are removed
like any record that left a feed (``removed``, ``absent_cycles``, ``max_removed`` apply). The
timestamps the read ended at are left in ``cache["cursor_pending"]`` (``{"feed", "events":
{uuid: timestamp}}``); the worker commits them only once the cycle's job was confirmed with no
record failed, so a failed or interrupted cycle downloads the same events again. A local folder
is read as it is, every event every cycle.

**Records.** Each attribute of an event and of its objects (``Object[].Attribute``) becomes
indicators by its ``type`` (:data:`TYPES`); ``deleted`` attributes and objects are left out, and
so are attributes not flagged ``to_ids`` unless ``to_ids_only = false``. An attribute of a type
that has no ThreatConnect counterpart (``text``, ``link``, ``ssdeep`` ...) is skipped and
counted: the read logs, once, how many attributes of each type it skipped and why (at INFO,
which ``streambatch worker`` shows, and ``streambatch run -v``). A value the type's check
refuses is a rejected row naming the event, the attribute and the reason. Per indicator:
``comment`` -> a Description attribute, ``first_seen``/``last_seen`` -> firstSeen/lastSeen,
an expiration sighting (type 2) or a ``decay_score`` marked ``decayed`` -> externalDateExpires
(the feed's lifecycle then sends an expired indicator inactive; see :func:`_expiry`),
the event's tags and the attribute's own -> tags, ``tlp:*`` tags -> a security label (the
attribute's own TLP tag wins over the event's), the category -> a ``misp-category:<category>``
tag (``category_tags``), galaxy tags ``misp-galaxy:<galaxy>="<value>"`` -> the tag ``<value>``
(the name of the actor, malware or technique, which is how ThreatConnect names them), other
machine tags kept as they are. With ``group_type``, every event becomes a group of that type
(xid ``misp:<type>:<event uuid>``, name = ``info``, eventDate = ``date``, the event's tags and
TLP label) and its indicators are associated with it.

**Failures.** The manifest or an event that cannot be fetched because of the network, a
timeout or HTTP 5xx/408/429 raises :class:`~streambatch.errors.TransientError`; an event the
manifest lists whose file is missing (HTTP 404), truncated or not a MISP event raises
:class:`~streambatch.errors.IncompleteReadError`. Either way the read fails: nothing is sent or
removed, and the cursor stays where it was.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import date as _date_type
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from .. import validate as v
from ..errors import IncompleteReadError, StreambatchError, TransientError
from . import redact
from .stix import _date  # a date as the API takes it, or None: the same leniency as STIX feeds
from .taxii import _loopback

log = logging.getLogger("streambatch.feeds")

SCHEME = "misp+"
FORMAT = "misp"
#: ``[misp]`` keys: name -> what it is, for messages.
KEYS = {
    "url": "the feed folder: an https:// URL or a local folder (instead of a misp+ source)",
    "to_ids_only": "only attributes flagged to_ids (true/false)",
    "published_only": "only published events (true/false)",
    "include_tags": "only events with at least one of these tags (a list)",
    "exclude_tags": "no events, and no attributes, with any of these tags (a list)",
    "categories": "only attributes of these categories (a list)",
    "max_age": "leave out events whose date is older than this interval ('365d')",
    "group_type": "each event as a group of this type: 'Event', 'Incident' or 'none'",
    "category_tags": "tag indicators with misp-category:<category> (true/false)",
    "port_attribute": "the attribute type that carries the port of an ip|port or hostname|port value",
    "threat_level_rating": "a rating (0-5) per event threat level: a table of high, medium, low, undefined",
}
#: MISP's threat_level_id -> its name, as in ``[misp] threat_level_rating``
THREAT_LEVELS = {"1": "high", "2": "medium", "3": "low", "4": "undefined"}
GROUP_TYPES = ("Event", "Incident")
TLP_LABELS = {f"tlp:{c}": f"TLP:{c.upper()}" for c in ("white", "clear", "green", "amber", "amber+strict", "red")}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HIVES = {"HKLM": "HKEY_LOCAL_MACHINE", "HKCU": "HKEY_CURRENT_USER", "HKCR": "HKEY_CLASSES_ROOT",
          "HKU": "HKEY_USERS", "HKCC": "HKEY_CURRENT_CONFIG"}
_HASH_TYPES = ("md5", "sha1", "sha256")
_NAME_MAX = 100
_DESCRIPTION_MAX = 65500


def is_misp(source: Any) -> bool:
    """A ``misp+...`` source."""
    return isinstance(source, str) and source.strip().lower().startswith(SCHEME)


def _remote(location: str) -> bool:
    return location.lower().startswith(("http://", "https://"))


def display(location: str) -> str:
    return redact.url(location) if _remote(location) else location


# -- configuration ------------------------------------------------------------------------------

def settings_from_config(raw: dict[str, Any], path: Path, expand: Callable[[str, Path, str], str]) -> dict[str, Any] | None:
    """Check the MISP part of a loaded TOML config (``raw``, whose ``source`` is expanded) and
    normalise it: ``raw["source"]`` becomes ``misp+<URL or absolute folder>`` and
    ``raw["format"]`` defaults to ``misp``. Returns the settings the reader takes from
    ``options["misp"]`` (None when the feed is not a MISP feed). Raises ConfigError naming the
    file and the key."""
    from .config import ConfigError, did_you_mean, parse_interval

    table = raw.get("misp")
    source = raw.get("source")
    if table is None and not is_misp(source) and raw.get("format") != FORMAT:
        return None
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [misp] must be a table")
    for key in table:
        if key not in KEYS:
            raise ConfigError(f"{path}: unknown key 'misp.{key}'{did_you_mean(key, KEYS)}")
    if "url" in table:
        if not isinstance(table["url"], str) or not table["url"].strip():
            raise ConfigError(f"{path}: misp.url must be a non-empty string ({KEYS['url']})")
        if source is not None:
            raise ConfigError(f"{path}: give either source (or source_env) or misp.url, not both")
        location, where = expand(table["url"], path, "misp.url").strip(), "misp.url"
        if is_misp(location):
            location = location[len(SCHEME):]
    elif is_misp(source):
        location, where = source.strip()[len(SCHEME):], "source"
    else:
        raise ConfigError(f"{path}: a MISP feed needs misp.url, or source = \"misp+https://host/feed/\" "
                          f"(source is {redact.url(str(source)) if source else 'not set'})")
    settings: dict[str, Any] = {"url": _location(location, path, where, ConfigError)}
    redact.register(*redact.url_secrets(settings["url"]) if _remote(settings["url"]) else ())
    for key, default in (("to_ids_only", True), ("published_only", False), ("category_tags", True)):
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: misp.{key} must be true or false (not {value!r})")
        settings[key] = value
    for key in ("include_tags", "exclude_tags", "categories"):
        value = table.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or any(not isinstance(x, str) or not x.strip() for x in value):
            raise ConfigError(f"{path}: misp.{key} must be a list of non-empty strings ({KEYS[key]})")
        settings[key] = [x.strip().lower() for x in value]
    settings["max_age"] = None
    if "max_age" in table:
        if not isinstance(table["max_age"], str):
            raise ConfigError(f"{path}: misp.max_age must be an interval such as '365d' (not {table['max_age']!r})")
        settings["max_age"] = parse_interval(table["max_age"], f"{path}: misp.max_age")
    group = table.get("group_type", "none")
    names = {g.lower(): g for g in GROUP_TYPES}
    if not isinstance(group, str) or (group.strip().lower() not in names and group.strip().lower() != "none"):
        raise ConfigError(f"{path}: misp.group_type must be 'Event', 'Incident' or 'none' (not {group!r})")
    settings["group_type"] = names.get(group.strip().lower())
    port = table.get("port_attribute")
    if port is not None and (not isinstance(port, str) or not port.strip()):
        raise ConfigError(f"{path}: misp.port_attribute must be an attribute type name such as 'Port'")
    settings["port_attribute"] = port.strip() if port else None
    settings["threat_level_rating"] = _level_ratings(table.get("threat_level_rating", {}), path)
    fmt = raw.get("format", FORMAT)
    if not isinstance(fmt, str) or fmt.strip().lower() != FORMAT:
        raise ConfigError(f"{path}: a MISP feed is read as format 'misp' (not {fmt!r})")
    options = raw.get("options") if isinstance(raw.get("options"), dict) else {}
    if "member" in options:
        raise ConfigError(f"{path}: options.member does not apply to a MISP feed (it names a zip member)")
    if raw.get("mapping"):
        raise ConfigError(f"{path}: [mapping] does not apply to a MISP feed (attribute types are mapped by "
                          "streambatch: see docs/feeds.md)")
    raw["format"] = FORMAT
    raw["source"] = SCHEME + display(settings["url"])  # the reader takes the URL from the settings
    return settings


def _level_ratings(table: Any, path: Path) -> dict[str, float]:
    """``[misp] threat_level_rating`` checked: threat level name -> rating."""
    from .config import ConfigError, did_you_mean

    if not isinstance(table, dict):
        raise ConfigError(f"{path}: misp.threat_level_rating must be a table such as {{ high = 5, medium = 3 }}")
    out = {}
    for name, rating in table.items():
        level = name.strip().lower()
        if level not in THREAT_LEVELS.values():
            raise ConfigError(f"{path}: misp.threat_level_rating: unknown level {name!r}"
                              f"{did_you_mean(level, THREAT_LEVELS.values())}")
        if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not 0 <= rating <= 5:
            raise ConfigError(f"{path}: misp.threat_level_rating.{name} must be a rating from 0 to 5 (not {rating!r})")
        out[level] = rating
    return out


def _location(location: str, path: Path | None, where: str, error: type[Exception]) -> str:
    """The feed folder: a URL with a trailing slash (``manifest.json`` taken off), or an
    absolute folder path."""
    prefix = f"{path}: " if path else ""
    if not _remote(location):
        folder = Path(location).expanduser()
        if not folder.is_absolute() and path is not None:
            folder = path.parent / folder
        if folder.name == "manifest.json":
            folder = folder.parent
        return str(folder)
    try:
        parts = urlsplit(location)
        parts.port  # noqa: B018 -- raises on a bad port
    except ValueError as exc:
        raise error(f"{prefix}{where}: {redact.url(location)} is not a valid URL ({exc})") from None
    if not parts.hostname:
        raise error(f"{prefix}{where}: {redact.url(location)} has no host")
    if parts.query or parts.fragment:
        raise error(f"{prefix}{where}: a MISP feed URL takes no query or fragment (an API key goes in "
                    "[options] headers or headers_env)")
    if parts.scheme.lower() == "http" and not _loopback(parts.hostname):
        raise error(f"{prefix}{where}: a MISP feed is read over HTTPS; plain http:// is accepted only for a "
                    f"loopback host, not {parts.hostname}")
    url = location.split("#")[0]
    if url.endswith("/manifest.json"):
        url = url[: -len("manifest.json")]
    return url if url.endswith("/") else url + "/"


# -- reading ------------------------------------------------------------------------------------

def read_misp(source: str, options: Mapping[str, Any], cache: dict | None = None) -> Iterator[Any]:
    """Stream the records of the MISP feed ``source`` names (``misp+<URL or folder>``;
    ``options["misp"]`` holds the config's settings, see :func:`settings_from_config`) as
    :class:`~streambatch.feeds.readers.FeedItem`; see the module docstring for ``cache``."""
    settings = dict(options.get("misp") or {})
    if not settings.get("url"):
        if not is_misp(source):
            raise StreambatchError(f"{redact.url(str(source))} is not a misp+ source")
        settings["url"] = _location(source.strip()[len(SCHEME):], None, "source", StreambatchError)
    for key, default in (("to_ids_only", True), ("published_only", False), ("category_tags", True),
                         ("include_tags", []), ("exclude_tags", []), ("categories", []), ("max_age", None),
                         ("group_type", None), ("port_attribute", None), ("cache_dir", None),
                         ("threat_level_rating", {})):
        settings.setdefault(key, default)
    return _Read(settings, options, cache).items()


class _Read:
    """One read of a MISP feed."""

    def __init__(self, settings: dict[str, Any], options: Mapping[str, Any], cache: dict | None) -> None:
        self.s = settings
        self.options = options
        self.cache = cache
        self.url = settings["url"]
        self.remote = _remote(self.url)
        self.name = display(self.url)
        self.line = 0
        self.attributes = 0
        self.fetched = 0
        self.copied = 0
        self.skipped: Counter[str] = Counter()  # reason -> attributes
        self.unmapped: Counter[str] = Counter()  # MISP type -> attributes
        self.left_out: Counter[str] = Counter()  # reason -> events

    # -- the manifest --------------------------------------------------------------------

    def _manifest(self) -> tuple[dict | None, Any]:
        from .sources import open_source

        target = self.url + "manifest.json" if self.remote else str(Path(self.url) / "manifest.json")
        with open_source(target, options=dict(self.options), cache=self.cache if self.remote else None) as opened:
            if opened.stream is None:  # 304: the manifest has not changed
                return None, opened
            data = _read_all(opened.stream)
        try:
            manifest = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise _incomplete(self.name, f"manifest.json is not valid JSON ({exc}): it is truncated or damaged, "
                                         "so the feed's events are not known") from None
        if not isinstance(manifest, dict):
            raise StreambatchError(f"feed {self.name}: manifest.json is a JSON {type(manifest).__name__}, not an "
                                   "object keyed by event uuid: is this a MISP feed?")
        return manifest, opened

    def items(self) -> Iterator[Any]:
        from .readers import _bad

        started = time.time()
        key = hashlib.sha256(self.url.encode()).hexdigest()
        committed_cursor = (self.cache or {}).get("cursor")
        committed: dict[str, str] = {}
        if isinstance(committed_cursor, dict) and committed_cursor.get("feed") == key:
            committed = dict(committed_cursor.get("events") or {})
        manifest, opened = self._manifest()
        if manifest is None:
            log.info("feed %s: manifest.json not modified since the last read", self.name)
            return
        if self.cache is not None:
            self.cache["not_modified"] = False
        if self.remote and self.s.get("cache_dir"):
            from ..store import private_dir

            private_dir(Path(self.s["cache_dir"]))
        read: dict[str, str] = {}
        for uuid, meta in manifest.items():
            ident = str(uuid).strip().lower()
            if not _UUID.fullmatch(ident):
                self.line += 1
                yield _bad(self.line, f"manifest entry {str(uuid)[:80]!r} is not an event uuid; the entry is skipped",
                           orjson.dumps({str(uuid): meta}, default=str).decode()[:1000])
                continue
            if not isinstance(meta, dict):
                self.line += 1
                yield _bad(self.line, f"manifest entry {ident} is a JSON {type(meta).__name__}, not an object; "
                                      "the entry is skipped", str(meta)[:1000])
                continue
            reason = self._leave_out(meta, started)
            if reason:
                self.left_out[reason] += 1
                continue
            stamp = str(meta.get("timestamp") or "").strip()
            event = self._event(ident, stamp, committed.get(ident))
            read[ident] = stamp
            yield from self._records(ident, event)
        self._prune(read)
        opened.finish()  # the manifest's validators, now that every event was read
        self._summary(len(manifest))
        if self.cache is not None:
            self.cache["cursor_pending"] = {"feed": key, "events": read}
            self.cache["partial"] = False

    def _leave_out(self, meta: Mapping[str, Any], now: float) -> str | None:
        """Why the filters leave out an event by its manifest entry (None: they do not)."""
        tags = {n.lower() for n in _tag_names(meta.get("Tag"))}
        if self.s["include_tags"] and not tags & set(self.s["include_tags"]):
            return "without any of include_tags"
        if tags & set(self.s["exclude_tags"]):
            return "with one of exclude_tags"
        if self.s["max_age"] is not None:
            try:
                day = _date_type.fromisoformat(str(meta.get("date"))[:10])
            except ValueError:
                return None  # no usable date: kept, and its events' own dates are not guessed at
            if calendar.timegm(day.timetuple()) + 86400 < now - self.s["max_age"]:  # the event's day, UTC
                return "older than max_age"
        return None

    # -- the events ----------------------------------------------------------------------

    def _event(self, uuid: str, stamp: str, committed: str | None) -> dict[str, Any]:
        """The event ``uuid``: downloaded when its timestamp changed since the committed read,
        else read from the local copy; a local folder's file is read as it is."""
        if not self.remote:
            path = Path(self.url) / f"{uuid}.json"
            if not path.is_file():
                raise _incomplete(self.name, f"event {uuid} is listed in manifest.json but {path} is missing")
            self.fetched += 1
            return self._parse(uuid, path.read_bytes())
        folder = Path(self.s["cache_dir"]) if self.s.get("cache_dir") else None
        copy = folder / _copy_name(uuid, stamp) if folder is not None else None
        if copy is not None and stamp and committed == stamp and copy.is_file() and not copy.is_symlink():
            try:
                event = self._parse(uuid, copy.read_bytes())
                self.copied += 1
                return event
            except IncompleteReadError:  # a damaged copy: fetched again
                log.warning("feed %s: the local copy of event %s is damaged; fetching it again", self.name, uuid)
        data = self._download(uuid)
        event = self._parse(uuid, data)
        self.fetched += 1
        if copy is not None:
            _write_private(copy, data)
        return event

    def _download(self, uuid: str) -> bytes:
        from .sources import open_source

        url = f"{self.url}{uuid}.json"
        try:
            with open_source(url, options=dict(self.options)) as opened:
                assert opened.stream is not None
                return _read_all(opened.stream)
        except (TransientError, IncompleteReadError):
            raise
        except StreambatchError as exc:  # 404 and the other refusals: the feed lacks an event it lists
            raise _incomplete(self.name, f"event {uuid} is listed in manifest.json but cannot be fetched "
                                         f"({redact.text(str(exc)).rpartition(': ')[2]})") from None

    def _parse(self, uuid: str, data: bytes) -> dict[str, Any]:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise _incomplete(self.name, f"event {uuid} is not valid JSON ({exc}): it is truncated or damaged") from None
        event = doc.get("Event") if isinstance(doc, dict) else None
        if not isinstance(event, dict):
            raise _incomplete(self.name, f"event {uuid}: the file is not a MISP event (no 'Event' object)")
        if str(event.get("uuid", uuid)).strip().lower() != uuid:
            raise _incomplete(self.name, f"event {uuid}: the file holds event {str(event.get('uuid'))[:40]!r}")
        return event

    def _prune(self, read: Mapping[str, str]) -> None:
        """Drop local copies of events that are not in this read (an older version, an event
        that left the manifest or the filters, a download of a failed cycle)."""
        if not self.remote or not self.s.get("cache_dir"):
            return
        keep = {_copy_name(u, s) for u, s in read.items()}
        for path in Path(self.s["cache_dir"]).iterdir():
            if path.name not in keep and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)

    def _summary(self, listed: int) -> None:
        left = ", ".join(f"{n:,} {why}" for why, n in sorted(self.left_out.items()))
        skipped = ", ".join(f"{n:,} {why}" for why, n in sorted(self.skipped.items()))
        unmapped = ", ".join(f"{t} {n:,}" for t, n in self.unmapped.most_common(20))
        events = (f"downloaded {self.fetched:,} event(s), read {self.copied:,} from the local copy" if self.remote
                  else f"read {self.fetched:,} event file(s)")
        log.info("feed %s: manifest lists %d event(s)%s; %s; %d attribute(s)"
                 "%s%s", self.name, listed, f" (left out: {left})" if left else "", events, self.attributes,
                 f"; skipped: {skipped}" if skipped else "",
                 f"; skipped for their type, which has no ThreatConnect counterpart: {sum(self.unmapped.values()):,} "
                 f"({unmapped})" if unmapped else "")

    # -- records -------------------------------------------------------------------------

    def _records(self, uuid: str, event: Mapping[str, Any]) -> Iterator[Any]:
        from .readers import FeedItem

        if self.s["published_only"] and not _true(event.get("published")):
            self.left_out["not published"] += 1
            return
        event_tags = list(event.get("Tag") or [])
        names = {n.lower() for n in _tag_names(event_tags)}
        if (self.s["include_tags"] and not names & set(self.s["include_tags"])) or names & set(self.s["exclude_tags"]):
            self.left_out["filtered by their own tags"] += 1
            return
        labels, tags = _split_tags(event_tags)
        group_xid = None
        if self.s["group_type"]:
            group_xid = f"misp:{self.s['group_type'].lower()}:{uuid}"
            self.line += 1
            yield FeedItem(self.line, _group(self.s["group_type"], group_xid, uuid, event, labels, tags), None)
        level = THREAT_LEVELS.get(str(event.get("threat_level_id", "")).strip())
        context = {"uuid": uuid, "labels": labels, "tags": tags, "group": group_xid,
                   "rating": self.s["threat_level_rating"].get(level)}
        for attr in event.get("Attribute") or []:
            yield from self._attribute(attr, context)
        for obj in event.get("Object") or []:
            if not isinstance(obj, dict):
                continue
            if _true(obj.get("deleted")):
                self.skipped["deleted"] += len(obj.get("Attribute") or [])
                continue
            if str(obj.get("name") or "").lower() == "file":
                yield from self._file_object(obj, context)
                continue
            for attr in obj.get("Attribute") or []:
                yield from self._attribute(attr, context)

    def _attribute(self, attr: Any, ctx: Mapping[str, Any]) -> Iterator[Any]:
        from .readers import FeedItem, _bad

        self.line += 1
        self.attributes += 1
        if not isinstance(attr, dict):
            yield _bad(self.line, f"event {ctx['uuid']}: an attribute is a JSON {type(attr).__name__}, not an object",
                       _raw(ctx, attr))
            return
        if not self._passes(attr):
            return
        kind = str(attr.get("type") or "")
        build = TYPES.get(kind)
        if build is None:
            self.unmapped[kind or "(no type)"] += 1
            return
        try:
            records = build(attr.get("value"), self.s)
        except ValueError as exc:
            yield self._refused(attr, ctx, exc)
            return
        for record in records:
            yield FeedItem(self.line, self._decorate(record, [attr], ctx), None)

    def _file_object(self, obj: Mapping[str, Any], ctx: Mapping[str, Any]) -> Iterator[Any]:
        """A ``file`` object: its md5, sha1 and sha256 (those the filters keep) are one File
        indicator, with its ``filename`` attributes as file occurrences; its other attributes are
        read one by one."""
        from .readers import FeedItem

        attrs = [a for a in obj.get("Attribute") or [] if isinstance(a, dict)]
        hashes = [a for a in attrs if a.get("type") in _HASH_TYPES]
        if not hashes:
            for attr in obj.get("Attribute") or []:
                yield from self._attribute(attr, ctx)
            return
        record: dict[str, Any] = {"type": "File"}
        used = []
        for attr in hashes:
            self.line += 1
            self.attributes += 1
            if not self._passes(attr):
                continue
            kind = str(attr["type"])
            try:
                digest = v.hash_value(_text(attr.get("value")), kind)
            except ValueError as exc:
                yield self._refused(attr, ctx, exc)
                continue
            if record.setdefault(kind, digest) != digest:  # a second hash of one kind: a File of its own
                yield FeedItem(self.line, self._decorate({"type": "File", kind: digest}, [attr], ctx), None)
                continue
            used.append(attr)
        names = [str(a["value"]).strip()[:255] for a in attrs if a.get("type") == "filename"
                 and not _true(a.get("deleted")) and isinstance(a.get("value"), str) and a["value"].strip()]
        if used:
            if names:
                record["fileOccurrence"] = [{"fileName": n} for n in dict.fromkeys(names)]
            yield FeedItem(self.line, self._decorate(record, used, ctx), None)
        for attr in attrs:
            if attr.get("type") not in _HASH_TYPES and attr.get("type") != "filename":
                yield from self._attribute(attr, ctx)

    def _passes(self, attr: Mapping[str, Any]) -> bool:
        """Whether the filters keep an attribute; one they do not keep is counted."""
        if _true(attr.get("deleted")):
            self.skipped["deleted"] += 1
            return False
        if self.s["to_ids_only"] and not _true(attr.get("to_ids")):
            self.skipped["not flagged to_ids"] += 1
            return False
        category = str(attr.get("category") or "").strip()
        if self.s["categories"] and category.lower() not in self.s["categories"]:
            self.skipped["of other categories"] += 1
            return False
        if {n.lower() for n in _tag_names(attr.get("Tag"))} & set(self.s["exclude_tags"]):
            self.skipped["with one of exclude_tags"] += 1
            return False
        return True

    def _refused(self, attr: Mapping[str, Any], ctx: Mapping[str, Any], exc: ValueError) -> Any:
        from .readers import _bad

        return _bad(self.line, f"event {ctx['uuid']} attribute {attr.get('uuid')} ({attr.get('type')} "
                               f"{str(attr.get('value'))[:200]!r}): {exc}", _raw(ctx, attr))

    def _decorate(self, record: dict[str, Any], attrs: list[Mapping[str, Any]], ctx: Mapping[str, Any]) -> dict[str, Any]:
        """An indicator with what its attributes (one, or the hashes of a file object) and their
        event say: tags, TLP label, Description, first/last seen, the event's group, defaults."""
        from .mapping import apply_defaults

        tags, labels = list(ctx["tags"]), []
        comments = []
        for attr in attrs:
            own_labels, own_tags = _split_tags(attr.get("Tag"))
            labels += own_labels
            tags += own_tags
            category = str(attr.get("category") or "").strip()
            if category and self.s["category_tags"]:
                tags.append(f"misp-category:{category}"[: v.TAG_MAX])
            if isinstance(attr.get("comment"), str) and attr["comment"].strip():
                comments.append(attr["comment"].strip())
        labels = labels or ctx["labels"]  # the attribute's own TLP wins over the event's
        if tags:
            record["tag"] = [*record.get("tag", []), *({"name": t} for t in dict.fromkeys(tags))]
        if labels:
            record["securityLabel"] = [{"name": n} for n in dict.fromkeys(labels)]
        if comments:
            text = "\n\n".join(dict.fromkeys(comments))[:_DESCRIPTION_MAX]
            record["attribute"] = [*record.get("attribute", []), {"type": "Description", "value": text}]
        for src, dst in (("first_seen", "firstSeen"), ("last_seen", "lastSeen")):
            when = _date(attrs[0].get(src))
            if when:
                record[dst] = when
        expires = _expiry(attrs)
        if expires:
            record["externalDateExpires"] = expires
        if ctx["group"]:
            record["associatedGroups"] = [{"groupXid": ctx["group"]}]
        if ctx["rating"] is not None and "rating" not in record:  # the event's level, before the feed's default
            record["rating"] = ctx["rating"]
        return apply_defaults(record, self.options)


def _expiry(attrs: list[Mapping[str, Any]]) -> str | None:
    """MISP's own expiry of an attribute, as ``externalDateExpires``: the earliest expiration
    sighting (``Sighting`` of type 2, at its ``date_sighting``), else, for an attribute whose
    ``decay_score`` says ``decayed`` (exported with decay scores), its last change
    (``timestamp``): a date in the past, so the feed sends the indicator expired and inactive.
    A stable date, not the time of the read, so an unchanged attribute stays unchanged."""
    found: list[str] = []
    for attr in attrs:
        for sighting in attr.get("Sighting") or ():
            if isinstance(sighting, Mapping) and str(sighting.get("type")) == "2":
                when = _epoch(sighting.get("date_sighting"))
                if when:
                    found.append(when)
    if found:
        return min(found)
    for attr in attrs:
        scores = attr.get("decay_score") or ()
        if any(isinstance(d, Mapping) and d.get("decayed") is True for d in scores):
            when = _epoch(attr.get("timestamp"))
            if when:
                return when
    return None


def _epoch(value: Any) -> str | None:
    """An epoch-seconds value as MISP writes it (a string or a number) as an API date."""
    try:
        seconds = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return _date(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))) if seconds > 0 else None


def _raw(ctx: Mapping[str, Any], attr: Any) -> str:
    return orjson.dumps({"event": ctx["uuid"], "attribute": attr}, default=str).decode()[:1000]


def _group(type_name: str, xid: str, uuid: str, event: Mapping[str, Any], labels: list[str],
           tags: list[str]) -> dict[str, Any]:
    name = str(event.get("info") or "").strip() or f"MISP event {uuid}"
    if len(name) > _NAME_MAX:
        name = name[: _NAME_MAX - 3] + "..."
    record: dict[str, Any] = {"type": type_name, "name": name, "xid": xid}
    when = _date(event.get("date"))
    if when:
        record["eventDate"] = when
    if tags:
        record["tag"] = [{"name": t} for t in dict.fromkeys(tags)]
    if labels:
        record["securityLabel"] = [{"name": n} for n in dict.fromkeys(labels)]
    return record


# -- tags ---------------------------------------------------------------------------------------

def _tag_names(tags: Any) -> list[str]:
    out = []
    for tag in tags if isinstance(tags, list) else []:
        name = tag.get("name") if isinstance(tag, dict) else tag
        if isinstance(name, str) and name.strip():
            out.append(name.strip())
    return out


def _split_tags(tags: Any) -> tuple[list[str], list[str]]:
    """(security labels, tags) of MISP tags: ``tlp:*`` -> a label; a galaxy tag
    ``misp-galaxy:<galaxy>="<value>"`` -> ``<value>``; the rest as they are (cut to 128
    characters, as the API allows)."""
    labels, names = [], []
    for name in _tag_names(tags):
        label = TLP_LABELS.get(name.lower())
        if label:
            labels.append(label)
            continue
        if name.lower().startswith("misp-galaxy:") and '="' in name:
            name = name.split('="', 1)[1].rstrip('"').strip() or name
        names.append(name[: v.TAG_MAX])
    return labels, names


# -- attribute types ----------------------------------------------------------------------------

def _checked(type_name: str, value: Any) -> str:
    from .detect import check_value

    return check_value(type_name, value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("the value is empty or not text")
    return value.strip()


def _ip(value: Any, _s: Mapping[str, Any]) -> list[dict[str, Any]]:
    text = _text(value)
    if "/" in text:
        address, _, prefix = text.rpartition("/")
        if prefix == ("128" if ":" in address else "32"):
            text = address
        else:
            return [{"type": "CIDR", "summary": _checked("CIDR", text)}]
    return [{"type": "Address", "summary": _checked("Address", text)}]


def _port(record: dict[str, Any], port: str, s: Mapping[str, Any]) -> dict[str, Any]:
    if not port.strip().isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port[:20]!r} is not a number from 0 to 65535")
    number = str(int(port))
    if s.get("port_attribute"):
        record["attribute"] = [{"type": s["port_attribute"], "value": number}]
    else:
        record["tag"] = [{"name": f"port:{number}"}]
    return record


def _pair(value: Any) -> tuple[str, str]:
    text = _text(value)
    if "|" not in text:
        raise ValueError("a composite value must be two parts joined by '|'")
    first, _, second = text.rpartition("|")
    return first.strip(), second.strip()


def _ip_port(value: Any, s: Mapping[str, Any]) -> list[dict[str, Any]]:
    address, port = _pair(value)
    return [_port(_ip(address, s)[0], port, s)]


def _host(value: Any, _s: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "Host", "summary": _checked("Host", _text(value))}]


def _host_port(value: Any, s: Mapping[str, Any]) -> list[dict[str, Any]]:
    host, port = _pair(value)
    return [_port(_host(host, s)[0], port, s)]


def _host_ip(value: Any, s: Mapping[str, Any]) -> list[dict[str, Any]]:
    host, address = _pair(value)
    return [*_host(host, s), *_ip(address, s)]


def _simple(type_name: str) -> Callable[[Any, Mapping[str, Any]], list[dict[str, Any]]]:
    def build(value: Any, _s: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [{"type": type_name, "summary": _checked(type_name, _text(value))}]
    return build


def _hash(kind: str) -> Callable[[Any, Mapping[str, Any]], list[dict[str, Any]]]:
    def build(value: Any, _s: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "File", kind: v.hash_value(_text(value), kind)}]
    return build


def _named_hash(kind: str) -> Callable[[Any, Mapping[str, Any]], list[dict[str, Any]]]:
    def build(value: Any, _s: Mapping[str, Any]) -> list[dict[str, Any]]:
        name, digest = _pair(value)
        record: dict[str, Any] = {"type": "File", kind: v.hash_value(digest, kind)}
        if name:
            record["fileOccurrence"] = [{"fileName": name[:255]}]
        return [record]
    return build


def _asn(value: Any, _s: Mapping[str, Any]) -> list[dict[str, Any]]:
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if text.isdigit():
        text = f"AS{text}"
    return [{"type": "ASN", "summary": _checked("ASN", _text(text or None))}]


def _regkey(value: Any, _s: Mapping[str, Any]) -> list[dict[str, Any]]:
    key = _text(value)
    hive, sep, rest = key.partition("\\")
    key = _HIVES.get(hive.upper(), hive) + sep + rest
    return [{"type": "Registry Key", "Key Name": v.registry_key_name(key), "Value Name": " ",
             "Value Type": "REG_NONE"}]


#: MISP attribute type -> how its value becomes indicators. Any other type is skipped and counted.
TYPES: dict[str, Callable[[Any, Mapping[str, Any]], list[dict[str, Any]]]] = {
    "ip-src": _ip, "ip-dst": _ip,
    "ip-src|port": _ip_port, "ip-dst|port": _ip_port,
    "domain": _host, "hostname": _host,
    "domain|ip": _host_ip, "hostname|port": _host_port,
    "url": _simple("URL"),
    "md5": _hash("md5"), "sha1": _hash("sha1"), "sha256": _hash("sha256"),
    "filename|md5": _named_hash("md5"), "filename|sha1": _named_hash("sha1"),
    "filename|sha256": _named_hash("sha256"), "malware-sample": _named_hash("md5"),
    "email": _simple("EmailAddress"), "email-src": _simple("EmailAddress"), "email-dst": _simple("EmailAddress"),
    "email-reply-to": _simple("EmailAddress"),
    "AS": _asn,
    "user-agent": _simple("User Agent"),
    "mutex": _simple("Mutex"),
    "regkey": _regkey,
}


# -- helpers ------------------------------------------------------------------------------------

def _true(value: Any) -> bool:
    return value is True or value == 1 or (isinstance(value, str) and value.strip().lower() in ("1", "true"))


def _copy_name(uuid: str, stamp: str) -> str:
    """The local copy's file name: the uuid (checked) and the timestamp (digits, else a hash of it)."""
    tail = stamp if stamp.isdigit() and len(stamp) <= 20 else hashlib.sha256(stamp.encode()).hexdigest()[:16]
    return f"{uuid}-{tail}.json"


def _incomplete(name: str, reason: str) -> IncompleteReadError:
    from .sources import incomplete

    return incomplete(name, reason)


def _read_all(stream: Any) -> bytes:
    """A whole file (one manifest or event); a source that ends early raises as it does."""
    parts = []
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``path`` (0600) through a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
