"""A sample job, for ``streambatch demo`` and the README's first command."""

from __future__ import annotations

from pathlib import Path

from .batch import Batch


def build_demo(out: Path, indicators: int = 1000, max_records: int = 500) -> tuple[Path, list[Path]]:
    """Stage a few groups and ``indicators`` synthetic indicators associated with them, and
    build the chunk files. Returns the job file and the chunk paths."""
    out.mkdir(parents=True, exist_ok=True)
    job = out / "demo.sqlite"
    with Batch("Demo Organization", job, out_dir=out / "chunks", max_records=max_records) as batch:
        campaign = batch.campaign("Demo Campaign", first_seen="2026-01-01")
        adversary = batch.adversary("Demo Adversary")
        adversary.association(campaign.xid)
        adversary.tag("demo")
        report = batch.report("Demo Report", file_name="demo.txt",
                              file_content=lambda xid: f"report content for {xid}\n".encode())
        report.association(campaign.xid)
        batch.save(campaign)
        batch.save(adversary)
        batch.save(report)

        def records():
            for i in range(indicators):
                yield {"type": "Address", "summary": f"198.51.{(i >> 8) & 255}.{i & 255}", "rating": 3,
                       "confidence": 60, "tag": [{"name": "demo"}],
                       "associatedGroups": [{"groupXid": adversary.xid}]}

        batch.save_all(records())
        paths = batch.build()
    return job, paths
