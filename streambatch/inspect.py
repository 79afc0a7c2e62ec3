"""A readable summary of a job file, for ``streambatch inspect``."""

from __future__ import annotations

from pathlib import Path

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
