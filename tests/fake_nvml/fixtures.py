"""Pytest fixtures for the fake NVML (registered in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_nvml import INPROCESS_NAME, FakeNvml, build


@pytest.fixture(scope="session")
def fake_nvml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the fake built as libnvidia-ml.so.1 (for LD_LIBRARY_PATH)."""
    directory = tmp_path_factory.mktemp("fake-nvml")
    build(directory)
    return directory


@pytest.fixture(scope="session")
def fake_nvml_library(fake_nvml_dir: Path) -> Path:
    return fake_nvml_dir / "libnvidia-ml.so.1"


@pytest.fixture(scope="session")
def _fake_nvml_inprocess(tmp_path_factory: pytest.TempPathFactory) -> FakeNvml:
    return FakeNvml(build(tmp_path_factory.mktemp("fake-nvml-inprocess"), INPROCESS_NAME))


@pytest.fixture
def fake_nvml(_fake_nvml_inprocess: FakeNvml) -> Iterator[FakeNvml]:
    """The fake loaded in this process as pynvml's library: 8 H100s unless reconfigured."""
    fake = _fake_nvml_inprocess
    fake.configure("")
    fake.install()
    try:
        yield fake
    finally:
        fake.uninstall()
