"""A feed cycle staged through the writer process (``[batch] writer``): the same records reach
the API, repeated rows are settled from the job file as in process, and the key is checked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from feed_cli import OWNER, run_json

from streambatch.emulator import Emulator
from streambatch.feeds.config import ConfigError, FeedConfig


@pytest.fixture
def tc(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(db=tmp_path / "emu.sqlite") as emulator:
        yield emulator


def feed(folder: Path, writer: str, n: int) -> Path:
    hosts = [f"h{i}.writer.example" for i in range(n)]
    hosts += hosts[::97]  # listed twice: settled from the job file once the feed is read
    (folder / "hosts.txt").write_text("".join(h + "\n" for h in hosts))
    cfg = folder / "hosts.toml"
    cfg.write_text(f'source = "hosts.txt"\nformat = "text"\nowner = "{OWNER}"\n[options]\ntype = "Host"\n'
                   f'[batch]\npoll_interval = 0.02\nbuffer_size = 250\nwriter = "{writer}"\n')
    return cfg


def test_a_feed_cycle_through_the_writer_process_sends_every_record_once(tc: Emulator, tmp_path: Path) -> None:
    cfg = feed(tmp_path, "process", 3000)
    first = run_json(tc, cfg)
    assert first.code == 0, first.stderr[-3000:]
    assert first.run["sent"] == 3000 and first.run["repeated"] == len(range(0, 3000, 97))
    assert tc.store.count(OWNER, "indicator") == 3000
    second = run_json(tc, cfg)  # unchanged: nothing to send
    assert second.code == 0 and second.run["sent"] == 0 and second.run["unchanged"] == 3000


def test_the_writer_key_is_checked(tmp_path: Path) -> None:
    cfg = feed(tmp_path, "thread", 3)
    with pytest.raises(ConfigError, match=r"batch\.writer: must be 'auto', 'inline' or 'process'"):
        FeedConfig.load(cfg)
    assert FeedConfig.load(feed(tmp_path, "inline", 3)).batch["writer"] == "inline"
