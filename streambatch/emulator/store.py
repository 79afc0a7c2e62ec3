"""The emulator's SQLite store: threat intelligence per owner, document files, and batch jobs.

One database file holds everything, so a served emulator survives restarts. A single
connection in WAL mode is shared by all threads behind a re-entrant lock; every state change
happens inside :meth:`Store.tx`, one transaction. The public read methods
(:meth:`indicator`, :meth:`group`, :meth:`count`, :meth:`document`, :meth:`jobs`...) return
plain dicts in the batch JSON shape, for tests and users.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import orjson

from . import rules

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS grp (
    id INTEGER PRIMARY KEY, owner TEXT NOT NULL, xid TEXT NOT NULL, type TEXT NOT NULL,
    name TEXT NOT NULL, fields TEXT NOT NULL, attribute TEXT NOT NULL, tag TEXT NOT NULL,
    label TEXT NOT NULL, modified REAL NOT NULL, UNIQUE (owner, xid));
CREATE INDEX IF NOT EXISTS grp_xid ON grp (xid);
CREATE TABLE IF NOT EXISTS ind (
    id INTEGER PRIMARY KEY, owner TEXT NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL,
    summary TEXT NOT NULL, xid TEXT, md5 TEXT, sha1 TEXT, sha256 TEXT, fields TEXT NOT NULL,
    attribute TEXT NOT NULL, tag TEXT NOT NULL, label TEXT NOT NULL, modified REAL NOT NULL,
    UNIQUE (owner, type, key));
CREATE INDEX IF NOT EXISTS ind_md5 ON ind (owner, md5) WHERE md5 IS NOT NULL;
CREATE INDEX IF NOT EXISTS ind_sha1 ON ind (owner, sha1) WHERE sha1 IS NOT NULL;
CREATE INDEX IF NOT EXISTS ind_sha256 ON ind (owner, sha256) WHERE sha256 IS NOT NULL;
CREATE TABLE IF NOT EXISTS assoc (
    owner TEXT NOT NULL, a_kind TEXT NOT NULL, a_id INTEGER NOT NULL, b_kind TEXT NOT NULL,
    b_id INTEGER NOT NULL, atype TEXT, PRIMARY KEY (owner, a_kind, a_id, b_kind, b_id));
CREATE INDEX IF NOT EXISTS assoc_b ON assoc (b_kind, b_id);
CREATE TABLE IF NOT EXISTS label (
    owner TEXT NOT NULL, name TEXT NOT NULL, description TEXT, color TEXT,
    PRIMARY KEY (owner, name));
CREATE TABLE IF NOT EXISTS file (
    group_id INTEGER PRIMARY KEY, owner TEXT NOT NULL, content BLOB NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS job (
    id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, settings TEXT NOT NULL,
    status TEXT NOT NULL, mode TEXT NOT NULL, records TEXT NOT NULL, counters TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS job_input (job_id INTEGER PRIMARY KEY, content BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS job_error (
    job_id INTEGER NOT NULL, seq INTEGER NOT NULL, code TEXT NOT NULL, severity TEXT NOT NULL,
    reason TEXT NOT NULL, message TEXT NOT NULL, source TEXT NOT NULL, PRIMARY KEY (job_id, seq));
"""
COUNTERS = (
    "errorCount", "successCount", "unprocessCount", "successGroupCount", "errorGroupCount",
    "successIndicatorCount", "errorIndicatorCount", "successAssociationCount", "errorAssociationCount",
)
HASHES = ("md5", "sha1", "sha256")
_SLICE = 500  # values per IN (...) list, well under SQLite's limit on bound parameters
_IND_COLUMNS = "owner, type, key, summary, xid, md5, sha1, sha256, fields, attribute, tag, label, modified"
_INSERT_IND = f"INSERT INTO ind ({_IND_COLUMNS}) VALUES ({', '.join('?' * 13)})"
_INSERT_IND_WITH_ID = f"INSERT INTO ind (id, {_IND_COLUMNS}) VALUES ({', '.join('?' * 14)})"
_UPDATE_IND = (f"UPDATE ind SET {', '.join(c + '=?' for c in _IND_COLUMNS.split(', '))} WHERE id = ?")


class StoreError(OSError):
    """The data file cannot be used safely: a symbolic link, or not a regular file."""


def _private_data_file(path: Path) -> None:
    """Make the data file exist with mode 0600 before SQLite opens it (SQLite gives the
    ``-wal``/``-shm`` files the mode of the database file). It holds every record submitted.

    Never through a symbolic link: a link at the path, or at its ``-wal``/``-shm``, is refused
    (a planted link would have SQLite create, or write into, the file it points to). An existing
    file of ours that others may read (older versions made it 0644) is made 0600, with its
    ``-wal``/``-shm``.
    """
    sides = [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm")]
    for p in (path, *sides):
        if p.is_symlink():
            raise StoreError(f"{p}: is a symbolic link; the emulator does not open its data file through a link "
                             f"(give the real path, or remove the link)")
    flags = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o600)
    except OSError as exc:
        if path.is_symlink():
            raise StoreError(f"{path}: is a symbolic link; the emulator does not open its data file through a "
                             f"link") from None
        raise StoreError(f"{path}: cannot open the emulator's data file ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{path}: not a regular file, so not an emulator data file")
        if st.st_size == 0 and st.st_nlink != 1:
            raise StoreError(f"{path}: an empty file with {st.st_nlink} hard links; the emulator does not make a "
                             f"file that is also another file its data file")
        mode = stat.S_IMODE(st.st_mode)
        if st.st_size == 0 and mode != 0o600:  # new: exactly 0600, whatever the umask
            os.fchmod(fd, 0o600)
        elif mode & 0o077 and st.st_uid == os.geteuid():
            os.fchmod(fd, mode & 0o700)
    finally:
        os.close(fd)
    for side in sides:
        try:
            fd = os.open(side, os.O_RDONLY | flags)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StoreError(f"{side}: cannot open the emulator's data file ({exc.strerror or exc})") from None
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)
        finally:
            os.close(fd)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _canonical_pair(a: tuple[str, int], b: tuple[str, int]) -> tuple[tuple[str, int], tuple[str, int]]:
    return (a, b) if a <= b else (b, a)


class Store:
    """SQLite-backed state of the emulated instance (see module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        _private_data_file(Path(self.path))
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=OFF")
        self._conn.executescript(SCHEMA)
        self._conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        self._move_inputs()

    def _move_inputs(self) -> None:
        """Data files made before ``job_input`` kept each job's upload in its ``job`` row, so every
        counter update rewrote the whole upload: move them to their own table, once."""
        columns = {row["name"] for row in self._conn.execute("PRAGMA table_info(job)")}
        if "input" not in columns:
            return
        with self.tx() as db:
            db.execute("INSERT OR IGNORE INTO job_input (job_id, content)"
                       " SELECT id, input FROM job WHERE input IS NOT NULL")
            db.execute("UPDATE job SET input = NULL WHERE input IS NOT NULL")

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction (re-entrant: nested calls join the outer transaction)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def _all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def wipe(self) -> None:
        """Delete every item, file, job and label (schema kept)."""
        with self.tx() as db:
            for table in ("grp", "ind", "assoc", "label", "file", "job", "job_input", "job_error"):
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM sqlite_sequence WHERE name = 'job'")

    # ------------------------------------------------------------------ internal records

    @staticmethod
    def _group_rec(row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        return {
            "id": row["id"], "owner": row["owner"], "xid": row["xid"], "type": row["type"],
            "name": row["name"], "fields": orjson.loads(row["fields"]),
            "attribute": orjson.loads(row["attribute"]), "tag": orjson.loads(row["tag"]),
            "label": orjson.loads(row["label"]), "modified": row["modified"],
        }

    @staticmethod
    def _indicator_rec(row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        return {
            "id": row["id"], "owner": row["owner"], "type": row["type"], "key": row["key"],
            "summary": row["summary"], "xid": row["xid"],
            "hashes": {k: row[k] for k in HASHES if row[k]},
            "fields": orjson.loads(row["fields"]), "attribute": orjson.loads(row["attribute"]),
            "tag": orjson.loads(row["tag"]), "label": orjson.loads(row["label"]),
            "modified": row["modified"],
        }

    def find_group(self, owner: str, xid: str) -> dict[str, Any] | None:
        return self._group_rec(self._one("SELECT * FROM grp WHERE owner = ? AND xid = ?", (owner, xid)))

    def find_group_by_id(self, group_id: int) -> dict[str, Any] | None:
        return self._group_rec(self._one("SELECT * FROM grp WHERE id = ?", (group_id,)))

    def xid_owners(self, xid: str) -> list[str]:
        return [r["owner"] for r in self._all("SELECT owner FROM grp WHERE xid = ?", (xid,))]

    def put_group(self, rec: dict[str, Any]) -> int:
        """Insert (no ``id``) or update a group record; returns its id."""
        values = (
            rec["owner"], rec["xid"], rec["type"], rec["name"], _dumps(rec["fields"]),
            _dumps(rec["attribute"]), _dumps(rec["tag"]), _dumps(rec["label"]), time.time(),
        )
        with self.tx() as db:
            if rec.get("id") is None:
                cur = db.execute(
                    "INSERT INTO grp (owner, xid, type, name, fields, attribute, tag, label, modified)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
                rec["id"] = cur.lastrowid
            else:
                db.execute(
                    "UPDATE grp SET owner=?, xid=?, type=?, name=?, fields=?, attribute=?, tag=?,"
                    " label=?, modified=? WHERE id = ?", (*values, rec["id"]))
        return rec["id"]

    def delete_group(self, group_id: int) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM grp WHERE id = ?", (group_id,))
            db.execute("DELETE FROM file WHERE group_id = ?", (group_id,))
            self._unlink_all(db, "g", group_id)

    def find_indicator(self, owner: str, itype: str, key: str) -> dict[str, Any] | None:
        return self._indicator_rec(self._one(
            "SELECT * FROM ind WHERE owner = ? AND type = ? AND key = ?", (owner, itype, key)))

    def find_indicator_by_id(self, indicator_id: int) -> dict[str, Any] | None:
        return self._indicator_rec(self._one("SELECT * FROM ind WHERE id = ?", (indicator_id,)))

    def find_files(self, owner: str, hashes: dict[str, str]) -> list[dict[str, Any]]:
        """File indicators in ``owner`` sharing any of ``hashes`` (any hash column)."""
        return self.find_files_with(owner, list(hashes.values()))

    def find_files_with(self, owner: str, values: list[str]) -> list[dict[str, Any]]:
        """File indicators in ``owner`` holding any of the hash ``values`` (any hash column), by id."""
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(values), _SLICE):
            part = values[start:start + _SLICE]
            marks = ", ".join("?" * len(part))
            # one indexed lookup per hash column (an OR across columns would scan every File)
            rows = self._all(
                " UNION ".join(f"SELECT * FROM ind WHERE owner = ? AND {col} IS NOT NULL AND {col} IN ({marks})"
                               for col in HASHES),
                (owner, *part, owner, *part, owner, *part))
            found.update((r["id"], self._indicator_rec(r)) for r in rows)  # type: ignore[misc]
        return [found[i] for i in sorted(found)]

    def find_indicators(self, owner: str, itype: str, keys: list[str]) -> list[dict[str, Any]]:
        """The indicators of ``itype`` in ``owner`` whose key is one of ``keys``."""
        out = []
        for start in range(0, len(keys), _SLICE):
            part = keys[start:start + _SLICE]
            rows = self._all(f"SELECT * FROM ind WHERE owner = ? AND type = ? AND key IN ({', '.join('?' * len(part))})",
                             (owner, itype, *part))
            out.extend(self._indicator_rec(r) for r in rows)
        return out  # type: ignore[return-value]

    def next_indicator_id(self) -> int:
        """The id SQLite gives the next indicator inserted without one (one above the largest)."""
        return int(self._one("SELECT COALESCE(MAX(id), 0) + 1 FROM ind")[0])  # type: ignore[index]

    @staticmethod
    def _indicator_values(rec: dict[str, Any], modified: float) -> tuple:
        hashes = rec.get("hashes") or {}
        return (
            rec["owner"], rec["type"], rec["key"], rec["summary"], rec.get("xid"),
            hashes.get("md5"), hashes.get("sha1"), hashes.get("sha256"), _dumps(rec["fields"]),
            _dumps(rec["attribute"]), _dumps(rec["tag"]), _dumps(rec["label"]), modified,
        )

    def put_indicator(self, rec: dict[str, Any]) -> int:
        """Insert (no ``id``) or update an indicator record; returns its id."""
        values = self._indicator_values(rec, time.time())
        with self.tx() as db:
            if rec.get("id") is None:
                cur = db.execute(_INSERT_IND, values)
                rec["id"] = cur.lastrowid
            else:
                db.execute(_UPDATE_IND, (*values, rec["id"]))
        return rec["id"]

    def write_indicators(self, updated: list[dict[str, Any]], inserted: list[dict[str, Any]]) -> None:
        """Write many indicator records at once, each with its ``id`` and ``modified``: the
        ``updated`` ones exist, the ``inserted`` ones are new (their ids chosen by the caller)."""
        with self.tx() as db:
            db.executemany(_UPDATE_IND, [(*self._indicator_values(r, r["modified"]), r["id"]) for r in updated])
            db.executemany(_INSERT_IND_WITH_ID, [(r["id"], *self._indicator_values(r, r["modified"]))
                                                 for r in inserted])

    def delete_indicator(self, indicator_id: int, *, move_links_to: int | None = None) -> None:
        """Remove an indicator; optionally move its associations to another indicator first."""
        with self.tx() as db:
            if move_links_to is not None:
                for row in self._links_of(db, "i", indicator_id):
                    self.link(row["owner"], ("i", move_links_to), row["other"], row["atype"])
            db.execute("DELETE FROM ind WHERE id = ?", (indicator_id,))
            self._unlink_all(db, "i", indicator_id)

    # ---------------------------------------------------------------------- associations

    def link(self, owner: str, a: tuple[str, int], b: tuple[str, int], atype: str | None = None) -> bool:
        """Associate two items (undirected); False when the pair was already linked."""
        a, b = _canonical_pair(a, b)
        with self.tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO assoc (owner, a_kind, a_id, b_kind, b_id, atype)"
                " VALUES (?, ?, ?, ?, ?, ?)", (owner, a[0], a[1], b[0], b[1], atype))
            return cur.rowcount == 1

    @staticmethod
    def _links_of(db: sqlite3.Connection, kind: str, item_id: int) -> list[dict[str, Any]]:
        rows = db.execute(
            "SELECT * FROM assoc WHERE (a_kind = ? AND a_id = ?) OR (b_kind = ? AND b_id = ?)",
            (kind, item_id, kind, item_id)).fetchall()
        out = []
        for r in rows:
            other = (r["b_kind"], r["b_id"]) if (r["a_kind"], r["a_id"]) == (kind, item_id) else (r["a_kind"], r["a_id"])
            out.append({"owner": r["owner"], "other": other, "atype": r["atype"]})
        return out

    @staticmethod
    def _unlink_all(db: sqlite3.Connection, kind: str, item_id: int) -> None:
        db.execute(
            "DELETE FROM assoc WHERE (a_kind = ? AND a_id = ?) OR (b_kind = ? AND b_id = ?)",
            (kind, item_id, kind, item_id))

    # --------------------------------------------------------------------------- labels

    def label_known(self, owner: str, name: str) -> bool:
        if name in rules.SYSTEM_LABELS:
            return True
        return self._one("SELECT 1 FROM label WHERE owner = ? AND name = ?", (owner, name)) is not None

    def add_label(self, owner: str, label: dict[str, Any]) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO label (owner, name, description, color) VALUES (?, ?, ?, ?)",
                (owner, label["name"], label.get("description"), label.get("color")))

    # ---------------------------------------------------------------------------- files

    def put_file(self, owner: str, group_id: int, content: bytes) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO file (group_id, owner, content, updated) VALUES (?, ?, ?, ?)",
                (group_id, owner, content, time.time()))

    def has_file(self, group_id: int) -> bool:
        return self._one("SELECT 1 FROM file WHERE group_id = ?", (group_id,)) is not None

    # ----------------------------------------------------------------------------- jobs

    def create_job(self, owner: str, settings: dict[str, Any], mode: str) -> int:
        now = time.time()
        with self.tx() as db:
            cur = db.execute(
                "INSERT INTO job (owner, settings, status, mode, records, counters, created, updated)"
                " VALUES (?, ?, 'Created', ?, ?, ?, ?, ?)",
                (owner, _dumps(settings), mode, _dumps({}), _dumps(dict.fromkeys(COUNTERS, 0)), now, now))
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def update_job(self, job_id: int, *, input: bytes | None = None, **changes: Any) -> None:
        """Set any of status, mode, records, counters, input on a job. The input (the uploaded
        file) has its own table, so the many counter updates of a running job rewrite a small
        row instead of a multi-MB one."""
        cols, args = [], []
        for name, value in changes.items():
            cols.append(f"{name} = ?")
            args.append(_dumps(value) if name in ("records", "counters") else value)
        with self.tx() as db:
            if input is not None:
                db.execute("INSERT OR REPLACE INTO job_input (job_id, content) VALUES (?, ?)", (job_id, input))
            db.execute(f"UPDATE job SET {', '.join([*cols, 'updated = ?'])} WHERE id = ?", (*args, time.time(), job_id))

    def add_errors(self, job_id: int, records: list[dict[str, Any]]) -> None:
        with self.tx() as db:
            start = db.execute("SELECT COUNT(*) FROM job_error WHERE job_id = ?", (job_id,)).fetchone()[0]
            db.executemany(
                "INSERT INTO job_error (job_id, seq, code, severity, reason, message, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(job_id, start + i, r["code"], r["severity"], r["errorReason"], r["errorMessage"],
                  r["errorSource"]) for i, r in enumerate(records)])

    @staticmethod
    def _job_dict(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"], "owner": row["owner"], "settings": orjson.loads(row["settings"]),
            "status": row["status"], "mode": row["mode"], "records": orjson.loads(row["records"]),
            "counters": orjson.loads(row["counters"]), "created": row["created"], "updated": row["updated"],
        }

    def job(self, job_id: int) -> dict[str, Any] | None:
        """One job (without its raw input), or None."""
        row = self._one("SELECT id, owner, settings, status, mode, records, counters, created, updated"
                        " FROM job WHERE id = ?", (job_id,))
        return self._job_dict(row) if row else None

    def job_input(self, job_id: int) -> bytes | None:
        row = self._one("SELECT content FROM job_input WHERE job_id = ?", (job_id,))
        return row["content"] if row else None

    def jobs(self) -> list[dict[str, Any]]:
        """Every job received, in order: id, owner, settings, records, status, counters, mode."""
        rows = self._all("SELECT id, owner, settings, status, mode, records, counters, created, updated"
                         " FROM job ORDER BY id")
        return [self._job_dict(r) for r in rows]

    def unfinished_jobs(self) -> list[int]:
        return [r["id"] for r in self._all("SELECT id FROM job WHERE status IN ('Queued', 'Running') ORDER BY id")]

    def errors(self, job_id: int) -> list[dict[str, Any]]:
        """A job's error records, in the order they were produced."""
        rows = self._all("SELECT * FROM job_error WHERE job_id = ? ORDER BY seq", (job_id,))
        return [{"code": r["code"], "severity": r["severity"], "errorReason": r["reason"],
                 "errorMessage": r["message"], "errorSource": r["source"]} for r in rows]

    # ----------------------------------------------------------------- public read API

    def _indicator_out(self, rec: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": rec["id"], "type": rec["type"], "summary": rec["summary"]}
        if rec["xid"]:
            out["xid"] = rec["xid"]
        out.update(rec["hashes"])
        out.update(rec["fields"])
        out.update(attribute=rec["attribute"], tag=[{"name": t} for t in rec["tag"]], securityLabel=rec["label"])
        groups, indicators = self._neighbours("i", rec["id"])
        out["associatedGroups"] = [{"groupXid": g["xid"]} for g in groups]
        out["associatedIndicators"] = [{"summary": i["summary"], "indicatorType": i["type"]} for i in indicators]
        return out

    def _group_out(self, rec: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": rec["id"], "type": rec["type"], "name": rec["name"], "xid": rec["xid"]}
        out.update(rec["fields"])
        out.update(attribute=rec["attribute"], tag=[{"name": t} for t in rec["tag"]], securityLabel=rec["label"])
        groups, indicators = self._neighbours("g", rec["id"])
        out["associatedGroupXid"] = [g["xid"] for g in groups]
        out["associatedIndicators"] = [{"summary": i["summary"], "indicatorType": i["type"]} for i in indicators]
        return out

    def _neighbours(self, kind: str, item_id: int) -> tuple[list[dict], list[dict]]:
        with self._lock:
            links = self._links_of(self._conn, kind, item_id)
        groups = [self.find_group_by_id(i) for k, i in (l["other"] for l in links) if k == "g"]
        indicators = [self.find_indicator_by_id(i) for k, i in (l["other"] for l in links) if k == "i"]
        return [g for g in groups if g], [i for i in indicators if i]

    def associations(self, owner: str) -> list[dict[str, Any]]:
        """Every association in ``owner`` as pairs of item references."""
        out = []
        for r in self._all("SELECT * FROM assoc WHERE owner = ? ORDER BY rowid", (owner,)):
            sides = []
            for kind, item_id in ((r["a_kind"], r["a_id"]), (r["b_kind"], r["b_id"])):
                if kind == "g":
                    g = self.find_group_by_id(item_id)
                    sides.append({"kind": "group", "id": item_id, "xid": g["xid"] if g else None})
                else:
                    i = self.find_indicator_by_id(item_id)
                    sides.append({"kind": "indicator", "id": item_id, "type": i and i["type"],
                                  "summary": i and i["summary"]})
            out.append({"sides": sides, "associationType": r["atype"]})
        return out

    def indicator(self, owner: str, itype: str, summary: str) -> dict[str, Any] | None:
        """An indicator by owner, type (any case) and value, in the batch JSON shape."""
        row = self._one("SELECT type FROM ind WHERE owner = ? AND type = ? COLLATE NOCASE LIMIT 1", (owner, itype))
        canonical = row["type"] if row else itype
        if canonical == "File":
            try:
                found = self.find_files(owner, rules.file_hashes(summary))
            except rules.Invalid:
                return None
            return self._indicator_out(found[0]) if found else None
        try:
            key = rules.indicator_key(canonical, summary)
        except rules.Invalid:
            key = summary
        rec = self.find_indicator(owner, canonical, key)
        return self._indicator_out(rec) if rec else None

    def group(self, owner: str, xid: str) -> dict[str, Any] | None:
        """A group by owner and xid, in the batch JSON shape."""
        rec = self.find_group(owner, xid)
        return self._group_out(rec) if rec else None

    def count(self, owner: str | None = None, kind: str | None = None) -> int:
        """Number of indicators, groups (``kind``), or both, in ``owner`` (every owner when None)."""
        tables = {"indicator": ("ind",), "group": ("grp",), None: ("ind", "grp")}[kind]
        where, args = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
        return sum(self._one(f"SELECT COUNT(*) FROM {t} {where}", args)[0] for t in tables)

    def document(self, owner: str, xid: str) -> bytes | None:
        """The uploaded file content of a Document/Report group, or None."""
        row = self._one(
            "SELECT f.content FROM file f JOIN grp g ON g.id = f.group_id WHERE g.owner = ? AND g.xid = ?",
            (owner, xid))
        return bytes(row["content"]) if row else None

    def indicators(self, owner: str) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM ind WHERE owner = ? ORDER BY id", (owner,))
        return [self._indicator_out(self._indicator_rec(r)) for r in rows]  # type: ignore[arg-type]

    def groups(self, owner: str) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM grp WHERE owner = ? ORDER BY id", (owner,))
        return [self._group_out(self._group_rec(r)) for r in rows]  # type: ignore[arg-type]

    def state(self, owners: list[str]) -> dict[str, Any]:
        """Everything in the given owners: groups, indicators, associations and files."""
        out = {}
        for owner in owners:
            files = self._all(
                "SELECT g.xid, g.type, length(f.content) AS size FROM file f JOIN grp g ON g.id = f.group_id"
                " WHERE f.owner = ? ORDER BY g.id", (owner,))
            out[owner] = {
                "groups": self.groups(owner), "indicators": self.indicators(owner),
                "associations": self.associations(owner),
                "files": [{"xid": f["xid"], "type": f["type"], "size": f["size"]} for f in files],
            }
        return out
