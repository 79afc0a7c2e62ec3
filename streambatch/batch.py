"""``Batch``: build threat-intel records and stream them into a job file.

The three interfaces of the incumbent framework's batch module are here: one method per type
(interface 1), ``group()``/``indicator()`` (interface 2) and ``add_group()``/``add_indicator()``
(interface 3). Records that were created but not saved stay in memory until the batch is
built, submitted or closed; ``save()``/``save_all()`` stream them into the job file at once.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sqlite3
import time
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from . import chunker, failpoints, rules
from .errors import JobFileError, StreambatchError, ValidationError
from .model import (Group, Indicator, Record, check_xid, from_data, identity, merge_data, normalize, parse,
                    parse_summary, summary_of)
from .store import JobFile, JobLock, Row, Staging, bounded_raw, private_dir
from .typed import TypedMethods
from .xid import group_key, indicator_key
from .types import TypeRegistry, TypeSpec
from .validate import INT_MAX, text
from .writer import Writer, WriterFailed
from .pipeline import Chunk, PollPolicy, Submitter, _envelope
from .xid import Scheme, generate_xid, record_xid

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("streambatch")

ContentSource = Callable[[str], Any]

#: ``writer='auto'`` hands writes to the writer process once a Batch has written this many
#: records (it is started at half as many, so that it is ready by then; docs/decisions.md,
#: "Staging on two cores").
AUTO_WRITER_ROWS = 100_000

#: a write handed to the writer process holds at most this many records (or ``buffer_size``,
#: if fewer): smaller writes keep both processes' memory flat (docs/decisions.md, "Staging memory")
WRITER_WRITE_ROWS = 5_000

#: the identity keys handed to the writer process that this process keeps, at most, for its own
#: Bloom filter until a lookup needs them (8 bytes each); past it the filter is read again if one comes
UNFILTERED_KEYS = 160_000


@dataclass
class JobSettings:
    """The Batch API job settings (spec section 3) and how chunks are cut."""

    action: Literal["Create", "Delete"] = "Create"
    attribute_write_type: Literal["Append", "Replace", "Singleton", "Static"] = "Replace"
    tag_write_type: Literal["Append", "Replace"] = "Replace"
    security_label_write_type: Literal["Append", "Replace"] = "Replace"
    halt_on_error: bool = False
    playbook_triggers_enabled: bool = False
    file_merge_mode: Literal["Distribute", "Merge"] | None = None
    hash_collision_mode: Literal["FavorExisting", "FavorIncoming", "IgnoreExisting", "IgnoreIncoming", "Split"] | None = None
    max_bytes: int = chunker.DEFAULT_MAX_BYTES
    max_records: int = chunker.DEFAULT_MAX_RECORDS

    _CHOICES = {
        "action": ("Create", "Delete"),
        "attribute_write_type": ("Append", "Replace", "Singleton", "Static"),
        "tag_write_type": ("Append", "Replace"),
        "security_label_write_type": ("Append", "Replace"),
        "file_merge_mode": ("Distribute", "Merge", None),
        "hash_collision_mode": ("FavorExisting", "FavorIncoming", "IgnoreExisting", "IgnoreIncoming", "Split", None),
    }

    def check(self) -> None:
        for name, options in self._CHOICES.items():
            if getattr(self, name) not in options:
                raise ValidationError("settings", name, getattr(self, name),
                                      f"must be one of {', '.join(o for o in options if o)}")
        chunker.Limits(self.max_bytes, self.max_records)

    def config(self, owner: str) -> dict[str, Any]:
        """The settings object sent to the API when a job is created."""
        out: dict[str, Any] = {
            "version": "V2", "owner": owner, "action": self.action,
            "attributeWriteType": self.attribute_write_type, "tagWriteType": self.tag_write_type,
            "securityLabelWriteType": self.security_label_write_type, "haltOnError": self.halt_on_error,
            "playbookTriggersEnabled": self.playbook_triggers_enabled,
        }
        if self.file_merge_mode:
            out["fileMergeMode"] = self.file_merge_mode
        if self.hash_collision_mode:
            out["hashCollisionMode"] = self.hash_collision_mode
        return out


_SETTING_NAMES = tuple(f.name for f in fields(JobSettings))


class _Setting:
    """A job setting as a Batch property (``batch.action = 'Delete'``); checked and kept in
    the job file."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, batch: "Batch | None", owner: type | None = None) -> Any:
        return self if batch is None else getattr(batch.settings, self.name)

    def __set__(self, batch: "Batch", value: Any) -> None:
        batch._store_settings({**asdict(batch.settings), self.name: value})


def default_job_path(owner: str, root: str | os.PathLike[str] = ".streambatch") -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", owner).strip("-").lower() or "job"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{slug}-{stamp}-{secrets.token_hex(3)}.sqlite"


class Batch(TypedMethods):
    """A batch job for one owner, kept in a SQLite job file.

    ``Batch(owner, path=None, **settings)``: ``path`` is the job file (created if missing,
    resumed if it exists; by default a new file under ``./.streambatch/``). Settings are the job
    settings of :class:`JobSettings` plus:

    - ``xid_mode``: ``'deterministic'`` (default; records without an xid get one derived from
      owner, type and name or value) or ``'random'`` (UUID4, as the incumbent did);
    - ``xid_scheme``: scheme of :meth:`generate_xid`, ``'streambatch'`` or ``'tcex'``;
    - ``on_conflict``: ``'merge'`` (default) or ``'replace'``, for a record saved twice;
    - ``file_content``: a resolver ``fn(xid) -> bytes | str | None`` for Document/Report
      content that was not given with the record (also serves a resumed job);
    - ``indicator_types``: an indicatorTypes file (or its parsed JSON) with custom types;
    - ``buffer_size``: records buffered in memory between writes to the job file (at most
      :data:`WRITER_WRITE_ROWS` while the writer process takes the writes);
    - ``writer``: who writes the job file while staging: ``'inline'`` (this process),
      ``'process'`` (a writer process on another core, :mod:`streambatch.writer`, while this
      one checks and encodes) or ``'auto'`` (default: inline until the batch has written
      :data:`AUTO_WRITER_ROWS` records, then the writer process);
    - ``out_dir``, ``gzip``: where :meth:`build` writes chunk files, and whether to gzip them;
    - ``api``: an :class:`~streambatch.emulator.Emulator` (or an
      :class:`~streambatch.client.ApiConfig`) to submit to, e.g. ``Batch(owner, path, api=tc)``.
    - ``client``: a :class:`streambatch.client.Client` to submit with (default: from the
      ``TC_API_*`` environment, or the embedded emulator when none is configured);
    - ``max_in_flight`` (1), ``file_concurrency`` (4), ``poll_interval`` (the shortest wait
      between polls, 1 s), ``poll_timeout`` (3600 s): how chunks are submitted.
    - ``preflight``: apply the instance's own rules before staging (:mod:`streambatch.rules`):
      ``None`` (default) when an API is given or configured in the environment, or the job
      file holds rules already; ``False`` never; ``True`` as ``None``. The rules are read once
      and kept in the job file; a resumed job applies the same ones without asking again.
    - ``truncate_attributes``: cut an attribute longer than the instance's ``maxSize`` for its
      type (counted, ``outcome()['truncated']``) instead of rejecting the record;
    - ``bypass_exclusions``: send indicators on the instance's exclusion lists anyway;
    - ``rules_cache``, ``rules_refresh``: a store with ``get(key)``/``put(key, value)`` (a
      feed's state file) keeping the rules between jobs, and how old (seconds, or ``"24h"``)
      its copy may be before the rules are read again.

    ``halt_on_batch_error``, ``halt_on_poll_error`` and ``halt_on_file_error`` are ``None``
    (use the ``halt_on_error`` argument of the submit call) or a bool that overrides it for
    job creation/upload, polling and file uploads respectively.
    """

    action = _Setting()
    attribute_write_type = _Setting()
    tag_write_type = _Setting()
    security_label_write_type = _Setting()
    halt_on_error = _Setting()
    playbook_triggers_enabled = _Setting()
    file_merge_mode = _Setting()
    hash_collision_mode = _Setting()

    def __init__(self, owner: str, path: str | os.PathLike[str] | None = None, *,
                 xid_mode: Literal["deterministic", "random"] = "deterministic",
                 xid_scheme: Scheme = "streambatch",
                 on_conflict: Literal["merge", "replace"] = "merge",
                 file_content: ContentSource | None = None,
                 indicator_types: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                 buffer_size: int = 20_000,
                 writer: Literal["auto", "inline", "process"] = "auto",
                 out_dir: str | os.PathLike[str] | None = None,
                 gzip: bool = False,
                 client: "Client | None" = None,
                 api: Any = None,
                 max_in_flight: int = 1,
                 file_concurrency: int = 4,
                 poll_interval: float = 1.0,
                 poll_timeout: float = 3600.0,
                 preflight: bool | None = None,
                 truncate_attributes: bool = False,
                 bypass_exclusions: bool = False,
                 rules_cache: Any = None,
                 rules_refresh: float | str = "24h",
                 **settings: Any) -> None:
        self.owner = text(owner)
        unknown = set(settings) - set(_SETTING_NAMES)
        if unknown:
            raise TypeError(f"unknown Batch settings: {', '.join(sorted(unknown))}")
        if xid_mode not in ("deterministic", "random"):
            raise ValueError("xid_mode must be 'deterministic' or 'random'")
        if on_conflict not in ("merge", "replace"):
            raise ValueError("on_conflict must be 'merge' or 'replace'")
        if writer not in ("auto", "inline", "process"):
            raise ValueError("writer must be 'auto', 'inline' or 'process'")
        self._writer_mode = writer
        self._writer: Writer | None = None
        self._written = 0  # records this Batch has written to the job file
        self._replay: list[Staging] = []  # writes a failed writer process did not commit
        self._unfiltered: list[array] = []  # keys handed to the writer, not yet in the filter (int64 arrays)
        self._unfiltered_n = 0  # how many keys they hold
        self.writer_report: dict[str, Any] = {}  # the writer process's figures, when it has ended
        api_client = client if client is not None else _client_for(api)  # checked before the job file opens
        if api_client is None and preflight is not False:  # the rules are read from a configured API
            from .client import ApiConfig, Client

            try:
                config = ApiConfig.from_env()
            except StreambatchError:  # a half-set environment: said when the batch submits
                config = None
            api_client = Client(config) if config is not None else None
        refresh = rules.refresh_seconds(rules_refresh)
        self.types = TypeRegistry().load()
        if indicator_types is not None:
            self.types.load(indicator_types)
        self.xid_mode = xid_mode
        self.xid_scheme = xid_scheme
        self.on_conflict = on_conflict
        self.file_content = file_content
        self.buffer_size = max(1, buffer_size)
        self._flush_at = self._write_rows()  # rows buffered before a write
        self.gzip = gzip
        job_path = Path(path) if path is not None else default_job_path(self.owner)
        private_dir(job_path.parent)  # 0700 if made here (./.streambatch by default): the lock goes in it first
        self._lock = JobLock(job_path).acquire()
        try:
            self._job = JobFile.open(job_path)
        except BaseException:
            self._lock.release()
            raise
        self.path = self.job.path
        self.out_dir = Path(out_dir) if out_dir is not None else self.path.with_suffix(".chunks")
        try:
            self._job.check_unsynced()
            self.settings = self._load_settings(settings)
            self.rules = self._load_rules(preflight, api_client, rules_cache, refresh)
        except BaseException:
            self._job.close()
            self._lock.release()
            if api_client is not None and client is None:
                api_client.close()
            raise
        self._checker = (rules.Checker(self.rules, self.types, truncate_attributes, bypass_exclusions)
                         if self.rules is not None else None)
        self._said_dropped: set[str] = set()
        self._pending: dict[int, Record] = {}
        self._buffer: dict[int, Row] = {}
        self._rejects: list[dict[str, Any]] = []
        self._client = api_client
        self._emulator: Any = None
        self.max_in_flight = max_in_flight
        self.file_concurrency = max(1, file_concurrency)
        self.poll_policy = PollPolicy(min_interval=poll_interval, timeout=poll_timeout)
        self.halt_on_batch_error: bool | None = None
        self.halt_on_poll_error: bool | None = None
        self.halt_on_file_error: bool | None = None
        self.on_chunk: Callable[[dict[str, Any]], None] | None = None  # called with each finished chunk's status
        # called as on_event(phase, details) when submitting enters a phase: "sending", "polling", "uploading"
        self.on_event: Callable[[str, dict[str, Any]], None] | None = None
        self.should_stop: Callable[[], bool] = lambda: False  # checked before sending and while polling
        self._assoc_buffer: list[tuple[int, bytes]] = []
        self._file_buffer: list[tuple] = []
        self._callbacks: dict[str, ContentSource] = {}

    def _load_settings(self, given: dict[str, Any]) -> JobSettings:
        stored_owner = self.job.get_meta("owner")
        if stored_owner is not None and stored_owner != self.owner:
            raise JobFileError(f"{self.path}: this job file belongs to owner {stored_owner!r}, not {self.owner!r}")
        stored = self.job.get_meta("settings") or {}
        return self._store_settings({**{k: v for k, v in stored.items() if k in _SETTING_NAMES}, **given})

    def _load_rules(self, preflight: bool | None, client: "Client | None", cache: Any,
                    refresh: float) -> "rules.Rules | None":
        """The instance's rules this job applies: those kept in the job file, else read (from
        the feed's cache when fresh, else from the instance) and kept in it."""
        if preflight is False:
            return None
        found = rules.Rules.from_json(self.job.get_meta("rules"))
        if found is not None and found.owner == self.owner:
            log.debug("%s (kept in the job file, read %s)", found.describe(),
                      time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(found.fetched)))
        else:
            found = rules.load(cache.get("rules") if cache is not None else None, client, self.owner, refresh)
            if found is None:
                return None
            if cache is not None and not found.transient:  # after an outage the next job asks again
                cache.put("rules", found.as_json())
            with self.job.transaction():
                self.job.set_meta("rules", found.as_json())
        if found.indicator_types:
            self.types.load(found.indicator_types, replace=True)
        return found

    def _store_settings(self, values: dict[str, Any]) -> JobSettings:
        settings = JobSettings(**values)
        settings.check()
        with self.job.transaction():
            self.job.set_meta("owner", self.owner)
            self.job.set_meta("settings", asdict(settings))
        self.settings = settings
        return settings

    # -- identity ------------------------------------------------------------------------

    def generate_xid(self, identifier: str | Iterable[object] | None = None) -> str:
        """A random xid, or a reproducible one from a string or a list of values."""
        return generate_xid(identifier, self.xid_scheme)

    def default_xid(self, kind: str, spec: TypeSpec, identity: str) -> str:
        """The xid a record gets when it has none (see ``xid_mode``)."""
        return self._default_xid(kind, spec, identity)

    def _default_xid(self, kind: str, spec: TypeSpec, identity: str) -> str:
        if self.xid_mode == "random":
            return generate_xid()
        return record_xid(self.owner, kind, spec.name, identity)

    def _check_group_type(self, spec: TypeSpec, xid: str, key: int) -> None:
        """Refuse a group under an xid that a group of another type holds, in memory or staged:
        a group keeps its type (merging the two would silently retype the one staged)."""
        rec = self._pending.get(key)
        row = self._buffer.get(key)
        if rec is not None and rec.kind == "group" and rec.xid == xid:
            other = rec.type
        elif row is not None and row.kind == "group" and row.xid == xid:
            other = row.type
        elif self._may_be_staged(key):
            data = self._job.get_group(xid)
            other = data["type"] if data is not None else spec.name
        else:
            return
        if other != spec.name:
            raise ValidationError(spec.name, "xid", xid, f"is already used by a {other} in this batch", xid)

    def _spec(self, type_name: Any, kind: str) -> TypeSpec:
        spec = self.types.get(type_name)
        if spec is None or spec.kind != kind:
            raise ValidationError(str(type_name), "type", type_name, f"is not a known {kind} type")
        return spec

    # -- interface 2 (and the core of interface 1) ---------------------------------------

    def group(self, group_type: str, name: str, xid: str | None = None, **kwargs: Any) -> Group:
        """A group of any type. Asking again for an xid already in the batch returns that
        record, with the given fields applied."""
        spec = self._spec(group_type, "group")
        if xid is not None:
            xid = check_xid(spec, xid)
        name = _checked(spec, xid, "name", name)
        xid = xid if xid is not None else self._default_xid("group", spec, name)
        key = group_key(xid)
        self._check_group_type(spec, xid, key)
        rec = self._pending.get(key) or self._staged(key, spec, xid=xid)
        if rec is None:
            rec = Group(spec, name, xid)
        else:
            rec.add_key_value("name", name)
        assert isinstance(rec, Group)
        rec._set_many(kwargs)
        self._pending[key] = rec
        return rec

    def indicator(self, indicator_type: str, summary: str, rating: Any = None, confidence: Any = None,
                  xid: str | None = None, **kwargs: Any) -> Indicator:
        """An indicator of any type, built-in or custom; ``summary`` is its value (``'a : b'``
        for multi-value types)."""
        spec = self._spec(indicator_type, "indicator")
        return self._indicator(spec, parse_summary(spec, summary, xid), xid,
                               rating=rating, confidence=confidence, **kwargs)

    def _indicator(self, spec: TypeSpec, summary: str, xid: str | None, **kwargs: Any) -> Indicator:
        key = indicator_key(spec.name, summary)
        rec = self._pending.get(key) or self._staged(key, spec, summary=summary)
        if rec is None:
            rec = Indicator(spec, summary, xid if xid is not None else self._default_xid("indicator", spec, summary), key)
        assert isinstance(rec, Indicator)
        rec._set_many(kwargs)
        self._pending[key] = rec
        return rec

    def custom_indicator(self, indicator_type: str, *values: str, xid: str | None = None, **kwargs: Any) -> Indicator:
        """An indicator of a custom type from its 1 to 3 values."""
        spec = self._spec(indicator_type, "indicator")
        if len(values) > len(spec.values):
            raise ValidationError(spec.name, "summary", values, f"takes at most {len(spec.values)} values", xid)
        return self._indicator(spec, summary_of(spec, {s.key: val for s, val in zip(spec.values, values)}, xid),
                               xid, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Custom indicator types get an interface-1 method named after them (Email Subject ->
        # email_subject), as in the incumbent framework.
        if not name.startswith("_") and "types" in self.__dict__:
            for spec in self.types:
                if spec.custom and spec.method == name:
                    return partial(self.custom_indicator, spec.name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- interface 3 ---------------------------------------------------------------------

    def add_group(self, data: Mapping[str, Any]) -> Group:
        """A group from a raw batch dict; ``xid`` is required."""
        rec = parse(self.types, data, kind="group")
        assert isinstance(rec, Group)
        return self._adopt(rec)  # type: ignore[return-value]

    def add_indicator(self, data: Mapping[str, Any]) -> Indicator:
        """An indicator from a raw batch dict; ``xid`` is required."""
        rec = parse(self.types, data, kind="indicator")
        assert isinstance(rec, Indicator)
        return self._adopt(rec)  # type: ignore[return-value]

    def _adopt(self, rec: Record) -> Record:
        key = rec.key
        if rec.kind == "group":
            self._check_group_type(rec.spec, rec.xid, key)
        old = self._pending.get(key)
        if old is not None:  # the incumbent returns the record already in the batch
            return old
        self._pending[key] = rec
        return rec

    def add_association(self, entry: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """A top-level ``association`` entry (spec 4.7): ``ref_1``/``id_1``/``type_1``,
        ``ref_2``/``id_2``/``type_2`` and ``associationType`` (or ``association_type``).
        Links are undirected and kept once."""
        raw = {**(entry or {}), **kwargs}
        if "association_type" in raw:
            raw["associationType"] = raw.pop("association_type")
        unknown = set(raw) - {"ref_1", "ref_2", "type_1", "type_2", "id_1", "id_2", "associationType"}
        if unknown:
            raise ValidationError("association", sorted(unknown, key=str)[0], raw, "is not an association field")
        sides = {}
        for n in (1, 2):
            sides[n] = self._association_side(raw, n)
        if sides[1] and sides[2] and not raw.get("associationType"):
            raise ValidationError("association", "associationType", None,
                                  "is required to link two indicators (e.g. 'URL Host')")
        if raw.get("associationType") is not None:
            try:
                raw["associationType"] = text(raw["associationType"])
            except ValueError as exc:
                raise ValidationError("association", "associationType", raw["associationType"], str(exc)) from None
        self._assoc_buffer.append(chunker.association_row(**raw))
        if len(self._assoc_buffer) >= self.buffer_size:
            self._flush()

    def _association_side(self, raw: dict[str, Any], n: int) -> bool:
        """Check and canonicalize side n in place; True if it is an indicator."""
        ref, id_, type_ = raw.get(f"ref_{n}"), raw.get(f"id_{n}"), raw.get(f"type_{n}")
        if ref is None and id_ is None:
            raise ValidationError("association", f"ref_{n}", None, f"side {n} needs ref_{n} or id_{n}")
        if id_ is not None and (isinstance(id_, bool) or not isinstance(id_, int) or not 0 < id_ <= INT_MAX):
            raise ValidationError("association", f"id_{n}", id_, f"must be an integer id from 1 to {INT_MAX}")
        if type_ is None:
            if ref is not None:
                raw[f"ref_{n}"] = _checked(None, None, f"ref_{n}", ref)
            return False
        spec = self.types.get(type_)
        if spec is None:
            raise ValidationError("association", f"type_{n}", type_, "is not a known type")
        raw[f"type_{n}"] = spec.name
        if ref is not None:
            try:
                raw[f"ref_{n}"] = parse_summary(spec, ref) if spec.kind == "indicator" else _checked(spec, None, f"ref_{n}", ref)
            except ValidationError as exc:
                raise ValidationError("association", f"ref_{n}", ref, f"{spec.name}: {exc.reason}") from None
        return spec.kind == "indicator"

    def associate(self, a: Record | str, b: Record | str, association_type: str | None = None) -> None:
        """Link two records (or a record and a group xid) with a top-level association."""
        entry: dict[str, Any] = {"association_type": association_type}
        for n, side in ((1, a), (2, b)):
            if isinstance(side, Indicator):
                entry[f"ref_{n}"], entry[f"type_{n}"] = side.summary, side.type
            else:
                entry[f"ref_{n}"] = side.xid if isinstance(side, Record) else side
        self.add_association({k: v for k, v in entry.items() if v is not None})

    # -- saving --------------------------------------------------------------------------

    def save(self, obj: Record | Mapping[str, Any]) -> None:
        """Write one record to the job file and drop it from memory. A record that fails its
        checks raises :class:`ValidationError` and is neither staged nor kept."""
        if not isinstance(obj, Record):
            self._save_all((obj,), "raise")
            return
        try:
            obj.validate()
        except ValidationError:
            self._forget(obj)
            raise
        self._stage_record(obj)

    def save_all(self, items: Iterable[Record | Mapping[str, Any]], on_error: Literal["raise", "reject"] = "raise") -> int:
        """Stream records (objects or raw batch dicts) into the job file; return how many were
        staged. Raw dicts without an xid get the default one. With ``on_error='reject'`` an
        invalid record is kept in the job file's ``rejected`` table with its reason instead
        of stopping the run. An invalid record is never staged, in part or whole, nor kept in
        memory."""
        return self._save_all(items, on_error)[0]

    def _save_all(self, items: Iterable[Record | Mapping[str, Any]],
                  on_error: str) -> tuple[int, ValidationError | None, int]:
        """:meth:`save_all`; returns (staged, the first error, how many were rejected)."""
        staged = rejected = 0
        first: ValidationError | None = None
        types, default_xid = self.types, self._default_xid
        for item in items:
            try:
                if isinstance(item, Record):
                    item.validate()
                    self._stage_record(item)
                else:
                    spec, data, content = normalize(types, item, default_xid=default_xid)
                    self._stage(spec, data, content)
            except ValidationError as exc:
                if isinstance(item, Record):
                    self._forget(item)
                if on_error != "reject":
                    raise
                self.reject(str(exc), xid=exc.xid, type_name=exc.type, field=exc.field, raw=item)
                rejected += 1
                first = first or exc
                continue
            staged += 1
        return staged, first, rejected

    def _forget(self, rec: Record) -> None:
        """Drop a record whose save failed from memory: a failed save leaves nothing behind (that
        :meth:`close` would stage, or trip on)."""
        if self._pending.get(rec.key) is rec:
            del self._pending[rec.key]

    def _stage_record(self, rec: Record) -> None:
        self._pending.pop(rec.key, None)
        self._stage(rec.spec, rec.data, rec.file_content if isinstance(rec, Group) else None, rec.key)

    def save_normalized(self, spec: TypeSpec, data: dict[str, Any], content: Any = None) -> None:
        """Stage a batch dict that :func:`streambatch.model.normalize` returned (for callers
        that normalized it already, e.g. to compare content hashes)."""
        self._stage(spec, data, content)

    def reject(self, reason: str, *, line: int | None = None, raw: Any = None, source: str | None = None,
               xid: str | None = None, type_name: str | None = None, field: str | None = None) -> None:
        """Keep a piece of input that could not be used in the job file's ``rejected`` table."""
        self._rejects.append({"reason": _storable(reason), "line": line,
                              "raw": bounded_raw(_raw_of(raw)) if raw is not None else None,  # bounded while buffered
                              "source": _storable(source), "xid": _storable(xid), "type_name": _storable(type_name),
                              "field": _storable(field)})
        if len(self._rejects) >= self.buffer_size:
            self._flush()

    def _stage(self, spec: TypeSpec, data: dict[str, Any], content: Any = None, key: int | None = None) -> None:
        """Buffer one canonical batch dict (``key``: its identity key, if the caller has it),
        held to the instance's rules first (:class:`~streambatch.rules.RuleError`)."""
        if self._checker is not None:
            data = self._checker.check(spec, data)
        if key is None:
            key, ident = identity(spec, data)
        else:
            ident = data["name"] if spec.kind == "group" else data["summary"]
        if spec.kind == "group":
            self._check_group_type(spec, data["xid"], key)
        # orjson over-allocates its result (about 2 KB for a small record); a row waiting in
        # the buffer keeps an exact copy instead
        row = Row(spec.kind, key, data["xid"], spec.name, ident, memoryview(orjson.dumps(data)).tobytes())
        old = self._buffer.get(key)
        if old is not None:
            if old.identity != row.identity:  # a 64-bit hash collision: keep both apart
                self._flush()
            elif self.on_conflict == "merge":
                row.body = orjson.dumps(merge_data(old.data, data))
                row.xid = old.xid
        self._buffer[key] = row
        if spec.has_file:
            self._stage_file(spec, data, content)
        if len(self._buffer) >= self._flush_at:
            self._flush()

    def _write_rows(self) -> int:
        """How many rows a write holds: fewer when the writer process takes it."""
        if self._writer_mode == "process" or (self._writer_mode == "auto" and self._written >= AUTO_WRITER_ROWS):
            return min(self.buffer_size, WRITER_WRITE_ROWS)
        return self.buffer_size

    def _stage_file(self, spec: TypeSpec, data: dict[str, Any], content: Any) -> None:
        """Record where a Document's or Report's content comes from: bytes and str are spilled
        into the job file now, a path is kept as a reference, a callable is called at upload."""
        xid, name = data["xid"], data.get("fileName")
        if content is None:
            if self.file_content is None:
                return
            entry = (xid, spec.name, name, "resolver", None, None)
        elif callable(content):
            self._callbacks[xid] = content
            entry = (xid, spec.name, name, "callback", None, None)
        elif isinstance(content, os.PathLike):
            entry = (xid, spec.name, name, "path", None, str(Path(content).resolve()))
        elif isinstance(content, (bytes, bytearray, memoryview)):
            entry = (xid, spec.name, name, "bytes", bytes(content), None)
        else:  # str (checked by model.check_file_content)
            entry = (xid, spec.name, name, "bytes", content.encode(), None)
        self._file_buffer.append(entry)

    def _flush(self, wait: bool = False) -> None:
        """Write the buffered rows, associations, file content and rejects in one transaction:
        here, or handed to the writer process (with ``wait``: and committed by it)."""
        while self._replay:  # left by a writer process that failed: written here, in order
            self._job.stage(self._replay[0], self._merge)
            self._replay.pop(0)
        if self._buffer or self._assoc_buffer or self._file_buffer or self._rejects:
            checker = self._checker
            write = Staging(list(self._buffer.values()), self._assoc_buffer, self._file_buffer, self._rejects,
                            checker.truncated if checker else 0, dict(checker.dropped) if checker else {},
                            replace=self.on_conflict == "replace")
            before, self._written = self._written, self._written + len(write.rows)
            if self._writer is None and (self._writer_mode == "process" or (
                    self._writer_mode == "auto" and before >= AUTO_WRITER_ROWS // 2)):
                self._writer = Writer(self.path)  # 'auto': it starts up while the next writes are made here
            if self._writer is None or (self._writer_mode == "auto" and before < AUTO_WRITER_ROWS):
                self._job.stage(write, self._merge)
                self._clear_buffers()
            else:
                keys = array("q", self._buffer)
                self._clear_buffers()  # the write is the writer's now (kept until committed)
                self._unfiltered.append(keys)
                self._unfiltered_n += len(keys)
                if self._unfiltered_n > UNFILTERED_KEYS:  # no lookups lately: the filter is read again if one comes
                    self._forget_filter()
                if not self._writer.sent:  # this connection's page cache, filled by inline writes, is unused now
                    self._job.free_cache()
                self._writer_call(self._writer.send, write, keys)
            self._flush_at = self._write_rows()
            failpoints.hit("staged")
        if wait and self._writer is not None:
            self._writer_call(self._writer.sync)

    def _clear_buffers(self) -> None:
        if self._checker is not None:
            self._checker.truncated = 0
            self._say_dropped()
        self._buffer.clear()
        self._assoc_buffer, self._file_buffer, self._rejects = [], [], []

    @property
    def _merge(self) -> Callable[[dict, dict], dict] | None:
        return merge_data if self.on_conflict == "merge" else None

    def _writer_call(self, call: Callable[..., Any], *args: Any) -> Any:
        """Call the writer process; if it failed, write inline from now on, starting with
        the writes it did not commit (kept), and raise its :class:`WriterFailed`."""
        try:
            return call(*args)
        except WriterFailed:
            writer, self._writer, self._writer_mode = self._writer, None, "inline"
            assert writer is not None
            self._forget_filter()  # read again from what the job file holds
            self._flush_at = self._write_rows()
            try:
                self._job.end_unsynced()  # what the writer wrote without syncs, synced now
            except sqlite3.Error:  # e.g. the disk is full: the mark stays, the file is checked when next opened
                pass
            self._replay.extend(writer.unwritten(self._job.get_meta("staging_write")))
            raise

    def _forget_filter(self) -> None:
        self._job.forget_filter()
        self._unfiltered, self._unfiltered_n = [], 0

    def _may_be_staged(self, key: int) -> bool:
        """False if surely no record with this identity key is staged; else True, once any
        write still with the writer process that holds such a record is committed. The
        writer's keys join this process's filter here, when a lookup needs them."""
        if self._writer is not None and not self._job.filter_loaded:
            self._writer_call(self._writer.sync)  # the filter is read from the job file: all of it
        if self._unfiltered:
            for keys in self._unfiltered:
                self._job.note_keys(keys)
            self._unfiltered, self._unfiltered_n = [], 0
        if not self._job.may_contain(key):
            return False
        if self._writer is not None and self._writer.in_flight(key):
            self._writer_call(self._writer.sync)
        return True

    @property
    def job(self) -> JobFile:
        """The job file, every write handed to the writer process committed."""
        if self._writer is not None:
            self._writer_call(self._writer.sync)
        return self._job

    def _say_dropped(self) -> None:
        """One warning per attribute type the instance does not take, the first time it is left out."""
        checker = self._checker
        assert checker is not None
        for what, n in checker.dropped.items():
            if what not in self._said_dropped:
                self._said_dropped.add(what)
                log.warning("attribute %s %s: left out of the records that carry it (%d so far; the instance "
                            "would drop it with a warning); add the attribute type on the instance, or remove it "
                            "from the feed's mapping", what, checker.reasons[what], n)
        checker.dropped = {}

    def flush(self) -> None:
        """Stage every record still in memory (saved or not) into the job file. A record
        that is still incomplete (a required field never set) is kept in the ``rejected``
        table, the others are staged, and then the first such error is raised."""
        _, first, bad = self._save_all(list(self._pending.values()), "reject")
        self._flush(wait=True)
        if self._writer is not None:
            self._writer_call(self._writer.settle)  # flushed means durable
        if first is not None:
            more = f" ({bad - 1} more in the rejected table)" if bad > 1 else ""
            raise ValidationError(first.type, first.field, first.value, first.reason + more, first.xid)

    # -- lookups -------------------------------------------------------------------------

    def _staged(self, key: int, spec: TypeSpec, xid: str | None = None, summary: str | None = None) -> Record | None:
        """A staged record (in the write buffer or the job file), rehydrated."""
        row = self._buffer.get(key)
        if row is not None and (row.xid == xid if spec.kind == "group" else row.ident == summary):
            return self._rehydrate(row.data)
        if not self._may_be_staged(key):
            return None
        if spec.kind == "group":
            data = self._job.get_group(xid or "")
        else:
            data = self._job.get_indicator(spec.name, summary or "")
        return None if data is None else self._rehydrate(data)

    def _rehydrate(self, data: dict) -> Record:
        spec = self.types.get(data["type"])
        assert spec is not None
        return from_data(spec, data, self._callbacks.get(data["xid"]))

    def get(self, xid: str) -> Record | None:
        """The record with this xid, from memory or rehydrated from the job file."""
        rec = self._pending.get(group_key(xid))
        if rec is not None and rec.xid == xid:
            return rec
        for rec in self._pending.values():
            if rec.xid == xid:
                return rec
        for row in self._buffer.values():
            if row.xid == xid:
                return self._rehydrate(row.data)
        self._flush()
        data = self.job.get_group(xid) or self.job.find_indicator_by_xid(xid)
        return None if data is None else self._rehydrate(data)

    def content_for(self, xid: str) -> ContentSource | None:
        """The content callback given for a Document/Report in this process, if any."""
        return self._callbacks.get(xid)

    # -- counts --------------------------------------------------------------------------

    def _count(self, kind: str) -> int:
        self._flush()
        extra = 0
        for rec in self._pending.values():
            if rec.kind == kind and self._staged(rec.key, rec.spec, rec.xid, rec._fields.get("summary")) is None:
                extra += 1
        return self.job.count(kind) + extra

    @property
    def group_len(self) -> int:
        return self._count("group")

    @property
    def indicator_len(self) -> int:
        return self._count("indicator")

    def __len__(self) -> int:
        return self.group_len + self.indicator_len

    # -- building ------------------------------------------------------------------------

    def build(self, out_dir: str | os.PathLike[str] | None = None, max_bytes: int | None = None,
              max_records: int | None = None, gzip: bool | None = None) -> list[Path]:
        """Stage everything in memory, then write every record not yet in a chunk into new
        batch JSON files; return their paths (none if nothing is new)."""
        self.flush()
        return self._build(out_dir, max_bytes, max_records, gzip)

    def _build(self, out_dir: str | os.PathLike[str] | None = None, max_bytes: int | None = None,
               max_records: int | None = None, gzip: bool | None = None, max_files: int | None = None) -> list[Path]:
        limits = chunker.Limits(max_bytes or self.settings.max_bytes, max_records or self.settings.max_records)
        return chunker.build(self.job, Path(out_dir) if out_dir is not None else self.out_dir, limits,
                             self.gzip if gzip is None else gzip, max_files)

    # -- submitting (the incumbent's submit API) -----------------------------------------

    @property
    def client(self) -> "Client":
        """The API client: given, from the environment, or the embedded emulator."""
        if self._client is None:
            from .client import ApiConfig, Client

            config = ApiConfig.from_env()
            if config is None:
                from .emulator import Emulator

                self._emulator = Emulator(db=self.path.with_suffix(".emulator.sqlite"), owner=self.owner).start()
                log.warning("no ThreatConnect API configured (TC_API_PATH, TC_API_ACCESS_ID/TC_API_SECRET_KEY or "
                            "TC_TOKEN): submitting to the embedded emulator at %s (data in %s)",
                            self._emulator.url, self._emulator.db)
                config = ApiConfig(self._emulator.url, self._emulator.access_id, self._emulator.secret_key)
            self._client = Client(config)
        return self._client

    @property
    def emulator(self) -> Any:
        """The embedded emulator, when submitting without a configured API (else None)."""
        return self._emulator

    @property
    def poll_timeout(self) -> float:
        return self.poll_policy.timeout

    @poll_timeout.setter
    def poll_timeout(self, seconds: float) -> None:
        self.poll_policy.timeout = float(seconds)

    def _submitter(self) -> Submitter:
        return Submitter(self, self.client)

    def submit_all(self, poll: bool = True, errors: bool = True, process_files: bool = True,
                   halt_on_error: bool = True) -> list[dict[str, Any]]:
        """Send every chunk, one after another: each is polled to completion, its errors are
        fetched and its Documents'/Reports' content uploaded. First finishes whatever an
        earlier run left pending. Returns one batch status per chunk sent."""
        return self._submitter().submit_all(poll, errors, process_files, halt_on_error)

    def submit(self, poll: bool = True, errors: bool = True, process_files: bool = True,
               halt_on_error: bool = True) -> dict[str, Any]:
        """Send the next chunk (building it if needed); returns its batch status ({} if there
        was nothing to send)."""
        results = self._submitter().submit_all(poll, errors, process_files, halt_on_error, max_chunks=1)
        return results[0] if results else {}

    def submit_create_and_upload(self, content: Any = None, halt_on_error: bool = True) -> dict[str, Any]:
        """createAndUpload the next chunk (recorded in the job file; poll it with :meth:`poll`),
        or the given content (a batch dict, JSON bytes or str) as it is. Returns the API's
        response, ``{"status": "Success", "data": {"batchStatus": {...}}}``."""
        if content is None:
            self.flush()
            sub = self._submitter()
            chunk = sub._next_built()
            if chunk is None:
                return {}
            status = sub._send(chunk, halt_on_error)
            return _envelope(status or {})
        body = content if isinstance(content, (bytes, str)) else orjson.dumps(content)
        return _envelope(self.client.create_and_upload(self.settings.config(self.owner), body))

    def submit_job(self, halt_on_error: bool = True) -> int:
        """Create a job (the first of the two-step flow); returns its batch id."""
        return self.client.create_job(self.settings.config(self.owner))

    def submit_data(self, batch_id: int, content: Any, halt_on_error: bool = True) -> dict[str, Any]:
        """Upload a job's input (a batch dict, JSON bytes or str) to a job made by :meth:`submit_job`."""
        body = content if isinstance(content, (bytes, str)) else orjson.dumps(content)
        return self.client.upload_data(batch_id, body)

    def poll(self, batch_id: int, interval: float | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Poll a job until it completes; returns ``{"status": "Success", "data":
        {"batchStatus": {...}}}``. A chunk of this job file is marked completed."""
        sub = self._submitter()
        row = self.job.conn.execute("SELECT id FROM chunks WHERE batch_id = ?", (batch_id,)).fetchone()
        if row is None:
            return _envelope(sub.poll(batch_id, 0, interval, timeout))
        chunk = Chunk.load(self.job, row[0])
        status = sub.poll(batch_id, chunk.items, interval, timeout)
        sub._complete(chunk, status, batch_id)
        return _envelope(status)

    def errors(self, batch_id: int | None = None, halt_on_error: bool = True) -> list[dict[str, Any]]:
        """The per-record errors of a batch job (stored against their xids when the job is one
        of this job file's chunks); with no ``batch_id``, every error stored for this job file,
        in chunk order."""
        sub = self._submitter()
        if batch_id is None:
            return [e for (cid,) in self.job.conn.execute("SELECT id FROM chunks ORDER BY id").fetchall()
                    for e in sub.stored_errors(cid)]
        row = self.job.conn.execute("SELECT id FROM chunks WHERE batch_id = ? AND state IN ('completed', 'done')",
                                    (batch_id,)).fetchone()
        if row is None:
            records = self.client.results(batch_id)
            return self.client.errors(batch_id) if records is None else records
        return sub.fetch_errors(Chunk.load(self.job, row[0]))

    def submit_files(self, halt_on_error: bool = True) -> list[dict[str, Any]]:
        """Upload the Document/Report content of every completed chunk that is not yet
        uploaded; returns ``[{"xid": ..., "uploaded": bool}, ...]``."""
        sub = self._submitter()
        out: list[dict[str, Any]] = []
        for chunk in sub._chunks("state = 'completed' ORDER BY id"):
            out.extend(sub.upload_files(chunk, halt_on_error))
            sub._set(chunk, state="done")
        return out

    # -- life cycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Stage what is still in memory and close the job file. A writer process that
        failed has its uncommitted writes written here before its error is raised."""
        try:
            try:
                self.flush()
                if self._writer is not None:
                    self.writer_report = self._writer_call(self._writer.close)
                    self._writer = None
            except WriterFailed:
                self._flush(wait=True)
                raise
        finally:
            if self._writer is not None:
                self._writer.abandon()
                self._writer = None
            self._job.close()
            self._lock.release()
            if self._client is not None:
                self._client.close()
            if self._emulator is not None:
                self._emulator.close()

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Batch owner={self.owner!r} path={str(self.path)!r}>"


def _checked(spec: TypeSpec | None, xid: str | None, field: str, value: Any) -> str:
    try:
        return text(value)
    except ValueError as exc:
        raise ValidationError(spec.name if spec else None, field, value, str(exc), xid) from None


def _storable(value: Any) -> str | None:
    """Text SQLite can store (valid UTF-8): lone surrogates are written as escapes."""
    if value is None:
        return None
    out = value if type(value) is str else str(value)
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        out = out.encode("utf-8", "backslashreplace").decode("utf-8")
    return out


def _raw_of(item: Any) -> str:
    """A rejected input as the ``rejected`` table keeps it: JSON when it can be, else its repr
    (a record object as its batch JSON)."""
    if isinstance(item, Record):
        item = item.data
    if isinstance(item, str):
        return _storable(item)
    try:
        return orjson.dumps(item).decode()
    except TypeError:  # not JSON: lone surrogates, integers beyond 64 bits, other keys, nested too deep
        pass
    try:
        return _storable(repr(item))
    except RecursionError:
        return f"<{type(item).__name__} nested too deeply to show>"


def _client_for(api: Any) -> "Client | None":
    """``Batch(..., api=...)``: an :class:`~streambatch.emulator.Emulator` (anything with
    ``url``, ``access_id`` and ``secret_key``) or an :class:`~streambatch.client.ApiConfig`."""
    if api is None:
        return None
    from .client import ApiConfig, Client

    if isinstance(api, ApiConfig):
        return Client(api)
    if all(hasattr(api, a) for a in ("url", "access_id", "secret_key")):
        return Client(ApiConfig(api.url, api.access_id, api.secret_key))
    raise TypeError(f"api must be an Emulator or an ApiConfig, not {type(api).__name__}")
