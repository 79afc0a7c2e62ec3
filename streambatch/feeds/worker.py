"""Feed cycles and the scheduled worker.

A cycle reads the feed (streamed), sends only what changed since the last successful cycle, and
records what it did. It first finishes the job of a cycle that was interrupted (a kill, a
SIGTERM, the API down): that job file is resumed, not rebuilt.

1. Every record is checked and canonicalized, and its content hash compared with the state
   file: new and changed records are staged in a new job file, unchanged ones only marked seen.
   A row the state file knows as it was (by the key of a text or csv row, which the reader
   gives without mapping it, or by the hash of the record a reader made) is unchanged without
   being mapped or checked again; the keys the state knows are searched in memory, loaded
   from the row key file the last confirmed cycle wrote (:mod:`streambatch.feeds.rowkeys`),
   and only unknown keys are looked up in the state file.
   Bad rows and invalid records go to the job file's ``rejected`` table with line and reason.
   The lifecycle rules apply here (:mod:`streambatch.feeds.lifecycle`): an expired record is
   made inactive, an unchanged one whose keep-alive is due is staged again, and indicators sent
   get the feed's expiry.
2. If the whole feed was read, records it lists more than once are settled: they are sent as
   the merge of all their occurrences (every occurrence of a record that was repeated last
   time is staged; the merge is sent if its hash differs from the last one sent). A record
   repeated for the first time, some of whose occurrences were unchanged and so not staged,
   is not sent partly: it is sent whole, merged, by the next cycle.
3. If the whole feed was read, records it no longer has are handled per ``removed``.
4. The job is submitted; records the API accepted have their hash confirmed, records it refused
   keep their old hash and are sent again next cycle.

An unchanged source (HTTP 304, the same validators, or the same digest of its bytes), when
the last complete read left nothing to do and nothing else is due, is not read: the cycle
records a run counted as unchanged and makes no job file (:mod:`streambatch.feeds.unchanged`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import xxhash

from ..batch import Batch
from ..errors import BusyError, JobFileError, StreambatchError, ValidationError
from ..model import identity, normalize
from ..outcome import dropped_attributes, failed_xids, outcome
from ..pipeline import StopRequested
from ..store import JobFile, JobLock, private_dir
from ..xid import hash64
from .config import BATCH_KEYS, FeedConfig
from ..logs import iso
from ..failure import describe
from ..failure import expected as _expected
from .lifecycle import Lifecycle
from .readers import FeedItem, read_feed
from .sources import display_url, is_url
from . import rowkeys, unchanged
from .sources import unchanged as source_unchanged
from .state import COUNTS, FeedState

log = logging.getLogger("streambatch.feeds")

BACKOFF_BASE = 30.0  # seconds before the first retry of a failed feed
BACKOFF_CAP = 1800.0  # never more than this between attempts


def backoff(failures: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: doubling from
    :data:`BACKOFF_BASE`, capped at :data:`BACKOFF_CAP`, with +/-20% jitter so that feeds that
    failed together do not retry together."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, failures - 1)) * (0.8 + 0.4 * rng())


@dataclass
class CycleStats:
    feed: str
    run: int
    status: str = "running"
    read: int = 0
    rejected: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    repeated: int = 0
    expired: int = 0  # sent as inactive in this cycle: their own expiry passed
    kept_alive: int = 0  # present and unchanged, sent again by keep_alive
    removed: int = 0  # left the feed in this cycle
    retired: int = 0  # made inactive or deleted in this cycle
    held: int = 0  # retirements held back by the mass-removal guard
    sent: int = 0  # records in chunks the API completed
    accepted: int = 0
    failed: int = 0
    warned: int = 0
    duration: float = 0.0
    message: str | None = None
    earlier: list[str] = field(default_factory=list)  # interrupted runs finished first
    attention: list[str] = field(default_factory=list)  # what an operator should look at
    next_attempt: float | None = None  # after a failure: when the worker tries again
    finishing: bool = False  # the stats of finishing an interrupted run, not of a new cycle
    source_unchanged: bool = False  # the source was the same and nothing else was due: nothing was read
    unprocessed: int = 0  # sent, but not reached by the API (haltOnError stopped the job)
    jobs: int = 0  # batch jobs the API completed in this cycle
    bytes: int = 0  # bytes of their chunk files
    job_seconds: list[float] = field(default_factory=list)  # from sending each chunk to its job completing
    attributes_dropped: dict[str, int] = field(default_factory=dict)  # by type: not taken by the instance

    def as_json(self) -> dict[str, Any]:
        """The run as ``run --json`` prints it (times ISO-8601 UTC)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("next_attempt", "job_seconds")}
        out["next_attempt"] = iso(self.next_attempt)
        return out

    def line(self) -> str:
        if self.finishing:
            return f"feed {self.feed}: interrupted run {self.run} {self.status} again while being finished: {self.message}"
        removal = f"removed {self.removed:,}"
        if self.retired or self.held:
            removal += f" (retired {self.retired:,}, held {self.held:,})"
        lifecycle = "".join(f", {label} {n:,}" for label, n in (("kept alive", self.kept_alive),
                                                                 ("expired", self.expired)) if n)
        return (f"feed {self.feed}: run {self.run} {self.status}: read {self.read:,}, rejected {self.rejected:,}, "
                f"new {self.new:,}, changed {self.changed:,}, unchanged {self.unchanged:,}{lifecycle}, "
                f"repeated {self.repeated:,}, {removal}; sent {self.sent:,}: accepted {self.accepted:,}, "
                f"failed {self.failed:,}, warned {self.warned:,} in {self.duration:.1f} s"
                + (f" ({self.message})" if self.message else ""))

    def exit_code(self, max_rejected: tuple[str, float] | None = None) -> int:
        """0: done, everything accepted; 1: failed or interrupted (the next run finishes it);
        3: done, but something needs a look (:attr:`attention`, and ``max_rejected``)."""
        if self.status != "done":
            return 1
        if max_rejected is not None and self.read:
            kind, limit = max_rejected
            over = self.rejected > (limit if kind == "count" else limit * self.read)
            if over:
                shown = f"{limit:g}" if kind == "count" else f"{limit:.0%} of the rows read"
                rows = "row was" if self.rejected == 1 else "rows were"
                self.attention.append(f"{self.rejected:,} {rows} rejected, more than --max-rejected ({shown})")
        return 3 if self.attention else 0


class Stopping(StreambatchError):
    """A stop was requested (SIGTERM/SIGINT); the cycle stopped at a step boundary."""


class FeedRunner:
    """Runs cycles of one feed. ``client`` is shared by every cycle (default: the batch's own).
    ``progress(phase, counts)`` (optional) is told what the cycle is doing: ``reading`` (rows
    read so far), ``submitting`` (records sent of those staged), ``finishing`` (an interrupted
    run's job)."""

    #: recognise unchanged rows by the row key file (:mod:`streambatch.feeds.rowkeys`); False:
    #: look every key up in the state file
    row_key_file = True

    def __init__(self, config: FeedConfig, client: Any = None, stop: threading.Event | None = None,
                 clock: Callable[[], float] | None = None, allow_removal: bool = False,
                 progress: Callable[[str, dict[str, Any]], None] | None = None, metrics: Any = None,
                 owner_gate: Callable[[], Any] | None = None) -> None:
        self.config = config
        self.client = client
        self.stop = stop or threading.Event()
        self.clock = clock or (lambda: time.time())
        self.allow_removal = allow_removal
        self.progress = progress or (lambda phase, counts: None)
        self.metrics = metrics  # a streambatch.metrics.Metrics: jobs in flight, as they happen
        self.owner_gate = owner_gate or contextlib.nullcontext  # held while this feed's jobs are in flight
        private_dir(config.state_dir)

    def _batch(self, job: Path, **settings: Any) -> Batch:
        options = {k: v for k, v in self.config.batch.items() if k in BATCH_KEYS}
        batch = Batch(self.config.owner, job, client=self.client, **{**options, **settings})
        batch.should_stop = self.stop.is_set
        return batch

    def lock(self) -> JobLock:
        """The feed's lock (a file in its state folder, released by the kernel when the process
        ends): one cycle of a feed at a time, across processes. Raises :class:`BusyError`."""
        try:
            return JobLock(self.config.state_dir / "feed").acquire()
        except BusyError as exc:
            raise BusyError(f"feed {self.config.name}: {exc}") from None

    def run_cycle(self) -> CycleStats:
        """One cycle: finish an interrupted one, then read, diff, send, record. Failures are
        in the returned stats (``status`` "failed", ``message``); only a lock held by another
        process (:class:`BusyError`) and errors that are bugs are raised."""
        lock = self.lock()
        try:
            state = FeedState(self.config.state_dir / "state.sqlite")
            try:
                return self._cycle(state, time.monotonic())
            finally:
                state.close()
        finally:
            lock.release()

    def _cycle(self, state: FeedState, started: float) -> CycleStats:
        earlier: list[str] = []
        try:
            line = self._finish_interrupted(state)
        except Stopping as exc:
            stats = CycleStats(self.config.name, state.get("current")["run"], "interrupted", message=str(exc),
                               finishing=True)
            self._log(stats)
            return stats
        except Exception as exc:
            current = state.get("current") or {}
            stats = CycleStats(self.config.name, current.get("run", 0), "failed", message=describe(exc),
                               finishing=True)
            self._failed(state, stats)
            self._log(stats)
            if not _expected(exc):
                raise
            return stats
        if line:
            earlier.append(line)
            log.info("%s", line)
        skipped = self._skip_unchanged(state, started, earlier)
        if skipped is not None:
            return skipped
        state.put(unchanged.MARK, None)  # left again only by a clean complete read (see _leave_mark)
        self._deferred = self._waiting = 0
        complete = False
        job = self.config.state_dir / job_name("job")
        run = state.start_run(job, self.clock())
        current = {"run": run, "job": job.name, "read": False}
        state.put("current", current)
        stats = CycleStats(self.config.name, run, earlier=earlier)
        unexpected: BaseException | None = None
        done: dict[str, int] | None = None  # the job's outcome, once submitting finished
        reading = True
        try:
            with self._batch(job, rules_cache=state) as batch:  # the instance's rules, cached in the state file
                try:
                    complete = self._stage(state, batch, run, stats)
                    reading = False
                    if complete:
                        self._repeats(state, batch, stats)
                    batch.flush()  # all that the state file says is staged is in the job file
                    state.put("current", {**(state.get("current") or current), "read": True})  # keeps a read's cursor
                    if complete and not self.stop.is_set():
                        self._removed(state, batch, run, stats)
                    done = self._submit(state, batch, run, stats)
                finally:
                    try:
                        self._count_sent(batch, stats, done)
                    except (sqlite3.Error, OSError):  # the job file failed too: the error above says why
                        pass
            stats.status = "done"
        except Stopping as exc:
            stats.status, stats.message = "interrupted", str(exc)
        except Exception as exc:
            stats.status, stats.message = "failed", describe(exc, self.config.state_dir)
            if reading:
                stats.message += "; failed while reading the feed: nothing was sent or removed, the next run reads it again"
            if not _expected(exc):
                unexpected = exc
        finally:
            stats.duration = time.monotonic() - started
            state.update_run(run, status=stats.status, finished=time.time(), duration=stats.duration,
                             message=stats.message, **{k: getattr(stats, k) for k in COUNTS})
        if stats.status == "done":
            state.put("current", None)
            state.put("failures", None)
            if complete:
                self._leave_mark(state, stats)
                self._save_keys(state, stats)
            self._attention(stats)
            self._prune()
        elif stats.status == "failed":
            self._failed(state, stats)
        self._log(stats)
        if unexpected is not None:
            raise unexpected
        return stats

    def _skip_unchanged(self, state: FeedState, started: float, earlier: list[str]) -> CycleStats | None:
        """The cycle of an unchanged source that nothing else gives work (see
        :mod:`streambatch.feeds.unchanged`): a run recorded, counted as unchanged, nothing
        read, no job file made. None: the cycle reads the feed."""
        config = self.config
        if unchanged.incremental(config.source):
            return None
        found = state.get(unchanged.MARK)
        now = self.clock()
        why = unchanged.work_due(state, config, found, now, self.client)
        if why is not None:
            log.debug("feed %s: read in full: %s", config.name, why)
            return None
        cache = state.get("http_cache") or {}
        same = source_unchanged(config.source, base_dir=config.base_dir, cache=cache, digest=found.get("digest"),
                                options={"owner": config.owner, **config.options})
        if same is None:
            return None
        run = state.start_run(None, now)
        counts = found.get("counts") or {}
        # counted as the unchanged cycle it stands for: the rows of that read, all its records unchanged
        stats = CycleStats(config.name, run, "done", earlier=earlier, source_unchanged=True,
                           message=f"source unchanged since run {found['run']} ({same}): not read again, counts as in run {found['run']}",
                           **{k: int(counts.get(k, 0)) for k in ("read", "rejected", "unchanged", "repeated")})
        stats.duration = time.monotonic() - started
        state.update_run(run, status=stats.status, finished=time.time(), duration=stats.duration,
                         message=stats.message, **{k: getattr(stats, k) for k in COUNTS})
        state.put("http_cache", {**cache, "not_modified": True})
        state.put("failures", None)
        log.info("feed %s: %s", config.name, stats.message)
        self._log(stats)
        return stats

    def _leave_mark(self, state: FeedState, stats: CycleStats) -> None:
        """After a cycle that read the whole feed: the mark that lets the next cycle skip the
        source if it is unchanged, unless this cycle left the next one work."""
        cache = state.get("http_cache") or {}
        comparable = bool(cache.get("digest") or cache.get("etag") or cache.get("last_modified"))
        if (not comparable or stats.failed or stats.unprocessed or stats.held or self._deferred or self._waiting
                or stats.read == 0 or unchanged.incremental(self.config.source)):
            return
        records = sum(getattr(stats, k) for k in ("new", "changed", "unchanged", "expired", "kept_alive"))
        unchanged.mark(state, self.config, stats.run, self.life.now, cache.get("digest"),
                       {"read": stats.read, "rejected": stats.rejected, "unchanged": records, "repeated": stats.repeated})

    def _save_keys(self, state: FeedState, stats: CycleStats) -> None:
        """After a cycle that read the whole feed and whose job was confirmed: the row key file
        the next cycle recognises its unchanged rows by. The file loaded is kept when every row
        was recognised by it and no record left, repeated or was retired."""
        if not self.row_key_file:
            return
        keys, self._keys = self._keys, None  # freed before a new file is sorted: the keys are held once
        if (keys is not None and not self._unknown and not (stats.removed or stats.retired or stats.repeated
                                                             or self._deferred)):
            rowkeys.keep(state, keys)
            return
        del keys  # not held while the new file is written
        rowkeys.write(state, self.config.state_dir)

    def _count_sent(self, batch: Batch, stats: CycleStats, o: dict[str, int] | None) -> None:
        """The cycle's counts from the job's outcome (computed again only when the cycle
        stopped before submitting finished)."""
        o = o if o is not None else outcome(batch.job)
        stats.sent, stats.accepted, stats.failed, stats.warned = o["sent"], o["accepted"], o["failed"], o["warned"]
        stats.unprocessed = o["unprocessed"]
        stats.attributes_dropped = dropped_attributes(batch.job)

    def _attention(self, stats: CycleStats) -> None:
        name = self.config.path
        if stats.unprocessed:
            stats.attention.append(f"{stats.unprocessed:,} record(s) were not processed (haltOnError stopped the "
                                   f"job at an error) and are sent again next cycle: streambatch errors {name}")
        if stats.failed:
            stats.attention.append(f"{stats.failed:,} record(s) failed at the API and are sent again next cycle: "
                                   f"streambatch errors {name}")
        if stats.warned:
            stats.attention.append(f"{stats.warned:,} record(s) were accepted with a part dropped (warnings): "
                                   f"streambatch errors {name}")
        if stats.attributes_dropped:
            kinds = ", ".join(f"{what} ({n:,})" for what, n in sorted(stats.attributes_dropped.items()))
            stats.attention.append(f"attributes the instance does not take were left out of the records: {kinds}; "
                                   f"add the attribute types on the instance or remove them from the mapping")
        if stats.read and stats.rejected == stats.read:
            stats.attention.append(f"every row read ({stats.read:,}) was rejected: streambatch rejected {name}")

    def _failed(self, state: FeedState, stats: CycleStats) -> None:
        """Record a failure in a row and when the worker tries the feed again."""
        before = state.get("failures") or {}
        count = int(before.get("count", 0)) + 1
        now = self.clock()
        stats.next_attempt = now + backoff(count)
        state.put("failures", {"count": count, "since": before.get("since", now), "next": stats.next_attempt,
                               "reason": stats.message})

    # -- the steps -----------------------------------------------------------------------

    def _finish_interrupted(self, state: FeedState) -> str | None:
        """Finish the job of a cycle that stopped after reading the feed; returns what it
        sent, as a line. One that stopped while reading is dropped instead: its job holds
        part of the feed (possibly part of a record listed on several rows), and this cycle
        reads the feed again anyway."""
        current = state.get("current")
        if not current:
            return None
        run = current["run"]
        job = state.job_path(current["job"])
        if current.get("read", True) is False:
            log.info("feed %s: run %s stopped while reading the feed; dropping its partial job %s",
                     self.config.name, run, job)
            state.discard_pending(run)
            _remove_job(job)
            state.update_run(run, status="interrupted (dropped)", finished=time.time())
            state.put("current", None)
            return None
        if not job.exists():  # its records were never sent: the feed sends them again
            log.warning("feed %s: the job file of interrupted run %s is gone (%s); its records are sent again "
                        "from the feed", self.config.name, run, job)
            state.discard_pending(run)
            state.update_run(run, status="interrupted (job file gone)", finished=time.time())
            state.put("current", None)
            return None
        log.info("feed %s: finishing the job of interrupted run %s (%s)", self.config.name, run, job)
        self.progress("finishing", {"run": run})
        before = next((r for r in state.runs(1000) if r["id"] == run), {})
        try:
            JobFile.check(job)
            batch = self._batch(job)
        except JobFileError as exc:
            if isinstance(exc, BusyError):
                raise
            raise JobFileError(f"{exc}. It is the job of interrupted run {run}: move it away and run again, and "
                               "the records it held are sent again from the feed") from None
        try:
            with batch:
                o = self._submit(state, batch, run, None)
        except sqlite3.DatabaseError as exc:
            raise JobFileError(f"{job}: {exc}. It is the job of interrupted run {run}: if it is damaged, move it "
                               "away and run again, and the records it held are sent again from the feed") from None
        state.update_run(run, status="done (resumed)", finished=time.time(),
                         **{k: o[k] for k in ("sent", "accepted", "failed", "warned")})
        delta = {k: o[k] - int(before.get(k) or 0) for k in ("sent", "accepted", "failed", "warned")}
        return (f"feed {self.config.name}: finished interrupted run {run}: sent {delta['sent']:,}: "
                f"accepted {delta['accepted']:,}, failed {delta['failed']:,}, warned {delta['warned']:,}")

    @property
    def _source_name(self) -> str:
        source = self.config.source
        return display_url(source) if is_url(source) else source

    def _stage(self, state: FeedState, batch: Batch, run: int, stats: CycleStats) -> bool:
        """Read the feed; stage new and changed records. True if the whole feed was read."""
        cache = state.get("http_cache") or {}
        cache.pop("url", None)  # state files before url_sha256 kept the URL itself, which may carry a key
        cache["cursor"] = state.get("cursor")  # where an incremental (TAXII) read starts; see _commit_cursor
        if not unchanged.incremental(self.config.source):  # read whole: only _skip_unchanged asks conditionally
            cache.pop("etag", None)
            cache.pop("last_modified", None)
        items = read_feed(self.config.source, self.config.format, base_dir=self.config.base_dir,
                          mapping=self.config.mapping, options={"owner": self.config.owner, **self.config.options},
                          cache=cache, row_keys=bytes.fromhex(unchanged.config_digest(self.config)))
        buffer: list[FeedItem] = []
        self._keys = rowkeys.load(state, self.config.state_dir) if self.row_key_file else None
        self._unknown = 0  # rows read that the row key file did not recognise
        self.life = Lifecycle(self.config, self.clock())
        if self.life.keep_alive is not None:
            state.date_sends(self.life.now)
        if self._keys is not None:
            self._keys.exclude(state.unknowable_raws(self.life.now, self.life.keep_alive))
        state.begin_cycle(filed=self._keys is not None)
        for n, item in enumerate(items):
            if n % 10_000 == 0:
                if self.stop.is_set():
                    raise Stopping("stopped while reading the feed; the next run reads it again")
                self.progress("reading", {"read": n})
            stats.read += 1
            buffer.append(item)
            if len(buffer) >= 10_000:
                self._sift(state, batch, run, buffer, stats)
        self._sift(state, batch, run, buffer, stats)
        complete = not cache.pop("partial", False)  # an incremental read has only what was added
        cache.pop("cursor", None)
        pending = cache.pop("cursor_pending", None)
        if pending is not None:  # committed with the run's job (_commit_cursor), kept with the run until then
            state.put("current", {**(state.get("current") or {}), "cursor": pending})
        state.put("http_cache", cache)
        if cache.get("not_modified"):
            log.info("feed %s: source not modified since the last run", self.config.name)
            return False
        state.end_reading(self._keys.unread() if self._keys is not None else ())
        return complete

    def _sift(self, state: FeedState, batch: Batch, run: int, items: list[FeedItem], stats: CycleStats) -> None:
        """Rows known as they were last time -- by a deferred row's key, else by the hash of the
        record the reader made (confirmed, present) -- are unchanged without being mapped or
        checked again; the others are mapped (a deferred row), checked, canonicalized and
        diffed. Bad rows are rejected in the order they came."""
        if not items:
            return
        life = self.life
        raws: list[bytes | None] = [item.key for item in items]  # the key each item is known by
        encodings: dict[int, bytes] = {}
        if None in raws:  # records a reader made whole: known by the hash of their encoding
            for i, item in enumerate(items):
                if raws[i] is None and item.record is not None and not _is_association(item.record):
                    encoded = _encoded(item.record)
                    if encoded is not None:
                        encodings[i] = encoded
                        raws[i] = xxhash.xxh3_128_digest(encoded)
        unknown: Any = range(len(items))
        if self._keys is not None:  # known by the row key file: unchanged and read without a query
            unknown, again = self._keys.see(raws)
            stats.unchanged += len(items) - len(unknown)
            if again:
                state.mark_seen_raw(again)
        entries = [(items[i], raws[i], encodings.get(i)) for i in unknown]
        self._unknown += len(entries)
        known = state.lookup_raw([raw for _item, raw, _encoded in entries if raw is not None], life.now,
                                 life.keep_alive)
        seen: list[tuple[int, str, str, str]] = []
        pending: list[tuple[Any, dict, Any, tuple[int, str, str, str], int, bytes, bool]] = []
        for item, raw, encoded in entries:
            ident = known.get(raw) if raw is not None else None
            if ident is not None:
                stats.unchanged += 1
                seen.append(ident)
                continue
            item = item.made()
            if item.error is not None:
                stats.rejected += 1
                batch.reject(item.error, line=item.line, raw=item.raw, source=self._source_name)
                continue
            record, line = item.record, item.line
            assert record is not None
            if _is_association(record):
                self._association(batch, record["association"], line, stats)
                continue
            if encoded is None:  # a deferred row just mapped, or a record that cannot be encoded
                try:
                    orjson.dumps(record)
                except (TypeError, orjson.JSONEncodeError) as exc:  # a value no record can hold (a huge int, say)
                    stats.rejected += 1
                    batch.reject(f"record cannot be encoded: {exc}", line=line, raw=repr(record)[:1000],
                                 source=self._source_name)
                    continue
            assert raw is not None
            try:
                spec, data, _content = normalize(batch.types, record, default_xid=batch.default_xid)
            except ValidationError as exc:
                stats.rejected += 1
                batch.reject(str(exc), line=line, raw=record, source=self._source_name,
                             xid=exc.xid, type_name=exc.type, field=exc.field)
                continue
            key, name = identity(spec, data)
            if spec.kind == "group":  # a group is the same record by xid, whatever its name
                name = data["xid"]
            data, expired = life.prepare(spec, data)
            pending.append((spec, data, line, (key, spec.kind, spec.name, name), hash64(orjson.dumps(data)), raw,
                            expired))
        state.mark_seen(seen)
        self._diff(state, batch, run, pending, stats)
        items.clear()

    def _diff(self, state: FeedState, batch: Batch, run: int, pending: list, stats: CycleStats) -> None:
        if not pending:
            return
        life = self.life
        known = state.lookup([p[3] for p in pending], life.keep_alive)
        if self._keys is not None:  # a record the row key file lists, read as another row
            state.mark_seen([ident for ident, (*_, raw) in known.items()
                             if raw is not None and self._keys.take_out(raw) == rowkeys.ONCE])
        rows = []
        for spec, data, line, ident, h, raw, expired in pending:
            sent_hash, retired, multi, due, _raw = known.get(ident, (None, 0, 0, False, None))
            until = life.until(spec, data)
            if ident not in known:
                counted = "expired" if expired else "new"
            elif sent_hash != h or multi:  # every occurrence of a repeated record is staged
                counted = "expired" if expired else "changed"
                if counted == "changed" and not multi:
                    self._changed(state, spec, ident, data)
            elif due and life.keep(data, expired):
                counted = "kept_alive"
            else:
                counted = "unchanged"
                stats.unchanged += 1
                rows.append((*ident, data["xid"], None, raw, counted, until))
                continue
            if retired and spec.kind == "indicator" and "active" not in data:
                data = {**data, "active": True}  # it was sent as inactive when it left the feed; h stays the feed's
            try:
                batch.save_normalized(spec, life.stamped(spec, data))  # the stamp is not content: h is without it
            except ValidationError as exc:  # e.g. a group xid already staged as another group type
                stats.rejected += 1
                batch.reject(str(exc), line=line, raw=data, source=self._source_name, xid=exc.xid,
                             type_name=exc.type, field=exc.field)
                continue
            setattr(stats, counted, getattr(stats, counted) + 1)
            rows.append((*ident, data["xid"], h, raw, counted, until))
        state.record(run, rows)

    def _changed(self, state: FeedState, spec: Any, ident: tuple[int, str, str, str], data: dict[str, Any]) -> None:
        """A record the feed changed, before the state file records it (a dry run samples them)."""

    def _repeats(self, state: FeedState, batch: Batch, stats: CycleStats) -> None:
        """Settle the records the feed listed more than once: the job file holds the merge of
        their staged occurrences. Sent when every occurrence was staged and the merge differs
        from what was sent last; a partial merge is taken out and sent whole next cycle."""
        repeats = state.repeats()
        settled = []
        deferred = 0
        if repeats:
            batch.flush()
        due = state.lookup([r[0] for r in repeats], self.life.keep_alive) if self.life.keep_alive else {}
        with batch.job.transaction():
            for ident, sent_hash, count, all_staged, counted in repeats:
                deferred += self._settle(batch, ident, sent_hash, count, all_staged, counted, stats, settled,
                                         bool(due.get(ident, (0, 0, 0, False, None))[3]))
        state.settle_repeats(settled)
        self._deferred = deferred
        if deferred:
            log.info("feed %s: %d record(s) now appear more than once in the feed; each is sent whole, as the "
                     "merge of its occurrences, by the next cycle", self.config.name, deferred)

    def _settle(self, batch: Batch, ident: tuple, sent_hash: int | None, count: int, all_staged: bool,
                counted: dict[str, int], stats: CycleStats, settled: list, due: bool) -> int:
        """Settle one repeated record; returns 1 if it is left for the next cycle. The hash of
        the merge is taken without the cycle's expiry stamp (it is not content)."""
        for name, n in counted.items():  # counted once, as a record, not per occurrence
            setattr(stats, name, getattr(stats, name) - n)
        stats.repeated += count - 1
        _key, kind, type_name, name = ident
        staged = batch.job.find(kind, type_name, name)
        if staged is not None and self.life.stamp is not None and kind == "indicator":
            body = batch.job.get_indicator(type_name, name) or {}
            staged = (staged[0], hash64(orjson.dumps(self.life.unstamped(body))))
        if staged is not None and all_staged and (staged[1] != sent_hash or (due and not counted["expired"])):
            if counted["new"]:  # first read in this cycle
                stats.new += 1
            elif counted["expired"]:
                stats.expired += 1
            elif staged[1] != sent_hash:
                stats.changed += 1
            else:
                stats.kept_alive += 1
            settled.append((ident, staged[1], False))
            return 0
        if staged is not None:
            batch.job.drop(kind, staged[0])
        if all_staged:
            stats.unchanged += 1
            settled.append((ident, None, False))
            return 0
        stats.changed += 1
        settled.append((ident, None, True))
        return 1

    def _association(self, batch: Batch, entry: dict, line: int, stats: CycleStats) -> None:
        try:
            batch.add_association(entry)
        except ValidationError as exc:
            stats.rejected += 1
            batch.reject(str(exc), line=line, raw=entry, source=self._source_name)

    def _removed(self, state: FeedState, batch: Batch, run: int, stats: CycleStats) -> None:
        """Records the complete read did not have: counted, and retired (made inactive or
        deleted, per ``removed``) once absent from ``absent_cycles`` complete reads in a row
        (and, to be deleted, missing for ``grace``). Never on an empty source, and never more
        at once than ``max_removed`` allows, unless the run allows it."""
        if stats.read == 0 and not self.allow_removal:
            if state.live():
                stats.attention.append("the source was empty: nothing is removed (if the feed really is empty now, "
                                       "run it once with --allow-removal)")
            return
        missing = state.missing()
        stats.removed = sum(1 for m in missing if m[6] == 0)  # left the feed in this cycle
        if not missing:
            return
        now = self.clock()
        action = self.config.removed
        ripe = [m for m in missing if m[6] + 1 >= self.config.absent_cycles and not m[7]]
        # records a later complete read may retire: those cycles cannot be skipped
        waiting = [m for m in missing if not m[7] and (action == "delete" or (action == "inactive" and m[1] == "indicator"))]
        if action == "inactive":
            due = [m for m in ripe if m[1] == "indicator"]
        elif action == "delete":
            due = [m for m in ripe if (m[5] or now) <= now - self.config.grace]
        else:
            due = []
        live = state.live()  # one count of the state's rows: it is read by the guard and its messages
        limit = None if self.allow_removal else self.config.removal_limit(live)
        if limit is not None and action != "keep" and stats.removed > limit and len(due) <= limit:
            stats.attention.append(
                f"{stats.removed:,} record(s) left the feed in this cycle, more than max_removed = "
                f"{self.config.max_removed!r} allows ({limit:,} of {live:,}); they are not retired unless "
                "a run allows it (--allow-removal) or max_removed is raised")
        state.mark_missing(now)
        if limit is not None and len(due) > limit:
            stats.held = len(due)
            stats.attention.append(
                f"{len(due):,} record(s) would be retired ({self.config.removed}), more than max_removed = "
                f"{self.config.max_removed!r} allows ({limit:,} of {live:,}); nothing was retired. If the "
                "feed really shrank, run it once with --allow-removal, or raise max_removed")
            log.warning("feed %s: %s", self.config.name, stats.attention[-1])
            return
        self._waiting = len(waiting) - len(due)
        if not due:
            return
        if action == "inactive":
            rows = []
            for key, kind, type_, ident, xid, *_ in due:
                spec, data, _ = normalize(batch.types, {"type": type_, "summary": ident, "xid": xid, "active": False})
                batch.save_normalized(spec, data)
                rows.append((key, kind, type_, ident, xid, hash64(orjson.dumps(data))))
            batch.flush()  # in the job file before the state file calls them staged
            state.set_pending(rows)
        else:
            self._delete(due)
            state.forget([m[:4] for m in due])
        stats.retired = len(due)

    def _delete(self, due: list) -> None:
        job = self.config.state_dir / job_name("delete")
        with self._batch(job, action="Delete") as batch:
            for _key, kind, type_, ident, xid, *_ in due:
                raw = {"type": type_, "xid": xid, ("name" if kind == "group" else "summary"): ident}  # groups: by xid
                batch.save(raw)
            batch.submit_all()
        log.info("feed %s: deleted %d record(s) missing for longer than the grace period", self.config.name, len(due))

    def _submit(self, state: FeedState, batch: Batch, run: int, stats: CycleStats | None) -> dict[str, int]:
        """Send the job; confirm every record the API accepted; returns the job's outcome."""
        if self.stop.is_set():
            raise Stopping("stopped before submitting; the next run finishes this job")
        staged = batch.job.count("group") + batch.job.count("indicator")
        self.progress("submitting", {"sent": 0, "total": staged})
        sent = 0
        started: dict[int, float] = {}  # chunks sent in this run and not yet completed

        def on_chunk(result: dict[str, Any]) -> None:
            nonlocal sent
            sent += sum(int(result.get(k) or 0) for k in ("successCount", "errorCount", "unprocessCount"))
            self.progress("submitting", {"sent": min(sent, staged), "total": staged})
            chunk = result.get("chunk")
            if stats is not None:
                stats.jobs += 1
                stats.bytes += batch.job.conn.execute("SELECT coalesce(bytes, 0) FROM chunks WHERE id = ?",
                                                      (chunk,)).fetchone()[0]
            if chunk in started:
                if stats is not None:
                    stats.job_seconds.append(time.monotonic() - started[chunk])
                del started[chunk]
                if self.metrics is not None:
                    self.metrics.in_flight.dec()

        def on_event(phase: str, details: dict[str, Any]) -> None:
            self.progress("submitting", {"sent": min(sent, staged), "total": staged, "step": phase, **details})
            if phase == "sending" and details.get("chunk") not in started:
                started[details["chunk"]] = time.monotonic()
                if self.metrics is not None:
                    self.metrics.in_flight.inc()

        batch.on_chunk = on_chunk
        batch.on_event = on_event
        try:
            with self.owner_gate():
                batch.submit_all(halt_on_error=False)
        except StopRequested as exc:
            raise Stopping(str(exc)) from None
        finally:
            if self.metrics is not None and started:
                self.metrics.in_flight.dec(len(started))
        pending = batch.job.conn.execute("SELECT count(*), min(message) FROM chunks "
                                         "WHERE state NOT IN ('done', 'dropped', 'failed')").fetchone()
        refused = batch.job.conn.execute("SELECT count(*), min(message) FROM chunks WHERE state = 'failed'").fetchone()
        if pending[0]:
            if self.stop.is_set():
                raise Stopping(f"stopped with {pending[0]} chunk(s) pending; the next run finishes this job")
            raise StreambatchError(f"{pending[0]} chunk(s) could not be submitted ({pending[1]}); "
                                   "the next run sends them again")
        if refused[0]:
            raise StreambatchError(
                f"{refused[0]} chunk(s) were refused by the API ({refused[1]}); sending them again as they are "
                f"cannot succeed: fix the cause and run `streambatch retry {self.config.path}`, or give them up "
                f"with `streambatch retry --drop {self.config.path}` (their records are then sent in the next cycle)")
        failed = failed_xids(batch.job)
        state.confirm(failed, self.clock())
        self._commit_cursor(state, failed)
        return outcome(batch.job)

    def _commit_cursor(self, state: FeedState, failed: set[str]) -> None:
        """After the run's job was confirmed (a new run's, or an interrupted one's being
        finished): the cursor its read ended at becomes the one the next read starts from, unless
        a record failed, which an incremental read from there would never read again."""
        pending = (state.get("current") or {}).get("cursor")
        if pending is None:
            return
        if failed:
            log.warning("feed %s: %d record(s) were not accepted: the cursor stays where it was, so the next cycle "
                        "reads them again", self.config.name, len(failed))
            return
        state.put("cursor", pending)

    def _log(self, stats: CycleStats) -> None:
        log.info("%s", stats.line(),
                extra={"event": "cycle", "feed": stats.feed, "run": stats.run,
                       "counts": {"status": stats.status, **{k: getattr(stats, k) for k in COUNTS}}})
        if self.config.history_jsonl:
            try:
                fd = os.open(self.config.history_jsonl, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "ab") as fh:
                    fh.write(orjson.dumps({"time": iso(time.time()), **stats.as_json()}) + b"\n")
            except OSError as exc:
                log.warning("feed %s: cannot append to %s: %s", self.config.name, self.config.history_jsonl, exc)

    def _prune(self) -> None:
        """Keep the newest ``retention`` finished job files of this feed (and of its Delete
        jobs), and remove what a process killed while removing a job file left behind."""
        for pattern in ("job-*.sqlite", "delete-*.sqlite"):
            jobs = sorted(self.config.state_dir.glob(pattern))
            for old in jobs[:-self.config.retention] if self.config.retention > 0 else jobs:
                _remove_job(old)
        for leftover in self.config.state_dir.glob("*-*.*"):
            base = _job_of_companion(leftover)
            if base is not None and not base.exists():
                _remove_job(base)


_COMPANIONS = ("-wal", "-shm", "-journal", ".lock")


def job_name(kind: str, ns: int | None = None) -> str:
    """The name of a new job file: ``kind``, the local time to the microsecond of one instant
    (``ns``, default now), so that names sort in the order they were made (:meth:`FeedRunner._prune`)."""
    ns = time.time_ns() if ns is None else ns
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(ns // 10**9))}-{ns // 1000 % 1000000:06d}.sqlite"


def _is_association(record: dict) -> bool:
    """An association record of a reader (``{"association": {...}}``), not a group or indicator."""
    return "association" in record and len(record) == 1


def _encoded(record: dict) -> bytes | None:
    """The record as orjson bytes; None for one no record can hold (a huge int, say)."""
    try:
        return orjson.dumps(record)
    except (TypeError, orjson.JSONEncodeError):
        return None


def _job_of_companion(path: Path) -> Path | None:
    """The job file a chunk folder or SQLite/lock companion belongs to, or None."""
    name = path.name
    if not name.startswith(("job-", "delete-")):
        return None
    if name.endswith(".chunks"):
        return path.with_suffix(".sqlite")
    for suffix in _COMPANIONS:
        if name.endswith(".sqlite" + suffix):
            return path.with_name(name[: -len(suffix)])
    return None


def _remove_job(job: Path) -> None:
    """Delete a job file with its companions and chunk files; the job file goes last, so a
    process killed half way leaves something the next prune finds."""
    chunks = job.with_suffix(".chunks")
    if chunks.is_dir():
        for f in chunks.iterdir():
            f.unlink(missing_ok=True)
        chunks.rmdir()
    for suffix in _COMPANIONS:
        Path(str(job) + suffix).unlink(missing_ok=True)
    job.unlink(missing_ok=True)


class Plan(NamedTuple):
    """When a feed is next due and why (:meth:`Worker.plan`)."""
    when: float  # epoch seconds
    why: str
    failures: int  # cycles in a row that failed
    interrupted: bool = False  # an interrupted run is to be finished first


class Worker:
    """Runs every feed config in a folder on its own schedule until stopped (SIGTERM/SIGINT
    finish the current steps, then the worker exits); up to ``concurrency`` feeds at once,
    never one feed twice, and at most ``per_owner`` feeds of one owner with batch jobs in
    flight at a time (ThreatConnect processes an owner's jobs one after another).

    A feed with an interrupted job is due at once; a feed whose last cycle failed is due
    after its back-off (:func:`backoff`); a config that cannot be loaded is reported once
    and skipped until the file changes; a feed another process is running is skipped."""

    RESCAN = 2.0  # seconds between looks at the folder while sleeping

    def __init__(self, folder: Path, client: Any = None, clock: Callable[[], float] | None = None,
                 stop: threading.Event | None = None,
                 progress: Callable[[str, dict[str, Any]], None] | None = None,
                 concurrency: int = 1, per_owner: int = 1, metrics: Any = None) -> None:
        self.folder = folder
        self.client = client
        self.clock = clock or (lambda: time.time())
        self.stop = stop or threading.Event()
        self.concurrency = max(1, concurrency)
        self.per_owner = max(1, per_owner)
        self.progress = progress if self.concurrency == 1 else None  # one progress line cannot show several feeds
        self.metrics = metrics
        self._broken: dict[Path, tuple[float, int]] = {}  # config -> (mtime, size) last reported
        self._gates: dict[str, threading.BoundedSemaphore] = {}
        self._gates_lock = threading.Lock()
        self._local = threading.local()

    def configs(self) -> list[FeedConfig]:
        """The configs that load, and whose state file opens."""
        return [config for config, _plan in self.planned()]

    def planned(self) -> list[tuple[FeedConfig, Plan]]:
        """Each config that loads and whose state file opens, with its :meth:`plan` (one look
        at each state file); one that does not is logged once per change of the config file,
        and skipped."""
        out = []
        for path in sorted(self.folder.glob("*.toml")):
            try:
                config = FeedConfig.load(path)
                plan = self.plan(config)
            except StreambatchError as exc:
                try:
                    st = path.stat()
                    stamp = (st.st_mtime, st.st_size)
                except OSError:
                    stamp = (0.0, -1)
                if self._broken.get(path) != stamp:
                    self._broken[path] = stamp
                    log.error("skipping %s until it changes: %s", path.name, exc)
                continue
            if path in self._broken:
                del self._broken[path]
                log.info("%s loads again: feed %s is back on its schedule", path.name, config.name)
            out.append((config, plan))
        return out

    def due(self, config: FeedConfig) -> float:
        """When the feed is next due (epoch seconds)."""
        return self.plan(config).when

    def plan(self, config: FeedConfig) -> Plan:
        """When the feed is next due, why, how many cycles in a row failed, and whether it has
        an interrupted run to finish."""
        state = FeedState(config.state_dir / "state.sqlite")
        try:
            last = state.last_started()
            failures = state.get("failures")
            current = state.get("current")
        finally:
            state.close()
        now = self.clock()
        if failures:
            return Plan(float(failures["next"]), (f"failed {failures['count']} time(s) in a row, last: "
                                                  f"{failures.get('reason')}"), int(failures["count"]))
        if current:
            return Plan(now, f"interrupted run {current['run']} to finish", 0, interrupted=True)
        return Plan(config.next_due(last, now), "on schedule" if last is not None else "never run", 0)

    def announce(self) -> None:
        """Log the feeds found and when each is next due."""
        planned = self.planned()
        skipped = f" ({len(self._broken)} config(s) skipped: {', '.join(p.name for p in self._broken)})" \
            if self._broken else ""
        log.info("worker: %d feed(s) in %s, up to %d at once%s", len(planned), self.folder, self.concurrency, skipped)
        for config, plan in planned:
            log.info("  feed %s: next due %s (%s)", config.name, _when(plan.when, self.clock()), plan.why)
            if self.metrics is not None:
                self.metrics.due(config.name, plan.when)
                self.metrics.failures.labels(config.name).set(plan.failures)

    def run_due(self) -> list[CycleStats]:
        """Run every feed that is due now, interrupted jobs first; returns their stats."""
        plans = sorted(self.planned(), key=lambda p: (not p[1].interrupted, p[1].when))
        due = [config for config, plan in plans if plan.when <= self.clock()]
        if self.concurrency == 1 or len(due) <= 1:
            results = [self._run_one(config) for config in due if not self.stop.is_set()]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="streambatch-feed") as pool:
                results = list(pool.map(self._run_one, due))
        return [r for r in results if r is not None]

    def _run_one(self, config: FeedConfig) -> CycleStats | None:
        if self.stop.is_set():
            return None
        runner = FeedRunner(config, self._client(), self.stop, self.clock, progress=self.progress,
                            metrics=self.metrics, owner_gate=lambda: self._gate(config.owner))
        try:
            stats = runner.run_cycle()
        except BusyError as exc:
            log.info("%s; skipped", exc)
            return None
        except StreambatchError as exc:  # its state file cannot be used
            log.error("feed %s: %s", config.name, exc)
            return None
        except Exception as exc:  # a bug: one broken feed must not stop the others
            log.exception("feed %s: cycle failed: %s", config.name, exc)
            return None
        if stats.status == "failed" and stats.next_attempt is not None:
            log.error("feed %s: run %s failed (%s); next attempt %s", config.name, stats.run, stats.message,
                      _when(stats.next_attempt, self.clock()))
        for line in stats.attention:
            log.warning("feed %s: %s", config.name, line)
        if self.metrics is not None:
            plan = self.plan(config)
            self.metrics.cycle(stats, plan.failures)
            self.metrics.due(config.name, plan.when)
        return stats

    def _client(self) -> Any:
        """The API client of this thread: the worker's own when feeds run one at a time, a copy
        with its own HTTP session per thread otherwise."""
        if self.concurrency == 1 or self.client is None or not hasattr(self.client, "copy"):
            return self.client
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.client.copy()
        return client

    def _gate(self, owner: str) -> threading.BoundedSemaphore:
        with self._gates_lock:
            gate = self._gates.get(owner)
            if gate is None:
                gate = self._gates[owner] = threading.BoundedSemaphore(self.per_owner)
            return gate

    def next_wakeup(self) -> float:
        times = [plan.when for _config, plan in self.planned()]
        return min(times) if times else self.clock() + 60

    def run_forever(self, sleep: Callable[[float], bool] | None = None) -> None:
        """Loop: run what is due, sleep until the next feed is due (at most a minute), waking
        early when a config in the folder is added, changed or removed. ``sleep(seconds)``
        returns True when woken by a stop."""
        sleep = sleep or self.stop.wait
        self.announce()
        while not self.stop.is_set():
            seen = self._folder_stamp()  # before the cycles: a config changed while they ran is noticed
            self.run_due()
            delay = min(max(0.0, self.next_wakeup() - self.clock()), 60.0)
            stopped = False
            while delay > 0 and not stopped:
                step = min(delay, self.RESCAN)
                stopped = sleep(step)
                delay -= step
                if self._folder_stamp() != seen:
                    break
            if stopped:
                break

    def _folder_stamp(self) -> tuple:
        out = []
        for path in sorted(self.folder.glob("*.toml")):
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((path.name, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            log.warning("received %s: finishing the current step, then stopping", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def _when(t: float, now: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
    left = t - now
    if left <= 0:
        return f"now ({stamp})"
    return f"at {stamp} (in {_duration(left)})"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
