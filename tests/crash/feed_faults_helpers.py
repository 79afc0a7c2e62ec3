"""Helpers for tests/crash/test_feed_faults.py: a CSV feed that changes by generations, what
the emulator must hold for it, running the ``streambatch`` command, and file checks.

The feed is a CSV file with the columns ``type,value,rating,note,tags``. Its rows are Address
and Host values, some listed on several rows (hosts spelled in upper case on one of them: the
same record once canonicalized), and invalid rows (bad addresses, bad host names, ratings out
of range, empty values). The expected record of a value is computed from its valid rows in
file order: the union of their tags, the last row's rating, and one Description (the note is
the same on every row of a value).
"""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

OWNER = "Demo Organization"

CONFIG_TEMPLATE = """\
source = "{source}"
format = "csv"
owner = "{owner}"
schedule = "{schedule}"

[batch]
max_records = {max_records}
poll_interval = 0.02

[mapping]
type = "type"
value = "value"
rating = "rating"
description = "note"
tags = {{ columns = ["tags"], separator = ";" }}
"""


def write_config(path: Path, source: str, owner: str = OWNER, schedule: str = "1h", max_records: int = 300) -> Path:
    path.write_text(CONFIG_TEMPLATE.format(source=source, owner=owner, schedule=schedule, max_records=max_records),
                    encoding="utf-8")
    return path


@dataclass
class Expected:
    """One value's merged record, from its valid rows."""

    type: str
    summary: str  # canonical
    note: str
    tags: set[str] = field(default_factory=set)
    rating: float | None = None
    rows: int = 0


class Feed:
    """A CSV feed file and the records it should land as. ``prefix`` keeps the values of two
    feeds apart (one of 0-255, used in the addresses and host names)."""

    def __init__(self, path: Path, rng: random.Random, prefix: int = 10) -> None:
        self.path = path
        self.rng = rng
        self.prefix = prefix
        self.rows: list[list[str]] = []  # type, value as spelled, rating, note, tags
        self.keys: list[tuple[str, str] | None] = []  # each row's (type, canonical value); None: invalid
        self.expected: dict[tuple[str, str], Expected] = {}
        self.generation = 0
        self._next = 0  # the next value number

    # -- values --------------------------------------------------------------------------

    def _value(self, n: int) -> tuple[str, str]:
        """(type, canonical value) of value number n."""
        if n % 3 == 2:
            return "Host", f"h{n}.g{self.prefix}.feed.example"
        return "Address", f"{self.prefix}.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"

    def _insert(self, row: list[str], key: tuple[str, str] | None) -> None:
        at = self.rng.randrange(len(self.rows) + 1)
        self.rows.insert(at, row)
        self.keys.insert(at, key)

    def _bad_row(self, i: int) -> list[str]:
        g = self.generation % 256
        kind = i % 4
        if kind == 0:
            return ["Address", f"{self.prefix}.300.{i % 256}.{g}", "1", "bad address", "bad"]
        if kind == 1:
            return ["Host", f"bad host {i}.g{self.prefix}", "1", "bad host", "bad"]
        if kind == 2:  # a good value with a rating out of range: the row is rejected
            return ["Address", f"{self.prefix}.250.{i % 256}.{g}", "9", "bad rating", "bad"]
        return ["Host", "", "1", "no value", "bad"]

    # -- generations ---------------------------------------------------------------------

    def grow(self, new: int, repeated_share: float = 0.08, invalid: int = 40, more_of_repeated: int = 0,
             change_share: float = 0.0) -> None:
        """Write the next generation of the feed (the file is replaced):

        * ``change_share`` of the values get a new revision: their rows' ``rev-*`` tag is
          replaced by this generation's (and a new rating), so the records change;
        * ``new`` values are added, ``repeated_share`` of them on 2-4 rows (hosts spelled in
          upper case on their second row: the same record once canonicalized);
        * ``more_of_repeated`` values that are already on several rows get one row more;
        * ``invalid`` bad rows are added.

        New rows go to random places; the expected records follow the file's final order."""
        rng = self.rng
        g = self.generation
        if change_share and self.expected:
            changed = set(rng.sample(sorted(self.expected), int(len(self.expected) * change_share)))
            for row, key in zip(self.rows, self.keys):
                if key in changed:
                    row[4] = ";".join([t for t in row[4].split(";") if not t.startswith("rev-")] + [f"rev-{g}"])
                    row[2] = str(rng.randint(0, 5))
        if more_of_repeated:
            multi = sorted(k for k, e in self.expected.items() if e.rows > 1)
            for key in rng.sample(multi, min(more_of_repeated, len(multi))):
                exp = self.expected[key]
                self._insert([key[0], key[1], str(rng.randint(0, 5)), exp.note, f"feed;more-{g}"], key)
        for _ in range(new):
            n = self._next
            self._next += 1
            itype, canonical = self._value(n)
            note = f"note for {canonical}"
            occurrences = rng.randint(2, 4) if rng.random() < repeated_share else 1
            for k in range(occurrences):
                spelled = canonical.upper() if itype == "Host" and k == 1 else canonical
                tags = ["feed", f"grp-{n % 7}"] + ([f"occ-{k}"] if occurrences > 1 else [])
                self._insert([itype, spelled, str(rng.randint(0, 5)), note, ";".join(tags)], (itype, canonical))
        for i in range(invalid):
            self._insert(self._bad_row(len(self.rows) + i), None)
        self.generation += 1
        self._write()

    def _write(self) -> None:
        self.expected = {}
        for row, key in zip(self.rows, self.keys):
            if key is None:
                continue
            exp = self.expected.setdefault(key, Expected(key[0], key[1], row[3]))
            assert exp.note == row[3]
            exp.tags.update(t for t in row[4].split(";") if t)
            exp.rating = float(row[2])  # the last row's
            exp.rows += 1
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["type", "value", "rating", "note", "tags"])
        writer.writerows(self.rows)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, self.path)

    @property
    def invalid(self) -> int:
        return sum(1 for k in self.keys if k is None)

    @property
    def distinct(self) -> int:
        return len(self.expected)


# -- running the command -------------------------------------------------------------------


def env_for(tc) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_"))}
    env.update(TC_API_PATH=tc.url, TC_API_ACCESS_ID=tc.access_id, TC_API_SECRET_KEY=tc.secret_key)
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "streambatch.cli", *args]


# -- checks --------------------------------------------------------------------------------


def integrity_problems(folders: list[Path]) -> list[str]:
    """``PRAGMA integrity_check`` of every ``*.sqlite`` in ``folders`` (recursively), run on a
    copy (the file and its -wal), so that checking never checkpoints or repairs the real file
    before the library opens it again. Returns the problems found."""
    problems = []
    for folder in folders:
        for db in sorted(folder.rglob("*.sqlite")):
            with tempfile.TemporaryDirectory(prefix="integrity-") as tmp:
                copy = Path(tmp) / db.name
                try:
                    shutil.copyfile(db, copy)
                    wal = Path(str(db) + "-wal")
                    if wal.exists():
                        shutil.copyfile(wal, Path(str(copy) + "-wal"))
                except FileNotFoundError:
                    continue  # removed meanwhile (a pruned job file)
                try:
                    conn = sqlite3.connect(copy)
                    try:
                        result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
                    finally:
                        conn.close()
                except sqlite3.DatabaseError as exc:
                    result = [f"cannot open: {exc}"]
                if result != ["ok"]:
                    problems.append(f"{db}: {'; '.join(result[:5])}")
    return problems


def landed_problems(tc, owner: str, feeds: list[Feed], limit: int = 20) -> list[str]:
    """What the emulator's store holds for ``owner`` that differs from ``feeds``' expected
    records: missing, extra, wrong tags, rating or attributes (at most ``limit`` lines)."""
    expected: dict[tuple[str, str], Expected] = {}
    for feed in feeds:
        expected.update(feed.expected)
    store = tc.store
    problems: list[str] = []
    count = store.count(owner, "indicator")
    if count != len(expected):
        problems.append(f"{owner}: {count} indicators in the store, expected {len(expected)}")
    got = {(i["type"], i["summary"]): i for i in store.indicators(owner)}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing:
        problems.append(f"{len(missing)} missing, e.g. {missing[:5]}")
    if extra:
        problems.append(f"{len(extra)} extra, e.g. {extra[:5]}")
    if store.count(owner, "group"):
        problems.append(f"{store.count(owner, 'group')} unexpected groups")
    for key, exp in sorted(expected.items()):
        if len(problems) >= limit:
            break
        rec = got.get(key)
        if rec is None:
            continue
        tags = sorted(t["name"] for t in rec.get("tag", []))
        if tags != sorted(exp.tags):
            problems.append(f"{key}: tags {tags}, expected {sorted(exp.tags)} ({exp.rows} rows)")
        attrs = [(a["type"], a["value"]) for a in rec.get("attribute", [])]
        if attrs != [("Description", exp.note)]:
            problems.append(f"{key}: attributes {attrs}, expected one Description {exp.note!r}")
        rating = rec.get("rating")
        if rating is None or float(rating) != exp.rating:
            problems.append(f"{key}: rating {rating!r}, expected {exp.rating} (the last row's)")
    return problems


def spot_check(tc, owner: str, feed: Feed, rng: random.Random, n: int = 25) -> list[str]:
    """``store.indicator(owner, type, value)`` for a sample of values, looked up as the feed
    spells them (upper-case hosts included): each must be found with its canonical summary."""
    problems = []
    keys = rng.sample(sorted(feed.expected), min(n, len(feed.expected)))
    for itype, summary in keys:
        for spelled in {summary, summary.upper() if itype == "Host" else summary}:
            rec = tc.store.indicator(owner, itype, spelled)
            if rec is None or rec["summary"] != summary:
                problems.append(f"store.indicator({itype!r}, {spelled!r}) -> {rec and rec['summary']!r}")
    return problems
