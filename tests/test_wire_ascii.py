"""What streambatch sends is ASCII JSON: names, tags and attributes in any script arrive intact
at a server that assumes another charset, and chunk sizes stay exact."""

from __future__ import annotations

import json
from pathlib import Path

from e2e_helpers import make_batch, tc  # noqa: F401

from streambatch import Batch
from streambatch.emulator import Emulator
from streambatch.wire import ascii_json

NAMES = ["Ångström Société", "Фишинг кампания", "釣魚キャンペーン", "phish 🎣 campaign", "plain ascii"]


def test_ascii_json_escapes_every_non_ascii_character() -> None:
    for name in NAMES + ["\u00e9\U0001F3A3\uffff"]:
        raw = json.dumps({"name": name}, ensure_ascii=False, separators=(",", ":")).encode()
        escaped = ascii_json(raw)
        assert escaped.isascii()
        assert json.loads(escaped) == {"name": name}
        assert escaped == json.dumps({"name": name}, ensure_ascii=True, separators=(",", ":")).encode()


def test_chunk_files_and_requests_are_ascii_and_land_intact(tc: Emulator, tmp_path: Path) -> None:
    with make_batch(tc, tmp_path / "job.sqlite", max_records=3) as batch:
        for i, name in enumerate(NAMES):
            adversary = batch.adversary(name, xid=f"adv-{i}")
            adversary.tag(f"tag {name}")
            adversary.attribute("Description", f"about {name}")
            batch.save(adversary)
            host = batch.host(f"h{i}.example.com")
            host.tag(name)
            batch.save(host)
        paths = batch.build()
        assert paths and all(p.read_bytes().isascii() for p in paths)
        sizes = dict(batch.job.conn.execute("SELECT path, bytes FROM chunks"))
        assert {str(p): p.stat().st_size for p in paths} == {str(k): v for k, v in sizes.items()}
        batch.submit_all()
    bodies = [r for r in tc.requests if r["path"].endswith("/createAndUpload")]
    assert bodies
    for i, name in enumerate(NAMES):
        group = tc.store.group(tc.owner, f"adv-{i}")
        assert group["name"] == name
        assert {t["name"] for t in group["tag"]} == {f"tag {name}"}
        assert [a["value"] for a in group["attribute"]] == [f"about {name}"]
        assert {t["name"] for t in tc.store.indicator(tc.owner, "Host", f"h{i}.example.com")["tag"]} == {name}


def test_byte_limit_counts_the_escaped_size(tmp_path: Path) -> None:
    with Batch("Org", tmp_path / "job.sqlite") as batch:
        for i in range(40):
            batch.save(batch.adversary(f"釣魚キャンペーン {i}", xid=f"a-{i}"))
        paths = batch.build(max_bytes=1000)
        assert len(paths) > 1
        for p in paths:
            data = p.read_bytes()
            assert data.isascii() and len(data) <= 1000
        assert sum(len(json.loads(p.read_bytes())["group"]) for p in paths) == 40
