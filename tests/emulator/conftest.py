"""Fixtures for the emulator tests: a fresh emulator per test and a signed client for it."""

from __future__ import annotations

import pytest
from emu_client import Api

from streambatch.emulator import Emulator


@pytest.fixture
def tc():
    with Emulator(synchronous_batch_save_limit=100) as emulator:
        yield emulator


@pytest.fixture
def api(tc: Emulator) -> Api:
    return Api(tc)


