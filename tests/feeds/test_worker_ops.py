"""Operating the worker: Prometheus metrics scraped during real cycles, several feeds at once
with one owner's jobs never in flight together, JSON logs in a rotated file, and the run as
JSON, through the command line against the emulator over HTTP."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import feed_cli
import requests
from prometheus_client.parser import text_string_to_metric_families

from streambatch.emulator import Emulator
from streambatch.feeds.config import FeedConfig
from streambatch.feeds.state import FeedState

OWNERS = ("Demo Organization", "Common Community")


def _feed(folder: Path, name: str, n: int, owner: str = OWNERS[0], base: int = 0, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text("".join(f"10.{base}.{i // 256}.{i % 256}\n" for i in range(n))
                                        + "not a value\n")
    cfg = folder / f"{name}.toml"
    cfg.write_text(f'source = "{name}.txt"\nformat = "text"\nowner = "{owner}"\nschedule = "1h"\n{extra}\n'
                   "[batch]\npoll_interval = 0.02\nmax_records = 300\n")
    return cfg


def _runs(cfg: Path) -> list[dict]:
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        return state.runs(100)
    finally:
        state.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return err


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_are_served_and_agree_with_the_history(tmp_path: Path) -> None:
    folder = tmp_path / "feeds"
    a = _feed(folder, "alpha", 700)
    b = _feed(folder, "beta", 400, base=1)
    port = _free_port()
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        proc = subprocess.Popen([sys.executable, "-m", "streambatch.cli", "worker", "--metrics-port", str(port),
                                 str(folder)], cwd=tmp_path, env=feed_cli.env_for(tc), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert _wait(lambda: all(r and r[0]["status"] == "done" for r in (_runs(a), _runs(b))))

            def counted() -> bool:  # the worker counts a cycle once it has returned, just after its run is recorded
                nonlocal body
                body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
                found = _samples(body)
                return all(found.get(("streambatch_feed_cycles_total", (("feed", cfg.stem), ("outcome", "done"))))
                           for cfg in (a, b))

            body = ""
            assert _wait(counted, timeout=10), body
        finally:
            err = _stop(proc)
    assert proc.returncode == 0, err
    samples = _samples(body)
    for cfg in (a, b):
        run = _runs(cfg)[0]
        feed = cfg.stem

        def value(name: str, **labels: str) -> float:
            return samples.get((name, tuple(sorted({"feed": feed, **labels}.items()))), 0.0)

        assert value("streambatch_feed_cycles_total", outcome="done") == 1
        for kind in ("read", "rejected", "new", "sent", "accepted", "failed", "warned"):
            assert value("streambatch_feed_records_total", kind=kind) == run[kind], kind
        assert run["read"] > 0 and run["sent"] > 0 and run["rejected"] == 1
        assert value("streambatch_feed_jobs_total") == -(-run["sent"] // 300)  # chunks of 300
        assert value("streambatch_feed_bytes_total") > run["sent"] * 10
        assert value("streambatch_feed_cycle_duration_seconds_count") == 1
        assert value("streambatch_batch_job_duration_seconds_count") == value("streambatch_feed_jobs_total")
        assert abs(value("streambatch_feed_last_success_timestamp_seconds") - time.time()) < 120
        assert value("streambatch_feed_next_due_timestamp_seconds") > time.time() + 3000  # schedule 1h
        assert value("streambatch_feed_consecutive_failures") == 0
    assert samples[("streambatch_jobs_in_flight", ())] == 0


def test_several_feeds_at_once_but_one_owners_jobs_one_after_another(tmp_path: Path) -> None:
    folder = tmp_path / "feeds"
    configs = [_feed(folder, f"f{i}", 900, owner=OWNERS[i % 2], base=10 + i) for i in range(4)]
    with Emulator(db=tmp_path / "emu.sqlite", rate=3000) as tc:  # jobs take ~0.1 s each
        proc = subprocess.Popen([sys.executable, "-m", "streambatch.cli", "worker", "--concurrency", "4",
                                 str(folder)], cwd=tmp_path, env=feed_cli.env_for(tc), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert _wait(lambda: all(r and r[0]["status"] == "done" for r in map(_runs, configs)), timeout=90)
        finally:
            err = _stop(proc)
        jobs = tc.store.jobs()
        for owner in OWNERS:
            assert tc.store.count(owner, "indicator") == 2 * 900
    assert proc.returncode == 0, err
    assert "up to 4 at once" in err

    def overlap(x: dict, y: dict) -> bool:
        return x["created"] < y["updated"] and y["created"] < x["updated"]

    same = [(x["id"], y["id"]) for x in jobs for y in jobs
            if x["id"] < y["id"] and x["owner"] == y["owner"] and overlap(x, y)]
    assert same == []  # never two jobs of one owner in flight
    across = [(x["id"], y["id"]) for x in jobs for y in jobs if x["owner"] != y["owner"] and overlap(x, y)]
    assert across  # but the two owners' feeds ran at the same time
    cycles = {cfg.stem: _runs(cfg)[0] for cfg in configs}
    starts = sorted(r["started"] for r in cycles.values())
    assert starts[-1] < max(r["finished"] for r in cycles.values())  # the last began before the others ended


def test_json_logs_in_a_rotated_file_and_the_run_as_json(tmp_path: Path) -> None:
    cfg = _feed(tmp_path, "feed", 500)
    log_file = tmp_path / "logs" / "streambatch.log"
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        run = subprocess.run([sys.executable, "-m", "streambatch.cli", "run", "--json", "-v", "--log-format", "json",
                              "--log-file", str(log_file), str(cfg)], cwd=tmp_path, env=feed_cli.env_for(tc),
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout)
    assert (result["feed"], result["status"], result["exit_code"], result["read"], result["sent"],
            result["rejected"]) == ("feed", "done", 0, 501, 500, 1)
    assert result["jobs"] == 2 and result["bytes"] > 0
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert lines == [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    cycle = [x for x in lines if x.get("event") == "cycle"]
    assert len(cycle) == 1 and cycle[0]["feed"] == "feed" and cycle[0]["run"] == result["run"]
    assert cycle[0]["counts"]["sent"] == 500 and cycle[0]["level"] == "info"
    assert cycle[0]["time"].endswith("Z")
    chunks = [x for x in lines if x.get("event") in ("chunk-submitted", "chunk-completed")]
    assert {x["chunk"] for x in chunks} == {1, 2} and any("batch_id" in x for x in chunks)
    assert oct(log_file.stat().st_mode & 0o777) == "0o600"
