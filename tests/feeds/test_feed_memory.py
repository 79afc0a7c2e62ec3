"""Readers stream: a large feed is read with flat memory."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

from streambatch.feeds import read_feed

LINES = 200_000


def _consume(gen) -> tuple[int, int, int]:
    good = bad = 0
    tracemalloc.start()
    try:
        for item in gen:  # count only: keep nothing
            if item.record is not None:
                good += 1
            else:
                bad += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return good, bad, peak


def test_200k_line_text_feed_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.txt.gz"
    with gzip.open(path, "wt", compresslevel=1) as fh:
        for i in range(LINES):
            fh.write(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n" if i % 1000 else "?? not an ioc\n")
    good, bad, peak = _consume(read_feed(path, "text", options={"tags": ["big"]}))
    assert good + bad == LINES and bad == LINES // 1000
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_csv_with_groups_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with open(path, "w") as fh:
        fh.write("ip,actor\n")
        for i in range(20_000):
            fh.write(f"10.0.{i >> 8 & 255}.{i & 255},actor{i % 5}\n")
    gen = read_feed(path, "csv", mapping={"value": "ip", "groups": [{"type": "Adversary", "name": "actor"}]},
                    options={"owner": "O"})
    good, bad, peak = _consume(gen)
    assert (good, bad) == (20_005, 0)  # 5 groups, once each
    assert peak < 20 * 1024 * 1024


def test_200k_item_json_feed_with_surrogate_escapes_flat_memory(tmp_path: Path) -> None:
    """The lone-surrogate guard in front of the JSON parser keeps memory flat too, with escaped
    pairs in every item and a lone surrogate in every 1000th."""
    path = tmp_path / "big.json.gz"
    with gzip.open(path, "wt", compresslevel=1) as fh:
        fh.write("[")
        for i in range(LINES):
            note = "half \\ud800" if i % 1000 == 0 else "smile \\ud83d\\ude00 \\\\ud800"
            fh.write(f'{"," if i else ""}{{"type": "Host", "summary": "h{i}.example.com", "description": "{note}"}}')
        fh.write("]")
    good, bad, peak = _consume(read_feed(path, "json"))
    assert good + bad == LINES and bad == LINES // 1000
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
