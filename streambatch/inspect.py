"""Readable summaries of a job file: what it holds (``streambatch inspect``), its submission
state (``status``), the API's per-record errors (``errors``), local rejects (``rejected``), and
what a resume will do (``resume``). Counts of what the API did come from :mod:`.outcome`."""

from __future__ import annotations

import re
from pathlib import Path

from .outcome import is_error_sql, outcome, outcome_line, whole_chunk_failures
from .store import JobFile, raw_cut
from .xid import group_key


def job_stats(job: JobFile) -> dict:
    """Counts by kind, type and state (staged = not yet in a chunk), chunks and rejects."""
    ind_mark = job.indicator_watermark()
    assoc_mark = job.association_watermark()
    by_type: list[tuple[str, str, int, int]] = []
    for type_name, total, chunked in job.conn.execute(
            "SELECT type, count(*), sum(chunk IS NOT NULL) FROM groups GROUP BY type ORDER BY type"):
        by_type.append(("group", type_name, total - chunked, chunked))
    for type_name, total, chunked in job.conn.execute(
            "SELECT type, count(*), sum(seq <= ?) FROM indicators GROUP BY type ORDER BY type", (ind_mark,)):
        by_type.append(("indicator", type_name, total - chunked, chunked))
    a_total, a_chunked = job.conn.execute(
        "SELECT count(*), coalesce(sum(seq <= ?), 0) FROM associations", (assoc_mark,)).fetchone()
    chunks = job.conn.execute(
        "SELECT id, path, bytes, groups, indicators, associations, state FROM chunks ORDER BY id").fetchall()
    files = job.conn.execute("SELECT source, state, count(*) FROM files GROUP BY source, state ORDER BY 1, 2").fetchall()
    rejected = job.conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
    return {"types": by_type, "associations": (a_total - a_chunked, a_chunked), "chunks": chunks,
            "files": files, "rejected": rejected, "owner": job.get_meta("owner")}


def job_summary(path: Path) -> str:
    job = JobFile.open(path, create=False)
    try:
        s = job_stats(job)
    finally:
        job.close()
    lines = [f"job file {path} (owner {s['owner']!r})", "",
             f"{'kind':<10} {'type':<20} {'staged':>10} {'chunked':>10}"]
    for kind, type_name, staged, chunked in s["types"]:
        lines.append(f"{kind:<10} {type_name:<20} {staged:>10,} {chunked:>10,}")
    staged, chunked = s["associations"]
    lines.append(f"{'assoc':<10} {'association':<20} {staged:>10,} {chunked:>10,}")
    lines += ["", f"{len(s['chunks'])} chunk files"]
    for cid, cpath, nbytes, groups, indicators, assocs, state in s["chunks"]:
        lines.append(f"  #{cid:<5} {state:<10} {nbytes:>12,} bytes  {groups:>6} groups {indicators:>6} indicators "
                     f"{assocs:>6} associations  {cpath}")
    if s["files"]:
        lines.append("")
        lines.append("document/report content:")
        for source, state, count in s["files"]:
            lines.append(f"  {count:>8,} {source:<9} {state}")
    lines += ["", f"rejected records: {s['rejected']:,}"]
    return "\n".join(lines)


# -- submission state: `streambatch status` and the summary after a submission ---------------

SAMPLE_CHARS = 160
MESSAGE_CHARS = 300
_REASON_PREFIX = re.compile(r"^\s*(?:error|warning|info)\s*\(0x[0-9a-f]+\)\s*:\s*", re.IGNORECASE)


def trim(text: str | None, limit: int = SAMPLE_CHARS) -> str:
    """One line of at most ``limit`` characters (whitespace collapsed, "..." when cut)."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[:limit - 3].rstrip() + "..."


def describe(reason: str | None) -> str:
    """An error record's reason without the "Error (0x100A): " its severity and code repeat."""
    return _REASON_PREFIX.sub("", str(reason or ""), count=1)


def chunk_states(job: JobFile) -> dict[str, int]:
    return dict(job.conn.execute("SELECT state, count(*) FROM chunks GROUP BY state ORDER BY state").fetchall())


def errors_by_code(job: JobFile) -> list[dict]:
    """Per (code, severity): the count and one sample reason (the first reported), trimmed."""
    rows = job.conn.execute(
        "SELECT code, severity, count(*), min(id) FROM errors GROUP BY code, severity ORDER BY 3 DESC, 1, 2").fetchall()
    out = []
    for code, severity, n, first in rows:
        reason, message = job.conn.execute("SELECT reason, message FROM errors WHERE id = ?", (first,)).fetchone()
        out.append({"code": code, "severity": severity, "count": n, "sample": trim(reason or message)})
    return out


def status_data(job: JobFile) -> dict:
    """What ``streambatch status --json`` prints: {"job", "chunks": {state: count},
    "outcome": {...}, "errors_by_code": [{"code", "severity", "count", "sample"}]}."""
    return {"job": str(job.path), "chunks": chunk_states(job), "outcome": outcome(job),
            "errors_by_code": errors_by_code(job)}


def submission_summary(job: JobFile, seconds: float | None = None) -> str:
    """Chunks by state, the outcome line, errors by code with a sample message, files, and
    the chunks not done with their messages."""
    states = job.conn.execute("SELECT state, count(*), sum(groups + indicators + associations) FROM chunks "
                              "GROUP BY state ORDER BY state").fetchall()
    files = job.conn.execute("SELECT state, count(*) FROM files GROUP BY state ORDER BY state").fetchall()
    not_done = job.conn.execute("SELECT count(*) FROM chunks WHERE state != 'done'").fetchone()[0]
    pending = job.conn.execute("SELECT id, state, batch_id, message FROM chunks WHERE state != 'done' "
                               "ORDER BY id LIMIT 20").fetchall()
    lines = ["chunks by state:"]
    lines += [f"  {state:<10} {n:>6} chunks {items or 0:>12,} items" for state, n, items in states] or ["  (none)"]
    lines += ["", outcome_line(outcome(job))]
    codes = errors_by_code(job)
    if codes:
        lines.append("errors by code:")
        lines += [f"  {c['code'] or '?':<8} {c['severity'] or '?':<8} {c['count']:>8,}  {trim(describe(c['sample']))}"
                  for c in codes]
    whole = whole_chunk_failures(job)
    if whole:
        lines.append("chunks whose records all count as failed:")
        lines += [f"  chunk #{w['chunk']}: {failure_note(w)}" for w in whole[:20]]
        if len(whole) > 20:
            lines.append(f"  ... and {len(whole) - 20:,} more (streambatch errors lists them all)")
    if files:
        lines.append("document/report files: " + ", ".join(f"{state} {n:,}" for state, n in files))
    if pending:
        lines.append("not done:")
        for cid, state, batch_id, message in pending:
            lines.append(f"  chunk #{cid} {state}" + (f" batch job {batch_id}" if batch_id else "") +
                         (f": {trim(message, MESSAGE_CHARS)}" if message else ""))
        if not_done > len(pending):
            lines.append(f"  ... and {not_done - len(pending):,} more")
        if any(state == "failed" for _cid, state, _b, _m in pending):
            lines.append(f"  refused chunks: {_way_out(job)}")
    if seconds is not None:
        lines.append(f"time: {seconds:.1f} s")
    return "\n".join(lines)


def failure_note(w: dict, feed: bool = False) -> str:
    """Why every record of a chunk counts as failed, for one entry of
    :func:`whole_chunk_failures`: "80 records: the API reported 2 errors without naming them
    (processed synchronously)", and with ``feed`` what the next feed cycle does about it."""
    n = w["records"]
    head = f"{n:,} record{'s' if n != 1 else ''}: "
    errors = f"{w['error_count']:,} error{'s' if w['error_count'] != 1 else ''}"
    if w["why"] == "dropped":
        text = "given up (dropped) by `streambatch retry --drop`" + (
            f" after the API refused the chunk: {trim(w['message'], MESSAGE_CHARS)}" if w["message"] else "")
    elif w["why"] == "untied":
        untied = w["untied_errors"]
        text = f"the API reported {untied:,} error{'s' if untied != 1 else ''} naming no record of the chunk"
    elif w["batch_id"] is None:
        text = f"the API reported {errors} without naming them (processed synchronously)"
    elif not w["errors_fetched"]:
        text = (f"the API reported {errors} that were not fetched yet (batch job {w['batch_id']}); "
                "`streambatch resume` fetches them")
    else:
        text = f"the API reported {errors} but returned none when asked (batch job {w['batch_id']})"
    if feed:
        tail = f"all {n:,} are sent again by the next feed cycle"
    elif w["why"] == "dropped":
        tail = "none of them was sent"
    else:
        tail = "none of them is known to have landed"
    return head + text + "; " + tail


# -- per-record errors and local rejects: `streambatch errors` / `streambatch rejected` -----

ERROR_KEYS = ("chunk", "batch_id", "severity", "code", "xid", "type", "summary", "reason", "message")
REJECTED_COLUMNS = ("id", "line", "source", "reason", "raw", "xid", "type", "field")
REJECTED_KEYS = (*REJECTED_COLUMNS, "raw_truncated", "raw_bytes")  # of each row of `rejected --json`


def error_records(job: JobFile, severity: str | None = None, limit: int | None = None) -> tuple[list[dict], int]:
    """The API's per-record errors (``severity`` "error" or "warning" filters), Errors first,
    then in the order reported, at most ``limit``; each a dict of :data:`ERROR_KEYS`, with
    the record's type and summary (a group's name) looked up by xid. Also the total count."""
    where = "1"
    if severity == "error":
        where = is_error_sql("e")
    elif severity == "warning":
        where = f"NOT {is_error_sql('e')}"
    total = job.conn.execute(f"SELECT count(*) FROM errors e WHERE {where}").fetchone()[0]
    rows = job.conn.execute(
        f"SELECT e.chunk, c.batch_id, e.severity, e.code, e.xid, e.reason, e.message FROM errors e "
        f"LEFT JOIN chunks c ON c.id = e.chunk WHERE {where} ORDER BY NOT {is_error_sql('e')}, e.id LIMIT ?",
        (-1 if limit is None else limit,)).fetchall()
    records = [dict(zip(("chunk", "batch_id", "severity", "code", "xid", "reason", "message"), r)) for r in rows]
    names = _record_names(job, [(r["chunk"], r["xid"]) for r in records if r["xid"]])
    out = []
    for r in records:
        type_name, summary = names.get(r["xid"], (None, None))
        out.append({k: r.get(k) for k in ERROR_KEYS} | {"type": type_name, "summary": summary})
    return out, total


def _record_names(job: JobFile, wanted: list[tuple[int, str]]) -> dict[str, tuple[str, str]]:
    """type and summary (a group's name) of the records these (chunk, xid) pairs name: looked
    for in the chunk first (an index range), then among all groups by xid."""
    by_chunk: dict[int, set[str]] = {}
    for chunk, xid in wanted:
        by_chunk.setdefault(chunk, set()).add(xid)
    found: dict[str, tuple[str, str]] = {}
    for chunk, xids in by_chunk.items():
        bounds = job.conn.execute("SELECT ind_lo, ind_hi FROM chunks WHERE id = ?", (chunk,)).fetchone()
        marks = ",".join("?" * len(xids))
        for xid, type_name, name in job.conn.execute(
                f"SELECT xid, type, name FROM groups WHERE chunk = ? AND xid IN ({marks})", (chunk, *xids)):
            found[xid] = (type_name, name)
        if bounds and bounds[0] is not None:
            for xid, type_name, summary in job.conn.execute(
                    f"SELECT xid, type, summary FROM indicators WHERE seq BETWEEN ? AND ? AND xid IN ({marks})",
                    (bounds[0], bounds[1], *xids)):
                found.setdefault(xid, (type_name, summary))
    for xid in {x for _c, x in wanted} - set(found):  # a group changed since, no longer in that chunk
        row = job._lookup("groups", "type, name", group_key(xid), "xid = ?", (xid,))
        if row is not None:
            found[xid] = (row[0], row[1])
    return found


def error_line(e: dict) -> str:
    """One line of ``streambatch errors``: severity, code, chunk, the record, the reason."""
    if e["xid"] is None:
        record = "(no record named)"
    elif e["type"] is None:
        record = f"xid {e['xid']}"
    elif e["summary"] == e["xid"] or e["summary"] is None:
        record = f"{e['type']} {e['xid']}"
    else:
        record = f"{e['type']} {e['summary']!r} (xid {e['xid']})"
    text = describe(e["reason"]) or e["message"] or ""
    return f"{e['severity'] or '?':<8} {e['code'] or '?':<7} chunk {e['chunk']:<4} {record}: {trim(text, MESSAGE_CHARS)}"


def rejected_records(job: JobFile, limit: int | None = None) -> tuple[list[dict], int]:
    """Rows of the ``rejected`` table in the order they were rejected (the columns of
    :data:`REJECTED_COLUMNS` the job file has, then ``raw_truncated``: whether the raw input
    was cut to its first 64 KiB, and ``raw_bytes``: its whole size in UTF-8), at most
    ``limit``; and the total count."""
    have = {row[1] for row in job.conn.execute("PRAGMA table_info(rejected)")}
    cols = [c for c in REJECTED_COLUMNS if c in have]
    total = job.conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
    rows = job.conn.execute(f"SELECT {', '.join(cols)} FROM rejected ORDER BY id LIMIT ?",
                            (-1 if limit is None else limit,)).fetchall()
    out = []
    for r in rows:
        record = dict(zip(cols, r))
        raw = record.get("raw")
        cut = raw_cut(raw)
        record["raw_truncated"] = cut is not None
        record["raw_bytes"] = cut[1] if cut else (None if raw is None else len(raw.encode("utf-8", "backslashreplace")))
        out.append(record)
    return out, total


def rejected_line(r: dict) -> str:
    """One line of ``streambatch rejected``: where, the record and field (when the reason
    does not already name them), the reason, the raw input."""
    where = []
    if r.get("line") is not None:
        where.append(f"line {r['line']}")
    if r.get("source"):
        where.append(f"of {r['source']}")
    head = " ".join(where) or f"#{r.get('id')}"
    reason = str(r.get("reason") or "")
    named = [str(r[k]) for k in ("type", "xid") if r.get(k) and str(r[k]) not in reason]
    if r.get("field") and repr(r["field"]) not in reason:
        named.append(f"field {r['field']!r}")
    subject = f" ({' '.join(named)})" if named else ""
    raw = ""
    if r.get("raw") is not None:
        cut = raw_cut(r["raw"])
        label = f"raw (cut to the first {cut[0]:,} of {cut[1]:,} bytes)" if cut else "raw"
        raw = f"  {label}: {trim(r['raw'], SAMPLE_CHARS)}"
    return f"{head}{subject}: {trim(reason, MESSAGE_CHARS)}{raw}"


# -- what a resume will do ---------------------------------------------------------------------

def refused_chunks(job: JobFile) -> list[tuple[int, int, str | None]]:
    """Chunks the API refused (state ``failed``): (id, items, message)."""
    return job.conn.execute("SELECT id, groups + indicators + associations, message FROM chunks "
                            "WHERE state = 'failed' ORDER BY id").fetchall()


def _way_out(job: JobFile) -> str:
    return (f"fix the cause and run `streambatch retry {job.path}`, or give them up with "
            f"`streambatch retry --drop {job.path}`")


def _by_message(rows: list[tuple[int, str | None]]) -> list[tuple[list[int], str | None]]:
    groups: dict[str | None, list[int]] = {}
    for cid, message in rows:
        groups.setdefault(message, []).append(cid)
    return [(ids, message) for message, ids in groups.items()]


def _ids(ids: list[int]) -> str:
    shown = ", ".join(f"#{i}" for i in ids[:10])
    return shown + (f" and {len(ids) - 10:,} more" if len(ids) > 10 else "")


def pending_work(job: JobFile) -> list[str]:
    """What an interrupted run left for a resume to do, in the order it will be done."""
    q = job.conn.execute
    sending = q("SELECT count(*) FROM chunks WHERE state = 'sending'").fetchone()[0]
    submitted = q("SELECT count(*) FROM chunks WHERE state = 'submitted'").fetchone()[0]
    built = q("SELECT count(*) FROM chunks WHERE state = 'built' AND message IS NULL").fetchone()[0]
    retried = q("SELECT id, message FROM chunks WHERE state = 'built' AND message IS NOT NULL ORDER BY id").fetchall()
    no_errors = q("SELECT count(*) FROM chunks WHERE state IN ('completed', 'done') AND errors_fetched = 0 "
                  "AND coalesce(error_count, 0) > 0 AND batch_id IS NOT NULL").fetchone()[0]
    files = q("SELECT count(*) FROM files WHERE state = 'pending'").fetchone()[0]
    groups = q("SELECT count(*) FROM groups WHERE chunk IS NULL").fetchone()[0]
    indicators = q("SELECT count(*) FROM indicators WHERE seq > ?", (job.indicator_watermark(),)).fetchone()[0]
    assocs = q("SELECT count(*) FROM associations WHERE seq > ?", (job.association_watermark(),)).fetchone()[0]
    lines = []
    if sending:
        lines.append(f"{sending} chunk(s) were being sent when the run stopped: sent again (batch input is keyed "
                     "by xid and value, so a repeat converges)")
    if submitted:
        lines.append(f"{submitted} chunk(s) submitted and not known complete: polled by their batch id, not re-sent")
    for ids, message in _by_message(retried):
        lines.append(f"{len(ids)} chunk(s) failed to send earlier ({trim(message, MESSAGE_CHARS)}): sent again")
    if built:
        lines.append(f"{built} chunk(s) built and not sent: sent")
    if no_errors:
        lines.append(f"{no_errors} completed chunk(s) whose errors were not fetched: fetched")
    if files:
        lines.append(f"{files} document/report file(s) not uploaded: uploaded")
    if groups or indicators or assocs:
        lines.append(f"{groups + indicators:,} record(s) and {assocs:,} association(s) not yet in a chunk: chunked and sent")
    return lines


def refused_report(job: JobFile) -> list[str]:
    """The chunks a resume will not send by itself (refused by the API), with the way out."""
    return [f"{len(ids)} chunk(s) ({_ids(ids)}) refused by the API: {trim(message, MESSAGE_CHARS) or 'no message'}; "
            f"{_way_out(job)}"
            for ids, message in _by_message([(cid, m) for cid, _n, m in refused_chunks(job)])]


def pending_report(job: JobFile) -> list[str]:
    """What an interrupted run left: the work a resume does (:func:`pending_work`), then the
    chunks it cannot send by itself (:func:`refused_report`). Empty only when nothing is left."""
    return pending_work(job) + refused_report(job)
