"""The raw input kept with a rejected record is bounded: the first 64 KiB of it and a marker
naming its whole size, never the whole of a 10 MB record; the reason, xid, type, field and line
are kept whole; `streambatch rejected` and `rejected --json` say the raw input was cut."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
from click.testing import CliRunner

from streambatch import Batch
from streambatch.cli import main
from streambatch.emulator import Emulator
from streambatch.store import RAW_MAX_BYTES, raw_cut

OWNER = "Demo Organization"


def rows(batch: Batch) -> list[dict]:
    batch._flush()
    cur = batch.job.conn.execute("SELECT line, xid, type, field, reason, raw FROM rejected ORDER BY id")
    return [dict(zip([d[0] for d in cur.description], r)) for r in cur.fetchall()]


def test_a_ten_megabyte_rejected_record_keeps_64_kib_and_its_size(tmp_path: Path) -> None:
    big = {"type": "Host", "summary": "bad.example.com", "xid": "big-one", "description": "é" * 5_000_000}
    whole = len(orjson.dumps(big))
    with Batch(OWNER, tmp_path / "job.sqlite") as batch:
        assert batch.save_all([big, {"type": "Host", "summary": "ok.example.com"}], on_error="reject") == 1
        [row] = rows(batch)
    assert row["xid"] == "big-one" and row["type"] == "Host" and row["field"] == "description"
    assert "longer than" in row["reason"]
    raw = row["raw"]
    assert len(raw.encode()) <= RAW_MAX_BYTES
    assert raw.startswith('{"type":"Host","summary":"bad.example.com","xid":"big-one","description":"ééé')
    assert raw_cut(raw) == (len(raw_cut_prefix(raw).encode()), whole)
    assert f"of {whole:,} bytes" in raw


def raw_cut_prefix(raw: str) -> str:
    return raw[:raw.rindex(" ...[")]


def test_small_raw_input_is_kept_whole_and_not_marked(tmp_path: Path) -> None:
    with Batch(OWNER, tmp_path / "job.sqlite") as batch:
        batch.save_all([{"type": "Host", "summary": "not a host!"}], on_error="reject")
        batch.reject("a reason", line=7, raw="x" * RAW_MAX_BYTES)  # exactly the limit: whole
        batch.reject("another", line=8, raw="y" * (RAW_MAX_BYTES + 1))
        first, exact, over = rows(batch)
    assert raw_cut(first["raw"]) is None and '"summary":"not a host!"' in first["raw"]
    assert exact["raw"] == "x" * RAW_MAX_BYTES and raw_cut(exact["raw"]) is None
    assert over["line"] == 8 and over["reason"] == "another"
    assert over["raw"].startswith("y" * 1000) and raw_cut(over["raw"])[1] == RAW_MAX_BYTES + 1
    assert len(over["raw"].encode()) <= RAW_MAX_BYTES


def test_the_job_file_store_bounds_raw_text_it_is_given(tmp_path: Path) -> None:
    with Batch(OWNER, tmp_path / "job.sqlite") as batch:
        batch.job.reject("direct", raw={"k": "z" * 200_000})
        raw = batch.job.conn.execute("SELECT raw FROM rejected").fetchone()[0]
    assert len(raw.encode()) <= RAW_MAX_BYTES and raw_cut(raw)[1] == 200_000 + len('{"k":""}')


def test_rejected_listing_and_json_show_the_cut(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    with Batch(OWNER, path) as batch:
        batch.save_all([{"type": "Host", "summary": "bad.example.com", "xid": "big", "description": "x" * 3_000_000},
                        {"type": "Host", "summary": "not a host!"}], on_error="reject")
    text = CliRunner().invoke(main, ["rejected", str(path)])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    big = next(line for line in lines if "big" in line)
    assert "raw (cut to the first 65,4" in big and "of 3,000," in big
    small = next(line for line in lines if "not a host" in line)
    assert "raw: {" in small and "cut" not in small
    listed = CliRunner().invoke(main, ["rejected", "--json", str(path)])
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["raw_truncated"] for r in records] == [True, False]
    assert records[0]["raw_bytes"] > 3_000_000 and records[0]["xid"] == "big"
    assert records[1]["raw_bytes"] == len(records[1]["raw"].encode())


def test_a_feed_item_of_megabytes_is_rejected_with_a_bounded_raw(tmp_path: Path) -> None:
    """Through `streambatch run` against the emulator: the huge bad item is in `rejected`, cut
    and marked; the good items were sent."""
    items = [{"type": "Host", "summary": "a.example.com"},
             {"type": "Host", "summary": "b.example.com", "tag": [{"name": "t" * 4_000_000}]},
             {"type": "Host", "summary": "c.example.com"}]
    (tmp_path / "feed.json").write_text(json.dumps(items))
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.json"\nformat = "json"\nowner = "{OWNER}"\n[batch]\npoll_interval = 0.02\n')
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_"))}
        env.update(TC_API_PATH=tc.url, TC_API_ACCESS_ID=tc.access_id, TC_API_SECRET_KEY=tc.secret_key)
        run = subprocess.run([sys.executable, "-m", "streambatch.cli", "run", str(cfg)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
        assert "rejected 1" in run.stdout + run.stderr, run.stdout + run.stderr
        assert tc.store.count(OWNER, "indicator") == 2
    listed = CliRunner().invoke(main, ["rejected", "--json", str(cfg)])
    [record] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert record["line"] == 2 and record["field"] == "tag" and record["raw_truncated"] is True
    assert record["raw_bytes"] > 4_000_000 and len(record["raw"].encode()) <= RAW_MAX_BYTES
