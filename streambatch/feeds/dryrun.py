"""``streambatch run --dry-run``: what a real cycle of a feed would do, sending nothing and
changing no state.

The dry run *is* a cycle, run on a copy: the feed's state file is copied (bytes, under the
feed's lock, so no real cycle writes it meanwhile) into a private temporary folder, and the
cycle's own code reads, checks and diffs the feed against the copy, stages into a job file
there and cuts the chunks (so bytes and batch jobs are measured, not estimated); then the
folder is deleted. Nothing is submitted (no API client is made), no Delete job is sent, no
history line is written, and the real state folder is only read. A later real cycle, on the
same feed and state, does what the dry run reported.

The lock: taken when the state folder exists, so a dry run never reads a state file that a
real cycle is writing; a feed being run makes the dry run exit 4 like a real run. A feed that
has never run has no state to protect, and none is created.

The instance's rules (pre-flight: indicator and attribute types, exclusion lists) are applied
from the copy the feed keeps in its state file, however old, and never asked for: a feed that
has none yet (it never ran against an API) is checked without them, and the report says so.

Changed records are shown with field-level differences for a sample (the first
:data:`SAMPLE`): the content last sent is read from the job file of the run that last staged
the record, while the feed keeps it (``retention``); otherwise the sample says so.
"""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import orjson

from ..outcome import OUTCOME_KEYS
from ..store import JobLock
from .config import FeedConfig
from .lifecycle import EXPIRES
from .state import COUNTS, FeedState
from .worker import CycleStats, FeedRunner

SAMPLE = 5  # changed records and rejected rows shown
_SHOWN_COUNTS = [k for k in COUNTS if k not in ("sent", "accepted", "failed", "warned")]
_LABELS = {"tag": "tags", "attribute": "attributes", "securityLabel": "security labels",
           "associatedGroups": "groups", "associatedGroupXid": "groups"}


@dataclasses.dataclass
class DryRun:
    stats: CycleStats
    records: int = 0  # groups and indicators a real cycle would send
    associations: int = 0
    jobs: int = 0  # batch jobs (chunks) they would take
    bytes: int = 0
    deleted: int = 0  # records a Delete job would delete
    not_modified: bool = False  # the source answered 304: a real cycle sends and removes nothing
    rules: bool = False  # the instance's rules (kept by the feed) were applied
    changes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    rejected_sample: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def exit_code(self, max_rejected: tuple[str, float] | None = None) -> int:
        return self.stats.exit_code(max_rejected)

    def as_json(self) -> dict[str, Any]:
        s = self.stats
        return {"feed": s.feed, "run": s.run, "dry_run": True, "status": s.status, "message": s.message,
                **{k: getattr(s, k) for k in _SHOWN_COUNTS},
                "records": self.records, "associations": self.associations, "jobs": self.jobs, "bytes": self.bytes,
                "deleted": self.deleted, "not_modified": self.not_modified, "rules": self.rules,
                "changes": self.changes,
                "rejected_sample": self.rejected_sample, "earlier": s.earlier, "attention": s.attention}

    def lines(self) -> list[str]:
        s = self.stats
        if s.status != "done":
            return [f"dry run of feed {s.feed}: {s.status}: {s.message}", "nothing was sent and no state was changed"]
        out = [f"dry run of feed {s.feed} (nothing was sent and no state was changed): run {s.run} would",
               *(f"  first: {line}" for line in s.earlier)]
        if self.not_modified:
            out.append("  find the source not modified since the last run: read nothing, send nothing, remove nothing")
            return out
        lifecycle = f", kept alive {s.kept_alive:,}, expired {s.expired:,}"
        out.append(f"  read {s.read:,} rows: rejected {s.rejected:,}, new {s.new:,}, changed {s.changed:,}, "
                   f"unchanged {s.unchanged:,}{lifecycle}, repeated {s.repeated:,}")
        removal = f"  find {s.removed:,} record(s) gone from the feed; retire {s.retired:,}"
        if s.held:
            removal += f" (held back by max_removed: {s.held:,} would be retired)"
        if self.deleted:
            removal += f" (deleted with a Delete job: {self.deleted:,})"
        out.append(removal)
        out.append(f"  send {self.records:,} record(s) and {self.associations:,} association(s) in {self.jobs:,} "
                   f"batch job(s), {self.bytes:,} bytes")
        if not self.rules:
            out.append("  (checked without the instance's rules: the feed keeps no copy of them yet)")
        if self.changes:
            out.append(f"changed ({len(self.changes)} of {s.changed:,} shown):")
            out.extend(f"  {c['type']} {c['summary']}: {'; '.join(c['diff']) or c.get('note', '')}" for c in self.changes)
        if self.rejected_sample:
            out.append(f"rejected ({len(self.rejected_sample)} of {s.rejected:,} shown):")
            out.extend(f"  line {r['line']}: {r['reason']}" for r in self.rejected_sample)
        out.extend(f"  a real run would need a look: {line}" for line in s.attention)
        return out


def dry_run(config: FeedConfig, allow_removal: bool = False) -> DryRun:
    """What a cycle of ``config`` would do now. Raises :class:`~streambatch.errors.BusyError`
    when a real cycle of the feed is running."""
    lock = JobLock(config.state_dir / "feed").acquire() if config.state_dir.is_dir() else None
    try:
        with tempfile.TemporaryDirectory(prefix="streambatch-dry-run-") as tmp:  # 0700
            folder = Path(tmp)
            state_file = config.state_dir / "state.sqlite"
            for companion in ("", "-wal"):
                src = Path(f"{state_file}{companion}")
                if src.is_file() and not src.is_symlink():
                    shutil.copyfile(src, folder / f"state.sqlite{companion}")
            copy = dataclasses.replace(config, state_dir=folder, history_jsonl=None)
            runner = DryRunner(copy, config.state_dir, allow_removal=allow_removal)
            stats = runner.run_cycle()
            report = runner.report(stats)
            state = FeedState(folder / "state.sqlite")
            try:
                report.not_modified = bool((state.get("http_cache") or {}).get("not_modified"))
            finally:
                state.close()
            return report
    finally:
        if lock is not None:
            lock.release()


class DryRunner(FeedRunner):
    """A cycle on a copy of the state that submits nothing (see the module)."""

    def __init__(self, config: FeedConfig, real_dir: Path, allow_removal: bool = False) -> None:
        super().__init__(config, None, allow_removal=allow_removal)
        self.real_dir = real_dir
        self._report = DryRun(CycleStats(config.name, 0))

    def report(self, stats: CycleStats) -> DryRun:
        self._report.stats = stats
        return self._report

    def _batch(self, job: Path, **settings: Any) -> Any:
        """The cycle's batch: the instance's rules from the feed's copy only (see the module)."""
        state = settings.pop("rules_cache", None)
        cached = state.get("rules") if state is not None else None
        if not isinstance(cached, dict):
            return super()._batch(job, preflight=False, **settings)
        self._report.rules = True
        return super()._batch(job, preflight=True, rules_cache=_Kept(cached), **settings)

    def _finish_interrupted(self, state: FeedState) -> str | None:
        current = state.get("current")
        if not current:
            return None
        run = current["run"]
        job = self.real_dir / Path(current["job"]).name
        state.put("current", None)
        if current.get("read", True) is False or not job.exists():
            state.discard_pending(run)
            return (f"drop what interrupted run {run} staged ({'it stopped while reading the feed' if job.exists() else 'its job file is gone'}); "
                    "the feed is read again")
        state.confirm(set(), self.clock())
        return f"finish the job of interrupted run {run} ({job}); what follows assumes the API accepts it"

    def _changed(self, state: FeedState, spec: Any, ident: tuple[int, str, str, str], data: dict[str, Any]) -> None:
        if len(self._report.changes) >= SAMPLE:
            return
        _key, kind, type_name, name = ident
        entry: dict[str, Any] = {"kind": kind, "type": type_name,
                                 "summary": data.get("name", name) if kind == "group" else name, "diff": []}
        old = self._last_sent(state, ident)
        if old is None:
            entry["note"] = "the content last sent is no longer kept (its run's job file was pruned)"
        else:
            if self.config.expires and EXPIRES not in data:
                old.pop(EXPIRES, None)  # the stamp of the cycle that sent it
            entry["diff"] = field_diff(old, data)
        self._report.changes.append(entry)

    def _last_sent(self, state: FeedState, ident: tuple[int, str, str, str]) -> dict[str, Any] | None:
        """The record as the run that last staged it staged it, from that run's job file."""
        row = state.conn.execute("SELECT r.job FROM sent s JOIN runs r ON r.id = s.seen WHERE s.key = ? AND "
                                 "s.kind = ? AND s.type = ? AND s.ident = ?", ident).fetchone()
        job = self.real_dir / Path(row[0]).name if row and row[0] else None
        if job is None or not job.is_file() or job.is_symlink():
            return None
        _key, kind, type_name, name = ident
        sql = ("SELECT body FROM groups WHERE xid = ? ORDER BY seq DESC LIMIT 1" if kind == "group" else
               "SELECT body FROM indicators WHERE type = ? AND summary = ? ORDER BY seq DESC LIMIT 1")
        try:  # read-only and immutable: no lock, no -wal or -shm file made beside a finished job
            conn = sqlite3.connect(f"{job.as_uri()}?mode=ro&immutable=1", uri=True)
            try:
                found = conn.execute(sql, (name,) if kind == "group" else (type_name, name)).fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            return None
        return orjson.loads(found[0]) if found else None

    def _delete(self, due: list) -> None:
        self._report.deleted = len(due)

    def _submit(self, state: FeedState, batch: Any, run: int, stats: CycleStats | None) -> dict[str, int]:
        batch.flush()
        report = self._report
        report.records = batch.job.count("group") + batch.job.count("indicator")
        report.associations = batch.job.conn.execute("SELECT count(*) FROM associations").fetchone()[0]
        chunks = batch.build()
        report.jobs, report.bytes = len(chunks), sum(p.stat().st_size for p in chunks)
        report.rejected_sample = [{"line": line, "reason": reason} for line, reason in batch.job.conn.execute(
            "SELECT line, reason FROM rejected ORDER BY id LIMIT ?", (SAMPLE,))]
        return {k: 0 for k in OUTCOME_KEYS}

    def _prune(self) -> None:
        return None

    def _log(self, stats: CycleStats) -> None:
        return None


class _Kept:
    """The feed's copy of the instance's rules, as fresh whatever its age: read, never
    refreshed from the instance, never written back."""

    def __init__(self, rules: dict[str, Any]) -> None:
        import time

        self.rules = {**rules, "fetched": time.time()}

    def get(self, key: str) -> Any:
        return self.rules if key == "rules" else None

    def put(self, key: str, value: Any) -> None:
        return None


def _item(value: Any) -> str:
    if isinstance(value, dict):
        if "name" in value and len(value) == 1:
            return str(value["name"])
        if "type" in value and "value" in value:
            return f"{value['type']}={value['value']}"
        if "groupXid" in value:
            return str(value["groupXid"])
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a rating of 3, not 3.0
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def field_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed from ``old`` to ``new`` (two batch records), one entry per field:
    ``rating 3 -> 4``, ``tags +x -y``, ``attributes +Source=feed``."""
    out = []
    for key in [*new, *(k for k in old if k not in new)]:
        a, b = old.get(key), new.get(key)
        if key == "xid" or a == b:
            continue
        label = _LABELS.get(key, key)
        if isinstance(a, list) or isinstance(b, list):
            before = [_item(x) for x in a or []]
            after = [_item(x) for x in b or []]
            parts = [f"+{x}" for x in after if x not in before] + [f"-{x}" for x in before if x not in after]
            out.append(f"{label} {' '.join(parts)}" if parts else f"{label} reordered")
        else:
            out.append(f"{label} {_shown(a)} -> {_shown(b)}")
    return out
