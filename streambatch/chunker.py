"""Cut a job file's staged records into batch JSON files of exactly bounded size.

Each file is ``{"group":[...],"indicator":[...],"association":[...]}``: all three keys, in that
order, always. Its size is counted as it is written (the bytes measured are the bytes written),
and a file closes before the item that would take it past ``max_bytes``, ``max_records`` items
or :data:`INDICATOR_LIMIT` indicators.

Order across files:

1. groups, each after the staged groups it references (``associatedGroupXid``), so every such
   reference resolves when the files are processed in order. A reference that would point
   forward (a cycle) is taken out of the group and sent as a top-level association instead,
   as is a group's ``associatedIndicators`` reference to an indicator staged in this job
   (indicators come after groups, so the link is made once both exist);
2. indicators, in the order they were staged (their ``associatedGroups`` point backwards,
   since every group comes first);
3. top-level ``association`` entries, after every group and indicator of the build.

Each finished file is written to a temporary name, fsynced, renamed, and only then recorded in
the job file with the ranges of records it holds, in one transaction: a crash mid-build leaves
every recorded chunk whole and every other record still staged.
"""

from __future__ import annotations

import errno
import gzip as gzip_mod
import os
import stat
import time
from bisect import bisect_right
from itertools import accumulate
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from . import failpoints, wire
from .errors import ChunkError, JobFileError, ValidationError
from .store import JobFile, private_dir
from .xid import hash64

INDICATOR_LIMIT = 25_000  # the Batch API's documented maximum of indicators per job
DEFAULT_MAX_BYTES = 50_000_000
DEFAULT_MAX_RECORDS = 25_000

_SECTIONS = ("group", "indicator", "association")
_OPEN = {"group": b'{"group":[', "indicator": b'],"indicator":[', "association": b'],"association":['}
_CLOSE = b"]}"
EMPTY_SIZE = sum(len(v) for v in _OPEN.values()) + len(_CLOSE)  # the size of a file with no items


class ChunkWriter:
    """One chunk file being written. ``size`` is always the exact size the file will have.

    Items are appended to an in-memory buffer flushed to the file every megabyte; of the
    indicators and associations only the first and last ``seq`` are kept (they are emitted in
    ``seq`` order, so a chunk holds a range), of the groups every ``seq``.
    """

    _FLUSH = 1 << 20

    def __init__(self, chunk_id: int, path: Path, gzip: bool = False) -> None:
        self.chunk_id = chunk_id
        self.path = path
        self.gzip = gzip
        self.size = EMPTY_SIZE
        self.items = 0
        self.counts = dict.fromkeys(_SECTIONS, 0)
        self.group_seqs: list[int] = []
        self.ranges: dict[str, list[int]] = {"indicator": [], "association": []}  # [first, last]
        self._section = ""
        self._opened = 0
        self._buf = bytearray()
        self._fh: IO[bytes] | None = None
        self._raw: IO[bytes] | None = None
        self._created = False  # whether this writer created its temp file (only then may it remove it)

    @property
    def tmp(self) -> Path:
        return self.path.with_name(self.path.name + ".tmp")

    def add_rows(self, section: str, rows: list[tuple[int, bytes, str]], start: int, limits: "Limits") -> int:
        """Append ``rows[start:]`` (``(seq, body, name)``) while they fit within ``limits``;
        return the index of the first row that did not fit (``len(rows)`` if all did)."""
        if section != self._section:
            index = _SECTIONS.index(section)
            while self._opened <= index:
                self._buf += _OPEN[_SECTIONS[self._opened]]
                self._opened += 1
            self._section = section
        size, items, n = self.size, self.items, self.counts[section]
        cap = INDICATOR_LIMIT if section == "indicator" else limits.max_records
        # how many of rows[start:] fit: by count, then by bytes (each item after the section's
        # first costs a comma)
        take = min(len(rows) - start, limits.max_records - items, cap - n)
        if take <= 0:
            return start
        room = limits.max_bytes - size + (0 if n else 1)  # the section's first item has no comma
        costs = list(accumulate([len(r[1]) + 1 for r in rows[start:start + take]]))
        count = bisect_right(costs, room)
        if count:
            i = start + count
            if n:
                self._buf += b","
            self._buf += b",".join([r[1] for r in rows[start:i]])
            if section == "group":
                self.group_seqs.extend(r[0] for r in rows[start:i])
            else:
                r = self.ranges[section]
                r[:] = [r[0] if r else rows[start][0], rows[i - 1][0]]
            self.size = size + costs[count - 1] - (0 if n else 1)
            self.items = items + count
            self.counts[section] = n + count
            if len(self._buf) >= self._FLUSH:
                self._write()
        return start + count

    def _write(self) -> None:
        if self._fh is None:
            self._raw = os.fdopen(_create_private(self.tmp), "wb")
            self._created = True
            self._fh = gzip_mod.GzipFile(fileobj=self._raw, mode="wb", compresslevel=5) if self.gzip else self._raw
        self._fh.write(self._buf)
        self._buf.clear()

    def finish(self) -> None:
        """Write the closing bytes, flush to disk and move the file into place."""
        while self._opened < len(_SECTIONS):
            self._buf += _OPEN[_SECTIONS[self._opened]]
            self._opened += 1
        self._buf += _CLOSE
        self._write()
        assert self._fh is not None and self._raw is not None
        if self._fh is not self._raw:
            self._fh.close()  # GzipFile writes its trailer and leaves the file it was given open
        self._raw.flush()
        os.fsync(self._raw.fileno())  # the descriptor written, not whatever is at the name now
        self._raw.close()
        self._fh = self._raw = None
        os.replace(self.tmp, self.path)

    def abandon(self) -> None:
        if self._fh is not None:
            self._fh.close()
            if self._raw is not None:
                self._raw.close()
            self._fh = self._raw = None
        if self._created:  # only a temp file this writer made, never one that was in the way
            self.tmp.unlink(missing_ok=True)


def _create_private(tmp: Path) -> int:
    """Create ``tmp`` new, mode 0600, never through a link (``O_CREAT | O_EXCL | O_NOFOLLOW``):
    chunk files hold the same data as the job file. A regular file left there by a build that
    was killed is removed first; a symbolic link or anything else is refused."""
    try:
        st = os.lstat(tmp)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise JobFileError(f"{tmp}: is a symbolic link; streambatch does not write a chunk file through a link "
                               f"(remove it and build again)")
        if not stat.S_ISREG(st.st_mode):
            raise JobFileError(f"{tmp}: not a regular file; streambatch needs this path for a chunk file "
                               f"(remove it and build again)")
        tmp.unlink()  # a stale temp file of a killed build: unlinking never follows a link
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        if tmp.is_symlink():
            raise JobFileError(f"{tmp}: is a symbolic link; streambatch does not write a chunk file through a link "
                               f"(remove it and build again)") from None
        if exc.errno == errno.EEXIST:
            raise JobFileError(f"{tmp}: appeared while streambatch was creating it; nothing was written") from None
        raise
    try:
        os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_records: int = DEFAULT_MAX_RECORDS

    def __post_init__(self) -> None:
        for name, least in (("max_bytes", EMPTY_SIZE + 2), ("max_records", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValidationError("settings", name, value, f"must be an integer, at least {least}")


def build(job: JobFile, out_dir: Path, limits: Limits, gzip: bool = False, max_files: int | None = None) -> list[Path]:
    """Emit every staged record not yet in a chunk into new chunk files (at most
    ``max_files`` of them); return their paths."""
    private_dir(out_dir)
    paths: list[Path] = []
    writer: ChunkWriter | None = None

    def new_writer() -> ChunkWriter:
        next_id = job.conn.execute("SELECT coalesce(max(id), 0) + 1 FROM chunks").fetchone()[0]
        suffix = ".json.gz" if gzip else ".json"
        return ChunkWriter(next_id, out_dir / f"chunk-{next_id:06d}{suffix}", gzip)

    try:
        for section, rows in _batches(job):
            i = 0
            while i < len(rows):
                if writer is None:
                    if max_files is not None and len(paths) >= max_files:
                        return paths
                    writer = new_writer()
                j = writer.add_rows(section, rows, i, limits)
                if j == i:  # the next row does not fit
                    if writer.items == 0:
                        seq, body, name = rows[i]
                        raise ChunkError(f"{section} {name}: its batch JSON is {len(body)} bytes, more than fits in "
                                         f"a chunk of max_bytes={limits.max_bytes}; nothing else was affected")
                    paths.append(_commit(job, writer))
                    writer = None
                i = j
        if writer is not None and writer.items:
            paths.append(_commit(job, writer))
            writer = None
    finally:
        if writer is not None:
            writer.abandon()
    return paths


def _commit(job: JobFile, writer: ChunkWriter) -> Path:
    writer.finish()
    failpoints.hit("chunk-written")
    chunk_id = writer.chunk_id
    ind, assoc = writer.ranges["indicator"], writer.ranges["association"]
    with job.transaction() as conn:
        conn.execute(
            "INSERT INTO chunks(id, path, bytes, groups, indicators, associations, ind_lo, ind_hi, assoc_lo, assoc_hi, created)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (chunk_id, str(writer.path), writer.size, writer.counts["group"], writer.counts["indicator"],
             writer.counts["association"],
             ind[0] if ind else None, ind[-1] if ind else None,
             assoc[0] if assoc else None, assoc[-1] if assoc else None, time.time()))
        conn.executemany("UPDATE groups SET chunk = ? WHERE seq = ?", [(chunk_id, s) for s in writer.group_seqs])
    failpoints.hit("chunk-recorded")
    return writer.path


def _batches(job: JobFile) -> Iterator[tuple[str, list[tuple[int, bytes, str]]]]:
    """(section, [(seq, body, name), ...]) for every unchunked record, in emission order."""
    group_rows: list[tuple[int, bytes, str]] = []
    for row in _groups(job):
        group_rows.append(row)
        if len(group_rows) >= 1000:
            yield "group", group_rows
            group_rows = []
    if group_rows:
        yield "group", group_rows
    for section, table, name in (("indicator", "indicators", "xid"), ("association", "associations", "'#' || seq")):
        mark = job.indicator_watermark() if section == "indicator" else job.association_watermark()
        while True:
            rows = job.conn.execute(f"SELECT seq, body, {name} FROM {table} WHERE seq > ? ORDER BY seq LIMIT 5000",
                                    (mark,)).fetchall()
            if not rows:
                break
            yield section, rows
            mark = rows[-1][0]


def _groups(job: JobFile) -> Iterator[tuple[int, bytes, str]]:
    pending: dict[str, tuple[int, list[str]]] = {}
    for seq, xid, refs in job.iter_rows("SELECT seq, xid, refs FROM groups WHERE chunk IS NULL ORDER BY seq"):
        pending[xid] = (seq, orjson.loads(refs) if refs else [])
    order, back_edges = _topological(pending)
    for xid in order:
        seq = pending[xid][0]
        body = job.conn.execute("SELECT body FROM groups WHERE seq = ?", (seq,)).fetchone()[0]
        deferred: list[dict] = []
        body = _rewrite_group(job, xid, body, back_edges.get(xid, ()), deferred)
        if deferred:  # stored before the group's chunk is recorded, so a crash loses no link
            job.put_associations([association_row(**a) for a in deferred])
        yield seq, body, xid


def _topological(pending: dict[str, tuple[int, list[str]]]) -> tuple[list[str], dict[str, set[str]]]:
    """Order groups so that every referenced pending group comes first (iterative DFS,
    postorder). Edges that close a cycle are returned separately, per source xid."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    back: dict[str, set[str]] = {}
    for root in pending:
        if root in state:
            continue
        stack = [(root, iter(pending[root][1]))]
        state[root] = 1
        while stack:
            node, refs = stack[-1]
            for ref in refs:
                if ref not in pending:
                    continue
                if state.get(ref) == 1:
                    back.setdefault(node, set()).add(ref)
                elif ref not in state:
                    state[ref] = 1
                    stack.append((ref, iter(pending[ref][1])))
                    break
            else:
                stack.pop()
                state[node] = 2
                order.append(node)
    return order, back


def _rewrite_group(job: JobFile, xid: str, body: bytes, back: set[str] | tuple, deferred: list[dict]) -> bytes:
    """Move forward references out of a group into top-level association entries."""
    if not back and b'"associatedIndicators"' not in body:
        return body
    data = orjson.loads(body)
    if back:
        data["associatedGroupXid"] = [x for x in data["associatedGroupXid"] if x not in back]
        if not data["associatedGroupXid"]:
            del data["associatedGroupXid"]
        deferred.extend({"ref_1": xid, "ref_2": target} for target in sorted(back))
    refs = data.get("associatedIndicators") or []
    keep = []
    for ref in refs:
        if job.has_indicator(ref["indicatorType"], ref["summary"]):
            deferred.append({"ref_1": xid, "ref_2": ref["summary"], "type_2": ref["indicatorType"]})
        else:
            keep.append(ref)
    if len(keep) != len(refs):
        if keep:
            data["associatedIndicators"] = keep
        else:
            del data["associatedIndicators"]
    return wire.dumps(data)


def association_row(ref_1: object = None, ref_2: object = None, type_1: str | None = None, type_2: str | None = None,
                    associationType: str | None = None, id_1: int | None = None,
                    id_2: int | None = None) -> tuple[int, bytes]:
    """A top-level association entry as (key, body) for the job file. Links are undirected, so
    the two sides are put in a canonical order: (a, b) and (b, a) give the same row."""
    sides = sorted([(id_1, ref_1, type_1), (id_2, ref_2, type_2)], key=lambda s: orjson.dumps(s))
    entry: dict[str, object] = {}
    for n, (id_, ref, type_) in enumerate(sides, 1):
        for name, value in ((f"ref_{n}", ref), (f"type_{n}", type_), (f"id_{n}", id_)):
            if value is not None:
                entry[name] = value
    if associationType is not None:
        entry["associationType"] = associationType
    body = wire.dumps(entry)
    return hash64(body), body
