"""What the API did with a job's records: one definition, used by every command and the feeds.

The job file records, per chunk, its state and the API's status, and per record the errors
the API itemized (``errors``, tied to the record's xid when it could be). From these:

* a record is **failed** (not known to have landed) when it has an Error-severity error
  record, or when its whole chunk is in doubt: the API counted errors for the chunk but
  itemized none of them (a job processed synchronously returns no batch id to ask by, or the
  error file was empty), the chunk has an Error record tied to no record (an association
  entry, say), or the operator gave the chunk up (state ``dropped``, see ``streambatch retry
  --drop``);
* a record is **warned** when its only error records are warnings (0x2xxx/0x3xxx): it landed,
  with a part dropped (an attribute type the instance does not accept, for example);
* a chunk's records are **sent** once the API completed the chunk (state ``completed`` or
  ``done``); **pending** while the chunk is built, being sent, submitted or refused (``failed``),
  and while a record is not yet in a chunk.

A chunk's records are its groups (``groups.chunk``), the indicators whose ``seq`` lies in its
``ind_lo``..``ind_hi`` and the association entries in ``assoc_lo``..``assoc_hi``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from .store import JobFile

SENT_STATES = ("completed", "done")
DROPPED = "dropped"

# An error record is an Error unless the API called it something else: a record without a
# severity counts as an Error when its code is unknown or in the Error range (0x1xxx).
def is_error_sql(t: str = "") -> str:
    """SQL: is this row of ``errors`` (alias ``t``) an Error?"""
    p = t + "." if t else ""
    return (f"(lower(coalesce({p}severity, '')) = 'error' OR ({p}severity IS NULL AND "
            f"({p}code IS NULL OR lower({p}code) LIKE '0x1%')))")


_IS_ERROR = is_error_sql()

OUTCOME_KEYS = ("sent", "accepted", "failed", "warned", "unprocessed", "pending", "dropped", "rejected", "truncated")


def whole_chunk_failures(job: JobFile) -> list[dict[str, Any]]:
    """The chunks all of whose records count as failed, each once, in chunk order:

    ``{"chunk", "batch_id", "state", "records", "why", "error_count", "untied_errors",
    "message", "unprocessed"}`` where ``why`` is ``"unitemized"`` (the API counted errors
    and named none: ``batch_id`` None means the chunk was processed synchronously; otherwise
    the errors were not fetched yet, or the API returned none), ``"untied"`` (Error records
    that name no record of the chunk) or ``"dropped"`` (given up by the operator).
    """
    sent = ",".join(f"'{s}'" for s in SENT_STATES)
    rows = job.conn.execute(
        f"SELECT c.id, c.batch_id, c.state, c.groups + c.indicators + c.associations, "
        f"coalesce(c.error_count, 0), c.errors_fetched, c.message, c.status, "
        f"(SELECT count(*) FROM errors e WHERE e.chunk = c.id), "
        f"(SELECT count(*) FROM errors e WHERE e.chunk = c.id AND e.xid IS NULL AND {is_error_sql('e')}) "
        f"FROM chunks c WHERE c.state = '{DROPPED}' OR (c.state IN ({sent}) AND ("
        f"  (coalesce(c.error_count, 0) > 0 AND (c.errors_fetched = 0 OR NOT EXISTS "
        f"     (SELECT 1 FROM errors e WHERE e.chunk = c.id))) "
        f"  OR EXISTS (SELECT 1 FROM errors e WHERE e.chunk = c.id AND e.xid IS NULL AND {is_error_sql('e')}))) "
        f"ORDER BY c.id").fetchall()
    out = []
    for cid, batch_id, state, records, error_count, fetched, message, status, n_errors, untied in rows:
        if state == DROPPED:
            why = "dropped"
        elif error_count > 0 and (not fetched or n_errors == 0):
            why = "unitemized"
        else:
            why = "untied"
        out.append({"chunk": cid, "batch_id": batch_id, "state": state, "records": records, "why": why,
                    "error_count": error_count, "errors_fetched": bool(fetched), "untied_errors": untied,
                    "message": message, "unprocessed": _unprocessed(status)})
    return out


def chunk_xids(job: JobFile, chunk_id: int) -> Iterator[str]:
    """The xids of a chunk's groups and indicators (association entries have none)."""
    lo, hi = job.conn.execute("SELECT ind_lo, ind_hi FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
    for (xid,) in job.iter_rows("SELECT xid FROM groups WHERE chunk = ?", (chunk_id,), size=10_000):
        yield xid
    if lo is not None:
        for (xid,) in job.iter_rows("SELECT xid FROM indicators WHERE seq BETWEEN ? AND ?", (lo, hi), size=10_000):
            yield xid


def failed_xids(job: JobFile) -> set[str]:
    """Records not known to have landed: xids with an Error-severity error record, plus every
    record of a completed/done chunk whose errors the API would not itemize (it counted errors,
    ``error_count`` > 0, and none was fetched, or the error file held none), plus every record
    of a chunk that has Error records tied to no xid, plus every record of a chunk in state
    ``dropped``, plus every record of a chunk the API left partly unprocessed (``haltOnError``
    stopped it; which records it did not reach is not reported). A feed confirms every other
    record it staged as sent."""
    failed = {x for (x,) in job.conn.execute(f"SELECT DISTINCT xid FROM errors WHERE xid IS NOT NULL AND {_IS_ERROR}")}
    for chunk in whole_chunk_failures(job):
        failed.update(chunk_xids(job, chunk["chunk"]))
    sent = ",".join(f"'{s}'" for s in SENT_STATES)
    for cid, status in job.conn.execute(f"SELECT id, status FROM chunks WHERE state IN ({sent})").fetchall():
        if _unprocessed(status):  # haltOnError stopped the job: which records it skipped is not said
            failed.update(chunk_xids(job, cid))
    return failed


def outcome(job: JobFile) -> dict[str, int]:
    """What the API did with the job's records, as counts (keys :data:`OUTCOME_KEYS`):

    ``sent``
        items (groups + indicators + association entries) in chunks the API completed;
    ``accepted``
        ``sent - failed - unprocessed`` (never below 0); includes the ``warned`` ones;
    ``failed``
        records with an Error record (counted once per chunk), plus every record of a sent
        chunk in doubt as a whole (see :func:`whole_chunk_failures`; its unprocessed items are
        counted as unprocessed, not twice);
    ``warned``
        distinct xids whose only error records are warnings: accepted with a part dropped;
    ``unprocessed``
        the sum of the chunks' ``unprocessCount`` (``haltOnError`` stopped before them);
    ``pending``
        items of chunks not completed and not dropped, plus records not yet in a chunk;
    ``dropped``
        items of chunks given up (``streambatch retry --drop``);
    ``rejected``
        rows of the ``rejected`` table (input refused locally, never sent);
    ``truncated``
        attribute values cut to the instance's ``maxSize`` before staging
        (``truncate_attributes``; meta ``truncated``).
    """
    q = job.conn.execute
    sent_in = ",".join(f"'{s}'" for s in SENT_STATES)
    sent = unprocessed = pending = dropped = 0
    for state, items, status in q("SELECT state, groups + indicators + associations, status FROM chunks"):
        if state in SENT_STATES:
            sent += items
            unprocessed += _unprocessed(status)
        elif state == DROPPED:
            dropped += items
        else:
            pending += items
    pending += q("SELECT count(*) FROM groups WHERE chunk IS NULL").fetchone()[0]
    pending += q("SELECT count(*) FROM indicators WHERE seq > ?", (job.indicator_watermark(),)).fetchone()[0]
    pending += q("SELECT count(*) FROM associations WHERE seq > ?", (job.association_watermark(),)).fetchone()[0]

    whole = [c for c in whole_chunk_failures(job) if c["state"] in SENT_STATES]
    whole_ids = ",".join(str(c["chunk"]) for c in whole) or "-1"
    failed = sum(max(0, c["records"] - c["unprocessed"]) for c in whole)
    failed += q(f"SELECT coalesce(sum(n), 0) FROM (SELECT count(DISTINCT e.xid) AS n FROM errors e "
                f"JOIN chunks c ON c.id = e.chunk WHERE c.state IN ({sent_in}) AND e.chunk NOT IN ({whole_ids}) "
                f"AND e.xid IS NOT NULL AND {is_error_sql('e')} "
                f"GROUP BY e.chunk)").fetchone()[0]
    warned = q(f"SELECT count(*) FROM (SELECT xid FROM errors WHERE xid IS NOT NULL GROUP BY xid "
               f"HAVING sum({_IS_ERROR}) = 0 AND max(chunk NOT IN ({whole_ids})) = 1)").fetchone()[0]
    rejected = q("SELECT count(*) FROM rejected").fetchone()[0]
    return {"sent": sent, "accepted": max(0, sent - failed - unprocessed), "failed": failed, "warned": warned,
            "unprocessed": unprocessed, "pending": pending, "dropped": dropped, "rejected": rejected,
            "truncated": int(job.get_meta("truncated") or 0)}


def outcome_line(o: dict) -> str:
    """The one wording of an outcome, e.g. ``sent 1,200: accepted 1,180, failed 20, warned 30,
    unprocessed 0; pending 0; rejected locally 3`` (warned records are among the accepted;
    ``; dropped N`` follows pending when chunks were given up, ``; attributes truncated N`` ends
    it when attribute values were cut to the instance's maxSize)."""
    line = (f"sent {o['sent']:,}: accepted {o['accepted']:,}, failed {o['failed']:,}, warned {o['warned']:,}, "
            f"unprocessed {o['unprocessed']:,}; pending {o['pending']:,}")
    if o.get("dropped"):
        line += f"; dropped {o['dropped']:,}"
    line += f"; rejected locally {o['rejected']:,}"
    if o.get("truncated"):
        line += f"; attributes truncated {o['truncated']:,}"
    return line


def _unprocessed(status: str | None) -> int:
    if not status:
        return 0
    try:
        return int(orjson.loads(status).get("unprocessCount") or 0)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 0
