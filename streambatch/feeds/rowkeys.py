"""The row keys a feed's state knows, kept as a sorted file: an unchanged row is recognised
and counted as read without a query.

A row the state file knows as it was (its ``raw`` key, see :mod:`streambatch.feeds.state`) is
unchanged, so a cycle need not map or check it. Looking each key up in SQLite costs more than
reading the row, and so does recording each row read; instead, a cycle whose job was confirmed
writes the keys the state then knows -- those :meth:`FeedState.lookup_raw` would find:
confirmed, present, listed once -- to ``rowkeys.bin`` in the feed's state folder (0600),
sorted, and the next cycle loads them: the first 8 bytes of each key in an ``array`` of 64-bit
integers searched with :mod:`bisect` from a range index, and the next 4 bytes beside them, which
a key must match too (12 bytes a row, 120 MB for 10,000,000 rows).

Each position of the file has a byte that says what the cycle made of it (:data:`UNREAD`,
:data:`ONCE`, :data:`AGAIN`, :data:`OUT`). A row found there is counted as read by setting its
byte, not by a row of SQL; when the read ends, only the positions no row hit are turned into
records (:meth:`FeedState.end_reading`), and those, with the records the file never listed,
are the only ones whose absence is looked into. A key read a second time, and every time after,
is kept as an occurrence (:meth:`FeedState.mark_seen_raw`), so that a record the feed lists
twice is found as before. Keys whose record's own expiry passed or whose keep-alive is due are
taken out when the cycle starts (:meth:`RowKeys.exclude`), as is the key of a record that a
changed row of the same cycle stands for (:meth:`RowKeys.take_out`); unknown keys go to SQLite
as before. Two keys of the file that share their first 8 bytes are never recognised (both are
looked up).

The file is trusted only as the state file describes it (meta ``rowkeys``: a random token
that is also in the file's header, the number of keys and the digest of the whole file), and
only if the state has that many records to recognise. Every change to the records of the state
removes that description (see :meth:`FeedState._stale`), so a file written before an
interrupted or failed cycle, a cycle of another streambatch, a copy from another feed, a
truncated or damaged file, or a symbolic link is not trusted: the cycle says why at debug
level, looks its keys up in SQLite, and writes the file again when its job is confirmed.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
import struct
import sys
import tempfile
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import xxhash

from .state import ROWKEYS, FeedState

log = logging.getLogger("streambatch.feeds")

NAME = "rowkeys.bin"
MAGIC = b"SBRK\x02\x00\x00\x00"  # a streambatch row key file, version 2 (keys and their checks)
_HEADER = len(MAGIC) + 16  # the magic and the token
_CHUNK = 1 << 16  # keys read or written at a time: the file is never held twice in memory

#: what a cycle made of a position of the file: no row had its key (yet); one row had it; more
#: than one had it (each occurrence is kept in the state, see :meth:`RowKeys.see`); or its key is
#: not recognised this cycle (:meth:`RowKeys.exclude`, :meth:`RowKeys.take_out`)
UNREAD, ONCE, AGAIN, OUT = 0, 1, 2, 3
_NOT_READ = re.compile(b"[\x00\x03]")  # UNREAD or OUT: the positions a cycle did not count as read
_SPLIT = struct.Struct(">QI").unpack_from  # a key's prefix and check, in one call


def size(count: int) -> int:
    """The size in bytes of the file of ``count`` keys."""
    return _HEADER + 12 * count


def prefix(raw: bytes) -> int:
    """The 64-bit integer a key is kept as: its first 8 bytes, big-endian."""
    return int.from_bytes(raw[:8], "big")


def check(raw: bytes) -> int:
    """The 32 bits kept beside a key's prefix, which a key must match too: its bytes 8 to 11."""
    return int.from_bytes(raw[8:12], "big")


class RowKeys:
    """The keys a cycle may take as known (:func:`load`), and what the cycle made of each."""

    def __init__(self, keys: array, checks: array, description: dict) -> None:
        self.keys, self.checks = keys, checks
        self.description = description  # as the state file has it
        self.hits = bytearray(len(keys))  # per position: UNREAD, ONCE, AGAIN or OUT
        # where each range of the top bits starts: keys are hashes, spread evenly, so a search
        # starts in a range of ~64 keys instead of all of them (fewer steps, fewer cache misses)
        self.shift = 64 - max(0, min(20, (len(keys) // 64).bit_length()))
        self.starts = array("Q", (bisect_left(keys, b << self.shift) for b in range((1 << (64 - self.shift)) + 1))) \
            if self.shift < 64 else array("Q", [0, len(keys)])

    def __len__(self) -> int:
        return len(self.keys)

    def position(self, raw: bytes) -> int:
        """Where the file has ``raw``; -1 if it does not, or if another key shares its prefix."""
        keys, n = self.keys, len(self.keys)
        k, c = _SPLIT(raw)
        b = k >> self.shift
        i = bisect_left(keys, k, self.starts[b], self.starts[b + 1])
        if i < n and keys[i] == k and self.checks[i] == c and (i + 1 == n or keys[i + 1] != k):
            return i
        return -1

    def exclude(self, raws: Iterable[bytes]) -> None:
        """Keys the state knows but a cycle must check in full (expiry passed, keep-alive due)."""
        for raw in raws:
            i = self.position(raw)
            if i >= 0:
                self.hits[i] = OUT

    def take_out(self, raw: bytes) -> int:
        """The key of a record that another row of the cycle stands for (a changed row): from
        now on not recognised, so that every later row with it is checked in full. Returns what
        the position was (:data:`ONCE`: one row had it, which the caller records as read of
        that record; :data:`AGAIN`: its occurrences are already kept), or :data:`OUT` if the
        file does not have the key."""
        i = self.position(raw)
        if i < 0:
            return OUT
        was, self.hits[i] = self.hits[i], OUT
        return was

    def see(self, raws: list[bytes | None]) -> tuple[list[int], list[bytes]]:
        """Which of the keys (None or ``b""``: none) are not known, by their index; each known
        one is counted as read. And the occurrences to keep in the state
        (:meth:`FeedState.mark_seen_raw`): both of a key read a second time, and every one
        after."""
        keys, checks, hits, n, starts, shift = self.keys, self.checks, self.hits, len(self.keys), self.starts, self.shift
        unknown: list[int] = []
        again: list[bytes] = []
        split = _SPLIT
        for j, raw in enumerate(raws):
            if not raw:  # a row known by no key
                unknown.append(j)
                continue
            k, c = split(raw)
            b = k >> shift
            i = bisect_left(keys, k, starts[b], starts[b + 1])
            if i < n and keys[i] == k and checks[i] == c and (i + 1 == n or keys[i + 1] != k):
                hit = hits[i]
                if hit == UNREAD:
                    hits[i] = ONCE
                elif hit == ONCE:
                    hits[i] = AGAIN
                    again += (raw, raw)
                elif hit == AGAIN:
                    again.append(raw)
                else:
                    unknown.append(j)
            else:
                unknown.append(j)
        return unknown, again

    def unread(self) -> Iterator[int]:
        """The prefixes of the positions the cycle did not count as read (:data:`UNREAD`,
        :data:`OUT`), in order."""
        keys = self.keys
        for m in _NOT_READ.finditer(self.hits):
            yield keys[m.start()]


def load(state: FeedState, folder: Path) -> RowKeys | None:
    """The feed's key file, if the state file vouches for it; None (and why, at debug level)
    otherwise."""
    why = _check(state, folder)
    if isinstance(why, str):
        log.debug("feed state %s: row key file not used: %s; keys are looked up in the state file", folder, why)
        return None
    log.debug("feed state %s: %s row keys loaded from %s", folder, f"{len(why):,}", NAME)
    return why


def _check(state: FeedState, folder: Path) -> RowKeys | str:
    found = state.get(ROWKEYS)
    if not isinstance(found, dict) or not {"token", "count", "digest"} <= found.keys():
        return "the state file does not describe one (none written since its records last changed)"
    if not isinstance(found["count"], int) or found["count"] < 0 or not isinstance(found["token"], str):
        return "the state file's description of it is not one streambatch wrote"
    path = folder / NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return f"{path} is missing"
    except OSError as exc:
        return f"{path}: a symbolic link" if path.is_symlink() else f"{path}: cannot be opened ({exc.strerror})"
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        count = found["count"]
        if not stat.S_ISREG(st.st_mode):
            return f"{path}: not a regular file"
        if st.st_size != size(count):
            return f"{path}: {st.st_size} bytes, not the {size(count)} of {count:,} keys (truncated or replaced)"
        header = fh.read(_HEADER)
        digest = xxhash.xxh3_128(header)
        if header[:len(MAGIC)] != MAGIC:
            return f"{path}: not a streambatch row key file of this version"
        if header[len(MAGIC):].hex() != found["token"]:
            return f"{path}: written for another state (its token differs)"
        keys, checks = array("Q"), array("I")
        for part, width in ((keys, 8), (checks, 4)):
            while len(part) < count:
                data = fh.read(width * min(_CHUNK, count - len(part)))
                if not data:
                    return f"{path}: shorter than it was"
                digest.update(data)
                part.frombytes(data)
        if digest.hexdigest() != found["digest"]:
            return f"{path}: its content differs from what was written (damaged or replaced)"
    known = state.known_count()
    if known != count:
        return f"the state file has {known:,} record(s) to recognise, the file {count:,} key(s)"
    if sys.byteorder != "little":  # the file is little-endian
        keys.byteswap()
        checks.byteswap()
    return RowKeys(keys, checks, found)


def write(state: FeedState, folder: Path) -> int:
    """Write the keys the state knows now (:meth:`FeedState.known_raws`, in order) and describe
    the file in the state; returns how many."""
    return _write(state, folder, state.known_raws())


def write_keys(state: FeedState, folder: Path, raws: Iterable[bytes]) -> int:
    """Write ``raws``, in any order, as the key file and describe it in the state; returns how
    many (:func:`write` streams the state's keys in order instead of sorting them here)."""
    return _write(state, folder, sorted(raws))


def _write(state: FeedState, folder: Path, raws: Iterable[bytes]) -> int:
    """Write ``raws``, in order, as the key file. Written to a temporary file (0600) and
    renamed over the old one, so a reader sees a whole file or none. The prefixes are written
    as they come, the checks to an unnamed temporary file appended after them: a few MB are
    held, whatever the number of keys."""
    token = secrets.token_bytes(16)
    header = MAGIC + token
    digest = xxhash.xxh3_128(header)
    count = 0
    path, tmp = folder / NAME, folder / f"{NAME}.tmp"
    tmp.unlink(missing_ok=True)  # a leftover (or a link put there): removed, never followed
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    it = iter(raws)
    with os.fdopen(fd, "wb") as fh, tempfile.TemporaryFile(dir=folder) as checks:
        fh.write(header)
        while chunk := list(islice(it, _CHUNK)):
            prefixes, lows = array("Q"), array("I")
            prefixes.frombytes(b"".join([raw[:8] for raw in chunk]))  # big-endian: made little-endian below
            lows.frombytes(b"".join([raw[8:12] for raw in chunk]))
            prefixes.byteswap()  # on either byte order, big-endian bytes become the file's little-endian
            lows.byteswap()
            fh.write(prefixes)
            digest.update(prefixes)
            checks.write(lows)
            count += len(chunk)
        checks.seek(0)
        while part := checks.read(1 << 22):
            fh.write(part)
            digest.update(part)
    os.replace(tmp, path)  # replaces a link at ``path`` itself, never its target
    state.put(ROWKEYS, {"token": token.hex(), "count": count, "digest": digest.hexdigest()})
    return count


def keep(state: FeedState, keys: RowKeys) -> None:
    """Describe the file loaded as ``keys`` in the state again: after a cycle that recognised
    every row by it and changed none of the records it lists (a file replaced since it was
    loaded is caught by its digest when the next cycle loads it)."""
    state.put(ROWKEYS, keys.description)
