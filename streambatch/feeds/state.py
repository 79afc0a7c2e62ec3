"""A feed's state file: what was sent, what each cycle did, and the source's HTTP validators.

``sent`` has one row per record the feed has produced: its identity (kind, type, and an
indicator's summary or a group's xid, as ``ident``; and the xid), the content hash last sent successfully (``hash``), the hash staged in the cycle
in progress (``pending``), the 128-bit hash of the record exactly as the reader produced it
(``raw``, ``pending_raw``: an unchanged row is recognised by it without being checked and
canonicalized again; for a text or csv row, the key of the row itself, so that it is not even
mapped, see ``row_keys`` in :func:`streambatch.feeds.readers.read_feed`), the cycle that first or last changed it (``seen``), once it
disappeared from the feed, since when (``missing_since``), and whether the last complete read
had it more than once (``multi``), when it was last sent (``sent_at``: the keep-alive of
:mod:`streambatch.feeds.lifecycle` re-sends it once per interval from it) and its own expiry as
last staged (``expires_at``, epoch seconds: a row whose expiry passed is checked again in
full, never recognised as unchanged by its raw hash). ``seen_now`` lists the records the running cycle has read,
one row per occurrence, with whether that occurrence was staged and how it was counted:
appended without an index while reading (cheap), indexed once at the end to find what is
missing and what was repeated. A cycle that recognises rows by the row key file
(:mod:`streambatch.feeds.rowkeys`) does not list those in ``seen_now``: it counts them read in
the file's own positions, and ``unfiled`` lists the records the file cannot vouch were read --
those it did not list when the cycle began, and those at the positions no row hit -- so that
a record is read if ``seen_now`` has it or ``unfiled`` does not (:meth:`FeedState.begin_cycle`).
``seen_raw`` holds, for a moment, the raw hashes of the occurrences of a key the file had that
were read more than once, turned into rows of ``seen_now`` in one join. A cycle compares each
record's hash with ``hash``: equal means unchanged and nothing is sent.

A record the feed lists more than once is sent as the merge of all its occurrences, never as
one of them alone: the hash kept for it is the hash of the merged record. Every occurrence of
a ``multi`` record is staged, and the merged result is compared once the whole feed is read.

``runs`` has one row per cycle with its counts. ``meta`` keeps the HTTP cache (ETag,
Last-Modified), the job file of a cycle that has not finished (``current``, with the cursor its
read ended at, for an incremental TAXII source), and the committed ``cursor``: that of the last
read whose job was confirmed, where the next incremental read starts
(:mod:`streambatch.feeds.taxii`), or, for a MISP feed, the event timestamps that read had, which
decide what the next read downloads (:mod:`streambatch.feeds.misp`), and the description of
the row key file the state vouches for (``rowkeys``), removed by every change to ``sent``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from ..errors import JobFileError, StreambatchError
from ..store import private_dir, query_in

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sent (
    key INTEGER NOT NULL, kind TEXT NOT NULL, type TEXT NOT NULL, ident TEXT NOT NULL, xid TEXT NOT NULL,
    hash INTEGER, pending INTEGER, seen INTEGER NOT NULL, missing_since REAL, raw BLOB, pending_raw BLOB,
    PRIMARY KEY (key, kind, type, ident)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen_now (key INTEGER NOT NULL, kind TEXT NOT NULL, type TEXT NOT NULL,
    ident TEXT NOT NULL, staged INTEGER NOT NULL DEFAULT 0, counted TEXT NOT NULL DEFAULT 'unchanged');
CREATE TABLE IF NOT EXISTS seen_raw (raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS unfiled (key INTEGER NOT NULL, kind TEXT NOT NULL, type TEXT NOT NULL, ident TEXT NOT NULL,
    PRIMARY KEY (key, kind, type, ident)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, finished REAL, status TEXT NOT NULL,
    job TEXT, read INTEGER DEFAULT 0, rejected INTEGER DEFAULT 0, new INTEGER DEFAULT 0,
    changed INTEGER DEFAULT 0, unchanged INTEGER DEFAULT 0, removed INTEGER DEFAULT 0,
    sent INTEGER DEFAULT 0, failed INTEGER DEFAULT 0, duration REAL, message TEXT, repeated INTEGER DEFAULT 0);
"""
_SEEN = ("EXISTS (SELECT 1 FROM seen_now n WHERE n.key = sent.key AND n.kind = sent.kind AND n.type = sent.type "
         "AND n.ident = sent.ident)")
# read by a cycle that recognised rows by the row key file: listed in seen_now, or not in unfiled
_SEEN_FILED = (f"({_SEEN} OR NOT EXISTS (SELECT 1 FROM unfiled u WHERE u.key = sent.key AND u.kind = sent.kind "
               "AND u.type = sent.type AND u.ident = sent.ident))")
# the records lookup_raw finds (at any time and clock), and so the row key file lists
_KNOWN = "+raw IS NOT NULL AND pending IS NULL AND missing_since IS NULL AND multi = 0"
COUNTS = ("read", "rejected", "new", "changed", "unchanged", "repeated", "expired", "kept_alive", "removed", "retired",
          "held", "sent", "accepted", "failed", "warned")
# columns added since the first state files, per table: (name, definition)
_ADDED = {
    "sent": (("raw", "BLOB"), ("pending_raw", "BLOB"), ("multi", "INTEGER NOT NULL DEFAULT 0"),
             ("absent", "INTEGER NOT NULL DEFAULT 0"), ("retired", "INTEGER NOT NULL DEFAULT 0"),
             ("sent_at", "REAL"), ("expires_at", "REAL")),
    "seen_now": (("staged", "INTEGER NOT NULL DEFAULT 0"), ("counted", "TEXT NOT NULL DEFAULT 'unchanged'")),
    "runs": (("repeated", "INTEGER DEFAULT 0"), ("retired", "INTEGER DEFAULT 0"), ("held", "INTEGER DEFAULT 0"),
             ("accepted", "INTEGER DEFAULT 0"), ("warned", "INTEGER DEFAULT 0"), ("expired", "INTEGER DEFAULT 0"),
             ("kept_alive", "INTEGER DEFAULT 0")),
}


def due_sql(keep_alive: tuple[float, int] | None) -> str:
    """SQL that is true for a row of ``sent`` whose keep-alive is due at
    ``now``, for ``keep_alive = (now, interval seconds)``: each record has its own phase in the
    interval (its identity key modulo the interval, so the records are spread evenly over it),
    and is due once the clock passed a phase of its since it was last sent. None: never."""
    if keep_alive is None:
        return "0"
    now, interval = float(keep_alive[0]), int(keep_alive[1])
    phase = f"(((key % {interval}) + {interval}) % {interval})"
    return (f"(sent_at IS NOT NULL AND CAST(({now!r} - {phase}) / {interval}.0 AS INTEGER) > "
            f"CAST((sent_at - {phase}) / {interval}.0 AS INTEGER))")


ROWKEYS = "rowkeys"  # meta: the row key file the state vouches for (streambatch.feeds.rowkeys)
APPLICATION_ID = 0x73626673  # "sbfs": a streambatch feed state file
_OWN_TABLES = {"meta", "sent", "runs"}


class FeedState:
    """A feed's state file. Created 0600 in a 0700 folder; a symbolic link, a file that is not
    SQLite, or a SQLite database that is not a feed state file is refused untouched."""

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        for companion in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if companion.is_symlink():
                raise JobFileError(f"{companion}: a symbolic link; streambatch does not open a feed state file "
                                   "through a link")
        new = not path.exists() or path.stat().st_size == 0
        if new:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
            except FileExistsError:  # an empty file already there: made private below
                fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
            try:
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
        else:
            with open(path, "rb") as fh:
                if fh.read(16) != b"SQLite format 3\x00":
                    raise JobFileError(f"{path}: not a streambatch feed state file (not a SQLite database)")
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)  # another process may be writing
            app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
            if not new and app_id != APPLICATION_ID:
                tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if app_id != 0 or not _OWN_TABLES <= tables:  # app id 0 with our tables: written before it existed
                    self.conn.close()
                    raise JobFileError(f"{path}: a SQLite database, but not a streambatch feed state file; "
                                       "it was left as it is")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.executescript(SCHEMA)
            for table, added in _ADDED.items():  # state files written before these columns existed
                columns = {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}
                for column, definition in added:
                    if column not in columns:
                        self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            self.conn.execute("CREATE INDEX IF NOT EXISTS sent_raw ON sent(raw) WHERE raw IS NOT NULL")
            self.conn.execute("CREATE INDEX IF NOT EXISTS sent_expires ON sent(expires_at) WHERE expires_at IS NOT NULL")
            if self.get("group_ident") != "xid":  # state files that identified groups by name
                with self._tx():
                    self.conn.execute("UPDATE OR REPLACE sent SET ident = xid WHERE kind = 'group'")
                    self.put("group_ident", "xid")
            if app_id != APPLICATION_ID:
                self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        except sqlite3.DatabaseError as exc:
            raise JobFileError(f"{path}: damaged or foreign feed state file ({exc})") from None
        self.path = path
        self._filed = False  # this cycle recognises rows by the row key file (begin_cycle)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One transaction (the connection is in autocommit mode, so executemany alone would
        commit every row)."""
        self.conn.execute("BEGIN")
        try:
            self._stale()
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _stale(self) -> None:
        """The records are about to change: the row key file no longer describes them (every
        method that changes ``sent`` calls this, or runs in :meth:`_tx`, which does)."""
        self.conn.execute("DELETE FROM meta WHERE key = ?", (ROWKEYS,))

    # -- meta ----------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else orjson.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                          (key, orjson.dumps(value).decode()))

    # -- runs ----------------------------------------------------------------------------

    def job_path(self, stored: str) -> Path:
        """The job file a run or ``current`` names. Job files live in the state folder and
        are recorded by name; state files written before that recorded a path relative to
        the working directory of the run, so only the name is ever used."""
        return self.path.parent / Path(stored).name

    def start_run(self, job: Path | None, now: float) -> int:
        """A new run, with its job file (None: a cycle that found its source unchanged makes none)."""
        cur = self.conn.execute("INSERT INTO runs(started, status, job) VALUES (?, 'running', ?)",
                                (now, job.name if job is not None else None))
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def update_run(self, run: int, **values: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        self.conn.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*values.values(), run))

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def last_started(self) -> float | None:
        row = self.conn.execute("SELECT max(started) FROM runs").fetchone()
        return row[0]

    # -- records -------------------------------------------------------------------------

    def lookup(self, keys: Sequence[tuple[int, str, str, str]], keep_alive: tuple[float, int] | None = None
               ) -> dict[tuple[int, str, str, str], tuple[int | None, int, int, bool, bytes | None]]:
        """The last sent hash, whether the record was retired (sent as inactive) when it left
        the feed, the ``multi`` flag, whether its keep-alive is due (:func:`due_sql`) and the
        raw hash it is known by of each known (key, kind, type, ident)."""
        rows = query_in(self.conn, f"SELECT key, kind, type, ident, hash, retired, multi, {due_sql(keep_alive)}, raw "
                                   "FROM sent WHERE key IN ({marks})", (k[0] for k in keys))
        return {(key, kind, type_, ident): (h, retired, multi, bool(d), raw)
                for key, kind, type_, ident, h, retired, multi, d, raw in rows}

    def lookup_raw(self, raws: Sequence[bytes], now: float, keep_alive: tuple[float, int] | None = None
                   ) -> dict[bytes, tuple[int, str, str, str]]:
        """The identity of each confirmed, present record, listed once in the feed, whose
        reader output had this raw hash, whose own expiry has not passed at ``now`` and whose
        keep-alive is not due."""
        rows = query_in(self.conn, "SELECT raw, key, kind, type, ident FROM sent WHERE raw IN ({marks}) "
                                   "AND pending IS NULL AND missing_since IS NULL AND multi = 0 "
                                   f"AND (expires_at IS NULL OR expires_at > {float(now)!r}) "
                                   f"AND NOT {due_sql(keep_alive)}", raws)
        return {raw: (key, kind, type_, ident) for raw, key, kind, type_, ident in rows}

    def expiring(self, since: float, now: float) -> bool:
        """Whether a record present in the feed has an expiry of its own that passed after
        ``since`` and by ``now`` (a cycle would send it as inactive)."""
        return self.conn.execute("SELECT 1 FROM sent WHERE expires_at > ? AND expires_at <= ? AND missing_since IS NULL "
                                 "AND retired = 0 LIMIT 1", (since, now)).fetchone() is not None

    def keep_alive_due(self, keep_alive: tuple[float, int] | None) -> bool:
        """Whether a record present in the feed and sent has its keep-alive due
        (:func:`due_sql`); stops at the first (due records are spread evenly over the rows)."""
        return keep_alive is not None and self.conn.execute(
            f"SELECT 1 FROM sent WHERE hash IS NOT NULL AND missing_since IS NULL AND retired = 0 "
            f"AND {due_sql(keep_alive)} LIMIT 1").fetchone() is not None

    def date_sends(self, now: float) -> None:
        """Records sent before the state file kept when (``sent_at``) count as sent ``now``."""
        self._stale()
        self.conn.execute("UPDATE sent SET sent_at = ? WHERE sent_at IS NULL AND hash IS NOT NULL", (now,))

    def mark_seen(self, idents: Sequence[tuple[int, str, str, str]]) -> None:
        """Occurrences read and found unchanged by their raw hash (not staged)."""
        with self._tx():
            self.conn.executemany("INSERT INTO seen_now(key, kind, type, ident) VALUES (?,?,?,?)", idents)

    def known_raws(self) -> Iterator[bytes]:
        """The raw hashes :meth:`lookup_raw` finds, at any time and clock, in order: those of
        confirmed, present records listed once. One scan of the table (``+raw``: not through
        the ``raw`` index, which would look each row up in the table, ~4x slower), sorted by
        SQLite's sorter, which spills to temporary files rather than hold them all."""
        for (raw,) in self.conn.execute(f"SELECT raw FROM sent WHERE {_KNOWN} ORDER BY raw"):
            yield raw

    def known_count(self) -> int:
        """How many raw hashes :meth:`known_raws` gives."""
        return self.conn.execute(f"SELECT count(*) FROM sent WHERE {_KNOWN}").fetchone()[0]

    def unknowable_raws(self, now: float, keep_alive: tuple[float, int] | None = None) -> list[bytes]:
        """The raw hashes of :meth:`known_raws` that :meth:`lookup_raw` does not find at
        ``now``: their record's own expiry passed or its keep-alive is due."""
        out = [r for (r,) in self.conn.execute("SELECT raw FROM sent WHERE expires_at <= ? AND raw IS NOT NULL",
                                               (float(now),))]
        if keep_alive is not None:
            out += [r for (r,) in self.conn.execute(f"SELECT raw FROM sent WHERE raw IS NOT NULL AND {due_sql(keep_alive)}")]
        return out

    def mark_seen_raw(self, raws: Sequence[bytes]) -> None:
        """Occurrences read and found unchanged by a raw hash the row key file has, of a key
        read more than once: kept as the hash and turned into identities by
        :meth:`settle_seen_raw`."""
        if raws:
            with self._tx():
                self.conn.executemany("INSERT INTO seen_raw VALUES (?)", [(r,) for r in raws])

    def settle_seen_raw(self) -> None:
        """Turn the occurrences :meth:`mark_seen_raw` kept into rows of ``seen_now``."""
        with self._tx():
            self._settle_seen_raw()

    def _settle_seen_raw(self) -> None:
        marked = self.conn.execute("SELECT count(*) FROM seen_raw").fetchone()[0]
        if not marked:
            return
        added = self.conn.execute("INSERT INTO seen_now(key, kind, type, ident) SELECT s.key, s.kind, s.type, s.ident "
                                  "FROM seen_raw r JOIN sent s ON s.raw = r.raw WHERE s.raw IS NOT NULL").rowcount
        if added != marked:
            raise StreambatchError(f"{self.path}: {marked:,} row(s) were recognised by the row key file, but the "
                                   f"state file has {added:,} record(s) for them; nothing was sent or removed, and "
                                   "the next run looks the rows up in the state file")
        self.conn.execute("DELETE FROM seen_raw")

    def record(self, run: int, rows: Iterable[tuple[int, str, str, str, str, int | None, bytes | None, str,
                                                    float | None]]) -> None:
        """Mark occurrences as seen in this run; ``pending`` is the hash staged for sending
        (None when unchanged), ``raw`` the reader-output hash to remember with it, ``counted``
        how the cycle counted it (new, changed, unchanged, expired or kept_alive), and the
        record's own expiry (epoch seconds, or None)."""
        rows = list(rows)
        with self._tx():
            self._settle_seen_raw()  # before a key it holds is replaced below
            self.conn.executemany("INSERT INTO seen_now VALUES (?,?,?,?,?,?)",
                                  [(*r[:4], int(r[5] is not None), r[7]) for r in rows])
            self.conn.executemany(
                "INSERT INTO sent(key, kind, type, ident, xid, pending, pending_raw, seen, expires_at) "
                "VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT DO UPDATE SET seen = excluded.seen, pending = excluded.pending, "
                "pending_raw = excluded.pending_raw, expires_at = excluded.expires_at",
                [(k, kind, t, ident, xid, pending, raw, run, until)
                 for k, kind, t, ident, xid, pending, raw, _c, until in rows if pending is not None])
            self.conn.executemany(  # unchanged, but the reader's output differs: remember it
                "UPDATE sent SET raw = ? WHERE key = ? AND kind = ? AND type = ? AND ident = ? AND pending IS NULL",
                [(raw, k, kind, t, ident) for k, kind, t, ident, _xid, pending, raw, _c, _u in rows
                 if pending is None and raw is not None])

    def repeats(self) -> list[tuple[tuple[int, str, str, str], int | None, int, bool, dict[str, int]]]:
        """Records this cycle read more than once (after :meth:`end_reading`): their identity,
        last sent hash, number of occurrences, whether every occurrence was staged, and how the
        occurrences were counted."""
        rows = self.conn.execute(
            "SELECT n.key, n.kind, n.type, n.ident, s.hash, count(*), min(n.staged), "
            "sum(n.counted = 'new'), sum(n.counted = 'changed'), sum(n.counted = 'unchanged'), "
            "sum(n.counted = 'expired'), sum(n.counted = 'kept_alive') "
            "FROM seen_now n JOIN sent s ON s.key = n.key AND s.kind = n.kind AND s.type = n.type "
            "AND s.ident = n.ident WHERE n.key IN (SELECT key FROM seen_now GROUP BY key HAVING count(*) > 1) "
            "GROUP BY n.key, n.kind, n.type, n.ident HAVING count(*) > 1").fetchall()
        return [((key, kind, type_, ident), h, count, bool(all_staged),
                 {"new": new, "changed": changed, "unchanged": unchanged, "expired": expired, "kept_alive": kept})
                for key, kind, type_, ident, h, count, all_staged, new, changed, unchanged, expired, kept in rows]

    def settle_repeats(self, rows: Iterable[tuple[tuple[int, str, str, str], int | None, bool]]) -> None:
        """Record the outcome for repeated records: ``(identity, pending, resend)``. ``pending``
        is the merged record's hash staged for sending (None: nothing staged); ``resend``
        forgets the sent hash so that the next cycle sends the record. Every record listed
        becomes ``multi``; every other record read this cycle stops being one."""
        rows = list(rows)
        with self._tx():
            self.conn.execute("UPDATE sent SET multi = 0 WHERE multi = 1")
            self.conn.executemany(
                "UPDATE sent SET multi = 1, pending = ?, pending_raw = NULL, raw = NULL, "
                "hash = CASE WHEN ? THEN NULL ELSE hash END "
                "WHERE key = ? AND kind = ? AND type = ? AND ident = ?",
                [(pending, resend, *ident) for ident, pending, resend in rows])

    def begin_cycle(self, filed: bool = False) -> None:
        """Forget what an earlier (possibly interrupted) cycle read. ``filed``: the cycle
        recognises rows by the row key file, which lists every record of :meth:`known_raws`
        now; the others go to ``unfiled``, and :meth:`end_reading` adds the file's records no
        row hit."""
        self._stale()
        self._filed = filed
        self.conn.execute("DROP INDEX IF EXISTS seen_now_key")
        for table in ("seen_now", "seen_raw", "unfiled"):
            self.conn.execute(f"DELETE FROM {table}")
        if filed:
            self.conn.execute(f"INSERT INTO unfiled SELECT key, kind, type, ident FROM sent WHERE NOT ({_KNOWN})")

    def end_reading(self, unread: Iterable[int] = ()) -> None:
        """The whole feed was read: index what was seen, and clear the absence of records
        that came back. ``unread``: the prefixes of the row key file's keys no row hit (a
        cycle that began ``filed``), whose records go to ``unfiled``."""
        self._stale()
        self.settle_seen_raw()
        if self._filed:
            with self._tx():
                self.conn.executemany(  # the keys are 16 bytes: these are all the keys with the prefix
                    "INSERT OR IGNORE INTO unfiled SELECT key, kind, type, ident FROM sent WHERE raw BETWEEN ? AND ?",
                    ((p.to_bytes(8, "big"), p.to_bytes(8, "big") + b"\xff" * 8) for p in unread))
        self.conn.execute("CREATE INDEX IF NOT EXISTS seen_now_key ON seen_now(key, kind, type, ident)")  # covers _SEEN
        self.conn.execute("UPDATE sent SET missing_since = NULL, absent = 0, retired = 0 "
                          f"WHERE (missing_since IS NOT NULL OR absent > 0 OR retired = 1) AND {self._seen}")

    @property
    def _seen(self) -> str:
        """SQL that is true for a row of ``sent`` this cycle read (after :meth:`end_reading`)."""
        return _SEEN_FILED if self._filed else _SEEN

    @property
    def _unread(self) -> str:
        """SQL that is true for a row of ``sent`` this cycle did not read (after
        :meth:`end_reading`). A filed cycle looks only among ``unfiled``, through the primary
        key, instead of at every row."""
        if not self._filed:
            return f"NOT {_SEEN}"
        return ("(key, kind, type, ident) IN (SELECT u.key, u.kind, u.type, u.ident FROM unfiled u WHERE NOT EXISTS "
                "(SELECT 1 FROM seen_now n WHERE n.key = u.key AND n.kind = u.kind AND n.type = u.type "
                "AND n.ident = u.ident))")

    def set_pending(self, rows: Iterable[tuple[int, str, str, str, str, int]]) -> None:
        """Stage a hash for records that are not in this run (retired: made inactive); their
        raw hash is dropped on confirmation, so a row that comes back is checked in full."""
        with self._tx():
            self.conn.executemany("UPDATE sent SET pending = ?, pending_raw = NULL, retired = 1 "
                                  "WHERE key = ? AND kind = ? AND type = ? AND ident = ?",
                                  [(h, k, kind, t, ident) for k, kind, t, ident, _xid, h in rows])

    def missing(self) -> list[tuple[int, str, str, str, str, float | None, int, int]]:
        """Records the cycle did not read (after :meth:`end_reading`): identity, xid, since
        when they are missing, from how many complete reads before this one, and whether they
        were retired."""
        return self.conn.execute(f"SELECT key, kind, type, ident, xid, missing_since, absent, retired FROM sent "
                                 f"WHERE {self._unread}").fetchall()

    def mark_missing(self, now: float) -> int:
        """Count one more complete read without the records this cycle did not read."""
        self._stale()
        cur = self.conn.execute("UPDATE sent SET missing_since = coalesce(missing_since, ?), absent = absent + 1 "
                                f"WHERE {self._unread}", (now,))
        return cur.rowcount

    def live(self) -> int:
        """Records the feed has produced and not retired or deleted: the base of the
        mass-removal guard's share."""
        return self.conn.execute("SELECT count(*) FROM sent WHERE retired = 0").fetchone()[0]

    def confirm(self, failed: set[str], now: float | None = None) -> None:
        """The job of the cycle finished: staged hashes become sent (at ``now``), except for
        records the API reported as failed, which are sent again next cycle."""
        with self._tx():
            if failed:  # a retirement that failed is tried again
                self.conn.executemany("UPDATE sent SET pending = NULL, pending_raw = NULL, retired = 0 "
                                      "WHERE xid = ? AND pending IS NOT NULL", [(x,) for x in failed])
            self.conn.execute("UPDATE sent SET hash = pending, raw = pending_raw, pending = NULL, pending_raw = NULL, "
                              "sent_at = coalesce(?, sent_at) WHERE pending IS NOT NULL", (now,))

    def discard_pending(self, run: int) -> None:
        """Undo what an unfinished read staged: records first seen in ``run`` are forgotten,
        the others keep their last sent hash."""
        with self._tx():
            self.conn.execute("DELETE FROM sent WHERE seen = ? AND hash IS NULL AND pending IS NOT NULL", (run,))
            self.conn.execute("UPDATE sent SET pending = NULL, pending_raw = NULL, "
                              "retired = CASE WHEN absent > 0 THEN 0 ELSE retired END WHERE pending IS NOT NULL")

    def forget(self, keys: Iterable[tuple[int, str, str, str]]) -> None:
        with self._tx():
            self.conn.executemany("DELETE FROM sent WHERE key = ? AND kind = ? AND type = ? AND ident = ?", list(keys))
