"""How the NVML source is wired in: --backend nvml, --collect.processes, the simulated fleet."""

import argparse

import pytest

from exporter import catalog
from exporter.cli import build_parser, with_environment
from exporter.runtime import build_sources
from exporter.sources.nvml import NvmlSource
from exporter.sources.simulated import SimulatedSource
from exporter.sources.simulated.scenarios import parse_scenario


def parse(argv, environ=None) -> argparse.Namespace:
    parser = build_parser()
    return parser.parse_args(with_environment(argv, parser, environ or {}))


def test_nvml_is_an_available_backend_and_builds_the_nvml_source():
    sources = build_sources("nvml", parse(["serve", "--backend=nvml", "--collect.processes"]))
    assert [type(s) for s in sources] == [NvmlSource]
    assert sources[0].name == "nvml" and sources[0].collect_processes is True


@pytest.mark.parametrize(
    "argv,environ,expected",
    [
        (["serve"], {}, False),
        (["serve", "--collect.processes"], {}, True),
        (["serve", "--collect.processes=false"], {}, False),
        (["serve"], {"GIE_COLLECT_PROCESSES": "true"}, True),
        (["serve", "--collect.processes=no"], {"GIE_COLLECT_PROCESSES": "true"}, False),
    ],
)
def test_collect_processes_is_an_opt_in_flag_and_environment_variable(argv, environ, expected):
    assert parse(argv, environ).collect_processes is expected


def test_collect_processes_refuses_a_value_that_is_not_a_boolean(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(["serve", "--collect.processes=maybe"])
    assert exit_.value.code == 2
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err


def test_the_simulated_fleet_reports_one_process_per_live_gpu_when_asked():
    t = [0.0]
    plain = SimulatedSource(gpus=2, clock=lambda: t[0])
    assert not [s for s in plain.collect() if s.name == catalog.GPU_PROCESS_MEMORY_USED.name]
    fleet = SimulatedSource(
        gpus=2, clock=lambda: t[0], processes=True, scenarios=[parse_scenario("gpu_lost:gpu=1")]
    )
    t[0] = 5.0
    samples = fleet.collect()
    procs = [s for s in samples if s.name == catalog.GPU_PROCESS_MEMORY_USED.name]
    used = {s.label("gpu"): s.value for s in samples if s.name == catalog.GPU_MEMORY_USED.name}
    assert [(s.label("gpu"), s.label("pid"), s.label("process")) for s in procs] == [
        ("0", "4100", "python3")
    ]
    assert procs[0].value == used["0"]  # the inference process holds the GPU's used memory
