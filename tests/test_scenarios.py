"""The fault-scenario syntax of the simulated fleet: what parses, and what is refused and how."""

import math

import pytest

from exporter.sources.simulated import GPU_MODELS, SCENARIOS, Scenario, parse_scenario
from exporter.sources.simulated.scenarios import COMMON_KEYS, REQUIRED_KEYS, SCENARIO_KEYS


def test_every_scenario_has_a_one_line_description_and_its_keys():
    assert (
        set(SCENARIOS)
        == set(SCENARIO_KEYS)
        == {
            "thermal_throttle",
            "power_cap",
            "memory_leak",
            "fragmentation",
            "gpu_lost",
            "xid",
            "nvlink_down",
            "ecc_uncorrectable",
            "row_remap_pending",
            "idle",
            "recovery_action",
            "thermal_flap",
            "power_at_limit",
        }
    )
    for name, text in SCENARIOS.items():
        assert text and "\n" not in text and len(text) < 120, name
    assert set(REQUIRED_KEYS) <= set(SCENARIOS)


def test_a_bare_name_takes_the_defaults():
    s = parse_scenario("thermal_throttle")
    assert s == Scenario("thermal_throttle", gpu=0, start=0.0, duration=None)
    assert s.end == math.inf
    assert s.active(0.0) and s.active(1e9)


def test_every_key_is_read_with_its_type():
    s = parse_scenario(" xid : gpu=3 , start=12.5, duration=30, code=79, every=7.5 ")
    assert (s.name, s.gpu, s.start, s.duration, s.code, s.every) == ("xid", 3, 12.5, 30.0, 79, 7.5)
    assert isinstance(s.gpu, int) and isinstance(s.code, int)
    assert parse_scenario("nvlink_down:link=17").link == 17
    assert parse_scenario("power_cap:limit=300").limit == 300.0
    assert parse_scenario("memory_leak:ramp=5").ramp == 5.0
    assert parse_scenario("fragmentation:ramp=90,gpu=7").ramp == 90.0
    assert parse_scenario("ecc_uncorrectable:every=10").every == 10.0
    assert parse_scenario("idle:").name == "idle"
    assert parse_scenario("recovery_action:action=drain_p2p").action == "drain_p2p"
    flap = parse_scenario("thermal_flap:period=30,duty=0.25")
    assert (flap.period, flap.duty) == (30.0, 0.25)
    assert parse_scenario("gpu_lost:duration=60,reboot=120").reboot == 120.0


def test_gpu_all_puts_the_same_fault_on_every_gpu():
    s = parse_scenario("xid:gpu=all,code=79", gpus=8)
    assert s.gpu is None
    assert all(s.on_gpu(i) for i in range(64))
    one = parse_scenario("xid:gpu=3,code=79")
    assert [i for i in range(8) if one.on_gpu(i)] == [3]


def test_on_off_scenarios_are_on_for_their_duty_share_of_every_period():
    s = parse_scenario("thermal_flap:start=10,duration=100,period=20,duty=0.25")
    on = [t for t in range(0, 130) if s.phase_on(t)]
    assert on == [t for t in range(10, 110) if (t - 10) % 20 < 5]
    default = parse_scenario("power_at_limit")  # 50% of 20 s
    assert [default.phase_on(t) for t in (0, 9.9, 10, 19.9, 20)] == [1, 1, 0, 0, 1]


def test_the_window_is_start_inclusive_end_exclusive():
    s = parse_scenario("idle:start=10,duration=5")
    assert [s.active(t) for t in (9.99, 10.0, 14.99, 15.0)] == [False, True, True, False]
    assert s.end == 15.0


def test_str_gives_back_a_parseable_scenario():
    for text in (
        "xid:gpu=2,start=5,duration=60,code=13,every=10",
        "nvlink_down:link=3",
        "idle",
        "recovery_action:gpu=all,start=5,duration=9,action=reboot",
        "thermal_flap:gpu=1,period=30,duty=0.5",
        "gpu_lost:gpu=3,duration=20,reboot=40",
    ):
        s = parse_scenario(text)
        assert parse_scenario(str(s)) == s


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", ["no scenario name", "valid names: thermal_throttle"]),
        ("overheat:gpu=1", ["unknown scenario 'overheat'", "valid names:", "memory_leak", "idle"]),
        ("xid:gpu=1", ["xid needs code=", "keys for xid: gpu, start, duration, code, every"]),
        ("nvlink_down", ["nvlink_down needs link=", "keys for nvlink_down:"]),
        ("idle:gpus=1", ["unknown key 'gpus' for idle", "keys for idle: gpu, start, duration"]),
        ("memory_leak:code=3", ["unknown key 'code' for memory_leak", "ramp"]),
        ("idle:gpu", ["'gpu' is not key=value", "keys for idle"]),
        ("idle:gpu=", ["'gpu=' is not key=value"]),
        ("idle:gpu=one", ["gpu='one' is not a whole number"]),
        ("idle:gpu=1.5", ["gpu='1.5' is not a whole number"]),
        ("idle:start=soon", ["start='soon' is not a number"]),
        ("idle:start=-5", ["start=-5 must not be negative"]),
        ("idle:gpu=-1", ["gpu=-1 must not be negative"]),
        ("idle:duration=0", ["duration=0 must be greater than 0"]),
        ("idle:duration=nan", ["duration=nan is not a finite number"]),
        ("idle:start=inf", ["start=inf is not a finite number"]),
        ("xid:code=79,every=0", ["every=0 must be greater than 0"]),
        ("memory_leak:ramp=-1", ["ramp=-1 must be greater than 0"]),
        ("idle:gpu=1,gpu=2", ["key 'gpu' given twice"]),
        ("idle:gpu=some", ["gpu='some' is not a whole number or all"]),
        ("recovery_action", ["recovery_action needs action=", "keys for recovery_action:"]),
        (
            "recovery_action:action=panic",
            ["action='panic' is not one of reset, reboot, drain_p2p, drain_and_reset"],
        ),
        ("thermal_flap:duty=1.5", ["duty=1.5 is a share of the period: at most 1"]),
        ("power_at_limit:duty=0", ["duty=0 must be greater than 0"]),
        ("thermal_flap:period=0", ["period=0 must be greater than 0"]),
        ("gpu_lost:reboot=60", ["reboot=S counts from when the GPU answers again"]),
        ("idle:action=reset", ["unknown key 'action' for idle"]),
    ],
)
def test_bad_input_is_refused_with_a_one_line_message(text, says):
    with pytest.raises(ValueError) as info:
        parse_scenario(text)
    message = str(info.value)
    assert message.startswith(f"invalid scenario {text!r}: ")
    assert "\n" not in message
    for part in says:
        assert part in message, message


def test_constructing_a_scenario_directly_is_checked_too():
    with pytest.raises(ValueError, match="unknown scenario 'nope'"):
        Scenario("nope")
    with pytest.raises(ValueError, match="idle takes no key 'code'"):
        Scenario("idle", code=3)
    with pytest.raises(ValueError, match="xid needs code="):
        Scenario("xid")


def test_fleet_checks_when_the_fleet_is_given():
    assert parse_scenario("idle:gpu=7", gpus=8).gpu == 7
    with pytest.raises(
        ValueError, match=r"gpu=8 is out of range for a fleet of 8 GPU\(s\) \(0-7\)"
    ):
        parse_scenario("idle:gpu=8", gpus=8)
    with pytest.raises(ValueError, match=r"link=18 is out of range: H100 SXM 80GB has 18 NVLink"):
        parse_scenario("nvlink_down:link=18", gpus=8)
    assert parse_scenario("nvlink_down:link=11", gpus=8, model="A100 SXM 80GB").link == 11
    with pytest.raises(ValueError, match=r"link=12 .*A100 SXM 80GB has 12 NVLink links \(0-11\)"):
        parse_scenario("nvlink_down:link=12", gpus=8, model="A100 SXM 80GB")
    with pytest.raises(ValueError, match="L40S 48GB has no NVLink links"):
        parse_scenario("nvlink_down:link=0", gpus=1, model="L40S 48GB")
    with pytest.raises(
        ValueError, match=r"limit=800 W is out of range for H100 SXM 80GB \(200-700"
    ):
        parse_scenario("power_cap:limit=800", gpus=8)
    with pytest.raises(ValueError, match=r"unknown GPU model 'B300'.*H100 SXM 80GB"):
        parse_scenario("idle", gpus=8, model="B300")


def test_the_gpu_index_is_only_checked_against_a_known_fleet():
    assert parse_scenario("idle:gpu=99").gpu == 99  # the CLI parses before it knows the fleet


def test_every_key_a_scenario_lists_is_accepted():
    for name, keys in SCENARIO_KEYS.items():
        values = {
            "gpu": "1",
            "start": "2",
            "duration": "3",
            "code": "13",
            "every": "4",
            "link": "5",
            "ramp": "6",
            "limit": "300",
            "action": "reset",
            "period": "7",
            "duty": "0.5",
            "reboot": "8",
        }
        text = name + ":" + ",".join(f"{k}={values[k]}" for k in COMMON_KEYS + keys)
        s = parse_scenario(text, gpus=8, model=next(iter(GPU_MODELS)))
        assert (s.gpu, s.start, s.duration) == (1, 2.0, 3.0)
