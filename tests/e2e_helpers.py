"""Shared helpers for the submit end-to-end, fault and client tests: an emulator on loopback, a
fast-retrying client for it, and a Batch wired to both."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from streambatch import Batch
from streambatch.client import ApiConfig, Client, RetryPolicy
from streambatch.emulator import Emulator

FAST_RETRY = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05, total=10)


def make_client(tc: Emulator, retry: RetryPolicy = FAST_RETRY, token: bool = False) -> Client:
    if token:
        return Client(ApiConfig(tc.url, token=tc.token), retry=retry)
    return Client(ApiConfig(tc.url, tc.access_id, tc.secret_key), retry=retry)


def make_batch(tc: Emulator, path: Path, client: Client | None = None, **kwargs: Any) -> Batch:
    """A Batch that polls fast: the smallest wait is 20 ms and the learned processing rate
    starts high, so the first poll does not wait for a rate-based estimate."""
    kwargs.setdefault("poll_interval", 0.02)
    kwargs.setdefault("poll_timeout", 30)
    batch = Batch(tc.owner, path, client=client or make_client(tc), **kwargs)
    batch.poll_policy.rate = 1e9
    batch.poll_policy.max_interval = 0.2
    return batch


@pytest.fixture
def tc(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(db=tmp_path / "emu.sqlite") as emulator:
        yield emulator


def requests_to(tc: Emulator, method: str, path: str) -> list[dict[str, Any]]:
    """Logged requests with this method whose path (without /api) equals ``path``."""
    out = []
    for r in tc.requests:
        p = r["path"][4:] if r["path"].startswith("/api/") else r["path"]
        if r["method"] == method and p == path:
            out.append(r)
    return out


def api_paths(tc: Emulator) -> list[tuple[str, str]]:
    return [(r["method"], r["path"][4:] if r["path"].startswith("/api/") else r["path"]) for r in tc.requests]


def chunk_rows(batch: Batch) -> list[dict[str, Any]]:
    cur = batch.job.conn.execute("SELECT id, state, batch_id, status, error_count, errors_fetched, message "
                                 "FROM chunks ORDER BY id")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def error_rows(batch: Batch) -> list[tuple[str | None, str | None]]:
    return [tuple(r) for r in batch.job.conn.execute("SELECT xid, code FROM errors ORDER BY id")]


def file_rows(batch: Batch) -> dict[str, tuple[str, str | None]]:
    return {x: (s, e) for x, s, e in batch.job.conn.execute("SELECT xid, state, error FROM files")}


def hosts(n: int, prefix: str = "h", **extra: Any) -> list[dict[str, Any]]:
    return [{"type": "Host", "summary": f"{prefix}{i}.example.com", "xid": f"{prefix}-{i}", **extra}
            for i in range(n)]
