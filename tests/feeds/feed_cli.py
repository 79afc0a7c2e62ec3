"""Run ``streambatch`` on a feed config against an emulator on loopback, as a user would: a
subprocess with the API settings in its environment. ``run_json`` returns the exit code, the
run (``run --json``) and the rejected rows (``rejected --json``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streambatch.emulator import Emulator

OWNER = "Demo Organization"


def env_for(tc: Emulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_", "TAXII_"))}
    env.update(TC_API_PATH=tc.url, TC_API_ACCESS_ID=tc.access_id, TC_API_SECRET_KEY=tc.secret_key, **extra)
    return env


def cli(tc: Emulator, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streambatch.cli", *args], cwd=cwd, env=env_for(tc, **env),
                          capture_output=True, text=True, timeout=180)


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
