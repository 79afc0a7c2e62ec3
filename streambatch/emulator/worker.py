"""The background worker that takes queued jobs through Running to Completed.

Jobs wait in a FIFO queue of ids (their state and input live in the store, so jobs left
Queued or Running by an earlier run are picked up again at start). The worker processes one job
at a time at the configured rate (records per second; None = as fast as possible), honouring the
``slow`` and ``running`` faults.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from .faults import FaultPlan
from .processor import Processor
from .store import Store

log = logging.getLogger(__name__)


class _Stopped(Exception):
    """The emulator is shutting down in the middle of a job."""


class Worker:
    """One thread draining the job queue."""

    def __init__(self, store: Store, processor: Processor, faults: FaultPlan, rate: float | None = None) -> None:
        self.store = store
        self.processor = processor
        self.faults = faults
        self.rate = rate
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._busy = 0
        self._held: dict[int, float | None] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="tc-emulator-worker", daemon=True)
        self._thread.start()
        for job_id in self.store.unfinished_jobs():
            self.store.update_job(job_id, status="Queued")
            self.submit(job_id, None)

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        if self._thread:
            self._thread.join(timeout=10)
            self._thread = None

    def submit(self, job_id: int, rate: float | None) -> None:
        """Queue a job (already stored with its input, status Queued)."""
        with self._idle:
            self._busy += 1
        self._queue.put((job_id, rate))  # type: ignore[arg-type]

    def drain(self) -> None:
        """Forget queued and held jobs (used by reset)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._done()
        with self._idle:
            self._busy -= len(self._held)
            self._held.clear()
            self._idle.notify_all()

    def release(self) -> None:
        """Re-queue held jobs whose ``running`` fault has been removed."""
        with self._idle:
            freed = [(j, r) for j, r in self._held.items() if not self.faults.held(j)]
            for job_id, _ in freed:
                del self._held[job_id]
        for item in freed:
            self._queue.put(item)  # type: ignore[arg-type]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every submitted job (except held ones) has completed."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy - len(self._held) > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                continue
            job_id, rate = item  # type: ignore[misc]
            if self.faults.held(job_id):
                self.store.update_job(job_id, status="Running")
                with self._idle:
                    self._held[job_id] = rate
                    self._idle.notify_all()
                continue
            try:
                self._process(job_id, rate if rate is not None else self.rate)
            except _Stopped:
                return
            except Exception:  # a bug must not kill the worker; the job is marked failed-ish
                log.exception("emulator: job %s crashed", job_id)
                self.store.update_job(job_id, status="Completed")
            self._done()

    def _process(self, job_id: int, rate: float | None) -> None:
        job = self.store.job(job_id)
        raw = self.store.job_input(job_id)
        if job is None or raw is None:
            return
        started = time.monotonic()
        done = 0

        def pace(n: int) -> None:
            nonlocal done
            done += n
            if self._stop.is_set():
                raise _Stopped
            if rate:
                wait = done / rate - (time.monotonic() - started)
                if wait > 0 and self._stop.wait(wait):
                    raise _Stopped

        chunk = 500 if not rate else max(1, min(500, int(rate / 20)))
        self.processor.run(job_id, job["settings"], bytes(raw), pace=pace, chunk=chunk)
