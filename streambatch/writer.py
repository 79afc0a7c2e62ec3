"""The writer process: a Batch's SQLite writes on the machine's second core.

While a :class:`~streambatch.batch.Batch` stages, checking, canonicalizing and encoding stay
in the calling process; each flush of its buffers becomes one :class:`~streambatch.store.Staging`
write, sent as one message through a pipe to a child process that owns the job file's
writes and commits it in one transaction (merging repeated records as the caller would).

- **Bounded**: at most :data:`MAX_UNACKED` writes are unacknowledged at a time (one being
  committed, one waiting in the pipe); ``send`` waits for the writer's answer to the oldest
  before it hands over another, whatever the size of a write. The caller builds the next write
  meanwhile.
- **Errors flow back**: the writer answers every write (``ok`` or the error that stopped it)
  and exits at its first error; a writer that dies shows as the end of its pipe. Either way
  :class:`WriterFailed` names the job file, and the writes it did not commit are known (every
  write records its number in meta ``staging_write`` in its own transaction), kept, and
  written again by the caller.
- **No orphan**: the writer reads its pipe until the caller closes it or dies (end of file),
  then exits; it ignores SIGINT so that a Ctrl-C stops the caller, which decides.
- **Started deliberately**: a fresh interpreter (``subprocess``, ``python -I``), neither
  ``fork`` (unsafe in a process with threads, as the feed worker is) nor
  :mod:`multiprocessing`'s spawn or forkserver (both import the caller's ``__main__``
  again). Its environment holds no credentials: only the variables listed in
  :data:`_ENV_KEPT`. It needs no secrets and creates no file (the job file and its -wal/-shm
  exist before it starts).
"""

from __future__ import annotations

import os
import pickle
import resource
import secrets
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import JobFileError
from .store import Staging

_ENV_KEPT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "SQLITE_TMPDIR")

_SETTLE = b"S"  # a message that is not a write (those are pickles) nor the end (empty)

#: writes handed to the writer and not yet acknowledged, at most: each is kept encoded in the
#: caller (for replay) until the writer commits it (docs/decisions.md, "Staging memory")
MAX_UNACKED = 2

_BOOT = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
         "from streambatch.writer import main; sys.exit(main(sys.argv[2:]))")


class WriterFailed(JobFileError):
    """The writer process stopped before committing every write it was sent."""


class Writer:
    """The calling side of a writer process for the job file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.session = secrets.token_hex(4)
        self._n = 0
        self._unacked: list[tuple[int, bytes, frozenset[int]]] = []
        self.most_unacked = 0  # the most writes that were unacknowledged at once
        self.failed: WriterFailed | None = None
        self.waited = 0.0  # seconds the caller spent handing writes over and waiting for them
        self.report: dict[str, Any] = {}
        to_writer, inbox = os.pipe()
        try:  # 1 MiB (Linux's default limit) instead of 64 KiB: a write of ~5 MB in fewer turns
            import fcntl

            fcntl.fcntl(inbox, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except OSError:
            pass
        outbox, from_writer = os.pipe()
        env = {k: os.environ[k] for k in _ENV_KEPT if k in os.environ}
        import json

        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, json.dumps([p for p in sys.path if p]), str(path),
                 str(to_writer), str(from_writer)],
                pass_fds=(to_writer, from_writer), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        finally:
            os.close(to_writer)
            os.close(from_writer)
        self._out = Connection(inbox, readable=False)
        self._in = Connection(outbox, writable=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def in_flight(self, key: int) -> bool:
        """Whether a record with this identity key is in a write not yet committed."""
        return any(key in keys for _, _, keys in self._unacked)

    @property
    def sent(self) -> int:
        """How many writes were handed to the writer."""
        return self._n

    @property
    def busy(self) -> bool:
        return bool(self._unacked)

    def send(self, write: Staging, keys: Iterable[int]) -> None:
        """Hand one write (holding records with these identity keys) to the writer; blocks
        while :data:`MAX_UNACKED` writes are unacknowledged."""
        self._check()
        self._n += 1
        write.mark = f"{self.session}:{self._n}"
        self._unacked.append((self._n, write.encode(), frozenset(keys)))  # kept from now on: replayed if need be
        t0 = time.perf_counter()
        try:
            while len(self._unacked) > MAX_UNACKED:
                self._answer()
            self.most_unacked = max(self.most_unacked, len(self._unacked))
            self._out.send_bytes(self._unacked[-1][1])
            while self._unacked and self._in.poll():
                self._answer()
        except (OSError, EOFError):
            self._died()
        finally:
            self.waited += time.perf_counter() - t0

    def sync(self) -> None:
        """Wait until every write sent is committed (or raise :class:`WriterFailed`)."""
        self._check()
        t0 = time.perf_counter()
        try:
            while self._unacked:
                self._answer()
        except (OSError, EOFError):
            self._died()
        finally:
            self.waited += time.perf_counter() - t0

    def close(self) -> dict[str, Any]:
        """Wait for every write, stop the writer; returns its report (writes, rows, busy
        seconds, peak RSS)."""
        self.sync()
        try:
            self._out.send_bytes(b"")  # an empty message: no more writes
            self.report = {**self._await("closed")[1], "caller_waited_s": round(self.waited, 3)}
        except (OSError, EOFError):
            self._died()
        self._end()
        return self.report

    def settle(self) -> bool:
        """Wait for every write, then have the writer make them durable (see
        :meth:`~streambatch.store.JobFile.end_unsynced`); returns whether it could."""
        self.sync()
        try:
            self._out.send_bytes(_SETTLE)
            return bool(self._await("settled")[1])
        except (OSError, EOFError):
            self._died()
        return False

    def unwritten(self, committed: str | None) -> list[Staging]:
        """After a failure: the writes sent but not committed, in order, given the job file's
        ``staging_write`` mark; ready to be written again."""
        done = 0
        if committed and committed.startswith(self.session + ":"):
            done = int(committed.split(":", 1)[1])
        out = []
        for n, message, _ in self._unacked:
            if n > done:
                write = Staging.decode(message)
                write.mark = None
                out.append(write)
        self._unacked = []
        return out

    def abandon(self) -> None:
        """Stop the writer without waiting for its writes (it finishes the one it is on)."""
        self._end()

    # -- internals -----------------------------------------------------------------------

    def _check(self) -> None:
        if self.failed is not None:
            raise self.failed

    def _await(self, kind: str) -> tuple:
        """The writer's next answer, which must be ``kind`` or its error."""
        answer = pickle.loads(self._in.recv_bytes())
        if answer[0] != kind:
            self._fail(f"the writer process (pid {self.pid}) could not write it: {answer[-1]}")
        return answer

    def _answer(self) -> None:
        answer = pickle.loads(self._in.recv_bytes())
        if answer[0] == "ok":
            n = answer[1]
            assert self._unacked and self._unacked[0][0] == n, (n, [u[0] for u in self._unacked])
            self._unacked.pop(0)
            return
        # ("error", n, text): the writer stopped at write n
        self._fail(f"the writer process (pid {self.pid}) could not write it: {answer[2]}")

    def _died(self) -> None:
        try:  # what it said before it ended (its error, if it stopped at one)
            while self._unacked and self._in.poll():
                self._answer()
        except (OSError, EOFError):
            pass
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and code < 0:
            try:
                how = f"was killed by signal {-code} ({signal.Signals(-code).name})"
            except ValueError:
                how = f"was killed by signal {-code}"
        elif code is not None:
            how = f"ended with exit status {code}"
        else:
            how = "stopped answering"
        self._fail(f"the writer process (pid {self.pid}) {how}")

    def _fail(self, what: str) -> None:
        pending = len(self._unacked)
        self.failed = WriterFailed(
            f"{self.path}: staging into the job file failed: {what}. Every write committed before is whole in "
            f"the job file; the {pending} write(s) not yet committed are kept and written by this process at the "
            f"next flush or close (or stage the records again: the job resumes as usual)")
        self._end()
        raise self.failed

    def _end(self) -> None:
        for conn in (self._out, self._in):
            conn.close()
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=30)  # its pipe is closed: it ends after the write it is on
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _peak_rss_mb() -> float:
    """This process's peak RSS: Linux's ``VmHWM``, which counts this interpreter's own memory
    only. (``ru_maxrss`` carries over ``exec`` the peak of the process it was started from,
    so a writer's would never read lower than its caller's RSS at the start.)"""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str]) -> int:
    """The writer process: ``JOB_FILE READ_FD WRITE_FD``."""
    from .model import merge_data
    from .store import JobFile

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, inbox, outbox = Path(argv[0]), Connection(int(argv[1]), writable=False), Connection(int(argv[2]), readable=False)
    job = None
    busy, cpu, writes, rows = 0.0, 0.0, 0, 0
    unsynced = False
    try:
        job = JobFile.open(path, create=False)
        while True:
            try:
                message = inbox.recv_bytes()
            except EOFError:  # the caller closed its end or died: nothing is half done
                if unsynced:
                    job.end_unsynced()
                return 0
            if not message or message == _SETTLE:  # the caller is done, or wants what it sent durable
                settled = job.end_unsynced() if unsynced else True
                unsynced = not settled
                if message:
                    outbox.send_bytes(pickle.dumps(("settled", settled)))
                    continue
                outbox.send_bytes(pickle.dumps(("closed", {
                    "writes": writes, "rows": rows, "busy_s": round(busy, 3), "cpu_s": round(cpu, 3),
                    "durable": settled, "peak_rss_mb": _peak_rss_mb()})))
                return 0
            t0, c0 = time.perf_counter(), time.process_time()
            if not unsynced:
                job.begin_unsynced()
                unsynced = True
            write = Staging.decode(message)
            n = int((write.mark or "0:0").rsplit(":", 1)[1])
            try:
                job.stage(write, None if write.replace else merge_data)
            except Exception as exc:  # said to the caller, which raises it naming the job file
                outbox.send_bytes(pickle.dumps(("error", n, f"{type(exc).__name__}: {exc}")))
                return 1
            busy += time.perf_counter() - t0
            cpu += time.process_time() - c0
            writes += 1
            rows += len(write.rows)
            outbox.send_bytes(pickle.dumps(("ok", n)))
    except (BrokenPipeError, EOFError):
        return 0
    except Exception as exc:  # e.g. the job file cannot be opened
        try:
            outbox.send_bytes(pickle.dumps(("error", 0, f"{type(exc).__name__}: {exc}")))
        except OSError:
            pass
        return 1
    finally:
        if job is not None:
            job.close()
