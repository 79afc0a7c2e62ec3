"""Crash points, for the crash test suite.

Each step boundary of staging, building and submitting calls :func:`hit` with its name. When
the environment variable ``STREAMBATCH_CRASH_AT`` is ``NAME`` or ``NAME:N``, the process kills
itself with SIGKILL the N-th time (default first) that point is reached in this process, the way
an OOM kill or a power cut would stop it: no cleanup, no flush, no exception handler. Unset (the
normal case), :func:`hit` is one comparison.
"""

from __future__ import annotations

import os
import signal

_spec = os.environ.get("STREAMBATCH_CRASH_AT") or None
_name, _, _n = (_spec or "").partition(":")
_target = int(_n) if _n else 1
_count = 0

POINTS = (
    "staged",               # a write buffer committed to the job file
    "chunk-written",        # a chunk file renamed into place, not yet recorded
    "chunk-recorded",       # a chunk recorded in the job file
    "before-send",          # a chunk marked 'sending', request not yet made
    "after-create",         # the API accepted the job; its batch id not yet stored
    "after-submitted",      # the batch id stored
    "after-poll",           # a status poll answered (job not yet complete)
    "after-complete",       # the completed status stored
    "after-errors",         # the job's errors stored
    "before-upload",        # a document's content about to be uploaded
    "after-upload",         # a document's upload recorded
    "after-done",           # a chunk finished
)


def hit(name: str) -> None:
    global _count
    if _spec is None or name != _name:
        return
    _count += 1
    if _count == _target:
        os.kill(os.getpid(), signal.SIGKILL)
