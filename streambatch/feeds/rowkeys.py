"""The row keys a feed's state knows, kept as a sorted file: an unchanged row is recognised
without a query.

A row the state file knows as it was (its ``raw`` key, see :mod:`streambatch.feeds.state`) is
unchanged, so a cycle need not map or check it. Looking each key up in SQLite costs more than
reading the row; instead, a cycle whose job was confirmed writes the keys the state then knows
-- those :meth:`FeedState.lookup_raw` would find: confirmed, present, listed once -- to
``rowkeys.bin`` in the feed's state folder (0600), sorted, and the next cycle loads them into an
``array`` of 64-bit integers (the first 8 bytes of each key: 8 bytes a row, 80 MB for
10,000,000 rows) searched with :mod:`bisect` from a range index. Keys whose record's own expiry passed or whose
keep-alive is due are taken out when the cycle starts (:meth:`RowKeys.exclude`); unknown keys
go to SQLite as before.

The file is trusted only as the state file describes it (meta ``rowkeys``: a random token
that is also in the file's header, the number of keys and the digest of the whole file).
Every change to the records of the state removes that description (see
:meth:`FeedState._stale`), so a file written before an interrupted or failed cycle, a cycle of
another streambatch, a copy from another feed, a truncated or damaged file, or a symbolic link
is not trusted: the cycle says why at debug level, looks its keys up in SQLite, and writes the
file again when its job is confirmed. A key recognised here is marked seen by the key itself
and turned into its record's identity in SQLite (:meth:`FeedState.settle_seen_raw`), which
also catches the one way a 64-bit prefix could mislead: a key the state does not have.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path

import xxhash

from .state import ROWKEYS, FeedState

log = logging.getLogger("streambatch.feeds")

NAME = "rowkeys.bin"
MAGIC = b"SBRK\x01\x00\x00\x00"  # a streambatch row key file, version 1
_HEADER = len(MAGIC) + 16  # the magic and the token
_CHUNK = 1 << 20  # keys read at a time: the file is never held twice in memory
_RANGE_BITS = 12  # sorting a file's keys: 4,096 ranges


def prefix(raw: bytes) -> int:
    """The 64-bit integer a key is kept as: its first 8 bytes, big-endian."""
    return int.from_bytes(raw[:8], "big")


class RowKeys:
    """The keys a cycle may take as known (:func:`load`)."""

    def __init__(self, keys: array, description: dict) -> None:
        self.keys = keys
        self.description = description  # as the state file has it
        self.excluded: set[int] = set()
        # where each range of the top bits starts: keys are hashes, spread evenly, so a search
        # starts in a range of ~64 keys instead of all of them (fewer steps, fewer cache misses)
        self.shift = 64 - max(0, min(20, (len(keys) // 64).bit_length()))
        self.starts = array("Q", (bisect_left(keys, b << self.shift) for b in range((1 << (64 - self.shift)) + 1))) \
            if self.shift < 64 else array("Q", [0, len(keys)])

    def __len__(self) -> int:
        return len(self.keys)

    def exclude(self, raws: Iterable[bytes]) -> None:
        """Keys the state knows but a cycle must check in full (expiry passed, keep-alive due)."""
        self.excluded.update(prefix(raw) for raw in raws)

    def known(self, raws: list[bytes]) -> list[bool]:
        """For each key, whether it is known."""
        keys, excluded, n, starts, shift = self.keys, self.excluded, len(self.keys), self.starts, self.shift
        out = []
        for raw in raws:
            k = int.from_bytes(raw[:8], "big")
            b = k >> shift
            i = bisect_left(keys, k, starts[b], starts[b + 1])
            out.append(i < n and keys[i] == k and k not in excluded)
        return out


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
        if st.st_size != _HEADER + 8 * count:
            return f"{path}: {st.st_size} bytes, not the {_HEADER + 8 * count} of {count:,} keys (truncated or replaced)"
        header = fh.read(_HEADER)
        digest = xxhash.xxh3_128(header)
        if header[:len(MAGIC)] != MAGIC:
            return f"{path}: not a streambatch row key file"
        if header[len(MAGIC):].hex() != found["token"]:
            return f"{path}: written for another state (its token differs)"
        keys = array("Q")
        while len(keys) < count:
            part = fh.read(8 * min(_CHUNK, count - len(keys)))
            if not part:
                return f"{path}: shorter than it was"
            digest.update(part)
            keys.frombytes(part)
        if digest.hexdigest() != found["digest"]:
            return f"{path}: its content differs from what was written (damaged or replaced)"
    if sys.byteorder != "little":  # the file is little-endian
        keys.byteswap()
    return RowKeys(keys, found)


def write(state: FeedState, folder: Path) -> int:
    """Write the keys the state knows now (:meth:`FeedState.known_raws`) and describe the file
    in the state; returns how many."""
    return write_keys(state, folder, state.known_raws())


def write_keys(state: FeedState, folder: Path, raws: Iterable[bytes]) -> int:
    """Write ``raws`` as the key file and describe it in the state; returns how many. Written
    to a temporary file (0600) and renamed over the old one, so a reader sees a whole file or
    none. The keys are put in ranges by their top bits (hashes fill them evenly) and each
    range is sorted and written alone: they are held once, as 8 bytes each, never as one list
    of Python ints (~36 bytes a key) nor twice."""
    shift = 64 - _RANGE_BITS
    ranges = [array("Q") for _ in range(1 << _RANGE_BITS)]
    for raw in raws:
        k = int.from_bytes(raw[:8], "big")
        ranges[k >> shift].append(k)
    token = secrets.token_bytes(16)
    header = MAGIC + token
    digest = xxhash.xxh3_128(header)
    count = 0
    path, tmp = folder / NAME, folder / f"{NAME}.tmp"
    tmp.unlink(missing_ok=True)  # a leftover (or a link put there): removed, never followed
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(header)
        for i, part in enumerate(ranges):
            ranges[i] = array("Q")
            part = array("Q", sorted(part))
            if sys.byteorder != "little":  # the file is little-endian
                part.byteswap()
            fh.write(part)
            digest.update(part)
            count += len(part)
    os.replace(tmp, path)  # replaces a link at ``path`` itself, never its target
    state.put(ROWKEYS, {"token": token.hex(), "count": count, "digest": digest.hexdigest()})
    return count


def keep(state: FeedState, keys: RowKeys) -> None:
    """Describe the file loaded as ``keys`` in the state again: after a cycle that recognised
    every row by it and changed none of the records it lists (a file replaced since it was
    loaded is caught by its digest when the next cycle loads it)."""
    state.put(ROWKEYS, keys.description)
