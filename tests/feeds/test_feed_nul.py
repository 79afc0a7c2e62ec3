"""NUL bytes in text and CSV feeds: the row holding one is rejected with its line and reason
(never sent, never cut at the NUL), and the other rows are sent. Through `streambatch run`
against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streambatch.emulator import Emulator

OWNER = "Demo Organization"


@pytest.mark.parametrize("fmt, body, mapping", [
    ("text", b"ok1.example.com\nevil\x00.example.com\n10.96.0.1\x00\nok2.example.com\n", ""),
    ("csv", b"value,tag,note\nok1.example.com,a,n\nbad.example.com,a\x00b,n\nnul.example.com,t,x\x00y\n"
            b"ok2.example.com,b,n\n",
     '[mapping]\nvalue = "value"\ntags = "tag"\n[mapping.attributes]\nDescription = "note"\n'),
])
def test_a_row_with_nul_is_rejected_and_the_rest_sent(tmp_path: Path, fmt: str, body: bytes, mapping: str) -> None:
    (tmp_path / f"feed.{fmt}").write_bytes(body)
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "feed.{fmt}"\nformat = "{fmt}"\nowner = "{OWNER}"\n{mapping}'
                   "[batch]\npoll_interval = 0.02\n")
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_"))}
        env.update(TC_API_PATH=tc.url, TC_API_ACCESS_ID=tc.access_id, TC_API_SECRET_KEY=tc.secret_key)

        def cli(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "streambatch.cli", *args, str(cfg)], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)

        run = cli("run")
        assert "rejected 2," in run.stdout, run.stdout + run.stderr
        assert tc.store.count(OWNER, "indicator") == 2
        assert tc.store.indicator(OWNER, "Host", "ok1.example.com") and tc.store.indicator(OWNER, "Host", "ok2.example.com")
        rows = [json.loads(line) for line in cli("rejected", "--json").stdout.splitlines()]
    assert [r["line"] for r in rows] == ([3, 4] if fmt == "csv" else [2, 3])
    for r in rows:
        assert "\x00" in r["raw"] or "\\x00" in r["raw"] or "\\u0000" in r["raw"]
        if fmt == "csv":
            assert "NUL" in r["reason"]
