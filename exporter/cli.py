"""The command line: `serve` runs the exporter, `generate` writes the generated artifacts.

Every flag of `serve` can also be set through an environment variable (GIE_ and the flag's
name in capitals with `.` and `-` as `_`: `--collect.interval` is GIE_COLLECT_INTERVAL); a flag
on the command line wins. Repeatable flags take `;`-separated lists from the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from exporter import __version__, durations
from exporter.backends import (
    BACKENDS,
    NO_GPU_HINT,
    dcgm_usable,
    detect_backend,
)
from exporter.harness.config import (
    DTYPE_CHOICES,
    PRESET_CHOICES,
    parse_kv_cache_memory,
)
from exporter.identity import constant_labels, parse_label, pod_info
from exporter.logs import FORMATS, LEVELS, setup_logging

log = logging.getLogger("exporter")

ENV_PREFIX = "GIE_"
DEFAULT_PORT = 9466
DEFAULT_HARNESS_ADDRESS = "127.0.0.1:9467"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default unless it is empty or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, [], argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action) or text


class CliError(Exception):
    """A usage problem found after parsing: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """Says a usage error in one line and where to read more, not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (run `{self.prog} --help` for more)\n")


@dataclass(frozen=True)
class ListenAddress:
    host: str | None  # None: every interface
    port: int

    def __str__(self) -> str:
        host = self.host or "0.0.0.0"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


def parse_duration(text: str) -> float:
    """`1`, `1.5`, `500ms`, `2s`, `1m`, `1h` → seconds (positive)."""
    try:
        return durations.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_listen_address(text: str) -> ListenAddress:
    """`:9466`, `0.0.0.0:9466`, `127.0.0.1:9466`, `[::1]:9466`, `localhost:9466`."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(
            f"invalid listen address {text!r}: use HOST:PORT or :PORT, like :{DEFAULT_PORT}"
        )
    host = host.strip("[]") or None
    return ListenAddress(host, int(port_text))


def _telemetry_path(text: str) -> str:
    path = text.strip()
    if not path.startswith("/") or path in ("/healthz", "/readyz") or any(c in path for c in "?#"):
        raise argparse.ArgumentTypeError(
            f"invalid telemetry path {text!r}: a path like /metrics, not /healthz or /readyz"
        )
    return path


def _label(text: str) -> tuple[str, str]:
    try:
        return parse_label(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _scenario(text: str) -> object:
    from exporter.sources.simulated import parse_scenario

    try:
        return parse_scenario(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _kv_cache_memory(text: str) -> object:
    try:
        return parse_kv_cache_memory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _harness_device(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text.strip()):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text.strip()


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a ratio in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a ratio in (0, 1], got {text!r}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected requests per second (0 or more), got {text!r}")
    return value


def _length_distribution(text: str) -> object:
    from exporter.harness.loadgen import parse_length_distribution

    try:
        return parse_length_distribution(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Negated(argparse.Action):
    """`--no-X[=BOOL]`: sets X to the opposite of BOOL (true when bare)."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        setattr(namespace, self.dest, not (True if values is None else values))


def env_name(flag: str) -> str:
    """`--collect.interval` → `GIE_COLLECT_INTERVAL`."""
    return ENV_PREFIX + re.sub(r"[.-]", "_", flag.lstrip("-")).upper()


def _scenario_help() -> str:
    from exporter.sources.simulated import SCENARIOS

    return "; ".join(f"{name}: {text}" for name, text in SCENARIOS.items()).replace("%", "%%")


def _model_choices() -> list[str]:
    from exporter.sources.simulated import GPU_MODELS

    return list(GPU_MODELS)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gpu-inference-exporter",
        description=(
            "Prometheus exporter for GPU inference nodes: GPU health from DCGM or NVML beside "
            "the KV-cache, token-latency and PyTorch allocator figures of an inference harness."
        ),
        epilog=(
            "Every `serve` flag also reads an environment variable: GIE_ + the flag name in "
            "capitals, `.` and `-` as `_` (--collect.interval: GIE_COLLECT_INTERVAL); "
            "repeatable flags take a `;`-separated list. Run `gpu-inference-exporter serve "
            "--help` for the flags."
        ),
    )
    version = f"gpu-inference-exporter {__version__} (Python {platform.python_version()})"
    parser.add_argument("--version", action="version", version=version)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the exporter (the default command)",
        description=(
            "Collect from the GPU backend every interval in the background and serve the "
            "latest snapshot on /metrics; /healthz says the process lives, /readyz that the "
            "data is fresh."
        ),
        formatter_class=_HelpFormatter,
        epilog=(
            "Each flag also reads GIE_<FLAG> from the environment (see the flag list). "
            "Kubernetes: NODE_NAME (Downward API) becomes the node label of every series "
            "(outside Kubernetes: the host name); POD_NAMESPACE and POD_NAME label "
            "exporter_pod_info (--identity.pod-labels: every series)."
        ),
    )
    serve.add_argument("--version", action="version", version=version)
    add = _env_adder(serve)
    add(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="GPU backend. auto: DCGM if a hostengine answers and DCGM's Python bindings import, "
        "else NVML if it finds a GPU, else none (never the simulator); simulated: a deterministic "
        "fake fleet for demos and tests",
    )
    add(
        "--web.listen-address",
        dest="listen_address",
        type=parse_listen_address,
        default=parse_listen_address(f":{DEFAULT_PORT}"),
        metavar="HOST:PORT",
        help="address for /metrics, /healthz, /readyz and /; :PORT listens on every interface",
    )
    add(
        "--web.read-timeout",
        dest="web_read_timeout",
        type=parse_duration,
        default=10.0,
        metavar="DURATION",
        help="on both listeners, the time a client has to send a request's head (from "
        "connecting, or after its last answer) and, on the harness API, its body",
    )
    add(
        "--web.max-connections",
        dest="web_max_connections",
        type=_positive_int,
        default=512,
        metavar="N",
        help="connections each listener keeps open; one more is answered 503 and closed",
    )
    add(
        "--web.drain-timeout",
        dest="web_drain_timeout",
        type=parse_duration,
        default=5.0,
        metavar="DURATION",
        help="on SIGTERM or SIGINT, how long requests in flight may finish (/readyz fails at "
        "once; a second signal exits at once)",
    )
    add(
        "--web.telemetry-path",
        dest="telemetry_path",
        type=_telemetry_path,
        default="/metrics",
        metavar="PATH",
        help="path under which the metrics are served",
    )
    add(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        metavar="FILE",
        help="exporter-toolkit web configuration (TLS, client certificates, basic auth with "
        "bcrypt hashes, security headers) for --web.listen-address; re-read when it or a "
        "certificate changes",
    )
    add(
        "--web.disable-exporter-metrics",
        dest="disable_exporter_metrics",
        type=_boolean,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOL",
        help="leave out the process_* metrics about the exporter process itself",
    )
    add(
        "--collect.interval",
        dest="interval",
        type=parse_duration,
        default=1.0,
        metavar="DURATION",
        help="time between collections (seconds, or 500ms, 2s, 1m)",
    )
    add(
        "--collect.timeout",
        dest="timeout",
        type=parse_duration,
        default=None,
        metavar="DURATION",
        help="how long one source may take before it is marked down (default: the interval)",
    )
    add(
        "--collect.keep-series",
        dest="keep_series",
        type=_non_negative_int,
        default=3,
        metavar="INTERVALS",
        help="how many collections in a row a source may miss (time out, fail) while its last good "
        "series are still exported, with exporter_source_up 0, so one slow read does not break "
        "every graph; then they are dropped. 0 drops them at the first miss",
    )
    add(
        "--collect.processes",
        dest="collect_processes",
        type=_boolean,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOL",
        help="export gpu_process_memory_used_bytes, the device memory of each compute process "
        "(one series per process: opt-in for cardinality)",
    )
    add(
        "--torch.probe-dir",
        dest="torch_probe_dir",
        default=None,
        metavar="DIR",
        help="directory the allocator probes of the serving processes write to (vLLM with "
        "this package installed and GIE_TORCH_PROBE_DIR set, or exporter.probe.start() in any "
        "PyTorch server): export each process's torch_cuda_* figures, labelled pid and process",
    )
    add(
        "--torch.probe-uid",
        dest="torch_probe_uids",
        type=_non_negative_int,
        action="append",
        default=[],
        metavar="UID",
        help="also trust probe files owned by this user (repeatable); files of this process's "
        "user and of root are trusted, any other is refused",
    )
    add(
        "--dcgm.address",
        dest="dcgm_address",
        default="localhost:5555",
        metavar="HOST:PORT",
        help="DCGM hostengine to read (--backend dcgm), and that --backend auto probes first",
    )
    add(
        "--dcgm.embedded",
        dest="dcgm_embedded",
        type=_boolean,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOL",
        help="run DCGM inside the exporter instead of connecting to a hostengine (needs "
        "libdcgm.so.4; the profiling metrics need the exporter to run as root)",
    )
    add(
        "--label",
        dest="labels",
        type=_label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="constant label added to every series (repeatable), e.g. cluster=prod-eu",
    )
    add(
        "--identity.pod-labels",
        dest="pod_labels",
        type=_boolean,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOL",
        help="put POD_NAMESPACE and POD_NAME on every series as namespace and pod (default: "
        "on exporter_pod_info only, so that a rollout does not change the GPUs' series)",
    )
    add(
        "--simulate.gpus",
        dest="simulate_gpus",
        type=_positive_int,
        default=8,
        metavar="N",
        help="GPUs in the simulated fleet",
    )
    add(
        "--simulate.model",
        dest="simulate_model",
        choices=_model_choices(),
        default="H100 SXM 80GB",
        metavar="MODEL",
        help=f"GPU model of the simulated fleet: {', '.join(_model_choices())}",
    )
    add(
        "--simulate.seed",
        dest="simulate_seed",
        type=int,
        default=0,
        metavar="SEED",
        help="seed of the simulated fleet (same seed, same figures)",
    )
    add(
        "--simulate.mig",
        dest="simulate_mig",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="put the last N simulated GPUs in MIG mode (a 3g, a 2g and a 1g MIG device each), "
        "for the gpu_mig_* families and the MIG panels",
    )
    add(
        "--simulate.scenario",
        dest="scenarios",
        type=_scenario,
        action="append",
        default=[],
        metavar="NAME:gpu=I,start=S,duration=D",
        help="fault scenario (repeatable; gpu=all: on every GPU; start/duration in seconds from "
        "start, no duration = forever). Scenarios: " + _scenario_help(),
    )
    add(
        "--harness",
        type=_boolean,
        nargs="?",
        const=True,
        default=None,
        metavar="BOOL",
        help="run the embedded inference harness (needs the harness extra: PyTorch) and export "
        "its inference_* figures and this process's torch_cuda_* allocator figures. It runs a "
        "model and takes KV cache memory on the GPU, so with a real GPU backend (nvml, dcgm) "
        "it is opt-in (default: on with --backend simulated when PyTorch is installed, the "
        "demo; off otherwise)",
    )
    add(
        "--no-harness",
        dest="harness",
        action=_Negated,
        type=_boolean,
        nargs="?",
        default=argparse.SUPPRESS,
        metavar="BOOL",
        help="do not run the inference harness, even with PyTorch installed",
    )
    add(
        "--harness.preset",
        dest="harness_preset",
        choices=PRESET_CHOICES,
        default="auto",
        help="harness model size: tiny (CPU, tests) or small (about 100M parameters, for a "
        "GPU); auto: small on CUDA, tiny on CPU",
    )
    add(
        "--harness.weights",
        dest="harness_weights",
        default=None,
        metavar="PATH",
        help="local safetensors file with the preset's weights (default: random weights from a "
        "fixed seed; nothing is ever downloaded)",
    )
    add(
        "--harness.block-size",
        dest="harness_block_size",
        type=_positive_int,
        default=16,
        metavar="TOKENS",
        help="tokens per KV cache block",
    )
    add(
        "--harness.kv-cache-memory",
        dest="harness_kv_cache_memory",
        type=_kv_cache_memory,
        default=None,
        metavar="SIZE",
        help="memory of the KV block pool, allocated at start: bytes (256MiB, 2GiB) or, on "
        "CUDA, a fraction of the free memory (0.3) (default: 256MiB on CUDA, 64MiB on CPU)",
    )
    add(
        "--harness.device",
        dest="harness_device",
        type=_harness_device,
        default="auto",
        metavar="auto|cpu|cuda[:N]",
        help="where the harness runs; auto: CUDA when PyTorch sees a GPU, else the CPU",
    )
    add(
        "--harness.dtype",
        dest="harness_dtype",
        choices=DTYPE_CHOICES,
        default="auto",
        help="harness weights and KV cache dtype; auto: bfloat16 on CUDA, float32 on CPU",
    )
    add(
        "--harness.listen-address",
        dest="harness_listen_address",
        type=parse_listen_address,
        default=parse_listen_address(DEFAULT_HARNESS_ADDRESS),
        metavar="HOST:PORT",
        help="address of the harness's HTTP API (POST /v1/completions, GET /v1/models); it "
        "runs computations, so it listens on loopback unless told otherwise",
    )
    add(
        "--harness.web.config.file",
        dest="harness_web_config_file",
        default=None,
        metavar="FILE",
        help="web configuration, as --web.config.file, for the harness's API listener; without "
        "it, listening beyond loopback is warned about in the log",
    )
    add(
        "--harness.max-prompt-tokens",
        dest="harness_max_prompt_tokens",
        type=_positive_int,
        default=512,
        metavar="TOKENS",
        help="longest prompt accepted; a longer one is refused at the edge (HTTP 413)",
    )
    add(
        "--harness.max-tokens",
        dest="harness_max_tokens",
        type=_positive_int,
        default=256,
        metavar="TOKENS",
        help="largest max_tokens accepted; a larger one is refused at the edge (HTTP 400)",
    )
    add(
        "--harness.shed-kv-utilization",
        dest="harness_shed_kv_utilization",
        type=_ratio,
        default=0.9,
        metavar="RATIO",
        help="KV cache utilization from which new requests are shed (HTTP 503, Retry-After)",
    )
    add(
        "--harness.max-waiting",
        dest="harness_max_waiting",
        type=_positive_int,
        default=32,
        metavar="N",
        help="requests the queue holds before new ones are shed (HTTP 503, Retry-After)",
    )
    add(
        "--harness.request-timeout",
        dest="harness_request_timeout",
        type=parse_duration,
        default=5.0,
        metavar="DURATION",
        help="deadline of a request, queued or running; past it the request ends, its KV "
        "blocks are freed and the client gets HTTP 504",
    )
    add(
        "--harness.load",
        dest="harness_load",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="synthetic load through the harness's API: requests per second, Poisson arrivals "
        "(0: off)",
    )
    add(
        "--harness.load.prompt-tokens",
        dest="harness_load_prompt_tokens",
        type=_length_distribution,
        default="uniform:16,256",
        metavar="DIST",
        help="prompt lengths of the synthetic load: N, uniform:MIN,MAX, exponential:MEAN or "
        "lognormal:MEDIAN,SIGMA",
    )
    add(
        "--harness.load.max-tokens",
        dest="harness_load_max_tokens",
        type=_length_distribution,
        default="uniform:16,128",
        metavar="DIST",
        help="output lengths (max_tokens) of the synthetic load, as for prompt lengths",
    )
    add("--log.format", dest="log_format", choices=FORMATS, default="text", help="log format")
    add("--log.level", dest="log_level", choices=LEVELS, default="info", help="log level")

    generate = commands.add_parser(
        "generate",
        help="write the generated artifacts (README metric table, dashboards, rules)",
        description="Regenerate every committed artifact from the catalog and definitions.",
    )
    generate.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing the files that are stale",
    )
    generate.add_argument(
        "--root", default=None, help="repository root (default: the one this package is in)"
    )
    dashboards = commands.add_parser(
        "dashboards", help="work with the generated Grafana dashboards"
    )
    dashboard_commands = dashboards.add_subparsers(dest="dashboards_command", metavar="COMMAND")
    dashboard_commands.required = True
    preview = dashboard_commands.add_parser(
        "preview",
        help="draw each dashboard to a PNG from a live Prometheus (no Grafana needed)",
        description="Run every panel's queries against Prometheus and draw the dashboards, laid "
        "out as Grafana lays them out, one PNG per dashboard (needs matplotlib: the `preview` "
        "extra).",
        formatter_class=_HelpFormatter,
    )
    preview.add_argument("--prometheus", required=True, metavar="URL", help="Prometheus base URL")
    preview.add_argument("--out", default="dashboards/previews", help="directory for the PNGs")
    preview.add_argument(
        "--range", dest="range_seconds", type=parse_duration, default=900.0,
        metavar="DURATION", help="time range drawn (seconds, or 5m, 1h)",
    )  # fmt: skip
    preview.add_argument(
        "--rate-interval", default="1m", metavar="DURATION",
        help="what $__rate_interval becomes in the queries",
    )  # fmt: skip
    preview.add_argument(
        "--allow-empty", action="store_true",
        help="skip a dashboard none of whose panels has data (e.g. the inference dashboard "
        "without the harness) instead of failing",
    )  # fmt: skip
    generate.add_argument(
        "--alerts-config",
        default=None,
        metavar="FILE",
        help="YAML file overriding alert thresholds and for durations (see alerts/thresholds.py)",
    )
    return parser


def _env_adder(parser: argparse.ArgumentParser):  # type: ignore[no-untyped-def]
    """add_argument that also names the flag's environment variable in its help."""

    def add(flag: str, **kwargs: object) -> None:
        kwargs["help"] = f"{kwargs.get('help', '')} [env {env_name(flag)}]"
        parser.add_argument(flag, **kwargs)  # type: ignore[arg-type]

    return add


def with_environment(
    argv: Sequence[str], parser: argparse.ArgumentParser, environ: Mapping[str, str]
) -> list[str]:
    """Prepend `--flag value` for each GIE_ variable whose flag is not on the command line."""
    if not argv or argv[0] != "serve":
        return list(argv)
    serve = _subparser(parser, "serve")
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    injected: list[str] = []
    for action in serve._actions:
        flags = [f for f in action.option_strings if f.startswith("--")]
        if not flags or flags[0] == "--help":
            continue
        value = environ.get(env_name(flags[0]))
        if value is None or flags[0] in given:
            continue
        items = value.split(";") if isinstance(action, argparse._AppendAction) else [value]
        for item in items:
            if item.strip():
                _check_environment_value(action, flags[0], item.strip())
                injected += [f"{flags[0]}={item.strip()}"]
    return ["serve", *injected, *argv[1:]]


def _check_environment_value(action: argparse.Action, flag: str, value: str) -> None:
    """CliError naming the variable (and its flag) when the flag would refuse its value."""
    where = f"{env_name(flag)}={value!r} (the environment's {flag})"
    try:
        converted = action.type(value) if callable(action.type) else value
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise CliError(f"{where}: {exc}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise CliError(f"{where}: invalid choice (choose from {choices})")


def attach_values(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """`--flag -1s` → `--flag=-1s` for a flag that takes a value, so a value that starts with
    `-` reaches the flag's own check ("a duration is greater than 0") instead of argparse's
    "expected one argument"."""
    if not argv or argv[0] != "serve":
        return list(argv)
    serve = _subparser(parser, "serve")
    options = set(serve._option_string_actions)
    takes_value = {
        flag
        for flag, action in serve._option_string_actions.items()
        if action.nargs is None
        and action.option_strings
        and not isinstance(
            action, (argparse._StoreConstAction, argparse._HelpAction, argparse._VersionAction)
        )
    }
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        following = argv[i + 1] if i + 1 < len(argv) else None
        if (
            token in takes_value
            and following is not None
            and following.startswith("-")
            and following.split("=", 1)[0] not in options
            and following != "--"
        ):
            out.append(f"{token}={following}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    parser = build_parser()
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["serve", *argv]
    try:
        argv = with_environment(attach_values(argv, parser), parser, environ)
    except CliError as exc:
        print(f"gpu-inference-exporter: error: {exc}", file=sys.stderr)
        return 2
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's parser, so its --help is the one pointed at
        command = _subparser(parser, args.command) if args.command else parser
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command == "generate":
            from exporter.generate import run_generate

            return run_generate(check=args.check, root=args.root, alerts_config=args.alerts_config)
        if args.command == "dashboards":
            return preview_dashboards(args)
        setup_logging(args.log_format, args.log_level)
        return serve(args, environ)
    except CliError as exc:
        print(f"gpu-inference-exporter: error: {exc}", file=sys.stderr)
        return 2


def preview_dashboards(args: argparse.Namespace) -> int:
    """`dashboards preview`: one PNG per dashboard from live Prometheus data."""
    from pathlib import Path

    try:
        import grafanalib  # noqa: F401
        import matplotlib  # noqa: F401

        from dashboards.preview import PreviewError, PreviewOptions, run_preview
    except ImportError as exc:
        raise CliError(
            f"dashboards preview needs {exc.name or exc}, which the preview extra installs: "
            "pip install 'gpu-inference-exporter[preview]'"
        ) from None
    options = PreviewOptions(
        prometheus=args.prometheus,
        out=Path(args.out),
        range_seconds=args.range_seconds,
        rate_interval=args.rate_interval,
        allow_empty=args.allow_empty,
    )
    skipped: list[str] = []
    try:
        paths = run_preview(options, skipped)
    except PreviewError as exc:
        print(f"gpu-inference-exporter: error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"wrote {path}")
    for title in skipped:
        print(f"skipped {title}: no panel has data", file=sys.stderr)
    return 0


def check_contradictions(args: argparse.Namespace) -> None:
    """CliError for flags that contradict each other (each said, none silently dropped)."""
    keys = [key for key, _ in args.labels]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise CliError(f"--label {twice[0]}=... is given twice: one value per label")
    if getattr(args, "harness", None) is False and args.harness_load > 0:
        raise CliError(
            f"--harness.load {args.harness_load:g} needs the harness, which --no-harness turns "
            "off: drop one of them"
        )


def serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the exporter until SIGINT or SIGTERM."""
    from exporter.listener import ListenError
    from exporter.runtime import build_runtime, listener_limits, run_until_signalled

    check_contradictions(args)
    backend = args.backend
    if backend == "auto":
        backend = detect_backend(
            args.dcgm_address,
            dcgm_probe=lambda address: dcgm_usable(address, embedded=args.dcgm_embedded),
        )
        if backend == "none":
            log.warning(NO_GPU_HINT)
    if args.scenarios and backend != "simulated":
        raise CliError("--simulate.scenario needs --backend simulated")
    try:
        const_labels = constant_labels(args.labels, environ, pod_labels=args.pod_labels)
        runtime = build_runtime(
            backend=backend,
            args=args,
            const_labels=const_labels,
            static_samples=pod_info(environ, pod_labels=args.pod_labels),
        )
    except ValueError as exc:  # e.g. a scenario for GPU 9 in an 8-GPU fleet
        raise CliError(str(exc)) from None
    signals = (signal.SIGINT, signal.SIGTERM)
    limits = listener_limits(args)
    try:
        return asyncio.run(run_until_signalled(runtime, args.listen_address, signals, limits))
    except ListenError as exc:  # names its one address and flag
        raise CliError(str(exc)) from None
