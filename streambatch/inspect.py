"""A readable summary of a job file, for ``streambatch inspect``."""

from __future__ import annotations

from pathlib import Path

import orjson

from .store import JobFile


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


def submission_summary(job: JobFile, seconds: float | None = None) -> str:
    """Chunks by state, records sent/succeeded/failed, errors by code, files uploaded."""
    states = job.conn.execute("SELECT state, count(*), sum(groups + indicators + associations) FROM chunks "
                              "GROUP BY state ORDER BY state").fetchall()
    totals = {"successCount": 0, "errorCount": 0, "unprocessCount": 0}
    for (raw,) in job.conn.execute("SELECT status FROM chunks WHERE status IS NOT NULL"):
        status = orjson.loads(raw)
        for k in totals:
            totals[k] += int(status.get(k) or 0)
    codes = job.conn.execute("SELECT coalesce(code, '?'), severity, count(*) FROM errors GROUP BY 1, 2 ORDER BY 3 DESC").fetchall()
    files = job.conn.execute("SELECT state, count(*) FROM files GROUP BY state ORDER BY state").fetchall()
    pending = job.conn.execute("SELECT id, state, batch_id, message FROM chunks WHERE state NOT IN ('done') "
                               "ORDER BY id LIMIT 20").fetchall()
    lines = ["chunks by state:"]
    lines += [f"  {state:<10} {n:>6} chunks {items or 0:>12,} items" for state, n, items in states] or ["  (none)"]
    lines += ["", f"records succeeded {totals['successCount']:,}, failed {totals['errorCount']:,}, "
                  f"unprocessed {totals['unprocessCount']:,}"]
    if codes:
        lines.append("errors by code:")
        lines += [f"  {code:<8} {severity or '':<8} {n:>8,}" for code, severity, n in codes]
    if files:
        lines.append("document/report files: " + ", ".join(f"{state} {n:,}" for state, n in files))
    if pending:
        lines.append("not done:")
        for cid, state, batch_id, message in pending:
            lines.append(f"  chunk #{cid} {state}" + (f" batch job {batch_id}" if batch_id else "") +
                         (f": {message}" if message else ""))
    if seconds is not None:
        lines.append(f"time: {seconds:.1f} s")
    return "\n".join(lines)


def pending_report(job: JobFile) -> list[str]:
    """What an interrupted run left for a resume to finish, in the order it will be done."""
    q = job.conn.execute
    sending = q("SELECT count(*) FROM chunks WHERE state = 'sending'").fetchone()[0]
    submitted = q("SELECT count(*) FROM chunks WHERE state = 'submitted'").fetchone()[0]
    built = q("SELECT count(*) FROM chunks WHERE state = 'built'").fetchone()[0]
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
    if built:
        lines.append(f"{built} chunk(s) built and not sent: sent")
    if no_errors:
        lines.append(f"{no_errors} completed chunk(s) whose errors were not fetched: fetched")
    if files:
        lines.append(f"{files} document/report file(s) not uploaded: uploaded")
    if groups or indicators or assocs:
        lines.append(f"{groups + indicators:,} record(s) and {assocs:,} association(s) not yet in a chunk: chunked and sent")
    return lines
