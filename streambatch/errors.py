"""One exception root for streambatch, classified as terminal or transient.

Callers decide retry-or-fail from the class alone: a :class:`TransientError` may succeed
if tried again later (the network, a 5xx, a 429), anything else will not.
"""

from __future__ import annotations

from typing import Any


class StreambatchError(Exception):
    """Root of every error streambatch raises on purpose."""


class TransientError(StreambatchError):
    """A failure that may go away if the same step is tried again later."""


class ValidationError(StreambatchError, ValueError):
    """A record or field that the Batch API would refuse.

    Names the record type, the field, the offending value and the reason, and the record's
    xid when it is known, so a feed of millions of rows can point at the one that is wrong.
    """

    def __init__(
        self,
        type_name: str | None,
        field: str,
        value: Any,
        reason: str,
        xid: str | None = None,
    ) -> None:
        self.type = type_name
        self.field = field
        self.value = value
        self.reason = reason
        self.xid = xid
        super().__init__(self._message())

    def _message(self) -> str:
        try:
            value = repr(self.value)
        except (RecursionError, ValueError):  # nested too deep, or an int too long to print
            value = f"<{type(self.value).__name__} that cannot be shown>"
        if len(value) > 120:
            value = value[:117] + "..."
        where = self.type or "record"
        if self.xid:
            where += f" {self.xid}"
        return f"{where}: field {self.field!r}: {self.reason} (value {value})"

    def with_xid(self, xid: str | None) -> "ValidationError":
        """The same error, naming the record's xid (kept if it already had one)."""
        if self.xid or not xid:
            return self
        return ValidationError(self.type, self.field, self.value, self.reason, xid)

    def __reduce__(self):  # keep pickling (multiprocessing, logging handlers) working
        return (ValidationError, (self.type, self.field, self.value, self.reason, self.xid))


class JobFileError(StreambatchError):
    """The job file cannot be used: corrupt, foreign, too new, or locked by another process."""


class ChunkError(StreambatchError):
    """A record cannot be placed in any chunk (for example it alone exceeds ``max_bytes``)."""


class IncompleteReadError(StreambatchError):
    """The feed source ended before its end: truncated archive or JSON, unbalanced quote, a body shorter than its Content-Length. Nothing read from it may be taken as the whole feed."""


class BusyError(JobFileError):
    """Another process holds the lock of a job file or a feed."""
