"""Feed cycles and the scheduled worker.

A cycle reads the feed (streamed), sends only what changed since the last successful cycle, and
records what it did. It first finishes the job of a cycle that was interrupted (a kill, a
SIGTERM, the API down): that job file is resumed, not rebuilt.

1. Every record is checked and canonicalized, and its content hash compared with the state
   file: new and changed records are staged in a new job file, unchanged ones only marked seen.
   Bad rows and invalid records go to the job file's ``rejected`` table with line and reason.
2. If the whole feed was read, records it lists more than once are settled: they are sent as
   the merge of all their occurrences (every occurrence of a record that was repeated last
   time is staged; the merge is sent if its hash differs from the last one sent). A record
   repeated for the first time, some of whose occurrences were unchanged and so not staged,
   is not sent partly: it is sent whole, merged, by the next cycle.
3. If the whole feed was read, records it no longer has are handled per ``removed``.
4. The job is submitted; records the API accepted have their hash confirmed, records it refused
   keep their old hash and are sent again next cycle.

An unchanged source (HTTP 304) costs one request: nothing is read, nothing is removed.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
import xxhash

from ..batch import Batch
from ..errors import StreambatchError, ValidationError
from ..model import identity, normalize
from ..xid import hash64
from .config import FeedConfig
from .readers import read_feed
from .sources import display_url, is_url
from ..pipeline import StopRequested
from .state import COUNTS, FeedState

log = logging.getLogger("streambatch.feeds")

_BATCH_KEYS = {"max_records", "max_bytes", "attribute_write_type", "tag_write_type", "security_label_write_type",
               "halt_on_error", "playbook_triggers_enabled", "file_merge_mode", "hash_collision_mode",
               "max_in_flight", "file_concurrency", "poll_interval", "poll_timeout", "buffer_size"}


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
    removed: int = 0
    sent: int = 0
    failed: int = 0
    duration: float = 0.0
    message: str | None = None

    def line(self) -> str:
        return (f"feed {self.feed}: run {self.run} {self.status}: read {self.read:,}, rejected {self.rejected:,}, "
                f"new {self.new:,}, changed {self.changed:,}, unchanged {self.unchanged:,}, "
                f"repeated {self.repeated:,}, removed {self.removed:,}, "
                f"sent {self.sent:,}, failed {self.failed:,} in {self.duration:.1f} s"
                + (f" ({self.message})" if self.message else ""))


class Stopping(StreambatchError):
    """A stop was requested (SIGTERM/SIGINT); the cycle stopped at a step boundary."""


class FeedRunner:
    """Runs cycles of one feed. ``client`` is shared by every cycle (default: the batch's own)."""

    def __init__(self, config: FeedConfig, client: Any = None, stop: threading.Event | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.client = client
        self.stop = stop or threading.Event()
        self.clock = clock or (lambda: time.time())
        config.state_dir.mkdir(parents=True, exist_ok=True)

    def _batch(self, job: Path, **settings: Any) -> Batch:
        options = {k: v for k, v in self.config.batch.items() if k in _BATCH_KEYS}
        unknown = set(self.config.batch) - _BATCH_KEYS
        if unknown:
            raise StreambatchError(f"{self.config.path}: [batch] has unknown key {sorted(unknown)[0]!r}")
        batch = Batch(self.config.owner, job, client=self.client, **{**options, **settings})
        batch.should_stop = self.stop.is_set
        return batch

    def run_cycle(self) -> CycleStats:
        """One cycle: finish an interrupted one, then read, diff, send, record."""
        started = time.monotonic()
        state = FeedState(self.config.state_dir / "state.sqlite")
        try:
            try:
                self._finish_interrupted(state)
            except Stopping as exc:
                stats = CycleStats(self.config.name, state.get("current")["run"], "interrupted", message=str(exc))
                self._log(stats)
                return stats
            job = self.config.state_dir / f"job-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() // 1000 % 1000000:06d}.sqlite"
            run = state.start_run(job, self.clock())
            current = {"run": run, "job": job.name, "read": False}
            state.put("current", current)
            stats = CycleStats(self.config.name, run)
            try:
                with self._batch(job) as batch:
                    complete = self._stage(state, batch, run, stats)
                    if complete:
                        self._repeats(state, batch, stats)
                    batch.flush()  # all that the state file says is staged is in the job file
                    state.put("current", {**current, "read": True})
                    if complete and not self.stop.is_set():
                        self._removed(state, batch, run, stats)
                    stats.sent = batch.group_len + batch.indicator_len
                    self._submit(state, batch, run, stats)
                stats.status = "done"
            except Stopping as exc:
                stats.status, stats.message = "interrupted", str(exc)
            except Exception as exc:
                stats.status, stats.message = "failed", str(exc)
                raise
            finally:
                stats.duration = time.monotonic() - started
                state.update_run(run, status=stats.status, finished=time.time(), duration=stats.duration,
                                 message=stats.message, **{k: getattr(stats, k) for k in COUNTS})
                self._log(stats)
            if stats.status == "done":
                state.put("current", None)
                self._prune()
            return stats
        finally:
            state.close()

    # -- the steps -----------------------------------------------------------------------

    def _finish_interrupted(self, state: FeedState) -> None:
        """Finish the job of a cycle that stopped after reading the feed. One that stopped
        while reading is dropped instead: its job holds part of the feed (possibly part of a
        record listed on several rows), and this cycle reads the feed again anyway."""
        current = state.get("current")
        if not current:
            return
        job = state.job_path(current["job"])
        if current.get("read", True) is False:
            log.info("feed %s: run %s stopped while reading the feed; dropping its partial job %s",
                     self.config.name, current["run"], job)
            state.discard_pending(current["run"])
            _remove_job(job)
            state.update_run(current["run"], status="interrupted (dropped)", finished=time.time())
            state.put("current", None)
            return
        log.info("feed %s: finishing the job of interrupted run %s (%s)", self.config.name, current["run"], job)
        if job.exists():
            with self._batch(job) as batch:
                self._submit(state, batch, current["run"], None)
        else:
            state.confirm(set())  # never staged anything durable: nothing was sent
        state.update_run(current["run"], status="done (resumed)", finished=time.time())
        state.put("current", None)

    @property
    def _source_name(self) -> str:
        source = self.config.source
        return display_url(source) if is_url(source) else source

    def _stage(self, state: FeedState, batch: Batch, run: int, stats: CycleStats) -> bool:
        """Read the feed; stage new and changed records. True if the whole feed was read."""
        cache = state.get("http_cache") or {}
        items = read_feed(self.config.source, self.config.format, base_dir=self.config.base_dir,
                          mapping=self.config.mapping, options={"owner": self.config.owner, **self.config.options},
                          cache=cache)
        raws: list[tuple[dict, bytes, int]] = []
        state.begin_cycle()
        for n, item in enumerate(items):
            if n % 10_000 == 0 and self.stop.is_set():
                raise Stopping("stopped while reading the feed; the next run reads it again")
            stats.read += 1
            if item.error is not None:
                stats.rejected += 1
                batch.reject(item.error, line=item.line, raw=item.raw, source=self._source_name)
                continue
            record = item.record
            assert record is not None
            if "association" in record and len(record) == 1:
                self._association(batch, record["association"], item.line, stats)
                continue
            raws.append((record, xxhash.xxh3_128_digest(orjson.dumps(record)), item.line))
            if len(raws) >= 10_000:
                self._sift(state, batch, run, raws, stats)
        self._sift(state, batch, run, raws, stats)
        state.put("http_cache", cache)
        if cache.get("not_modified"):
            log.info("feed %s: source not modified since the last run", self.config.name)
            return False
        state.end_reading()
        return True

    def _sift(self, state: FeedState, batch: Batch, run: int, raws: list, stats: CycleStats) -> None:
        """Rows the reader produced exactly as last time (same raw hash, confirmed, present)
        are unchanged without another check; the others are checked, canonicalized and diffed."""
        if not raws:
            return
        known = state.lookup_raw([r[1] for r in raws])
        seen: list[tuple[int, str, str, str]] = []
        pending: list[tuple[Any, dict, Any, tuple[int, str, str, str], int, bytes]] = []
        for record, raw, line in raws:
            ident = known.get(raw)
            if ident is not None:
                stats.unchanged += 1
                seen.append(ident)
                continue
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
            pending.append((spec, data, None, (key, spec.kind, spec.name, name), hash64(orjson.dumps(data)), raw))
        state.mark_seen(seen)
        self._diff(state, batch, run, pending, stats)
        raws.clear()

    def _diff(self, state: FeedState, batch: Batch, run: int, pending: list, stats: CycleStats) -> None:
        if not pending:
            return
        known = state.lookup([p[3] for p in pending])
        rows = []
        for spec, data, content, ident, h, raw in pending:
            sent_hash, missing_since, multi = known.get(ident, (None, None, 0))
            if ident not in known:
                counted = "new"
            elif sent_hash != h or multi:  # every occurrence of a repeated record is staged
                counted = "changed"
            else:
                counted = "unchanged"
                stats.unchanged += 1
                rows.append((*ident, data["xid"], None, raw, counted))
                continue
            setattr(stats, counted, getattr(stats, counted) + 1)
            if missing_since is not None and self.config.removed == "inactive" and spec.kind == "indicator" \
                    and "active" not in data:
                data = {**data, "active": True}  # it was sent as inactive when it left the feed; h stays the feed's
            batch.save_normalized(spec, data, content)
            rows.append((*ident, data["xid"], h, raw, counted))
        state.record(run, rows)

    def _repeats(self, state: FeedState, batch: Batch, stats: CycleStats) -> None:
        """Settle the records the feed listed more than once: the job file holds the merge of
        their staged occurrences. Sent when every occurrence was staged and the merge differs
        from what was sent last; a partial merge is taken out and sent whole next cycle."""
        repeats = state.repeats()
        settled = []
        deferred = 0
        if repeats:
            batch.flush()
        with batch.job.transaction():
            for ident, sent_hash, count, all_staged, counted in repeats:
                deferred += self._settle(batch, ident, sent_hash, count, all_staged, counted, stats, settled)
        state.settle_repeats(settled)
        if deferred:
            log.info("feed %s: %d record(s) now appear more than once in the feed; each is sent whole, as the "
                     "merge of its occurrences, by the next cycle", self.config.name, deferred)

    @staticmethod
    def _settle(batch: Batch, ident: tuple, sent_hash: int | None, count: int, all_staged: bool,
                counted: dict[str, int], stats: CycleStats, settled: list) -> int:
        """Settle one repeated record; returns 1 if it is left for the next cycle."""
        for name, n in counted.items():  # counted once, as a record, not per occurrence
            setattr(stats, name, getattr(stats, name) - n)
        stats.repeated += count - 1
        _key, kind, type_name, name = ident
        staged = batch.job.find(kind, type_name, name)
        if staged is not None and all_staged and staged[1] != sent_hash:
            if counted["new"]:  # first read in this cycle
                stats.new += 1
            else:
                stats.changed += 1
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
        missing = state.missing()
        stats.removed = sum(1 for m in missing if m[5] is None)  # left the feed in this cycle
        if not missing:
            return
        now = self.clock()
        state.mark_missing(now)
        action = self.config.removed
        if action == "inactive":
            rows = []
            for key, kind, type_, ident, xid, since in missing:
                if kind == "indicator" and since is None:  # newly gone: sent as inactive once
                    spec, data, _ = normalize(batch.types, {"type": type_, "summary": ident, "xid": xid, "active": False})
                    batch.save_normalized(spec, data)
                    rows.append((key, kind, type_, ident, xid, hash64(orjson.dumps(data))))
            batch.flush()  # in the job file before the state file calls them staged
            state.set_pending(rows)
        elif action == "delete":
            due = [m for m in missing if (m[5] or now) <= now - self.config.grace]
            if due:
                self._delete(due)
                state.forget([m[:4] for m in due])

    def _delete(self, due: list) -> None:
        job = self.config.state_dir / f"delete-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() // 1000 % 1000000:06d}.sqlite"
        with self._batch(job, action="Delete") as batch:
            for _key, kind, type_, ident, xid, _since in due:
                raw = {"type": type_, "xid": xid, ("name" if kind == "group" else "summary"): ident}  # groups: by xid
                batch.save(raw)
            batch.submit_all()
        log.info("feed %s: deleted %d record(s) missing for longer than the grace period", self.config.name, len(due))

    def _submit(self, state: FeedState, batch: Batch, run: int, stats: CycleStats | None) -> None:
        if self.stop.is_set():
            raise Stopping("stopped before submitting; the next run finishes this job")
        try:
            batch.submit_all(halt_on_error=False)
        except StopRequested as exc:
            raise Stopping(str(exc)) from None
        pending = batch.job.conn.execute("SELECT count(*) FROM chunks WHERE state != 'done'").fetchone()[0]
        if pending:
            if self.stop.is_set():
                raise Stopping(f"stopped with {pending} chunk(s) pending; the next run finishes this job")
            raise StreambatchError(f"{pending} chunk(s) could not be submitted; the next run retries them")
        failed = {x for (x,) in batch.job.conn.execute(
            "SELECT DISTINCT xid FROM errors WHERE xid IS NOT NULL AND severity = 'Error'")}
        failed |= _unattributed(batch)
        state.confirm(failed)
        if stats is not None:
            stats.failed = len(failed)

    def _log(self, stats: CycleStats) -> None:
        log.info("%s", stats.line())
        if self.config.history_jsonl:
            with open(self.config.history_jsonl, "ab") as fh:
                fh.write(orjson.dumps({"time": time.time(), **asdict(stats)}) + b"\n")

    def _prune(self) -> None:
        """Keep the newest ``retention`` finished job files of this feed."""
        jobs = sorted(self.config.state_dir.glob("job-*.sqlite"))
        for old in jobs[:-self.config.retention] if self.config.retention > 0 else jobs:
            _remove_job(old)


def _remove_job(job: Path) -> None:
    """Delete a job file with its companions and chunk files."""
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(str(job) + suffix).unlink(missing_ok=True)
    chunks = job.with_suffix(".chunks")
    if chunks.is_dir():
        for f in chunks.iterdir():
            f.unlink()
        chunks.rmdir()


def _unattributed(batch: Batch) -> set[str]:
    """The xids of every record in a chunk that reported errors the API would not itemize
    (a job processed synchronously returns no batch id to fetch them by): none of them is
    known to have landed, so none is confirmed and all are sent again next cycle."""
    xids: set[str] = set()
    conn = batch.job.conn
    for chunk, lo, hi in conn.execute("SELECT id, ind_lo, ind_hi FROM chunks WHERE coalesce(error_count, 0) > 0 "
                                      "AND errors_fetched = 0").fetchall():
        xids.update(x for (x,) in conn.execute("SELECT xid FROM groups WHERE chunk = ?", (chunk,)))
        if lo is not None:
            xids.update(x for (x,) in conn.execute("SELECT xid FROM indicators WHERE seq BETWEEN ? AND ?", (lo, hi)))
    return xids


class Worker:
    """Runs every feed config in a folder on its own schedule, one cycle at a time, until
    stopped (SIGTERM/SIGINT finish the current step, then the worker exits)."""

    def __init__(self, folder: Path, client: Any = None, clock: Callable[[], float] | None = None,
                 stop: threading.Event | None = None) -> None:
        self.folder = folder
        self.client = client
        self.clock = clock or (lambda: time.time())
        self.stop = stop or threading.Event()

    def configs(self) -> list[FeedConfig]:
        return [FeedConfig.load(p) for p in sorted(self.folder.glob("*.toml"))]

    def due(self, config: FeedConfig) -> float:
        """When the feed is next due (epoch seconds)."""
        state = FeedState(config.state_dir / "state.sqlite")
        try:
            last = state.last_started()
        finally:
            state.close()
        return config.next_due(last, self.clock())

    def run_due(self) -> list[CycleStats]:
        """Run every feed that is due now; returns their stats."""
        out = []
        for config in self.configs():
            if self.stop.is_set():
                break
            if self.due(config) <= self.clock():
                try:
                    out.append(FeedRunner(config, self.client, self.stop, self.clock).run_cycle())
                except Exception as exc:  # one broken feed must not stop the others
                    log.error("feed %s: cycle failed: %s", config.name, exc)
        return out

    def next_wakeup(self) -> float:
        times = [self.due(c) for c in self.configs()]
        return min(times) if times else self.clock() + 60

    def run_forever(self, sleep: Callable[[float], bool] | None = None) -> None:
        """Loop: run what is due, sleep until the next feed is due. ``sleep(seconds)`` returns
        True when woken by a stop."""
        sleep = sleep or self.stop.wait
        while not self.stop.is_set():
            self.run_due()
            delay = max(0.0, self.next_wakeup() - self.clock())
            if sleep(min(delay, 60.0)):
                break

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            log.warning("received %s: finishing the current step, then stopping", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
