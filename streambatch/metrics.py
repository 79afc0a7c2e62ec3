"""Prometheus metrics of a feed worker (``streambatch worker --metrics-port PORT``), kept in
their own registry and served over HTTP by ``prometheus_client``.

Per feed (label ``feed``): cycles by outcome, records by kind (read, rejected, new, changed,
unchanged, repeated, expired, kept_alive, removed, retired, held, sent, accepted, failed, warned,
unprocessed),
batch jobs and chunk bytes the API completed, cycle and poll durations (histograms), the last
success time, the next due time and the back-off state (failures in a row). Per process: batch
jobs in flight.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .feeds.worker import CycleStats

RECORD_KINDS = ("read", "rejected", "new", "changed", "unchanged", "repeated", "expired", "kept_alive", "removed",
                "retired", "held", "sent", "accepted", "failed", "warned", "unprocessed")


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.cycles = Counter("streambatch_feed_cycles", "Feed cycles, by outcome (done, failed, interrupted)",
                              ["feed", "outcome"], registry=r)
        self.records = Counter("streambatch_feed_records", "Records of feed cycles, by kind", ["feed", "kind"],
                               registry=r)
        self.jobs = Counter("streambatch_feed_jobs", "Batch jobs the API completed", ["feed"], registry=r)
        self.bytes = Counter("streambatch_feed_bytes", "Bytes of chunk files in batch jobs the API completed",
                             ["feed"], registry=r)
        self.cycle_seconds = Histogram("streambatch_feed_cycle_duration_seconds", "Duration of feed cycles",
                                       ["feed"], registry=r,
                                       buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 10800, float("inf")))
        self.poll_seconds = Histogram("streambatch_batch_job_duration_seconds",
                                      "From sending a chunk to its batch job completing", ["feed"], registry=r,
                                      buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf")))
        self.last_success = Gauge("streambatch_feed_last_success_timestamp_seconds",
                                  "When the feed's last successful cycle ended (epoch seconds)", ["feed"], registry=r)
        self.next_due = Gauge("streambatch_feed_next_due_timestamp_seconds",
                              "When the feed is next due (epoch seconds)", ["feed"], registry=r)
        self.failures = Gauge("streambatch_feed_consecutive_failures",
                              "Failed cycles in a row (0: not backing off)", ["feed"], registry=r)
        self.in_flight = Gauge("streambatch_jobs_in_flight", "Batch jobs sent and not yet completed", registry=r)
        self._server: Any = None
        self._lock = threading.Lock()

    def cycle(self, stats: "CycleStats", failures: int = 0) -> None:
        """Count a finished cycle."""
        feed = stats.feed
        with self._lock:
            self.cycles.labels(feed, stats.status).inc()
            for kind in RECORD_KINDS:
                n = int(getattr(stats, kind) or 0)
                if n:
                    self.records.labels(feed, kind).inc(n)
            self.jobs.labels(feed).inc(stats.jobs)
            self.bytes.labels(feed).inc(stats.bytes)
            for seconds in stats.job_seconds:
                self.poll_seconds.labels(feed).observe(seconds)
            self.cycle_seconds.labels(feed).observe(stats.duration)
            if stats.status == "done":
                self.last_success.labels(feed).set(time.time())
            self.failures.labels(feed).set(failures)

    def due(self, feed: str, when: float) -> None:
        self.next_due.labels(feed).set(when)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``addr:port`` in a daemon thread; returns the port (0 picks one)."""
        from prometheus_client import start_http_server

        self._server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
