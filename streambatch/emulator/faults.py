"""Fault injection: a plan of failures the emulator applies to requests and jobs.

A fault is a small dict (or :class:`Fault`) such as::

    {"kind": "status", "method": "POST", "path": "/v2/batch/*", "nth": 2, "times": 1,
     "status": 429, "retry_after": 1}

Request faults (``method`` and ``path`` select the requests; ``path`` is an fnmatch pattern
matched against the path without its ``/api`` prefix, so ``/v2/batch/*`` covers both forms):

* ``status``  answer with ``status`` (500/502/503/429...) and a Failure body instead of the real
  reply; ``retry_after`` adds a ``Retry-After`` header (429 defaults to 1). The request is not
  processed unless ``process`` is true.
* ``delay``   sleep ``seconds`` before handling the request normally.
* ``drop``    close the connection mid-response: the status line, headers and part of the body
  are written, then the socket is shut. The request is processed first unless ``process`` is
  false (the "did the server get it?" case).

Job faults (they count jobs as they are uploaded, not requests):

* ``slow``     process the job at ``rate`` records per second.
* ``running``  leave the job in ``Running`` for as long as the fault is installed; removing the
  fault (``DELETE /_emulator/faults``) lets it finish. ``job`` pins it to one job id.

``nth`` (1-based) is the first matching request or job that triggers, ``times`` how many
consecutive matches trigger from there (0 = every one from ``nth`` on). Counting starts when the
fault is installed.
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

REQUEST_KINDS = ("status", "delay", "drop")
JOB_KINDS = ("slow", "running")


@dataclass
class Fault:
    """One planned failure; see the module docstring for the fields."""

    kind: str
    method: str = "*"
    path: str = "*"
    nth: int = 1
    times: int = 1
    status: int = 503
    retry_after: float | None = None
    seconds: float = 0.0
    rate: float | None = None
    job: int | None = None
    process: bool | None = None
    body: str | None = None
    seen: int = field(default=0)
    fired: int = field(default=0)

    def __post_init__(self) -> None:
        if self.kind not in REQUEST_KINDS + JOB_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.nth < 1 or self.times < 0:
            raise ValueError("nth must be >= 1 and times >= 0")
        if self.kind == "status" and self.status == 429 and self.retry_after is None:
            self.retry_after = 1
        if self.process is None:
            self.process = self.kind == "drop"
        self.method = self.method.upper()

    @classmethod
    def of(cls, spec: "Fault | dict[str, Any]") -> "Fault":
        """Build a fault from a dict (unknown keys refused) or return it unchanged."""
        if isinstance(spec, Fault):
            return spec
        known = set(cls.__dataclass_fields__) - {"seen", "fired"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return cls(**spec)

    def _hit(self) -> bool:
        """Count one match; True when this match is inside the nth..nth+times window."""
        self.seen += 1
        last = None if self.times == 0 else self.nth + self.times - 1
        if self.seen >= self.nth and (last is None or self.seen <= last):
            self.fired += 1
            return True
        return False

    def matches(self, method: str, path: str) -> bool:
        """Does a request fall under this fault's method and path pattern?"""
        return self.kind in REQUEST_KINDS and self.method in ("*", method) and fnmatch.fnmatchcase(path, self.path)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultPlan:
    """The installed faults, shared by the request threads and the job worker."""

    def __init__(self, faults: Iterable[Fault | dict[str, Any]] = ()) -> None:
        self._lock = threading.Lock()
        self._faults = [Fault.of(f) for f in faults]
        self._pinned: dict[int, Fault] = {}  # job id -> the "running" fault holding it

    def add(self, specs: Iterable[Fault | dict[str, Any]]) -> None:
        new = [Fault.of(f) for f in specs]
        with self._lock:
            self._faults.extend(new)

    def replace(self, specs: Iterable[Fault | dict[str, Any]]) -> None:
        new = [Fault.of(f) for f in specs]
        with self._lock:
            self._faults = new
            self._pinned = {j: f for j, f in self._pinned.items() if f in new}

    def clear(self) -> None:
        self.replace([])

    def as_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._faults]

    def for_request(self, method: str, path: str) -> list[Fault]:
        """The faults that fire for this request (counting it against every matching fault)."""
        with self._lock:
            return [f for f in self._faults if f.matches(method, path) and f._hit()]

    def for_job(self, job_id: int) -> tuple[float | None, bool]:
        """Called once when a job is uploaded: (slow rate or None, hold in Running?)."""
        rate, hold = None, False
        with self._lock:
            for f in self._faults:
                if f.kind not in JOB_KINDS or (f.job is not None and f.job != job_id):
                    continue
                if f._hit():
                    if f.kind == "slow":
                        rate = f.rate
                    else:
                        hold = True
                        self._pinned[job_id] = f
        return rate, hold

    def held(self, job_id: int) -> bool:
        """Is this job still pinned in Running by an installed fault?"""
        with self._lock:
            return job_id in self._pinned
