"""One line for an operator about a failure: what failed, on which file, and that nothing was
lost; whether it is a failure of the world (a source, the API, the disk) or a bug. Used by the
feed runner for its run line and state, and by the command line for its last words."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from .errors import StreambatchError
from .feeds import redact


def describe(exc: BaseException, where: Path | None = None) -> str:
    """One line for an operator: what failed, on which file (``where``: the file or folder
    being written, when the error does not say), and that nothing was lost; feed credentials
    redacted."""
    return redact.text(_describe(exc, where))


def _describe(exc: BaseException, where: Path | None) -> str:
    if isinstance(exc, StreambatchError):
        return str(exc)
    if isinstance(exc, sqlite3.DatabaseError):
        text = str(exc)
        hint = "is the disk full or failing?" if "full" in text or "I/O" in text else "is the file damaged?"
        return (f"{str(where) + ': ' if where else ''}SQLite error: {text} ({hint}); fix the cause and run again: "
                "nothing sent is lost")
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            return f"{where}no space left on device; free some and run again: nothing sent is lost"
        return f"{where}{exc.strerror or exc}; fix the cause and run again"
    if isinstance(exc, EOFError):
        return f"the source ended early ({exc or 'truncated'}); nothing is removed, the next run reads it again"
    return f"{type(exc).__name__}: {exc}"


def expected(exc: BaseException) -> bool:
    """Failures of the world (sources, the API, the disk), as opposed to bugs."""
    return isinstance(exc, (StreambatchError, sqlite3.DatabaseError, OSError, EOFError))
