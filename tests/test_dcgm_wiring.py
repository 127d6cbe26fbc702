"""How the DCGM source is wired in: flags, --backend auto, and the README's backend table."""

import argparse
import socket

import pytest

from exporter.backend_table import backend_table, provided
from exporter.backends import dcgm_usable, detect_backend
from exporter.cli import build_parser, with_environment
from exporter.runtime import build_sources
from exporter.sources.dcgm import DcgmSource
from exporter.sources.nvml import PROVIDES as NVML_PROVIDES
from exporter.sources.nvml import NvmlSource
from exporter.sources.simulated import PROVIDES as SIMULATED_PROVIDES
from exporter.sources.simulated import SimulatedSource
from exporter.sources.simulated.scenarios import parse_scenario


def parse(argv, environ=None) -> argparse.Namespace:
    parser = build_parser()
    return parser.parse_args(with_environment(argv, parser, environ or {}))


def test_dcgm_is_an_available_backend_that_builds_the_dcgm_source():
    args = parse(
        ["serve", "--backend=dcgm", "--dcgm.address=10.0.0.7:5555", "--collect.interval=2s"]
    )
    [source] = build_sources("dcgm", args)
    assert isinstance(source, DcgmSource) and source.name == "dcgm"
    assert source.address == "10.0.0.7:5555" and source.interval == 2.0
    [embedded] = build_sources("dcgm", parse(["serve", "--dcgm.embedded"]))
    assert embedded.address is None and embedded.where == "embedded DCGM"


@pytest.mark.parametrize(
    "argv,environ,expected",
    [
        (["serve"], {}, False),
        (["serve", "--dcgm.embedded"], {}, True),
        (["serve"], {"GIE_DCGM_EMBEDDED": "true"}, True),
        (["serve", "--dcgm.embedded=false"], {"GIE_DCGM_EMBEDDED": "true"}, False),
    ],
)
def test_dcgm_embedded_is_a_flag_and_an_environment_variable(argv, environ, expected):
    assert parse(argv, environ).dcgm_embedded is expected


def _listener() -> socket.socket:
    server = socket.create_server(("127.0.0.1", 0))
    server.listen()
    return server


def test_auto_takes_dcgm_only_when_a_hostengine_answers_and_the_bindings_import(fake_dcgm):
    with _listener() as server:
        address = f"127.0.0.1:{server.getsockname()[1]}"
        assert dcgm_usable(address)
        assert detect_backend(address, nvml_probe=lambda: 0) == "dcgm"
    closed = address  # nothing listens there any more
    assert not dcgm_usable(closed)
    assert detect_backend(closed, nvml_probe=lambda: 2) == "nvml"
    assert detect_backend(closed, nvml_probe=lambda: 0) == "none"
    assert dcgm_usable(closed, embedded=True)  # embedded DCGM needs no hostengine


def test_every_backend_declares_exactly_what_its_source_publishes(fake_nvml):
    # The DCGM source's declaration is checked against the fake DCGM in test_dcgm_source.py.
    xid = [parse_scenario("xid:gpu=0,code=13")]
    fleet = SimulatedSource(gpus=2, processes=True, mig=1, scenarios=xid)
    gpu_families = {s.name for s in fleet.collect() if s.name.startswith("gpu_")}
    assert gpu_families == set(SIMULATED_PROVIDES)  # its torch_cuda_* are not a GPU backend's
    fake_nvml.configure("gpus 2\ngpu 1 mig 2\ngpu 0 process 4242 python3 1073741824\n")
    nvml = NvmlSource(collect_processes=True, event_wait_ms=20)
    try:
        assert {s.name for s in nvml.collect()} == set(NVML_PROVIDES)
    finally:
        nvml.close()


def test_the_backend_table_has_a_row_per_gpu_family_and_a_column_per_backend():
    table = backend_table().splitlines()
    assert table[0] == "| metric | dcgm | nvml | simulated |"
    rows = {line.split(" | ")[0].strip("| `"): line for line in table[2:]}
    assert rows["gpu_sm_active_ratio"] == ("| `gpu_sm_active_ratio` | ✓ profiling module | – | ✓ |")
    assert rows["gpu_mig_info"] == "| `gpu_mig_info` | – | ✓ MIG mode | ✓ --simulate.mig |"
    assert "gpu_backend_up" not in rows
    assert set(provided()) == {"dcgm", "nvml", "simulated"}
