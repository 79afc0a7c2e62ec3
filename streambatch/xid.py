"""External ids (xids) and identity keys.

xids are random, reproducible, or made with the incumbent framework's scheme.

The reproducible scheme is frozen: changing it would make every rerun of every feed create
new groups instead of updating the old ones. ``tests/test_xid.py`` pins known values.

Reproducible xids are the 128-bit XXH3 digest (32 hex characters) of an unambiguous encoding of
the values: each value is turned into text with ``str()``, and the texts are encoded as a JSON
array (``["a-b"]`` and ``["a", "b"]`` differ). A single string is the one-element list, so
``generate_xid('x') == generate_xid(['x'])``; ``222`` and ``'222'`` give the same xid.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from typing import Literal

import orjson
import xxhash

Scheme = Literal["streambatch", "tcex"]


def generate_xid(values: str | Iterable[object] | None = None, scheme: Scheme = "streambatch") -> str:
    """Return an xid.

    - no values: a random UUID4 (``scheme='tcex'``: sha256 of a random UUID4, as tcex did);
    - a string or a list of values: a reproducible xid (see the module docstring);
    - ``scheme='tcex'``: the incumbent's reproducible scheme (sha256 hex of the string, or of
      the list's items joined with ``-`` hashed twice), so migrating apps keep updating the
      same groups.
    """
    if scheme == "tcex":
        return _tcex_xid(values)
    if scheme != "streambatch":
        raise ValueError(f"unknown xid scheme {scheme!r} (use 'streambatch' or 'tcex')")
    if values is None:
        return str(uuid.uuid4())
    parts = [values] if isinstance(values, str) else [str(v) for v in values]
    return xxhash.xxh3_128_hexdigest(orjson.dumps(parts))


def _tcex_xid(values: str | Iterable[object] | None) -> str:
    if values is None:
        text = str(uuid.uuid4())
    elif isinstance(values, str):
        text = values
    else:
        text = hashlib.sha256("-".join(str(v) for v in values).encode()).hexdigest()
    return hashlib.sha256(text.encode()).hexdigest()


def record_xid(owner: str, kind: str, type_name: str, identity: str) -> str:
    """The default xid of a record that was given none: stable per owner, type and identity.

    ``identity`` is a group's name or an indicator's canonical summary. The owner is part of the
    key because xids are unique across a whole ThreatConnect instance.
    """
    # generate_xid([owner, kind, type_name, identity]) without its checks: all four are str
    return xxhash.xxh3_128_hexdigest(orjson.dumps([owner, kind, type_name, identity]))


def hash64(data: bytes) -> int:
    """XXH3-64 as a signed integer, the form SQLite stores."""
    h = xxhash.xxh3_64_intdigest(data)
    return h - (1 << 64) if h >= (1 << 63) else h


def group_key(xid: str) -> int:
    """The identity key of a group in a job file: its xid."""
    return hash64(b"g\x00" + xid.encode())


def indicator_key(type_name: str, summary: str) -> int:
    """The identity key of an indicator in a job file: its type and canonical summary."""
    return hash64(b"i\x00" + type_name.encode() + b"\x00" + summary.encode())
