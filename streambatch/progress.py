"""A one-line progress display for a terminal: what a feed cycle is doing, its counts, rate and
ETA, rewritten in place on stderr. Silent when the stream is not a terminal (cron, systemd,
a pipe), so logs stay clean."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


class Progress:
    """Called as ``progress(phase, counts)`` by :class:`streambatch.feeds.worker.FeedRunner`;
    draws at most four times a second. ``clear()`` removes the line before other output."""

    def __init__(self, label: str = "", stream: TextIO | None = None, enabled: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.enabled = _is_tty(self.stream) if enabled is None else enabled
        self.label = label
        self.clock = clock
        self._phase: str | None = None
        self._step: str | None = None  # within a phase: sending, polling, uploading
        self._phase_started = 0.0
        self._drawn = 0.0
        self._width = 0

    def __call__(self, phase: str, counts: dict[str, Any]) -> None:
        if not self.enabled:
            return
        now = self.clock()
        step = counts.get("step")
        if phase != self._phase:
            self._phase, self._phase_started = phase, now
        elif step == self._step and now - self._drawn < 0.25:
            return
        self._step = step
        self._drawn = now
        self._draw(render(self.label, phase, counts, now - self._phase_started))

    def _draw(self, text: str) -> None:
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def clear(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def render(label: str, phase: str, counts: dict[str, Any], elapsed: float) -> str:
    """The line for a phase: ``reading`` (rows read, rows/s), ``submitting`` (records sent of
    those staged, records/s, ETA, and the step: sending a chunk, waiting for a batch job,
    uploading files), ``finishing`` (an interrupted run's job)."""
    prefix = f"{label}: " if label else ""
    if phase == "reading":
        n = int(counts.get("read") or 0)
        return f"{prefix}reading: {n:,} rows" + _rate(n, elapsed, "rows")
    if phase == "submitting":
        sent, total = int(counts.get("sent") or 0), int(counts.get("total") or 0)
        text = f"{prefix}submitting: {sent:,} of {total:,} records"
        if total:
            text += f" ({sent / total:.0%})"
        text += _rate(sent, elapsed, "records")
        if sent and total > sent and elapsed > 0:
            text += f", ETA {_clock((total - sent) / (sent / elapsed))}"
        step = counts.get("step")
        if step == "polling":
            text += f"; waiting for batch job {counts.get('batch_id')}"
        elif step == "uploading":
            text += f"; uploading {counts.get('files')} document/report file(s)"
        elif step == "sending":
            text += f"; sending chunk {counts.get('chunk')}"
        return text
    if phase == "finishing":
        return f"{prefix}finishing interrupted run {counts.get('run')}"
    return f"{prefix}{phase}"


def _rate(n: int, elapsed: float, unit: str) -> str:
    return f", {n / elapsed:,.0f} {unit}/s" if elapsed > 0.5 and n else ""


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
