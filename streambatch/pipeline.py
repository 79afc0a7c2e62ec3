"""Submitting a job file's chunks to the Batch API, one after another.

For each chunk: send it (createAndUpload, or create + upload for Delete jobs), store the batch
id the moment the API returns it, poll until the job completes (unless it completed inline),
store its status, fetch its per-record errors and tie them to the records' xids, then upload
the content of its Documents and Reports, calling content callbacks only at that moment. The
next chunk is built while the server works on the current one.

Every step is a state change of the chunk's row in the job file, committed before the next
step starts: ``built`` -> ``sending`` -> ``submitted`` (batch id stored) -> ``completed``
(status stored, errors fetched) -> ``done`` (files uploaded); or ``failed`` with a message.
"""

from __future__ import annotations

import gzip
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from .client import ApiError, Client, TransientApiError
from . import failpoints
from .errors import StreambatchError

if TYPE_CHECKING:
    from .batch import Batch

log = logging.getLogger("streambatch.pipeline")

CRITICAL_PATTERNS = (re.compile(r"Encountered an unexpected Exception while processing batch job"),
                     re.compile(r"would exceed the number of allowed indicators"))


class BatchJobError(StreambatchError):
    """A chunk could not be submitted, polled, or its files uploaded (and the halt flag says stop)."""


class CriticalBatchError(BatchJobError):
    """The API reported an error that stops the whole run (indicator limit, unexpected exception)."""


class PollTimeout(BatchJobError):
    """A job did not complete within the poll timeout."""


class StopRequested(StreambatchError):
    """The batch's ``should_stop`` said stop; the job file says what is left to resume."""


@dataclass
class Chunk:
    id: int
    path: Path
    state: str
    batch_id: int | None
    items: int
    groups: int

    @classmethod
    def load(cls, job: Any, chunk_id: int) -> "Chunk":
        row = job.conn.execute("SELECT id, path, state, batch_id, groups + indicators + associations, groups "
                               "FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
        return cls(row[0], Path(row[1]), row[2], row[3], row[4], row[5])


@dataclass
class PollPolicy:
    """Polling adapts to the job: the first poll comes when a job of this size should be done at
    the processing rate seen so far; if it is not done yet, the next polls come after a fifth of
    the time waited so far (so a poll is never more than ~20% late), between ``min_interval`` and
    ``max_interval``. Before any job has completed the rate is unknown: the first poll comes
    after ``min_interval`` and the same rule follows, so a quick job is not waited for as if it
    were slow (a guessed rate made a 25,000-item job wait 11 s on a server that took 2)."""

    min_interval: float = 1.0
    max_interval: float = 30.0
    late: float = 0.2
    timeout: float = 3600.0
    rate: float | None = None  # items/s, learned from every completed job; None until one has

    def first(self, items: int) -> float:
        if not self.rate:
            return self.min_interval
        return min(max(items / self.rate * 0.9, self.min_interval), self.max_interval)

    def next(self, waited: float) -> float:
        return min(max(waited * self.late, self.min_interval), self.max_interval)

    def observe(self, items: int, seconds: float, first_poll: bool) -> None:
        """Learn the processing rate from a completed job. Done at the first poll, the job may
        have finished long before: the rate is at least what was seen, so it is raised boldly.
        Done later, the poll was at most ~20% late, so what was seen is close to the truth."""
        if not items or seconds <= 0:
            return
        seen = items / seconds
        self.rate = max((self.rate or 0.0) * 2, seen) if first_poll else seen


def _open_chunk(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # type: ignore[return-value]


def _envelope(status: dict[str, Any]) -> dict[str, Any]:
    return {"status": "Success", "data": {"batchStatus": status}}


class Submitter:
    """Sends a batch's chunks through a :class:`Client`. Made by :class:`streambatch.Batch`."""

    def __init__(self, batch: "Batch", client: Client) -> None:
        self.batch = batch
        self.job = batch.job
        self.client = client
        self.poll_policy = batch.poll_policy
        self.file_concurrency = batch.file_concurrency
        self._skip: set[int] = set()  # chunks that failed to send in this run and stay pending

    # -- halt flags ----------------------------------------------------------------------

    def _halt(self, flag: bool | None, default: bool) -> bool:
        return default if flag is None else flag

    # -- the whole run -------------------------------------------------------------------

    def submit_all(self, poll: bool = True, errors: bool = True, process_files: bool = True,
                   halt_on_error: bool = True, max_chunks: int | None = None) -> list[dict[str, Any]]:
        """Finish what the job file says is pending, then build and send every chunk."""
        self.batch.flush()
        results: list[dict[str, Any]] = []
        if poll:  # completed by an earlier run, errors or files not finished: those first
            for chunk in self._chunks("state = 'completed' ORDER BY id"):
                results.append(self._finish(chunk, self._status_of(chunk), errors, process_files, halt_on_error))
        inflight: deque[Chunk] = deque()
        max_in_flight = max(1, self.batch.max_in_flight)
        # then chunks an earlier run sent and did not see complete: polled by their batch id; one
        # it was still sending (no batch id known) is sent again
        for chunk in self._chunks("state IN ('sending', 'submitted') ORDER BY id"):
            if chunk.state == "sending":
                log.warning("chunk %d was being sent when an earlier run stopped; sending it again", chunk.id)
                self._set(chunk, state="built")
                continue
            inflight.append(chunk)
        sent = 0
        while True:
            while len(inflight) < max_in_flight and (max_chunks is None or sent < max_chunks):
                if self.batch.should_stop():
                    break
                chunk = self._next_built()
                if chunk is None:
                    break
                sent += 1
                status = self._send(chunk, halt_on_error)
                if status is None:
                    results.append({"id": None, "status": "Failed", "chunk": chunk.id, "message": self._message(chunk)})
                elif chunk.state == "completed" or not poll:
                    results.append(self._finish(chunk, status, errors, process_files and poll, halt_on_error))
                else:
                    inflight.append(chunk)
                    self._build_ahead()
            if not inflight:
                break
            chunk = inflight.popleft()
            status = self._poll_chunk(chunk, halt_on_error)
            if status is not None:
                results.append(self._finish(chunk, status, errors, process_files, halt_on_error))
        return results

    # -- chunks --------------------------------------------------------------------------

    def _chunks(self, where: str) -> list[Chunk]:
        ids = [r[0] for r in self.job.conn.execute(f"SELECT id FROM chunks WHERE {where}")]
        return [Chunk.load(self.job, i) for i in ids]

    def _has_built(self) -> bool:
        skip = ",".join(str(i) for i in self._skip) or "0"
        return self.job.conn.execute(f"SELECT 1 FROM chunks WHERE state = 'built' AND id NOT IN ({skip}) LIMIT 1"
                                     ).fetchone() is not None

    def _next_built(self) -> Chunk | None:
        """The oldest chunk built and not sent; builds one if there is none."""
        skip = ",".join(str(i) for i in self._skip) or "0"
        sql = f"SELECT min(id) FROM chunks WHERE state = 'built' AND id NOT IN ({skip})"
        row = self.job.conn.execute(sql).fetchone()
        if row[0] is None:
            self.batch._build(max_files=1)
            row = self.job.conn.execute(sql).fetchone()
            if row[0] is None:
                return None
        return Chunk.load(self.job, row[0])

    def _build_ahead(self) -> None:
        """Build the next chunk file while the server processes the current one."""
        if not self._has_built():
            self.batch._build(max_files=1)

    def _set(self, chunk: Chunk, **values: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.job.transaction() as conn:
            conn.execute(f"UPDATE chunks SET {cols} WHERE id = ?", (*values.values(), chunk.id))
        if "state" in values:
            chunk.state = values["state"]
        if "batch_id" in values:
            chunk.batch_id = values["batch_id"]

    def _event(self, phase: str, **details: Any) -> None:
        if self.batch.on_event is not None:
            self.batch.on_event(phase, details)

    def _message(self, chunk: Chunk) -> str | None:
        return self.job.conn.execute("SELECT message FROM chunks WHERE id = ?", (chunk.id,)).fetchone()[0]

    def _status_of(self, chunk: Chunk) -> dict[str, Any]:
        raw = self.job.conn.execute("SELECT status FROM chunks WHERE id = ?", (chunk.id,)).fetchone()[0]
        return orjson.loads(raw) if raw else {}

    # -- sending -------------------------------------------------------------------------

    def _send(self, chunk: Chunk, halt_on_error: bool) -> dict[str, Any] | None:
        """Send one chunk; returns its batchStatus, or None if it failed and halting is off."""
        settings = self.batch.settings
        config = settings.config(self.batch.owner)
        harmless = settings.action == "Create" and settings.attribute_write_type != "Append"
        self._set(chunk, state="sending", submitted=time.time(), batch_id=None)  # a new send: no job yet
        self._event("sending", chunk=chunk.id, items=chunk.items)
        failpoints.hit("before-send")
        try:
            if settings.action == "Delete":
                status = self._create_then_upload(chunk, config)
            else:
                with _open_chunk(chunk.path) as content:
                    status = self.client.create_and_upload(config, content, idempotent=harmless)
                failpoints.hit("after-create")
                if _unitemized(status):
                    status = self._itemize(chunk, config, status, harmless)
        except (ApiError, OSError) as exc:
            return self._send_failed(chunk, exc, halt_on_error)
        batch_id = status.get("id")
        if status.get("status") == "Completed":
            self._complete(chunk, status, batch_id)
            log.info("chunk %d: processed synchronously (%s)", chunk.id, _counts(status),
                     extra={"event": "chunk-completed", "chunk": chunk.id})
        else:
            self._set(chunk, state="submitted", batch_id=int(batch_id))
            failpoints.hit("after-submitted")
            log.info("chunk %d: submitted as batch job %s (%d items)", chunk.id, batch_id, chunk.items,
                     extra={"event": "chunk-submitted", "chunk": chunk.id, "batch_id": int(batch_id)})
        return status

    def _create_then_upload(self, chunk: Chunk, config: dict[str, Any]) -> dict[str, Any]:
        """The two-step flow: create a job (its id is stored at once), then upload the chunk.
        If the upload fails, the job waits in ``Created``, and polling it uploads again."""
        batch_id = self.client.create_job(config, idempotent=False)
        failpoints.hit("after-create")
        self._set(chunk, batch_id=batch_id)
        self._upload(chunk)
        return {"id": batch_id, "status": "Queued"}

    def _upload(self, chunk: Chunk) -> None:
        assert chunk.batch_id is not None
        with _open_chunk(chunk.path) as content:
            self.client.upload_data(chunk.batch_id, content)

    def _itemize(self, chunk: Chunk, config: dict[str, Any], status: dict[str, Any], harmless: bool) -> dict[str, Any]:
        """A chunk processed inline that reported errors comes back without a batch id, so
        which records failed cannot be asked. When processing it again changes nothing (no
        appended attributes), it is sent again as a queued job, which has an id; otherwise its
        status is kept as it is, and its records are not known to have landed."""
        if not harmless:
            log.warning("chunk %d: processed synchronously with errors (%s) and no batch id; with appended "
                        "attributes it is not sent again to learn which records failed", chunk.id, _counts(status))
            return status
        log.info("chunk %d: processed synchronously with errors (%s) and no batch id; sending it again as a "
                 "queued job to learn which records failed", chunk.id, _counts(status))
        try:
            return self._create_then_upload(chunk, config)
        except (ApiError, OSError) as exc:
            if chunk.batch_id is not None:
                raise  # the job exists and waits for its data: polling it uploads again
            log.warning("chunk %d: could not send it again (%s); keeping the synchronous result, whose records "
                        "are not known to have landed", chunk.id, exc)
            return status

    def _send_failed(self, chunk: Chunk, exc: Exception, halt_on_error: bool) -> None:
        message = f"chunk {chunk.id}: sending failed: {exc}"
        if chunk.batch_id is not None:
            state = "submitted"  # the job exists: polling it uploads the data again
        elif _may_pass(exc):
            state = "built"  # sent again by the next run
        else:
            state = "failed"  # the API refused this chunk itself: `streambatch retry` or `--drop`
        self._set(chunk, state=state, message=str(exc))
        if state == "built":
            self._skip.add(chunk.id)  # not again in this run
        if state != "failed":
            message += " (the chunk stays pending; rerun to resume)"
        if self._halt(self.batch.halt_on_batch_error, halt_on_error):
            raise BatchJobError(message) from exc
        log.error("%s", message)
        return None

    # -- polling -------------------------------------------------------------------------

    def poll(self, batch_id: int, items: int = 0, interval: float | None = None, timeout: float | None = None,
             upload: Callable[[], None] | None = None) -> dict[str, Any]:
        """Poll a job until it completes; returns its batchStatus. Raises :class:`PollTimeout`.
        A job found still ``Created`` has not received its data: ``upload`` (if given) sends it."""
        policy = self.poll_policy
        timeout = policy.timeout if timeout is None else timeout
        self._event("polling", batch_id=batch_id, items=items)
        started = time.monotonic()
        wait_s = interval if interval is not None else policy.first(items)
        polls = 0
        while True:
            self._sleep(min(wait_s, max(0.0, timeout - (time.monotonic() - started))), batch_id)
            status = self.client.status(batch_id)
            polls += 1
            failpoints.hit("after-poll")
            if status.get("status") == "Created" and upload is not None:
                log.warning("batch job %s is waiting for its data (an earlier upload failed); uploading it again",
                            batch_id)
                upload()
                upload = None
            if status.get("status") == "Completed":
                if interval is None:
                    policy.observe(items, time.monotonic() - started, polls == 1)
                return status
            if time.monotonic() - started >= timeout:
                raise PollTimeout(f"batch job {batch_id} did not complete within {timeout:.0f} s "
                                  f"(last status {status.get('status')!r}); rerun to keep polling it")
            if interval is None:
                wait_s = policy.next(time.monotonic() - started)

    def _sleep(self, seconds: float, batch_id: int) -> None:
        """Sleep, waking every 0.2 s to honour a stop request (the job is polled again on resume)."""
        end = time.monotonic() + seconds
        while True:
            if self.batch.should_stop():
                raise StopRequested(f"stopped while batch job {batch_id} was processing; its batch id is stored, "
                                    "the next run polls it")
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.2))

    def _poll_chunk(self, chunk: Chunk, halt_on_error: bool) -> dict[str, Any] | None:
        assert chunk.batch_id is not None
        try:
            status = self.poll(chunk.batch_id, chunk.items, upload=partial(self._upload, chunk))
        except ApiError as exc:
            self._set(chunk, message=f"polling failed: {exc}")
            if self._halt(self.batch.halt_on_poll_error, halt_on_error) or isinstance(exc, TransientApiError):
                raise BatchJobError(f"chunk {chunk.id}: polling batch job {chunk.batch_id} failed: {exc} "
                                    "(its batch id is stored; rerun to keep polling it)") from exc
            log.error("chunk %d: polling batch job %s failed: %s", chunk.id, chunk.batch_id, exc)
            return None
        self._complete(chunk, status, chunk.batch_id)
        log.info("chunk %d: batch job %s completed (%s)", chunk.id, chunk.batch_id, _counts(status),
                 extra={"event": "chunk-completed", "chunk": chunk.id, "batch_id": chunk.batch_id})
        return status

    def _complete(self, chunk: Chunk, status: dict[str, Any], batch_id: Any) -> None:
        errors = int(status.get("errorCount") or 0)
        self._set(chunk, state="completed", batch_id=int(batch_id) if batch_id is not None else None,
                  status=orjson.dumps(status).decode(), error_count=errors, completed=time.time())
        failpoints.hit("after-complete")

    # -- after completion ----------------------------------------------------------------

    def _finish(self, chunk: Chunk, status: dict[str, Any], errors: bool, process_files: bool,
                halt_on_error: bool) -> dict[str, Any]:
        out = dict(status)
        out["chunk"] = chunk.id
        if chunk.state not in ("completed", "done"):
            return out  # sent without polling: nothing more is known yet
        if errors and chunk.batch_id is not None and _has_errors(status):
            out["errors"] = self.fetch_errors(chunk)
        if process_files and self.batch.settings.action != "Delete":  # a Delete job has nothing to upload
            out["files"] = self.upload_files(chunk, halt_on_error)
        if process_files or self.batch.settings.action == "Delete":
            self._set(chunk, state="done")
            failpoints.hit("after-done")
        if self.batch.on_chunk is not None:
            self.batch.on_chunk(out)
        return out

    def fetch_errors(self, chunk: Chunk) -> list[dict[str, Any]]:
        """Fetch a completed chunk's per-record errors (once), store them against the xids they
        name, and return them. Critical errors stop the run."""
        fetched = self.job.conn.execute("SELECT errors_fetched FROM chunks WHERE id = ?", (chunk.id,)).fetchone()[0]
        if not fetched:
            assert chunk.batch_id is not None
            records = self._error_records(chunk.batch_id, self._status_of(chunk))
            index = _ChunkIndex(self.job, chunk.id)
            with self.job.transaction() as conn:
                conn.executemany(
                    "INSERT INTO errors(chunk, xid, code, severity, reason, message, source) VALUES (?,?,?,?,?,?,?)",
                    [(chunk.id, index.xid_for(r), _code_of(r), r.get("severity"), r.get("errorReason"),
                      r.get("errorMessage"), r.get("errorSource")) for r in records])
                conn.execute("UPDATE chunks SET errors_fetched = 1 WHERE id = ?", (chunk.id,))
            failpoints.hit("after-errors")
        stored = self.stored_errors(chunk.id)
        critical = [e for e in stored if any(p.search(str(e.get("errorReason") or "") + " " + str(e.get("errorMessage") or ""))
                                             for p in CRITICAL_PATTERNS)]
        if critical:
            raise CriticalBatchError(f"chunk {chunk.id} (batch job {chunk.batch_id}): critical batch error: "
                                     f"{critical[0].get('errorReason')}")
        return stored

    def stored_errors(self, chunk_id: int) -> list[dict[str, Any]]:
        rows = self.job.conn.execute("SELECT xid, code, severity, reason, message, source FROM errors "
                                     "WHERE chunk = ? ORDER BY id", (chunk_id,)).fetchall()
        return [{"xid": x, "code": c, "severity": s, "errorReason": r, "errorMessage": m, "errorSource": src}
                for x, c, s, r, m, src in rows]

    def _error_records(self, batch_id: int, status: dict[str, Any]) -> list[dict[str, Any]]:
        """Error records from /results, falling back to /errors; an error file that is not there
        yet right after completion is asked for again a few times."""
        for attempt in range(4):
            records = self.client.results(batch_id)
            if records is None:
                records = self.client.errors(batch_id)
            if records or not int(status.get("errorCount") or 0):
                return records
            time.sleep(0.5 * (attempt + 1))
        log.warning("batch job %s reports %s errors but the API returned none", batch_id, status.get("errorCount"))
        return []

    # -- files ---------------------------------------------------------------------------

    def upload_files(self, chunk: Chunk, halt_on_error: bool) -> list[dict[str, Any]]:
        """Upload the content of this chunk's Documents and Reports that is not yet uploaded,
        at most ``file_concurrency`` at a time; content is fetched or called for just before
        its upload. A group the job failed to create is skipped."""
        rows = self.job.conn.execute(
            "SELECT f.xid, f.type, f.source, f.path FROM groups g JOIN files f ON f.xid = g.xid "
            "WHERE g.chunk = ? AND f.state = 'pending' ORDER BY g.seq", (chunk.id,)).fetchall()
        failed_groups = {x for (x,) in self.job.conn.execute(
            "SELECT xid FROM errors WHERE chunk = ? AND severity = 'Error' AND xid IS NOT NULL", (chunk.id,))}
        results: list[dict[str, Any]] = []
        if rows:
            self._event("uploading", chunk=chunk.id, files=len(rows))
        halt = self._halt(self.batch.halt_on_file_error, halt_on_error)
        first_error: str | None = None
        with ThreadPoolExecutor(self.file_concurrency, thread_name_prefix="streambatch-upload") as pool:
            running: dict[Future[None], str] = {}

            def drain(until: int) -> None:
                """Record finished uploads until at most ``until`` are running."""
                nonlocal first_error
                while len(running) > until:
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for fut in done:
                        xid, exc = running.pop(fut), fut.exception()
                        if exc is None:
                            self._file_state(xid, "uploaded", None)
                            results.append({"xid": xid, "uploaded": True})
                        else:
                            self._file_state(xid, "failed", str(exc))
                            results.append({"xid": xid, "uploaded": False, "error": str(exc)})
                            log.error("upload of %s failed: %s", xid, exc)
                            first_error = first_error or f"{xid}: {exc}"

            for xid, group_type, source, path in rows:
                if xid in failed_groups:
                    self._file_state(xid, "skipped", "the batch job did not create this group")
                    results.append({"xid": xid, "uploaded": False, "error": "group not created"})
                    continue
                drain(self.file_concurrency - 1)  # at most file_concurrency contents in memory
                content = self.job.file(xid)["content"] if source == "bytes" else None
                running[pool.submit(self._upload_one, xid, group_type, source, path, content)] = xid
            drain(0)
        if first_error and halt:
            raise BatchJobError(f"chunk {chunk.id}: file upload failed: {first_error}")
        return results

    def _file_state(self, xid: str, state: str, error: str | None) -> None:
        with self.job.transaction() as conn:
            conn.execute("UPDATE files SET state = ?, error = ? WHERE xid = ?", (state, error, xid))
        failpoints.hit("after-upload")

    def _upload_one(self, xid: str, group_type: str, source: str, path: str | None, content: bytes | None) -> None:
        """Runs on an upload thread: resolve the content now, then stream it up."""
        failpoints.hit("before-upload")
        data: Any
        if source == "bytes":
            data = content
        elif source == "path":
            data = open(path, "rb")  # type: ignore[arg-type]
        else:
            fn = self.batch.content_for(xid) if source == "callback" else None
            fn = fn or self.batch.file_content
            if fn is None:
                raise StreambatchError("no content callback or resolver for this document in this process")
            try:
                data = fn(xid)
            except Exception as exc:  # a user callback: its failure is this file's failure
                raise StreambatchError(f"content callback raised {type(exc).__name__}: {exc}") from exc
        if data is None:
            raise StreambatchError("content callback returned None")
        if isinstance(data, str):
            data = data.encode()
        if isinstance(data, Path):
            data = open(data, "rb")
        try:
            self.client.upload_file(group_type, xid, self.batch.owner, data)
        finally:
            if hasattr(data, "close"):
                data.close()


class _ChunkIndex:
    """Finds the xid an error record is about: its errorSource, or a quoted name in its
    reason, matched against the xids and summaries of the chunk's records."""

    def __init__(self, job: Any, chunk_id: int) -> None:
        lo, hi = job.conn.execute("SELECT ind_lo, ind_hi FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
        self.names: dict[str, str] = {}
        for (xid,) in job.conn.execute("SELECT xid FROM groups WHERE chunk = ?", (chunk_id,)):
            self.names[xid] = xid
        if lo is not None:
            for xid, summary in job.iter_rows("SELECT xid, summary FROM indicators WHERE seq BETWEEN ? AND ?", (lo, hi)):
                self.names[xid] = xid
                self.names.setdefault(summary, xid)

    def xid_for(self, record: dict[str, Any]) -> str | None:
        for candidate in (record.get("errorSource"), record.get("xid"), record.get("summary")):
            if candidate and str(candidate) in self.names:
                return self.names[str(candidate)]
        text = f"{record.get('errorReason', '')} {record.get('errorMessage', '')}"
        for quoted in re.findall(r"'([^']+)'", text):
            if quoted in self.names:
                return self.names[quoted]
        return None


# Refusals of the chunk itself (malformed, too large): sending it again as it is cannot succeed.
# Any other failure (the network, 5xx, 429, and 401/403/404, which a fixed key, permission or
# API path cures) leaves the chunk to be sent again by the next run.
PERMANENT_STATUSES = frozenset({400, 411, 413, 414, 415, 422})


def _may_pass(exc: Exception) -> bool:
    if isinstance(exc, TransientApiError):
        return True
    if isinstance(exc, ApiError):
        return exc.status not in PERMANENT_STATUSES
    return False  # the chunk file cannot be read


def _has_errors(status: dict[str, Any]) -> bool:
    return any(int(status.get(k) or 0) > 0 for k in ("errorCount", "errorGroupCount", "errorIndicatorCount"))


def _unitemized(status: dict[str, Any]) -> bool:
    """Completed inline, with errors, and no batch id to fetch them by."""
    return status.get("status") == "Completed" and status.get("id") is None and _has_errors(status)


def _code_of(record: dict[str, Any]) -> str | None:
    if record.get("code"):
        return str(record["code"])
    m = re.search(r"\((0x[0-9A-Fa-f]+)\)", str(record.get("errorReason") or ""))
    return m.group(1) if m else None


def _counts(status: dict[str, Any]) -> str:
    return ", ".join(f"{k}={status[k]}" for k in ("successCount", "errorCount", "unprocessCount") if k in status)
