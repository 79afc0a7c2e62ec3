"""A sample job, for ``streambatch demo`` and the README's first command."""

from __future__ import annotations

from pathlib import Path

from .batch import Batch
from .store import private_dir


def stage_demo(out: Path, indicators: int = 1000, max_records: int = 500) -> Batch:
    """Stage a few groups, a Report with content and ``indicators`` synthetic
    indicators associated with them, in a new job file under ``out``. Returns the open batch."""
    private_dir(out)  # 0700: the job file, its chunks and the emulator's data go here
    job = out / "demo.sqlite"
    for stale in (job, job.with_suffix(".emulator.sqlite")):
        for suffix in ("", "-wal", "-shm"):
            Path(str(stale) + suffix).unlink(missing_ok=True)
    batch = Batch("Demo Organization", job, out_dir=out / "chunks", max_records=max_records)
    campaign = batch.campaign("Demo Campaign", first_seen="2026-01-01")
    adversary = batch.adversary("Demo Adversary")
    adversary.association(campaign.xid)
    adversary.tag("demo")
    report = batch.report("Demo Report", file_name="demo.txt", file_content=b"demo report content\n")
    report.association(campaign.xid)
    for rec in (campaign, adversary, report):
        batch.save(rec)

    def records():
        for i in range(indicators):
            yield {"type": "Address", "summary": f"198.51.{(i >> 8) & 255}.{i & 255}", "rating": 3,
                   "confidence": 60, "tag": [{"name": "demo"}], "associatedGroups": [{"groupXid": adversary.xid}]}

    batch.save_all(records())
    return batch
