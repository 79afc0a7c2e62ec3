"""The job file: one SQLite database that holds all of a job's state.

Tables (schema version :data:`SCHEMA_VERSION`):

``groups`` / ``indicators``
    one row per staged record: identity key, xid, type, name or canonical summary, the
    orjson-encoded batch dict (``body``), its exact byte length and a content hash. Groups also
    keep the xids they reference (``refs``) and the chunk they were emitted in.
``associations``
    top-level ``association`` entries, de-duplicated.
``files``
    Document/Report content: spilled bytes, a path reference, or a marker that a callback or
    the batch's resolver supplies it at upload time.
``chunks``
    every chunk file built: its path, counts, byte size and the ``seq`` ranges of the
    indicators and associations it holds; then its submission: state (built, sending,
    submitted, completed, done, failed), the batch id the API gave it, the final status.
``errors``
    per-record errors the API reported for a chunk, tied to the xid they name.
``rejected``
    input that failed validation, with the reason, so nothing is silently dropped.
``meta``
    the schema version, the owner and the job's settings.

Identity keys are 64-bit XXH3 hashes (of ``xid`` for groups, of type and canonical summary for
indicators) kept in a non-unique index: a lookup compares the stored xid or summary, so a hash
collision can never merge two different records. The index leads with the row's *generation*
(``seq >> 19``, 524,288 rows each): random keys then land in the small, current part of the
index, which stays in SQLite's page cache, instead of all over an index larger than the cache
(plain ``key`` indexing fell from ~120,000 to ~37,000 inserts/s between 0.5 and 3 million
rows; this stays flat). A lookup searches each generation in use, and a Bloom filter of the
staged keys (:class:`KeyFilter`, growing by fixed segments) spares most new keys that search.

Indicators and associations are emitted in ``seq`` order, so a chunk's membership is a ``seq``
range and "not yet chunked" is ``seq`` above the highest range: building needs no per-row
update. A record changed after it was chunked is moved to a new ``seq`` so it is emitted again.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import sqlite3
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlite_utils

from .errors import BusyError, JobFileError
from .wire import ascii_json
from .xid import group_key, hash64, indicator_key

SCHEMA_VERSION = 3
GEN_SHIFT = 19  # rows per generation of the identity index: 2**19
APPLICATION_ID = 0x53424A46  # "SBJF": marks a file as a streambatch job file
UNSYNCED_MARK = "staging_unsynced"  # meta key: a writer is (or was, if it is left) writing without syncs
_SQLITE_MAGIC = b"SQLite format 3\x00"

SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE groups (
    seq INTEGER PRIMARY KEY, key INTEGER NOT NULL, xid TEXT NOT NULL, type TEXT NOT NULL,
    name TEXT NOT NULL, body BLOB NOT NULL, size INTEGER NOT NULL, hash INTEGER NOT NULL,
    refs TEXT, chunk INTEGER);
CREATE INDEX groups_key ON groups(seq >> {GEN_SHIFT}, key);
CREATE TABLE indicators (
    seq INTEGER PRIMARY KEY, key INTEGER NOT NULL, xid TEXT NOT NULL, type TEXT NOT NULL,
    summary TEXT NOT NULL, body BLOB NOT NULL, size INTEGER NOT NULL, hash INTEGER NOT NULL);
CREATE INDEX indicators_key ON indicators(seq >> {GEN_SHIFT}, key);
CREATE TABLE associations (
    seq INTEGER PRIMARY KEY, key INTEGER NOT NULL, body BLOB NOT NULL, size INTEGER NOT NULL);
CREATE INDEX associations_key ON associations(seq >> {GEN_SHIFT}, key);
CREATE TABLE files (
    xid TEXT PRIMARY KEY, type TEXT NOT NULL, file_name TEXT, source TEXT NOT NULL,
    content BLOB, path TEXT, state TEXT NOT NULL DEFAULT 'pending', error TEXT);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, bytes INTEGER NOT NULL,
    groups INTEGER NOT NULL, indicators INTEGER NOT NULL, associations INTEGER NOT NULL,
    ind_lo INTEGER, ind_hi INTEGER, assoc_lo INTEGER, assoc_hi INTEGER,
    state TEXT NOT NULL DEFAULT 'built', batch_id INTEGER, status TEXT, message TEXT,
    error_count INTEGER, errors_fetched INTEGER NOT NULL DEFAULT 0,
    created REAL, submitted REAL, completed REAL);
CREATE INDEX chunks_batch ON chunks(batch_id);
CREATE TABLE errors (
    id INTEGER PRIMARY KEY, chunk INTEGER NOT NULL, xid TEXT, code TEXT, severity TEXT,
    reason TEXT, message TEXT, source TEXT);
CREATE INDEX errors_chunk ON errors(chunk);
CREATE INDEX errors_xid ON errors(xid);
CREATE TABLE rejected (
    id INTEGER PRIMARY KEY, source TEXT, line INTEGER, xid TEXT, type TEXT, field TEXT,
    reason TEXT NOT NULL, raw TEXT);
"""

# Each entry upgrades a job file from that version to the next, in one transaction.
MIGRATIONS: dict[int, str] = {
    1: """
ALTER TABLE chunks ADD COLUMN message TEXT;
ALTER TABLE chunks ADD COLUMN error_count INTEGER;
ALTER TABLE chunks ADD COLUMN errors_fetched INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chunks ADD COLUMN submitted REAL;
ALTER TABLE chunks ADD COLUMN completed REAL;
CREATE INDEX chunks_batch ON chunks(batch_id);
CREATE TABLE errors (
    id INTEGER PRIMARY KEY, chunk INTEGER NOT NULL, xid TEXT, code TEXT, severity TEXT,
    reason TEXT, message TEXT, source TEXT);
CREATE INDEX errors_chunk ON errors(chunk);
CREATE INDEX errors_xid ON errors(xid);
""",
    2: f"""
DROP INDEX groups_key;
CREATE INDEX groups_key ON groups(seq >> {GEN_SHIFT}, key);
DROP INDEX indicators_key;
CREATE INDEX indicators_key ON indicators(seq >> {GEN_SHIFT}, key);
DROP INDEX associations_key;
CREATE INDEX associations_key ON associations(seq >> {GEN_SHIFT}, key);
""",
}


@dataclass(slots=True)
class Row:
    """A record on its way into the job file: its identity and its encoded batch dict."""

    kind: str  # "group" | "indicator"
    key: int
    xid: str
    type: str
    ident: str  # group name or indicator summary
    body: bytes

    @property
    def data(self) -> dict[str, Any]:
        return orjson.loads(self.body)

    @property
    def identity(self) -> str:
        """What must match besides the key: the xid of a group, the summary of an indicator."""
        return self.xid if self.kind == "group" else self.type + "\x00" + self.ident


@dataclass(slots=True)
class Staging:
    """One write of staged input, committed in one transaction (:meth:`JobFile.stage`): the
    rows, associations, file content and rejects a Batch buffered, and the pre-flight counts
    they add; ``mark``: a token recorded with the write (see :meth:`JobFile.stage`)."""

    rows: list[Row]
    associations: list[tuple[int, bytes]]
    files: list[tuple]
    rejects: list[dict[str, Any]]
    truncated: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    replace: bool = False  # on_conflict='replace': a record staged again replaces the staged one
    mark: str | None = None

    def encode(self) -> bytes:
        """The write as one message for the writer process (rows as plain tuples: pickling
        them costs ~0.6 µs a row, a tenth of writing them)."""
        rows = [(r.kind, r.key, r.xid, r.type, r.ident, r.body) for r in self.rows]
        return pickle.dumps((rows, self.associations, self.files, self.rejects, self.truncated, self.dropped,
                             self.replace, self.mark), protocol=5)

    @classmethod
    def decode(cls, message: bytes) -> "Staging":
        rows, *rest = pickle.loads(message)
        return cls([Row(*r) for r in rows], *rest)


class KeyFilter:
    """A Bloom filter of identity keys: answers "surely not staged" without touching SQLite.

    It grows by segments of ``nbits`` (4 MiB by default), each taking ``capacity`` keys (16
    bits a key: with 3 probes about 0.5% false positives per full segment) before the next is
    started; a key is looked for in every segment. So memory grows by 4 MiB per ~2.1 million
    keys, and false positives stay at a few percent however large the job: one fixed 4 MiB
    filter answered "maybe" to 4.7% of new keys at 5 million staged keys and 22% at 10 million,
    each a query. A key added twice is counted twice (a segment may start a little early).
    """

    def __init__(self, nbits: int = 1 << 25, capacity: int | None = None) -> None:
        if nbits & (nbits - 1):
            raise ValueError("nbits must be a power of two")
        self.mask = nbits - 1
        self.capacity = capacity or nbits // 16
        self.segments = [bytearray(nbits >> 3)]
        self._room = self.capacity  # keys the current segment still takes

    def _grow(self) -> bytearray:
        self.segments.append(bytearray(len(self.segments[0])))
        self._room = self.capacity
        return self.segments[-1]

    def add(self, key: int) -> None:
        self.add_all((key,))

    def add_all(self, keys: Iterable[int]) -> None:
        """Add each key (in one loop: less than half the time of a call per key)."""
        m, bits, room = self.mask, self.segments[-1], self._room
        for key in keys:
            if not room:
                self._room = 0
                bits, room = self._grow(), self.capacity
            room -= 1
            h1 = key & 0xFFFFFFFF
            h2 = ((key >> 32) & 0xFFFFFFFF) | 1
            p = h1 & m
            bits[p >> 3] |= 1 << (p & 7)
            p = (h1 + h2) & m
            bits[p >> 3] |= 1 << (p & 7)
            p = (h1 + 2 * h2) & m
            bits[p >> 3] |= 1 << (p & 7)
        self._room = room

    def __contains__(self, key: int) -> bool:
        h1 = key & 0xFFFFFFFF
        m = self.mask
        p = h1 & m
        at, bit = p >> 3, 1 << (p & 7)
        for bits in self.segments:
            if bits[at] & bit:  # most misses end at this first probe
                h2 = ((key >> 32) & 0xFFFFFFFF) | 1
                p = (h1 + h2) & m
                if bits[p >> 3] & (1 << (p & 7)):
                    p = (h1 + 2 * h2) & m
                    if bits[p >> 3] & (1 << (p & 7)):
                        return True
        return False


class JobFile:
    """A streambatch job file. Create or open with :meth:`open`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._filter: KeyFilter | None = None

    def keys(self) -> Iterator[int]:
        """The identity keys of every staged group and indicator."""
        for table in ("groups", "indicators"):
            for (key,) in self.iter_rows(f"SELECT key FROM {table}", size=50_000):
                yield key

    def may_contain(self, key: int) -> bool:
        """False if no staged group or indicator has this identity key (no query needed)."""
        return key in self.filter

    def note_keys(self, keys: Iterable[int]) -> None:
        """Add keys staged by another connection (the writer process) to the filter, if it is
        read already (else it is read from the job file when first used)."""
        if self._filter is not None:
            self._filter.add_all(keys)

    def forget_filter(self) -> None:
        """Drop the filter, to be read again from the job file when next used."""
        self._filter = None

    @property
    def filter_loaded(self) -> bool:
        return self._filter is not None

    @property
    def filter(self) -> KeyFilter:
        """The Bloom filter of staged keys, read from the job file on first use."""
        if self._filter is None:
            flt = KeyFilter()
            flt.add_all(self.keys())
            self._filter = flt
        return self._filter

    def _generations(self, table: str) -> str:
        """The generations of ``table``'s identity index in use, as an SQL list of numbers."""
        top = self.conn.execute(f"SELECT coalesce(max(seq), 0) >> {GEN_SHIFT} FROM {table}").fetchone()[0]
        return ",".join(map(str, range(top + 1)))

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], create: bool = True) -> "JobFile":
        """Open a job file, creating it (mode 0600) if it does not exist and ``create`` is set.

        A file that is not a streambatch job file, is damaged, or comes from a newer version of
        streambatch raises :class:`JobFileError` and is left untouched. So does a job path, or
        its ``-wal``/``-shm``, that is a symbolic link (even to a real job file: see
        docs/security.md, "Files"), a directory or anything but a regular file: streambatch
        never creates, truncates or chmods a file through a link.
        """
        p = Path(path)
        fd, new = _open_job_path(p, create)
        try:
            before = os.fstat(fd)
            if not new and os.pread(fd, 16, 0) != _SQLITE_MAGIC:
                raise JobFileError(f"{p}: not a SQLite database (is it a streambatch job file?)")
            for suffix in ("-wal", "-shm"):
                _refuse_link(Path(f"{p}{suffix}"), "a job file's " + suffix[1:] + " file")
            try:
                conn = sqlite3.connect(p, isolation_level=None, check_same_thread=False)
            except sqlite3.DatabaseError as exc:
                raise JobFileError(f"{p}: damaged or unreadable job file ({exc})") from None
        except OSError as exc:
            raise JobFileError(f"{p}: cannot open job file ({exc.strerror or exc})") from None
        finally:
            os.close(fd)
        try:
            after = os.lstat(p)
        except OSError:
            after = None
        if after is None or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            conn.close()  # swapped between the check and SQLite's open
            raise JobFileError(f"{p}: the job file was replaced while it was being opened; nothing was written")
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if new:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript("BEGIN;" + SCHEMA + f"PRAGMA application_id = {APPLICATION_ID};"
                                   f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            elif app_id != APPLICATION_ID:
                conn.close()
                raise JobFileError(f"{p}: a SQLite database, but not a streambatch job file")
            elif version > SCHEMA_VERSION:
                conn.close()
                raise JobFileError(f"{p}: written by a newer streambatch (schema {version}, "
                                   f"this one reads up to {SCHEMA_VERSION}); upgrade streambatch")
            else:
                conn.execute("PRAGMA journal_mode = WAL")
                if version < SCHEMA_VERSION:
                    _migrate(conn, p, version)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -16000")
            conn.execute("PRAGMA wal_autocheckpoint = 10000")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise JobFileError(f"{p}: damaged or unreadable job file ({exc})") from None
        return cls(p, conn)

    @staticmethod
    def check(path: str | os.PathLike[str]) -> None:
        """Raise :class:`JobFileError` unless SQLite's quick check finds the file whole. Read
        only: a damaged file is left exactly as it is (any write could make it worse). Costs a
        read of the file, so it is for resuming, not for every open."""
        p = Path(path)
        _refuse_link(p, "a job file")
        try:
            conn = sqlite3.connect(f"{p.absolute().as_uri()}?mode=ro", uri=True)
            try:
                result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise JobFileError(f"{p}: damaged or unreadable job file ({exc})") from None
        if result != "ok":
            raise JobFileError(f"{p}: damaged job file ({result})")

    def close(self) -> None:
        self.conn.close()

    def free_cache(self) -> None:
        """Give back the memory of this connection's page cache (it fills again as it reads)."""
        self.conn.execute("PRAGMA shrink_memory")

    # -- meta ----------------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else orjson.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                          (key, orjson.dumps(value).decode()))

    # -- records -------------------------------------------------------------------------

    def put_rows(self, rows: Sequence[Row], merge: Callable[[dict, dict], dict] | None) -> None:
        """Stage rows in one transaction. A row whose identity is already staged is merged
        with it (``merge(old, new) -> dict``; ``None`` replaces). Rows must have distinct
        identities (the caller merges duplicates within one call)."""
        if not rows:
            return
        by_kind: dict[str, list[Row]] = {"group": [], "indicator": []}
        for row in rows:
            by_kind[row.kind].append(row)
        with self.transaction():
            for kind, items in by_kind.items():
                if items:
                    self._put_kind(kind, items, merge)

    def _put_kind(self, kind: str, rows: list[Row], merge: Callable[[dict, dict], dict] | None) -> None:
        table = kind + "s"
        flt = self.filter
        found = self._existing(kind, [r.key for r in rows if r.key in flt])
        if not found:  # all new: the common case of a growing job
            new = [self._values(row, ascii_json(row.body)) for row in rows]
            rows = []
        else:
            new = []
        for row in rows:
            old = found.get((row.key, row.identity))
            if old is None:
                new.append(self._values(row, ascii_json(row.body)))
                continue
            seq, old_body, old_hash = old
            body = ascii_json(row.body if merge is None else orjson.dumps(merge(orjson.loads(old_body), row.data)))
            h = hash64(body)
            if h == old_hash and body == old_body:
                continue
            self._replace(kind, seq, row, body, h)
        if kind == "group":
            self.conn.executemany(
                f"INSERT INTO {table}(key, xid, type, name, body, size, hash, refs) VALUES (?,?,?,?,?,?,?,?)", new)
        else:
            self.conn.executemany(
                f"INSERT INTO {table}(key, xid, type, summary, body, size, hash) VALUES (?,?,?,?,?,?,?)", new)
        flt.add_all([values[0] for values in new])

    @staticmethod
    def _values(row: Row, body: bytes) -> tuple:
        base = (row.key, row.xid, row.type, row.ident, body, len(body), hash64(body))
        if row.kind == "group":
            return base + (_refs(body),)
        return base

    def _existing(self, kind: str, keys: list[int]) -> dict[tuple[int, str], tuple[int, bytes, int]]:
        if not keys:
            return {}
        ident = "xid" if kind == "group" else "type || char(0) || summary"
        sql = (f"SELECT key, {ident}, seq, body, hash FROM {kind}s "
               f"WHERE (seq >> {GEN_SHIFT}) IN ({self._generations(kind + 's')}) AND key IN ({{marks}})")
        return {(key, identity): (seq, body, h) for key, identity, seq, body, h in query_in(self.conn, sql, keys)}

    def _replace(self, kind: str, seq: int, row: Row, body: bytes, h: int) -> None:
        """Store a changed record. One that was already chunked moves to a new seq (groups:
        loses its chunk) so that the next build emits it again."""
        if kind == "group":
            self.conn.execute("UPDATE groups SET xid=?, name=?, body=?, size=?, hash=?, refs=?, chunk=NULL WHERE seq=?",
                              (row.xid, row.ident, body, len(body), h, _refs(body), seq))
            return
        new_seq, mark = seq, self.indicator_watermark()
        if seq <= mark:
            new_seq = max(self.conn.execute("SELECT coalesce(max(seq), 0) FROM indicators").fetchone()[0], mark) + 1
        self.conn.execute("UPDATE indicators SET seq=?, xid=?, body=?, size=?, hash=? WHERE seq=?",
                          (new_seq, row.xid, body, len(body), h, seq))

    def indicator_watermark(self) -> int:
        return self.conn.execute("SELECT coalesce(max(ind_hi), 0) FROM chunks").fetchone()[0]

    def association_watermark(self) -> int:
        return self.conn.execute("SELECT coalesce(max(assoc_hi), 0) FROM chunks").fetchone()[0]

    def _lookup(self, table: str, what: str, key: int, where: str, params: tuple) -> tuple | None:
        """The first row of ``table`` with this identity key that matches ``where``."""
        return self.conn.execute(f"SELECT {what} FROM {table} WHERE (seq >> {GEN_SHIFT}) IN "
                                 f"({self._generations(table)}) AND key = ? AND {where} LIMIT 1",
                                 (key, *params)).fetchone()

    def get_group(self, xid: str) -> dict | None:
        row = self._lookup("groups", "body", group_key(xid), "xid = ?", (xid,))
        return None if row is None else orjson.loads(row[0])

    def get_indicator(self, type_name: str, summary: str) -> dict | None:
        row = self._lookup("indicators", "body", indicator_key(type_name, summary), "type = ? AND summary = ?",
                           (type_name, summary))
        return None if row is None else orjson.loads(row[0])

    def find(self, kind: str, type_name: str, ident: str) -> tuple[int, int] | None:
        """``(seq, content hash)`` of a staged record (``ident``: a group's xid, an
        indicator's summary), or None."""
        if kind == "group":
            return self._lookup("groups", "seq, hash", group_key(ident), "xid = ?", (ident,))
        return self._lookup("indicators", "seq, hash", indicator_key(type_name, ident), "type = ? AND summary = ?",
                            (type_name, ident))

    def drop(self, kind: str, seq: int) -> None:
        """Take a staged record that is not yet in a chunk out of the job."""
        self.conn.execute(f"DELETE FROM {kind}s WHERE seq = ?", (seq,))

    def find_indicator_by_xid(self, xid: str) -> dict | None:
        """Indicators are indexed by value, not by xid: this is a table scan."""
        row = self.conn.execute("SELECT body FROM indicators WHERE xid = ? LIMIT 1", (xid,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def has_indicator(self, type_name: str, summary: str) -> bool:
        return self._lookup("indicators", "1", indicator_key(type_name, summary), "type = ? AND summary = ?",
                            (type_name, summary)) is not None

    def count(self, kind: str) -> int:
        return self.conn.execute(f"SELECT count(*) FROM {kind}s").fetchone()[0]

    # -- associations --------------------------------------------------------------------

    def put_associations(self, items: Sequence[tuple[int, bytes]]) -> None:
        """Stage association entries given as (key, body); an equal entry is kept once."""
        if not items:
            return
        with self.transaction():
            sql = (f"SELECT body FROM associations WHERE (seq >> {GEN_SHIFT}) IN "
                   f"({self._generations('associations')}) AND key IN ({{marks}})")
            existing = {b for (b,) in query_in(self.conn, sql, (k for k, _ in items))}
            fresh = []
            for key, body in items:
                body = ascii_json(body)
                if body not in existing:
                    existing.add(body)
                    fresh.append((key, body, len(body)))
            self.conn.executemany("INSERT INTO associations(key, body, size) VALUES (?,?,?)", fresh)

    # -- files ---------------------------------------------------------------------------

    def put_file(self, xid: str, type_name: str, file_name: str | None, source: str,
                 content: bytes | None = None, path: str | None = None) -> None:
        self.conn.execute(
            "INSERT INTO files(xid, type, file_name, source, content, path, state) VALUES (?,?,?,?,?,?,'pending') "
            "ON CONFLICT(xid) DO UPDATE SET type=excluded.type, file_name=coalesce(excluded.file_name, file_name), "
            "source=excluded.source, content=excluded.content, path=excluded.path, state='pending', error=NULL",
            (xid, type_name, file_name, source, content, path))

    def file(self, xid: str) -> dict | None:
        row = self.conn.execute("SELECT xid, type, file_name, source, content, path, state, error FROM files WHERE xid=?",
                                (xid,)).fetchone()
        if row is None:
            return None
        return dict(zip(("xid", "type", "file_name", "source", "content", "path", "state", "error"), row))

    # -- rejected input ------------------------------------------------------------------

    def reject(self, reason: str, *, source: str | None = None, line: int | None = None, xid: str | None = None,
               type_name: str | None = None, field: str | None = None, raw: Any = None) -> None:
        """Keep a rejected input. ``raw`` (text, or a value written as JSON) is kept to its
        first :data:`RAW_MAX_BYTES` (see :func:`bounded_raw`); the other columns whole."""
        text = raw if isinstance(raw, str) or raw is None else orjson.dumps(raw, default=repr).decode()
        text = None if text is None else bounded_raw(text)
        self.conn.execute("INSERT INTO rejected(source, line, xid, type, field, reason, raw) VALUES (?,?,?,?,?,?,?)",
                          (source, line, xid, type_name, field, reason, text))

    # -- one write of staged input ---------------------------------------------------------

    def stage(self, write: "Staging", merge: Callable[[dict, dict], dict] | None) -> None:
        """Apply one :class:`Staging` write (a flush of a Batch's buffers) in one transaction.
        A write that carries a ``mark`` records it in meta ``staging_write`` in the same
        transaction, so whoever sent it can tell afterwards whether it was committed."""
        with self.transaction():
            self.put_rows(write.rows, merge)
            self.put_associations(write.associations)
            for entry in write.files:
                self.put_file(*entry)
            for reject in write.rejects:
                self.reject(**reject)
            self.add_counts(write.truncated, write.dropped)
            if write.mark is not None:
                self.set_meta("staging_write", write.mark)

    def add_counts(self, truncated: int, dropped: dict[str, int]) -> None:
        """Add what pre-flight truncated and left out to the job file's counts (meta
        ``truncated``, ``attributes_dropped``)."""
        if truncated:
            self.set_meta("truncated", int(self.get_meta("truncated") or 0) + truncated)
        if dropped:
            counts = dict(self.get_meta("attributes_dropped") or {})
            for what, n in dropped.items():
                counts[what] = int(counts.get(what, 0)) + n
            self.set_meta("attributes_dropped", counts)

    # -- writing without syncs (the writer process) ---------------------------------------

    def begin_unsynced(self) -> None:
        """Write with ``synchronous = OFF`` on this connection from now on, after recording
        that (meta ``staging_unsynced``) in a transaction synced to disk. A process crash
        loses nothing committed; an OS crash or power cut can damage the file, which the mark
        then tells whoever opens it next (:meth:`check_unsynced`)."""
        self.conn.execute("PRAGMA synchronous = FULL")
        with self.transaction():
            self.set_meta(UNSYNCED_MARK, os.getpid())
        self.conn.execute("PRAGMA synchronous = OFF")

    def end_unsynced(self) -> bool:
        """Make everything written so far durable (a checkpoint that syncs the WAL and the
        file), then clear the mark in a synced transaction and go back to ``synchronous =
        NORMAL``. False if a reader kept the checkpoint from completing: the mark stays (the
        file is checked when next opened)."""
        self.conn.execute("PRAGMA synchronous = NORMAL")
        busy, frames, done = self.conn.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
        if busy or frames != done:
            return False
        self.conn.execute("PRAGMA synchronous = FULL")
        try:
            with self.transaction():
                self.conn.execute("DELETE FROM meta WHERE key = ?", (UNSYNCED_MARK,))
        finally:
            self.conn.execute("PRAGMA synchronous = NORMAL")
        return True

    def check_unsynced(self) -> None:
        """For the process that holds the job's lock, at open: a ``staging_unsynced`` mark
        means writing without syncs was cut (a killed process, or an OS crash). Then SQLite's
        quick check decides: whole, the mark is cleared; damaged, :class:`JobFileError` says to
        stage again."""
        try:
            if self.get_meta(UNSYNCED_MARK) is None:
                return
            JobFile.check(self.path)
        except (JobFileError, sqlite3.DatabaseError) as exc:
            what = exc if isinstance(exc, JobFileError) else f"{self.path}: damaged job file ({exc})"
            raise JobFileError(f"{what}. Staging into this job file was cut while it was written without syncing to "
                               f"disk (a system crash or power cut can damage such a file): move it away and stage "
                               f"the job again") from None
        self.end_unsynced()

    # -- transactions --------------------------------------------------------------------

    def transaction(self):
        return _Transaction(self.conn)

    def iter_rows(self, sql: str, params: Iterable[Any] = (), size: int = 2000) -> Iterator[tuple]:
        cur = self.conn.execute(sql, tuple(params))
        while True:
            batch = cur.fetchmany(size)
            if not batch:
                return
            yield from batch


RAW_MAX_BYTES = 64 * 1024  # of a rejected input's raw text, marker included (docs/decisions.md, "Rejected rows")
_CUT_MARK = " ...[cut: the first {kept:,} of {whole:,} bytes]"
_CUT_RE = re.compile(r" \.\.\.\[cut: the first ([\d,]+) of ([\d,]+) bytes\]\Z")


def bounded_raw(text: str) -> str:
    """``text`` if its UTF-8 is at most :data:`RAW_MAX_BYTES`, else as many of its first
    characters as fit with a marker of its whole size (``{"type":"Host",... ...[cut: the first
    65,486 of 10,485,790 bytes]``) in that bound. Bounded text is returned as it is, so bounding twice changes nothing."""
    if len(text) * 4 <= RAW_MAX_BYTES:  # cannot be over, whatever the characters
        return text
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= RAW_MAX_BYTES:
        return text
    room = RAW_MAX_BYTES - len(_CUT_MARK.format(kept=RAW_MAX_BYTES, whole=len(data)))
    kept = data[:room].decode("utf-8", "ignore")  # a character cut in half is left out
    size = len(kept.encode())
    return kept + _CUT_MARK.format(kept=size, whole=len(data))


def raw_cut(text: str | None) -> tuple[int, int] | None:
    """``(bytes kept, bytes in all)`` of a raw text :func:`bounded_raw` cut, else None."""
    if not text or not text.endswith("bytes]"):
        return None
    m = _CUT_RE.search(text)
    if m is None:
        return None
    kept, whole = (int(g.replace(",", "")) for g in m.groups())
    if len(text[:m.start()].encode("utf-8", "backslashreplace")) != kept:
        return None  # text that only looks like the marker
    return kept, whole


def query_in(conn: sqlite3.Connection, sql: str, values: Iterable[Any], size: int = 500) -> Iterator[tuple]:
    """Run ``sql``, whose ``{marks}`` stands for an ``IN (...)`` list, over the distinct
    ``values`` in slices of ``size`` (SQLite limits bound parameters); yield every row."""
    unique = list(dict.fromkeys(values))
    for i in range(0, len(unique), size):
        part = unique[i:i + size]
        yield from conn.execute(sql.format(marks=",".join("?" * len(part))), part)


def _migrate(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Upgrade an older job file in place, all steps in one transaction (all or nothing)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for v in range(version, SCHEMA_VERSION):
            if v not in MIGRATIONS:
                raise JobFileError(f"{path}: schema version {v} cannot be upgraded by this streambatch")
            for statement in filter(str.strip, MIGRATIONS[v].split(";")):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class JobLock:
    """An exclusive lock on a job file, held by the process that writes and submits it.

    It is an ``flock`` on ``<job file>.lock``: the kernel releases it when the process ends,
    however it ends, so a lock left by a dead process never blocks a resume. The file records
    the holder's pid for the error message.
    """

    def __init__(self, job_path: Path) -> None:
        self.path = Path(str(job_path) + ".lock")
        self._fd: int | None = None

    def acquire(self) -> "JobLock":
        import fcntl

        fd = _open_private(self.path, os.O_RDWR | os.O_CREAT, "a lock file")
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise JobFileError(f"{self.path}: not a regular file; streambatch uses this path as a lock file "
                                   f"(remove whatever is there)")
            if st.st_nlink != 1:  # a hard link to some other file: truncating it would clobber that file
                raise JobFileError(f"{self.path}: the lock file has {st.st_nlink} hard links; streambatch does not "
                                   f"write a lock file that is also another file (remove it)")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BusyError(f"{self.path.with_suffix('')}: in use by another streambatch process "
                            f"(pid {holder}); wait for it to finish") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def private_dir(path: Path) -> None:
    """Make sure the folder ``path`` exists; one created here (the last component; missing
    parents are made as ``mkdir -p`` would) is mode 0700 whatever the umask. An existing
    folder is used as it is: its permissions are its owner's choice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    os.chmod(path, 0o700)


def _link_error(path: Path, what: str) -> JobFileError:
    try:
        target = f" (it points to {os.readlink(path)})"
    except OSError:
        target = ""
    hint = "give the real path, or remove the link" if what == "a job file" else "remove the link"
    return JobFileError(f"{path}: is a symbolic link{target}; streambatch does not open {what} through a link "
                        f"({hint})")


def _refuse_link(path: Path, what: str) -> None:
    """Raise :class:`JobFileError` if ``path`` is a symbolic link (dangling or not)."""
    if path.is_symlink():
        raise _link_error(path, what)


def _open_private(path: Path, flags: int, what: str, mode: int = 0o600) -> int:
    """``os.open`` that never follows a symbolic link at ``path`` (its folders may be links);
    a refusal or failure is one :class:`JobFileError` naming the path."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if path.is_symlink():  # ELOOP on Linux, EMLINK on some BSDs
            raise _link_error(path, what) from None
        if exc.errno == errno.EEXIST:
            raise JobFileError(f"{path}: appeared while streambatch was creating it; nothing was written") from None
        if exc.errno == errno.EISDIR:
            raise JobFileError(f"{path}: is a directory; streambatch needs this path for {what}") from None
        raise JobFileError(f"{path}: cannot open {what} ({exc.strerror or exc})") from None


def _open_job_path(p: Path, create: bool) -> tuple[int, bool]:
    """A read-only descriptor of the job file at ``p``, opened without following a link, and
    whether it is new (created here, or an existing empty regular file). A new file is made
    0600; a link, a directory or another kind of file is refused."""
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        st = None
    except OSError as exc:  # e.g. a parent that is a file
        raise JobFileError(f"{p}: cannot open job file ({exc.strerror or exc})") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise _link_error(p, "a job file")
        if stat.S_ISDIR(st.st_mode):
            raise JobFileError(f"{p}: is a directory, not a job file")
        if not stat.S_ISREG(st.st_mode):
            raise JobFileError(f"{p}: not a regular file, so not a job file")
    if st is None:
        if not create:
            raise JobFileError(f"{p}: no such job file")
        try:
            private_dir(p.parent)
        except OSError as exc:
            raise JobFileError(f"{p}: cannot create the job file's folder ({exc.strerror or exc})") from None
        fd = _open_private(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, "a job file")
    else:
        fd = _open_private(p, os.O_RDONLY, "a job file")
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):
            raise JobFileError(f"{p}: not a regular file, so not a job file")
        new = now.st_size == 0
        if new and not create:
            raise JobFileError(f"{p}: no such job file (the file is empty)")
        if new and now.st_nlink != 1:  # an empty file that is also another name: not ours to take over
            raise JobFileError(f"{p}: an empty file with {now.st_nlink} hard links; streambatch does not make a "
                               f"file that is also another file a job file")
        if new:
            os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask; before SQLite makes -wal/-shm like it
    except OSError as exc:
        os.close(fd)
        raise JobFileError(f"{p}: cannot make the job file private ({exc.strerror or exc})") from None
    except BaseException:
        os.close(fd)
        raise
    return fd, new


def _refs(body: bytes) -> str | None:
    """The group xids a group's batch dict references, for ordering groups when building."""
    if b'"associatedGroupXid"' not in body:
        return None
    refs = orjson.loads(body).get("associatedGroupXid")
    return orjson.dumps(refs).decode() if refs else None


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception; nests as a no-op."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
            self.outer = True
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.outer:
            return
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
