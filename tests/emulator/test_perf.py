"""A full 25,000-indicator job: processed in under 10 s, with bounded memory."""

from __future__ import annotations

import json
import resource
import threading
import time

from emu_client import Api

from streambatch.emulator import Emulator


def _rss_mb() -> float:
    """Current resident set size of this process (the emulator runs in-process), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_25k_indicator_job(tmp_path) -> None:
    indicators = [{"type": "Host", "summary": f"host-{i}.example.com", "xid": f"x-{i}", "rating": i % 6,
                   "confidence": i % 101, "tag": [{"name": "bulk"}],
                   "attribute": [{"type": "Description", "value": f"host number {i}"}]} for i in range(25_000)]
    body = json.dumps({"group": [], "indicator": indicators, "association": []}).encode()
    del indicators
    with Emulator(db=tmp_path / "perf.sqlite", synchronous_batch_save_limit=100) as tc:
        api = Api(tc)
        before = _rss_mb()
        samples = [before]
        stop = threading.Event()

        def sample() -> None:  # peak RSS while the job is uploaded and processed
            while not stop.wait(0.01):
                samples.append(_rss_mb())

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        try:
            job_id = api.two_step(body)
            status = api.wait(job_id, timeout=30)
        finally:
            elapsed = time.monotonic() - started
            stop.set()
            sampler.join()
        peak_delta = max(samples) - before
    print(f"\n25k job: {elapsed:.2f} s; process RSS {before:.0f} MB before, peak +{peak_delta:.0f} MB")
    assert status["successIndicatorCount"] == 25_000 and status["errorCount"] == 0
    assert elapsed < 10
    assert peak_delta < 200
    assert _rss_mb() < 400  # the whole test process (pytest + client + server), not just the server
