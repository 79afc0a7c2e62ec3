"""The chunker: exact limits, emission order, bookkeeping, crash consistency."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streambatch import Batch, ChunkError
from streambatch.chunker import EMPTY_SIZE, INDICATOR_LIMIT


def _read(path: Path) -> dict:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    pairs = json.loads(raw, object_pairs_hook=lambda p: p)
    assert [k for k, _ in pairs] == ["group", "indicator", "association"]  # order on the wire
    return orjson.loads(raw)


def _check_chunks(paths: list[Path], max_bytes: int, max_records: int, staged_groups: set[str]) -> dict:
    """Assert the limits and the order rules; return where each record went."""
    where: dict[str, int] = {}
    for n, path in enumerate(paths):
        assert path.stat().st_size <= max_bytes
        doc = _read(path)
        items = len(doc["group"]) + len(doc["indicator"]) + len(doc["association"])
        assert 0 < items <= max_records
        assert len(doc["indicator"]) <= INDICATOR_LIMIT
        for g in doc["group"]:
            assert g["xid"] not in where, "a group is in two chunks"
            where[g["xid"]] = n
        for g in doc["group"]:
            for ref in g.get("associatedGroupXid", []):
                if ref in staged_groups:
                    assert where.get(ref, n + 1) <= n, f"group {g['xid']} references {ref}, emitted later"
        for i in doc["indicator"]:
            key = i["type"] + "|" + i["summary"]
            assert key not in where, "an indicator is in two chunks"
            where[key] = n
            for ref in i.get("associatedGroups", []):
                if ref["groupXid"] in staged_groups:
                    assert where[ref["groupXid"]] <= n
        for a in doc["association"]:
            for side in (1, 2):
                ref, type_ = a.get(f"ref_{side}"), a.get(f"type_{side}")
                key = ref if type_ is None or type_ not in {"Address", "Host"} else f"{type_}|{ref}"
                if key in where:
                    assert where[key] <= n
            where.setdefault("assoc:" + orjson.dumps(a).decode(), n)
    return where


group_refs = st.lists(st.integers(min_value=0, max_value=29), max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n_groups=st.integers(min_value=0, max_value=30),
    refs=st.lists(group_refs, min_size=30, max_size=30),
    n_indicators=st.integers(min_value=0, max_value=300),
    n_assoc=st.integers(min_value=0, max_value=20),
    max_records=st.integers(min_value=1, max_value=80),
    max_bytes=st.integers(min_value=400, max_value=6000),
    external=st.booleans(),
)
def test_every_record_lands_once_within_limits_in_order(tmp_path_factory, n_groups, refs, n_indicators, n_assoc,
                                                        max_records, max_bytes, external) -> None:
    tmp = tmp_path_factory.mktemp("c")
    xids = [f"g-{i}" for i in range(n_groups)]
    with Batch("Org", tmp / "job.sqlite", buffer_size=97) as batch:
        for i, xid in enumerate(xids):
            g = batch.adversary(f"group {i}", xid=xid)
            for r in refs[i]:  # references, including cycles and self-references
                if r < n_groups:
                    g.association(xids[r])
            if external:
                g.association("pre-existing-group")
            if i % 3 == 0 and n_indicators:
                g.associate_indicator("Host", f"h{i}.example.com" if i < n_indicators else "not-staged.example.com")
            batch.save(g)
        for i in range(n_indicators):
            rec = batch.host(f"h{i}.example.com") if i % 2 else batch.address(f"10.0.{i // 256}.{i % 256}")
            if xids:
                rec.association(xids[i % len(xids)])
            batch.save(rec)
        for i in range(min(n_assoc, n_indicators)):
            batch.add_association(ref_1=f"10.0.{(2 * i) // 256}.{(2 * i) % 256}", type_1="Address",
                                  ref_2=xids[0] if xids else "pre-existing-group")
        paths = batch.build(max_bytes=max_bytes, max_records=max_records)
        where = _check_chunks(paths, max_bytes, max_records, set(xids))
        assert {k for k in where if k.startswith("g-")} == set(xids)
        assert sum(1 for k in where if "|" in k) == n_indicators
        assert batch.build() == []  # nothing new
        # every chunk file's recorded size is its real size
        for cid, path, nbytes in batch.job.conn.execute("SELECT id, path, bytes FROM chunks"):
            assert Path(path).stat().st_size == nbytes


def test_cycles_become_top_level_associations(tmp_path: Path) -> None:
    with Batch("Org", tmp_path / "job.sqlite") as batch:
        a, b = batch.adversary("a", xid="a"), batch.adversary("b", xid="b")
        a.association("b")
        b.association("a")
        paths = batch.build(max_records=1)
        docs = [_read(p) for p in paths]
    groups = [g for d in docs for g in d["group"]]
    assert [g["xid"] for g in groups] == ["b", "a"]  # b first: a references it
    assert groups[1]["associatedGroupXid"] == ["b"]
    assert "associatedGroupXid" not in groups[0]  # b -> a would point forward ...
    assocs = [x for d in docs for x in d["association"]]
    assert assocs == [{"ref_1": "a", "ref_2": "b"}]  # ... so it is sent once both exist
    assert docs.index(next(d for d in docs if d["association"])) == len(docs) - 1


def test_group_to_staged_indicator_link_is_deferred(tmp_path: Path) -> None:
    with Batch("Org", tmp_path / "job.sqlite") as batch:
        g = batch.incident("inc", xid="inc-1")
        g.associate_indicator("URL", "http://evil.example.com/x")
        g.associate_indicator("Host", "elsewhere.example.com")  # not staged: stays in the group
        batch.url("http://evil.example.com/x")
        [path] = batch.build()
    doc = _read(path)
    assert doc["group"][0]["associatedIndicators"] == [{"summary": "elsewhere.example.com", "indicatorType": "Host"}]
    assert doc["association"] == [{"ref_1": "http://evil.example.com/x", "type_1": "URL", "ref_2": "inc-1"}]


def test_exact_byte_limit(tmp_path: Path) -> None:
    with Batch("Org", tmp_path / "job.sqlite") as batch:
        batch.save_all({"type": "Address", "summary": f"10.9.0.{i}"} for i in range(10))
        batch.flush()
        bodies = [len(r[0]) for r in batch.job.conn.execute("SELECT body FROM indicators ORDER BY seq")]
        limit = EMPTY_SIZE + bodies[0] + 1 + bodies[1]  # exactly two records fit
        paths = batch.build(max_bytes=limit)
    sizes = [p.stat().st_size for p in paths]
    assert len(paths) == 5 and max(sizes) == limit


def test_indicator_limit_per_file(tmp_path: Path) -> None:
    n = INDICATOR_LIMIT + 10
    with Batch("Org", tmp_path / "job.sqlite") as batch:
        batch.save_all({"type": "Address", "summary": f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"} for i in range(n))
        paths = batch.build(max_records=100_000, max_bytes=10**9)
    counts = [len(_read(p)["indicator"]) for p in paths]
    assert counts == [INDICATOR_LIMIT, 10]


def test_oversize_record_names_its_xid_and_loses_nothing(tmp_path: Path) -> None:
    with Batch("Org", tmp_path / "job.sqlite") as batch:
        batch.save_all({"type": "Address", "summary": f"10.8.0.{i}"} for i in range(4))
        big = batch.address("10.8.1.1", xid="too-big")
        big.attribute("Description", "x" * 5000)
        batch.save(big)
        with pytest.raises(ChunkError, match="too-big"):
            batch.build(max_bytes=1000)
        done = batch.job.conn.execute("SELECT coalesce(sum(indicators), 0) FROM chunks").fetchone()[0]
        assert done == 4  # the records before it are in whole chunks
        assert batch.indicator_len == 5  # and it is still staged
        [path] = batch.build(max_bytes=100_000)
        assert [i["xid"] for i in _read(path)["indicator"]] == ["too-big"]


def test_merged_after_chunking_is_emitted_again(tmp_path: Path) -> None:
    with Batch("Org", tmp_path / "job.sqlite", buffer_size=1) as batch:
        batch.save_all({"type": "Address", "summary": f"10.7.0.{i}"} for i in range(3))
        first = batch.build()
        rec = batch.address("10.7.0.2")  # the last one: its seq is the watermark
        rec.tag("late")
        batch.save(rec)
        second = batch.build()
        assert len(first) == 1 and len(second) == 1
        assert _read(second[0])["indicator"][0]["tag"] == [{"name": "late"}]
        batch.save(batch.address("10.7.0.2"))  # unchanged: not emitted again
        assert batch.build() == []


def test_gzip_chunks(tmp_path: Path) -> None:
    with Batch("Org", tmp_path / "job.sqlite", gzip=True) as batch:
        batch.save_all({"type": "Address", "summary": f"10.6.0.{i}"} for i in range(50))
        paths = batch.build(max_records=20)
    assert [p.name for p in paths] == ["chunk-000001.json.gz", "chunk-000002.json.gz", "chunk-000003.json.gz"]
    assert sum(len(_read(p)["indicator"]) for p in paths) == 50


def test_crash_mid_build_leaves_a_consistent_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace
    calls = {"n": 0}

    def failing_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_replace(src, dst)

    with Batch("Org", tmp_path / "job.sqlite") as batch:
        batch.save_all({"type": "Address", "summary": f"10.5.0.{i}"} for i in range(30))
        monkeypatch.setattr(os, "replace", failing_replace)
        with pytest.raises(OSError):
            batch.build(max_records=10)
        monkeypatch.setattr(os, "replace", real_replace)
        assert not list(batch.out_dir.glob("*.tmp"))
        rest = batch.build(max_records=10)
        all_paths = sorted(batch.out_dir.glob("chunk-*.json"))
    summaries = [i["summary"] for p in all_paths for i in _read(p)["indicator"]]
    assert len(rest) == 2
    assert sorted(summaries) == sorted(f"10.5.0.{i}" for i in range(30))


def test_chunk_files_are_private(tmp_path: Path) -> None:
    import stat

    for gz in (False, True):
        with Batch("Org", tmp_path / f"job{gz}.sqlite", gzip=gz) as batch:
            batch.save({"type": "Address", "summary": "10.4.0.1"})
            [path] = batch.build()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert _read(path)["indicator"][0]["summary"] == "10.4.0.1"
