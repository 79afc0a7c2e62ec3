"""Feeds left running unattended, through the ``streambatch`` command against the emulator over
HTTP: an interrupted run finished from another working directory, a refused chunk retried, a
worker that backs off, finishes interrupted jobs first and skips a broken config, one run of a
feed at a time, and counts that say what the API accepted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streambatch.emulator import Emulator
from streambatch.feeds.config import FeedConfig
from streambatch.feeds.state import FeedState

OWNER = "Demo Organization"


@pytest.fixture
def tc(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(db=tmp_path / "emu.sqlite") as emulator:
        yield emulator


def env_for(tc: Emulator, secret: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_"))}
    env.update(TC_API_PATH=tc.url, TC_API_ACCESS_ID=tc.access_id, TC_API_SECRET_KEY=secret or tc.secret_key)
    return env


def cli(tc: Emulator, *args: str, cwd: Path, secret: str | None = None, timeout: float = 120
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streambatch.cli", *args], cwd=cwd, env=env_for(tc, secret),
                          capture_output=True, text=True, timeout=timeout)


def start(tc: Emulator, *args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streambatch.cli", *args], cwd=cwd, env=env_for(tc),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def uploads(tc: Emulator) -> int:
    return sum(1 for r in tc.requests if r["method"] == "POST" and r["path"].endswith("/createAndUpload"))


def text_feed(folder: Path, name: str, n: int, *, prefix: str = "10.88", extra: str = "",
              max_records: int = 200) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text("".join(f"{prefix}.{i // 256}.{i % 256}\n" for i in range(n)))
    cfg = folder / f"{name}.toml"
    cfg.write_text(f'source = "{name}.txt"\nformat = "text"\nowner = "{OWNER}"\n{extra}\n'
                   f"[batch]\npoll_interval = 0.02\nmax_records = {max_records}\n")
    return cfg


def runs_of(cfg: Path) -> list[dict]:
    state = FeedState(FeedConfig.load(cfg).state_dir / "state.sqlite")
    try:
        return state.runs(1000)
    finally:
        state.close()


# -- 1. an interrupted run finished from another working directory ----------------------------


def test_interrupted_run_is_finished_from_another_working_directory(tmp_path: Path, tc: Emulator) -> None:
    """Interrupted while its second chunk is held Running, the run is finished by a rerun
    from another directory (as cron or systemd would start it): every record lands."""
    n = 1200
    home = tmp_path / "home"
    cfg = text_feed(home / "feeds", "big", n)
    tc.set_faults([{"kind": "running", "nth": 2, "times": 0}])
    proc = start(tc, "run", "feeds/big.toml", cwd=home)
    try:
        assert wait_for(lambda: uploads(tc) >= 2), proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0  # interrupted: not a success
    tc.set_faults([])
    assert tc.store.count(OWNER, "indicator") < n

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = cli(tc, "run", str(Path("..") / "home" / "feeds" / "big.toml"), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert tc.store.count(OWNER, "indicator") == n
    assert [r["status"] for r in runs_of(cfg)][-1] == "done (resumed)"
    again = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert tc.store.count(OWNER, "indicator") == n


# -- 2. a refused chunk does not wedge the feed ------------------------------------------------


def test_a_chunk_refused_with_a_wrong_secret_is_sent_by_the_next_run(tmp_path: Path, tc: Emulator) -> None:
    n = 500
    cfg = text_feed(tmp_path, "feed", n)
    wrong = cli(tc, "run", str(cfg), cwd=tmp_path, secret="not-the-secret")
    assert wrong.returncode != 0
    assert "401" in wrong.stdout + wrong.stderr
    assert tc.store.count(OWNER, "indicator") == 0

    right = cli(tc, "run", str(cfg), cwd=tmp_path)
    assert right.returncode == 0, right.stdout + right.stderr
    assert tc.store.count(OWNER, "indicator") == n
    assert cli(tc, "run", str(cfg), cwd=tmp_path).returncode == 0
    assert tc.store.count(OWNER, "indicator") == n
