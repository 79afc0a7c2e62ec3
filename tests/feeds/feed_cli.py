"""Run ``streambatch`` on a feed config against an emulator on loopback, as a user would: a
subprocess with the API settings in its environment. ``run_json`` returns the exit code, the
run (``run --json``) and the rejected rows (``rejected --json``); ``emulator`` gives an emulator
and an API client of its own for tests that run feed cycles in process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streambatch.client import ApiConfig, Client, RetryPolicy
from streambatch.emulator import Emulator

OWNER = "Demo Organization"


def env_for(tc: Emulator, **extra: str) -> dict[str, str]:
    """This process's environment without any streambatch, API or feed settings, then the
    emulator's API settings, then ``extra`` (which may replace them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_", "TAXII_", "FEED_"))}
    env.update(TC_API_PATH=tc.url, TC_API_ACCESS_ID=tc.access_id, TC_API_SECRET_KEY=tc.secret_key)
    env.update(extra)
    return env


def cli(tc: Emulator, *args: str, cwd: Path, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streambatch.cli", *args], cwd=cwd, env=env_for(tc, **env),
                          capture_output=True, text=True, timeout=timeout)


def start(tc: Emulator, *args: str, cwd: Path, **env: str) -> subprocess.Popen:
    """``streambatch ARGS`` started in the background, its output in pipes."""
    return subprocess.Popen([sys.executable, "-m", "streambatch.cli", *args], cwd=cwd, env=env_for(tc, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextmanager
def emulator(tmp_path: Path, attempts: int = 3, **kwargs: Any) -> Iterator[tuple[Emulator, Client]]:
    """An emulator (``kwargs`` as for :class:`Emulator`) and a client of it with short retries."""
    with Emulator(db=tmp_path / "emu.sqlite", **kwargs) as tc:
        client = Client(ApiConfig(tc.url, tc.access_id, tc.secret_key),
                        retry=RetryPolicy(attempts=attempts, backoff=0.01, max_backoff=0.05, total=attempts + 2))
        try:
            yield tc, client
        finally:
            client.close()


@dataclass
class Run:
    code: int
    run: dict[str, Any]
    rejected: list[dict[str, Any]]
    stderr: str


def run_json(tc: Emulator, cfg: Path, **env: str) -> Run:
    """``streambatch run --json CFG``, then ``streambatch rejected --json CFG``."""
    done = cli(tc, "run", "--json", str(cfg), cwd=cfg.parent, **env)
    assert done.stdout.strip(), done.stderr[-3000:]
    run = json.loads(done.stdout.strip().splitlines()[-1])
    listed = cli(tc, "rejected", "--json", str(cfg), cwd=cfg.parent, **env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    rejected = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    return Run(done.returncode, run, rejected, done.stderr)


def attributes(record: dict[str, Any]) -> dict[str, list[str]]:
    """An emulator indicator's attributes as type -> values."""
    out: dict[str, list[str]] = {}
    for a in record.get("attribute") or []:
        out.setdefault(a["type"], []).append(a["value"])
    return out


def tags(record: dict[str, Any]) -> set[str]:
    return {t["name"] for t in record.get("tag") or []}
