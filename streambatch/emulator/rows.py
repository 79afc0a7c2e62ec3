"""The indicator rows of one processing chunk: read with a few statements, written with a few.

The processor takes a job's indicators a chunk at a time (500 items, one transaction). Instead
of a lookup and an insert or update per item, :class:`ChunkRows` reads every row the chunk's
items can touch at once (one ``key IN (...)`` query per indicator type, one query for the File
hashes), serves the items' lookups from memory as they go, and writes the rows they changed at
the end with ``executemany``. Items see each other's changes exactly as if each had been read
and written on its own:

* a new row takes the id SQLite would have given it at that moment (one above the largest), so
  associations and merges see the same ids;
* its ``modified`` time is the time of its ``put``, so File merges pick the same primary;
* deleting a row (a File merge) first writes everything pending, then deletes at once;
* a File row whose key changes is written at once, so no batch holds two key changes that could
  pass through a transient clash with the ``(owner, type, key)`` constraint.
"""

from __future__ import annotations

import time
from typing import Any

from .store import Store


class ChunkRows:
    """One chunk's reads and writes of the ``ind`` table (see the module docstring)."""

    def __init__(self, store: Store, owner: str) -> None:
        self.store = store
        self.owner = owner
        self._by_key: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._files: dict[int, dict[str, Any]] = {}
        self._by_hash: dict[str, set[int]] = {}
        self._indexed: dict[int, tuple[str, ...]] = {}  # id -> the hash values it is found by
        self._loaded_hashes: set[str] = set()
        self._keys: dict[int, str] = {}  # id -> key as the database holds it
        self._dirty: dict[int, dict[str, Any]] = {}
        self._new: set[int] = set()
        self._next_id: int | None = None

    # ---------------------------------------------------------------------------- reading

    def load(self, wanted: list[tuple[str, str, dict[str, str] | None]]) -> None:
        """Read at once the rows of ``(type, key, hashes)`` (hashes for Files, else None)."""
        keys: dict[str, set[str]] = {}
        values: set[str] = set()
        for itype, key, hashes in wanted:
            if hashes is not None:
                values.update(hashes.values())
            elif (itype, key) not in self._by_key:
                keys.setdefault(itype, set()).add(key)
        for itype, some in keys.items():
            for k in some:
                self._by_key[(itype, k)] = None
            for rec in self.store.find_indicators(self.owner, itype, sorted(some)):
                self._by_key[(itype, rec["key"])] = rec
                self._keys[rec["id"]] = rec["key"]
        self._load_hashes(values)

    def _load_hashes(self, values: set[str]) -> None:
        values = values - self._loaded_hashes
        if not values:
            return
        self._loaded_hashes |= values
        for rec in self.store.find_files_with(self.owner, sorted(values)):
            if rec["id"] not in self._files:  # a row already here is the newer version
                self._files[rec["id"]] = rec
                self._keys[rec["id"]] = rec["key"]
                self._index(rec)

    def _index(self, rec: dict[str, Any]) -> None:
        self._indexed[rec["id"]] = tuple(rec["hashes"].values())
        for value in self._indexed[rec["id"]]:
            self._by_hash.setdefault(value, set()).add(rec["id"])

    def _unindex(self, rec_id: int) -> None:
        for value in self._indexed.pop(rec_id, ()):
            self._by_hash[value].discard(rec_id)

    def find_indicator(self, itype: str, key: str) -> dict[str, Any] | None:
        """The row of a (non-File) indicator, or None."""
        if (itype, key) not in self._by_key:
            self.load([(itype, key, None)])
        return self._by_key[(itype, key)]

    def find_files(self, hashes: dict[str, str]) -> list[dict[str, Any]]:
        """The File rows holding any of ``hashes``' values, by id (as :meth:`Store.find_files`)."""
        self._load_hashes(set(hashes.values()))
        ids: set[int] = set()
        for value in hashes.values():
            ids |= self._by_hash.get(value, set())
        return [self._files[i] for i in sorted(ids)]

    # ---------------------------------------------------------------------------- writing

    def put(self, rec: dict[str, Any]) -> None:
        """Save a row (a new one has no ``id`` and receives one); written by :meth:`flush`."""
        rec["modified"] = time.time()
        if rec.get("id") is None:
            if self._next_id is None:
                self._next_id = self.store.next_indicator_id()
            rec["id"] = self._next_id
            self._next_id += 1
            self._new.add(rec["id"])
        self._dirty[rec["id"]] = rec
        if rec["type"] != "File":
            self._by_key[(rec["type"], rec["key"])] = rec
            return
        self._unindex(rec["id"])
        self._files[rec["id"]] = rec
        self._index(rec)
        if rec["id"] not in self._new and self._keys.get(rec["id"]) != rec["key"]:
            self.flush()

    def delete(self, indicator_id: int, move_links_to: int | None = None) -> None:
        """Remove a File row now (its associations moved to ``move_links_to`` first)."""
        self.flush()
        self.store.delete_indicator(indicator_id, move_links_to=move_links_to)
        self._unindex(indicator_id)
        self._files.pop(indicator_id, None)
        self._keys.pop(indicator_id, None)
        self._next_id = None  # the largest id may have gone

    def flush(self) -> None:
        """Write every row put since the last flush: updates first, then inserts."""
        if not self._dirty:
            return
        rows = list(self._dirty.values())
        self.store.write_indicators([r for r in rows if r["id"] not in self._new],
                                    [r for r in rows if r["id"] in self._new])
        for rec in rows:
            self._keys[rec["id"]] = rec["key"]
        self._dirty.clear()
        self._new.clear()
