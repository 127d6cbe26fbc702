"""Pytest fixtures for the fake DCGM (registered in tests/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.fake_dcgm import BINDINGS_DIR, FakeDcgm


@pytest.fixture
def fake_dcgm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDcgm]:
    """The fake bindings importable in this process, reset to 8 H100s with a hostengine up."""
    monkeypatch.setenv("DCGM_BINDINGS_PATH", str(BINDINGS_DIR))
    monkeypatch.delenv("FAKE_DCGM_CONFIG", raising=False)
    monkeypatch.delenv("FAKE_DCGM_CONTROL", raising=False)
    fake = FakeDcgm()
    fake.set_clock(time.time)
    fake.configure("")
    fake.engine.calls.clear()
    yield fake
    fake.set_clock(time.time)
    fake.configure("")
