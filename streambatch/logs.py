"""Log output for the command line: text or JSON lines, on stderr and optionally in a file
rotated by size, with feed credentials redacted (:mod:`streambatch.feeds.redact`).

A JSON line is one object: ``time`` (ISO-8601 UTC), ``level``, ``logger``, ``message``, and,
when the record carries them, ``feed``, ``run``, ``chunk``, ``batch_id``, ``event`` and
``counts``. Code that logs an event passes those as ``extra``::

    log.info("...", extra={"event": "cycle", "feed": name, "run": 3, "counts": {...}})
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

FIELDS = ("feed", "run", "chunk", "batch_id", "event", "counts")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_BYTES = 10 * 1024 * 1024  # a log file is rotated when it reaches this size
BACKUPS = 5  # rotated files kept: PATH.1 ... PATH.5


def iso(t: float | None) -> str | None:
    """Epoch seconds as ISO-8601 UTC (``2026-12-02T06:41:21.123Z``); None stays None."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": iso(record.created), "level": record.levelname.lower(),
                               "logger": record.name, "message": record.getMessage()}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        return orjson.dumps(out, default=str).decode()


def configure(verbose: int = 0, fmt: str = "text", file: Path | None = None) -> None:
    """Set up the root logger: level from ``verbose`` (0 warnings, 1 info, 2 debug), a stderr
    handler and, with ``file``, a size-rotated file handler (created 0600), both in ``fmt``
    ("text" or "json"), both redacting feed credentials. Called again, it replaces them."""
    from .feeds import redact

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_streambatch", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG)
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(_PrivateRotatingFile(file, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._streambatch = True  # type: ignore[attr-defined]
        redact.install(handler)
        root.addHandler(handler)


class _PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """A size-rotated log file whose every generation is created 0600 (logs name feeds, files
    and records)."""

    def _open(self):  # type: ignore[override]
        import os

        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8")
