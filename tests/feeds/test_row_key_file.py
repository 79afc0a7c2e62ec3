"""The row key file (:mod:`streambatch.feeds.rowkeys`): unchanged rows recognised without a
query. A cycle with the file leaves the same state, the same counts and sends the same records
as one that looks every key up in the state file; a file the state does not vouch for (stale,
truncated, foreign, a link, holding a key the state does not have) is not trusted, and is
written again."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import stat
from array import array
from pathlib import Path

from feed_cli import emulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streambatch.feeds import rowkeys
from streambatch.feeds.config import FeedConfig
from streambatch.feeds.state import COUNTS, ROWKEYS, FeedState
from streambatch.feeds.worker import CycleStats, FeedRunner

VALUES = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "evil.example.com", "bad.example.org",
          "http://x.example.com/a", "not a value !!"]
CSV = """source = "feed.csv"
format = "csv"
owner = "Demo Organization"
removed = "inactive"
[mapping]
value = "value"
rating = "rating"
tags = { columns = ["tags"], separator = ";" }
[batch]
poll_interval = 0.02
"""
# expiry and keep-alive: a row's own expiry (some pass as the cycles go by, an hour apart) and
# keep-alives due for some records each cycle
LIFE = CSV.replace('removed = "inactive"\n', 'removed = "inactive"\nexpires = "4h"\nkeep_alive = "2h"\n').replace(
    'rating = "rating"\n', 'rating = "rating"\nexpires = "until"\n')
UNTIL = ["", "2030-03-17T18:30:00Z", "2030-03-17T20:30:00Z", "2030-03-18T00:00:00Z"]
# records a reader gives whole (known by the hash of the record, not a row key)
JSONL = """source = "feed.jsonl"
format = "jsonl"
owner = "Demo Organization"
removed = "inactive"
[batch]
poll_interval = 0.02
"""
TEXT = """source = "feed.txt"
format = "text"
owner = "Demo Organization"
removed = "inactive"
[batch]
poll_interval = 0.02
"""
SENT = ("key, kind, type, ident, xid, hash, pending, seen, missing_since, raw, pending_raw, multi, absent, retired, "
        "sent_at, expires_at")
NOW = 1_900_000_000.0


def _type(value: str) -> str:
    return "Address" if value[0].isdigit() else "URL" if value.startswith("http") else "Host"


def _write(folder: Path, fmt: str, rows: list[tuple[str, int, str]], blank: bool) -> Path:
    if fmt == "life":
        body = "value,rating,tags,until\n" + "".join(f"{v},{r},{t},{UNTIL[(r + len(v)) % 4]}\n" for v, r, t in rows)
        (folder / "feed.csv").write_text(body + ("\n" if blank else ""))
    elif fmt == "jsonl":
        body = "".join(json.dumps({"type": _type(v), "summary": v, "rating": r,
                                   **({"tag": [{"name": x} for x in t.split(";")]} if t else {})}) + "\n"
                       for v, r, t in rows)
        (folder / "feed.jsonl").write_text(body + ("\n" if blank else ""))
    elif fmt == "csv":
        body = "value,rating,tags\n" + "".join(f"{v},{r},{t}\n" for v, r, t in rows)
        (folder / "feed.csv").write_text(body + ("\n" if blank else ""))
    else:
        (folder / "feed.txt").write_text("".join(f"{v}\n" for v, _r, _t in rows) + ("\n" if blank else ""))
    cfg = folder / "feed.toml"
    cfg.write_text({"csv": CSV, "life": LIFE, "text": TEXT, "jsonl": JSONL}[fmt])
    return cfg


def _cycle(cfg: Path, client, now: float, fast: bool) -> CycleStats:
    runner = FeedRunner(FeedConfig.load(cfg), client, clock=lambda: now)
    runner.row_key_file = fast
    return runner.run_cycle()


def _state(cfg: Path) -> list[tuple]:
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        return state.conn.execute(f"SELECT {SENT} FROM sent ORDER BY key, kind, type, ident").fetchall()
    finally:
        state.close()


def _staged(cfg: Path) -> list[tuple]:
    """What the newest run's job file held: its records and its rejected rows."""
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        job = state.runs(1)[0]["job"]
        path = state.job_path(job) if job else None
    finally:
        state.close()
    if path is None or not path.exists():
        return []
    conn = sqlite3.connect(path)
    try:
        return (conn.execute("SELECT 'i', type, summary, body FROM indicators ORDER BY type, summary").fetchall()
                + conn.execute("SELECT 'r', line, reason FROM rejected ORDER BY line, reason").fetchall())
    finally:
        conn.close()


def _debug(folder: Path) -> tuple[list, list[str]]:
    """The last runs of a feed and the files of its state folder (shown when a cycle differs)."""
    state = FeedState(FeedConfig.load(folder / "feed.toml").state_dir / "state.sqlite")
    try:
        return ([(r["id"], r["job"], r["status"], r["message"]) for r in state.runs(3)],
                sorted(p.name for p in state.path.parent.iterdir()))
    finally:
        state.close()


ROW = st.tuples(st.sampled_from(VALUES), st.sampled_from([1, 2, 3]), st.sampled_from(["a", "a;b", ""]))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["csv", "text", "life", "jsonl"]),
       feeds=st.lists(st.lists(ROW, max_size=10), min_size=2, max_size=5))
def test_cycles_with_the_file_match_cycles_that_look_every_key_up(tmp_path_factory, fmt, feeds) -> None:
    # rows are added, changed (another rating or tags), removed, repeated and reordered between cycles
    root = tmp_path_factory.mktemp("rowkeys")
    fast_dir, slow_dir = root / "fast", root / "slow"
    fast_dir.mkdir()
    slow_dir.mkdir()
    with emulator(root) as (_tc, client):
        for i, rows in enumerate(feeds):
            now = NOW + 3600 * i
            outcomes = []
            for folder, fast in ((fast_dir, True), (slow_dir, False)):
                cfg = _write(folder, fmt, rows, blank=i % 2 == 1)
                stats = _cycle(cfg, client, now, fast)
                assert stats.status == "done", stats.message
                outcomes.append(({k: getattr(stats, k) for k in COUNTS}, _state(cfg), _staged(cfg)))
            assert outcomes[0] == outcomes[1], f"cycle {i}: {rows} {_debug(fast_dir)} {_debug(slow_dir)}"
    assert (FeedConfig.load(fast_dir / "feed.toml").state_dir / rowkeys.NAME).exists()
    assert not (FeedConfig.load(slow_dir / "feed.toml").state_dir / rowkeys.NAME).exists()


# -- the file and when it is trusted ---------------------------------------------------------------


def _feed(folder: Path, n: int, changed: int = -1) -> Path:
    rows = [(f"10.1.{i // 256}.{i % 256}", 3 if i == changed else 1, "t") for i in range(n)]
    return _write(folder, "csv", rows, blank=False)


def _rowkeys(cfg: Path) -> Path:
    return FeedConfig.load(cfg).state_dir / rowkeys.NAME


def _description(cfg: Path):
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        return state.get(ROWKEYS)
    finally:
        state.close()


def _other_bytes(cfg: Path) -> None:
    """The same rows in other bytes: the source is read again, every row unchanged."""
    with open(cfg.parent / "feed.csv", "a") as fh:
        fh.write("\n")


def test_the_file_is_private_sorted_and_recognises_every_unchanged_row(tmp_path: Path, caplog) -> None:
    cfg = _feed(tmp_path, 50)
    with emulator(tmp_path) as (_tc, client):
        first = _cycle(cfg, client, NOW, True)
        assert (first.status, first.new) == ("done", 50)
        path = _rowkeys(cfg)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_size == rowkeys.size(50) == 24 + 12 * 50
        assert _description(cfg)["count"] == 50
        _other_bytes(cfg)
        with caplog.at_level(logging.DEBUG, logger="streambatch.feeds"):
            second = _cycle(cfg, client, NOW + 60, True)
        assert (second.status, second.unchanged, second.new, second.changed, second.sent) == ("done", 50, 0, 0, 0)
        assert "50 row keys loaded" in caplog.text
        assert "row key file not used" not in caplog.text
        assert _description(cfg)["count"] == 50  # kept: nothing it lists changed


def _spoiled_then_cycle(tmp_path: Path, caplog, spoil, expect: tuple[int, int] = (29, 1)
                        ) -> tuple[CycleStats, str, Path]:
    """A feed cycled once; ``spoil(cfg, path)`` done to its key file; one row changed and a
    cycle run: it must count exactly as without a file, say why at debug level, and write the
    file again."""
    cfg = _feed(tmp_path, 30)
    with emulator(tmp_path) as (_tc, client):
        assert _cycle(cfg, client, NOW, True).new == 30
        path = _rowkeys(cfg)
        spoil(cfg, path)
        _feed(tmp_path, 30, changed=7)
        with caplog.at_level(logging.DEBUG, logger="streambatch.feeds"):
            stats = _cycle(cfg, client, NOW + 60, True)
    unchanged, changed = expect
    assert (stats.status, stats.unchanged, stats.changed, stats.new, stats.sent) == ("done", unchanged, changed, 0,
                                                                                   changed)
    assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size == rowkeys.size(30) and _description(cfg)["count"] == 30  # written again
    return stats, caplog.text, path


def test_a_truncated_file_is_not_trusted(tmp_path: Path, caplog) -> None:
    def spoil(cfg: Path, path: Path) -> None:
        with open(path, "r+b") as fh:
            fh.truncate(rowkeys.size(10))

    _stats, text, _path = _spoiled_then_cycle(tmp_path, caplog, spoil)
    assert "row key file not used" in text and "truncated or replaced" in text


def test_a_damaged_file_is_not_trusted(tmp_path: Path, caplog) -> None:
    def spoil(cfg: Path, path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[-3] ^= 0xFF
        path.write_bytes(bytes(data))

    _stats, text, _path = _spoiled_then_cycle(tmp_path, caplog, spoil)
    assert "its content differs from what was written" in text


def test_a_file_of_another_feed_is_not_trusted(tmp_path: Path, caplog) -> None:
    other = tmp_path / "other"
    other.mkdir()
    other_cfg = _feed(other, 30)  # the same rows, so the same keys: only the token tells them apart

    def spoil(cfg: Path, path: Path) -> None:
        with emulator(other) as (_tc, client):
            assert _cycle(other_cfg, client, NOW, True).new == 30
        shutil.copyfile(_rowkeys(other_cfg), path)

    _stats, text, _path = _spoiled_then_cycle(tmp_path, caplog, spoil)
    assert "written for another state" in text


def test_a_stale_file_is_not_trusted(tmp_path: Path, caplog) -> None:
    # the file of an earlier cycle put back after a later cycle changed the records
    def spoil(cfg: Path, path: Path) -> None:
        old = path.read_bytes()
        _feed(cfg.parent, 30, changed=3)
        with emulator(cfg.parent / "e2") as (_tc, client):
            assert _cycle(cfg, client, NOW + 30, True).changed == 1
        path.write_bytes(old)

    (tmp_path / "e2").mkdir()
    _stats, text, _path = _spoiled_then_cycle(tmp_path, caplog, spoil, expect=(28, 2))  # row 3 back, row 7 changed
    assert "row key file not used" in text


def test_a_file_left_by_a_cycle_that_failed_is_not_trusted(tmp_path: Path, caplog) -> None:
    # the records change after the file was written (a cycle that stopped while reading): the
    # state no longer describes the file, even though the file itself is whole
    def spoil(cfg: Path, path: Path) -> None:
        state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
        try:
            state.begin_cycle()
        finally:
            state.close()

    _stats, text, _path = _spoiled_then_cycle(tmp_path, caplog, spoil)
    assert "the state file does not describe one" in text


def test_a_description_streambatch_did_not_write_is_not_trusted(tmp_path: Path, caplog) -> None:
    def spoil(cfg: Path, path: Path) -> None:
        state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
        try:
            state.put(ROWKEYS, {"token": 7, "count": "many", "digest": None})
        finally:
            state.close()

    _stats, text, _path = _spoiled_then_cycle(tmp_path, caplog, spoil)
    assert "not one streambatch wrote" in text


def test_a_symbolic_link_is_not_followed(tmp_path: Path, caplog) -> None:
    target = tmp_path / "elsewhere.bin"

    def spoil(cfg: Path, path: Path) -> None:
        shutil.copyfile(path, target)
        path.unlink()
        os.symlink(target, path)

    _stats, text, path = _spoiled_then_cycle(tmp_path, caplog, spoil)
    assert "a symbolic link" in text
    assert target.stat().st_size == rowkeys.size(30) and target.read_bytes() != path.read_bytes()  # the target untouched


def test_a_file_with_a_key_the_state_does_not_have_is_not_trusted(tmp_path: Path, caplog) -> None:
    # a file that claims a row the state never had: were it trusted, the new row would be taken
    # as unchanged and never sent
    cfg = _feed(tmp_path, 20)
    other = tmp_path / "other"
    other.mkdir()
    other_cfg = _feed(other, 21)  # the same config and one more row: its key is the new row's
    with emulator(tmp_path) as (_tc, client):
        assert _cycle(cfg, client, NOW, True).new == 20
        assert _cycle(other_cfg, client, NOW, True).new == 21
        extra = set(_raws(other_cfg)) - set(_raws(cfg))
        assert len(extra) == 1
        state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
        try:
            rowkeys.write_keys(state, FeedConfig.load(cfg).state_dir, sorted(set(_raws(cfg)) | extra))
        finally:
            state.close()
        _feed(tmp_path, 21)
        with caplog.at_level(logging.DEBUG, logger="streambatch.feeds"):
            stats = _cycle(cfg, client, NOW + 60, True)
        assert (stats.status, stats.new, stats.unchanged, stats.sent) == ("done", 1, 20, 1)
        assert "the state file has 20 record(s) to recognise, the file 21 key(s)" in caplog.text
        assert _description(cfg)["count"] == 21  # written again, from the state


def _raws(cfg: Path) -> list[bytes]:
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        return list(state.known_raws())
    finally:
        state.close()


KEY = st.binary(min_size=16, max_size=16)


def _loaded(raws: list[bytes]) -> rowkeys.RowKeys:
    """A file of ``raws`` as :func:`rowkeys.load` gives it (sorted by prefix, then check)."""
    pairs = sorted((rowkeys.prefix(r), rowkeys.check(r)) for r in raws)
    return rowkeys.RowKeys(array("Q", (k for k, _c in pairs)), array("I", (c for _k, c in pairs)), {})


class _Model:
    """What :class:`rowkeys.RowKeys` must do, written plainly: a key is recognised if the file
    has its prefix and check, no other key of the file has its prefix, and it was not taken out;
    each recognised key counts as read; the second occurrence of a key gives both, every later
    one itself."""

    def __init__(self, raws: list[bytes]) -> None:
        self.file = sorted((rowkeys.prefix(r), rowkeys.check(r)) for r in raws)  # two keys may share both
        prefixes = [k for k, _c in self.file]
        self.unique = {(k, c) for k, c in self.file if prefixes.count(k) == 1}
        self.count = {entry: 0 for entry in self.file}
        self.out: set[tuple[int, int]] = set()

    def _entry(self, raw: bytes) -> tuple[int, int] | None:
        entry = (rowkeys.prefix(raw), rowkeys.check(raw))
        return entry if entry in self.unique and entry not in self.out else None

    def see(self, raws: list[bytes]) -> tuple[list[int], list[bytes]]:
        unknown, again = [], []
        for j, raw in enumerate(raws):
            entry = self._entry(raw) if raw else None
            if entry is None:
                unknown.append(j)
            else:
                self.count[entry] += 1
                again += [raw] * {1: 0, 2: 2}.get(self.count[entry], 1)
        return unknown, again

    def take_out(self, raw: bytes) -> int:
        entry = self._entry(raw)
        if entry is None:
            return rowkeys.OUT
        self.out.add(entry)
        return min(self.count[entry], 2)  # UNREAD, ONCE or AGAIN

    def unread(self) -> list[int]:
        return [k for k, c in self.file if (k, c) in self.out or self.count[(k, c)] == 0]


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(KEY, max_size=300, unique=True), others=st.lists(KEY, max_size=50), spread=st.integers(0, 20),
       excluded=st.integers(0, 5), steps=st.lists(st.tuples(st.sampled_from(["see", "take_out"]),
                                                             st.lists(st.integers(0, 400), max_size=40)), max_size=8))
def test_keys_are_recognised_and_counted_as_the_plain_model_does(keys, others, spread, excluded, steps) -> None:
    # keys that share a prefix (``spread`` pairs, one of each pair also sharing the check) and
    # many keys put every branch and the ranges of the index to use
    shared = [bytes([b]) + bytes(15) for b in range(0, 256, 256 // (spread + 1))]
    keys = keys + shared + [k[:8] + bytes([k[8] ^ 1]) + k[9:] for k in shared[::2]] \
        + [k[:12] + b"\x01" + k[13:] for k in shared[1::2]]
    keys = list(dict.fromkeys(keys))
    found, model = _loaded(keys), _Model(keys)
    found.exclude(keys[:excluded])
    for raw in keys[:excluded]:
        model.take_out(raw)
    pool = keys + others + [b"\xff" * 16, bytes(16), b"", None]
    for op, picks in steps:
        asked = [pool[i % len(pool)] for i in picks]
        if op == "see":
            assert found.see(asked) == model.see(asked)
        else:
            assert [found.take_out(r) for r in asked if r] == [model.take_out(r) for r in asked if r]
    assert found.see(pool) == model.see(pool)
    assert list(found.unread()) == model.unread()


def test_many_keys_use_the_range_index() -> None:
    keys = sorted(os.urandom(16) for _ in range(20_000))
    found = _loaded(keys)
    assert found.shift < 64 and len(found.starts) > 2
    others = [os.urandom(16) for _ in range(2_000)]
    assert found.see(keys) == ([], [])
    assert found.see(others)[0] == [j for j, k in enumerate(others) if k[:12] not in {x[:12] for x in keys}]
    assert found.see(keys[:3]) == ([], [keys[0], keys[0], keys[1], keys[1], keys[2], keys[2]])
    assert list(found.unread()) == []
    assert found.take_out(keys[5]) == rowkeys.ONCE and list(found.unread()) == [rowkeys.prefix(keys[5])]


def test_the_file_holds_the_keys_sorted_with_their_checks(tmp_path: Path) -> None:
    state = FeedState(tmp_path / "state.sqlite")
    try:
        keys = [os.urandom(16) for _ in range(5_000)] + [bytes(16), b"\xff" * 16]
        assert rowkeys.write_keys(state, tmp_path, keys) == len(keys)
        data = (tmp_path / rowkeys.NAME).read_bytes()
        assert len(data) == rowkeys.size(len(keys)) and data[:8] == rowkeys.MAGIC
        prefixes, checks = array("Q"), array("I")
        prefixes.frombytes(data[24:24 + 8 * len(keys)])
        checks.frombytes(data[24 + 8 * len(keys):])
        assert list(zip(prefixes, checks)) == sorted((rowkeys.prefix(k), rowkeys.check(k)) for k in keys)
    finally:
        state.close()
