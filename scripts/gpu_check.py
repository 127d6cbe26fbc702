#!/usr/bin/env python3
"""Check a GPU source on this machine's GPUs: start the exporter, scrape it, print a table.

Starts `gpu-inference-exporter serve --backend nvml --collect.processes` (or, with
`--backend dcgm`, the DCGM source against the hostengine of `--dcgm.address`, default
localhost:5555) on a free 127.0.0.1 port, lets it collect for a few seconds while scraping
/metrics, then prints:
- every gpu_* family with its value per GPU (series with an extra label one row per value;
  clock-event reasons and Xid codes as the ones that are set, the recovery action by name),
- what the backend said it does not support (NVML) or has no value for (DCGM), per GPU, and
  with DCGM whether the profiling module serves (all from the exporter's log),
- scrape latency (p50/p99/max), collection duration of the source (p50/max) and the
  exporter's CPU seconds per collection cycle,
- with PyTorch on CUDA (`--probe`, scripts/gpu_check_probe.py): the allocator probe in a real
  CUDA process, its figures as the exporter reads them from its file against the process's
  own, what a write costs, and its series and file gone once the process is killed.

Exit status: 0 when every family this hardware should answer is there; 1 when one is missing
or the source is down; 2 when the exporter fails to start or dies. Run it through
`scripts/gpu-check` (which picks the repository's .venv). It reads the GPU and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gpu_check_probe import check_probe  # noqa: E402  (scripts/, this file's directory)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from exporter.catalog import FAMILIES  # noqa: E402

#: Every GPU NVML reports on must answer these (MIG mode exempts utilization).
CORE = [
    "gpu_info",
    "gpu_up",
    "gpu_utilization_ratio",
    "gpu_memory_copy_utilization_ratio",
    "gpu_memory_used_bytes",
    "gpu_memory_free_bytes",
    "gpu_memory_total_bytes",
    "gpu_memory_reserved_bytes",
    "gpu_temperature_celsius{sensor=gpu}",
    "gpu_power_watts",
    "gpu_power_limit_watts",
    "gpu_energy_joules_total",
    "gpu_clock_hertz{clock=graphics}",
    "gpu_clock_hertz{clock=sm}",
    "gpu_clock_hertz{clock=memory}",
    "gpu_clock_max_hertz{clock=graphics}",
    "gpu_clock_max_hertz{clock=sm}",
    "gpu_clock_max_hertz{clock=memory}",
    "gpu_clock_event_active",
    "gpu_pcie_replays_total",
    "gpu_xid_errors_total",
]
#: Data-center GPUs (HBM, ECC, row remapping) must also answer these.
DATACENTER = [
    "gpu_temperature_celsius{sensor=memory}",
    "gpu_ecc_errors_total{type=corrected}",
    "gpu_ecc_errors_total{type=uncorrected}",
    "gpu_remapped_rows",
    "gpu_row_remap_pending",
    "gpu_row_remap_failure",
]
#: ...and, unless they are PCIe boards, NVLink.
NVLINK = [
    "gpu_nvlink_link_up",
    "gpu_nvlink_transmit_bytes_total",
    "gpu_nvlink_receive_bytes_total",
    "gpu_nvlink_errors_total",
]
#: DCGM has no graphics clock field; it adds the profiling families (on data-center GPUs).
DCGM_MISSING = {"gpu_clock_hertz{clock=graphics}", "gpu_clock_max_hertz{clock=graphics}"}
DCGM_PROFILING = [
    "gpu_sm_active_ratio",
    "gpu_sm_occupancy_ratio",
    "gpu_tensor_active_ratio",
    "gpu_dram_active_ratio",
    "gpu_pcie_transmit_bytes_total",
    "gpu_pcie_receive_bytes_total",
]
DATACENTER_NAMES = re.compile(r"\b(A30|A100|A800|H100|H800|H200|H20|GH200|B100|B200|GB200)\b")
UNSUPPORTED_LOG = re.compile(
    r"^GPU (\d+) \(.*\): (?:not supported by NVML|no value from DCGM) here, absent: (.+)$"
)
#: DCGM profiling state from the log: refused (with why), blank (paused), or serving again.
PROFILING_LOG = re.compile(
    r"^DCGM profiling (?:(unavailable: .+?)\. |(values are blank)"
    r"|fields are watched now|values are back)"
)
MIG_LOG = re.compile(r"^GPU (\d+) is in MIG mode")
#: nvmlDeviceGpuRecoveryAction_t: what the driver says the GPU needs (gpu_recovery_action).
#: Printed, never required: drivers before R565 (and DCGM before 4.5) do not have it.
RECOVERY_ACTIONS = {
    0: "none",
    1: "GPU reset",
    2: "node reboot",
    3: "drain P2P",
    4: "drain and reset",
    5: "recover IMEX domain",
    6: "bus reset",
    7: "system reboot",
}
#: Rows with one extra label that get one row per label value.
ROW_PER_VALUE = {"sensor", "clock", "type", "kind"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str, timeout: float = 5.0) -> tuple[float, str]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = resp.read().decode()
    return time.perf_counter() - started, body


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc (None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: Labels every series of the exporter carries (identity, not a row of its own).
IDENTITY_LABELS = ("gpu", "uuid", "node", "cluster", "namespace", "pod")


def row_key(name: str, labels: dict[str, str]) -> str:
    extra = {k: v for k, v in labels.items() if k not in IDENTITY_LABELS}
    if len(extra) == 1 and next(iter(extra)) in ROW_PER_VALUE:
        k, v = next(iter(extra.items()))
        return f"{name}{{{k}={v}}}"
    return name


def fmt(name: str, value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if name.endswith("_bytes") or name.endswith("_bytes_total"):
        return f"{value / 2**30:.2f} GiB"
    if name.endswith("_hertz"):
        return f"{value / 1e6:.0f} MHz"
    if name.endswith("_ratio"):
        return f"{value * 100:.0f} %"
    if name.endswith("_watts"):
        return f"{value:.1f} W"
    if name.endswith("_joules_total"):
        return f"{value / 1000:.1f} kJ"
    if name.endswith("_celsius"):
        return f"{value:.0f} °C"
    return f"{value:g}"


def table(samples, gpus: list[str]) -> tuple[list[list[str]], dict[str, set[str]]]:
    """Rows (family, value per GPU) and, per GPU, the row keys present."""
    cells: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    present: dict[str, set[str]] = defaultdict(set)
    for name, labels, value in samples:
        gpu = labels.get("gpu")
        if not name.startswith("gpu_") or gpu is None:
            continue
        key = row_key(name, labels)
        present[gpu].add(key)
        present[gpu].add(name)
        cells[key][gpu].append((labels, value))
    order = {name: i for i, name in enumerate(FAMILIES)}
    rows = []
    for key in sorted(cells, key=lambda k: (order.get(k.split("{")[0], 999), k)):
        name = key.split("{")[0]
        row = [key]
        for gpu in gpus:
            row.append(summarize(name, cells[key].get(gpu, [])))
        rows.append(row)
    return rows, present


def summarize(name: str, series: list) -> str:
    if not series:
        return "-"
    if name == "gpu_info":
        return series[0][0].get("name", "")[:22] or "?"
    if name == "gpu_clock_event_active":
        active = [lb["reason"] for lb, v in series if v]
        return ",".join(active) or "none"
    if name == "gpu_xid_errors_total":
        hits = [f"{lb['xid']}:{v:g}" for lb, v in series if v]
        return ",".join(hits) or f"0 ({len(series)} codes)"
    if name == "gpu_recovery_action" and len(series) == 1:
        action = int(series[0][1])
        return f"{action} ({RECOVERY_ACTIONS.get(action, 'unknown')})"
    if name == "gpu_nvlink_link_up":
        return f"{sum(v for _, v in series):g}/{len(series)} up"
    if name.startswith("gpu_mig") or name == "gpu_process_memory_used_bytes":
        total = sum(v for _, v in series)
        return f"{len(series)}x" if name == "gpu_mig_info" else f"{len(series)}: {fmt(name, total)}"
    if len(series) == 1:
        return fmt(name, series[0][1])
    return f"{len(series)} series"


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def expected_for(name: str, mig: bool, backend: str = "nvml") -> list[str]:
    want = list(CORE)
    if mig:
        want = [f for f in want if "utilization" not in f]
    if backend == "dcgm":
        want = [f for f in want if f not in DCGM_MISSING]
    if DATACENTER_NAMES.search(name):
        want += DATACENTER
        if "PCIe" not in name:
            want += NVLINK
        if backend == "dcgm":
            want += DCGM_PROFILING
    return want


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="how long to collect")
    parser.add_argument("--scrapes", type=int, default=60, help="scrapes spread over that time")
    parser.add_argument("--interval", default="1s", help="the exporter's --collect.interval")
    parser.add_argument(
        "--backend", choices=("nvml", "dcgm"), default="nvml", help="the GPU source to check"
    )
    parser.add_argument("--expect", action="append", default=[], help="also require FAMILY")
    parser.add_argument(
        "--allow-missing", action="append", default=[], help="do not require FAMILY"
    )
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument(
        "--probe",
        choices=("auto", "on", "off"),
        default="auto",
        help="run the allocator probe in a PyTorch process on the GPU and check what the "
        "exporter reads from it (auto: when this Python's torch sees CUDA; on: fail otherwise)",
    )
    parser.add_argument("--probe-interval", type=float, default=0.5, help="the probe's interval")
    parser.add_argument(
        "--probe-python",
        default=sys.executable,
        help="the Python (with CUDA PyTorch) that runs the probed process; it needs only torch",
    )
    args, exporter_args = parser.parse_known_args(argv)
    args.probe_dir = None
    if args.probe != "off":
        args.probe_dir = Path(tempfile.mkdtemp(prefix="gpu-check-probe-"))
        exporter_args.append(f"--torch.probe-dir={args.probe_dir}")

    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    cmd = [sys.executable, "-m", "exporter", "serve", f"--backend={args.backend}"]
    cmd += [f"--web.listen-address=127.0.0.1:{port}", f"--collect.interval={args.interval}"]
    if args.backend == "nvml":
        cmd.append("--collect.processes")
    cmd += ["--log.format=json", "--no-harness", *exporter_args]
    print(f"$ {' '.join(cmd)}")
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu-check-{os.getpid()}.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            return run_check(args, proc, url, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log_path.unlink(missing_ok=True)
            if args.probe_dir is not None:
                shutil.rmtree(args.probe_dir, ignore_errors=True)


def read_log(path: Path) -> list[dict]:
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            entries.append({"level": "raw", "msg": line})
    return entries


def run_check(args, proc: subprocess.Popen, url: str, log_path: Path) -> int:
    deadline = time.monotonic() + args.startup_timeout
    while True:
        if proc.poll() is not None:
            print(f"FAIL: the exporter exited with status {proc.returncode}:")
            for e in read_log(log_path)[-20:]:
                print("  ", e.get("msg"))
            return 2
        try:
            _, body = scrape(url, timeout=2)
            if any(
                n == "exporter_source_up" and lb.get("source") == args.backend and v == 1
                for n, lb, v in parse(body)
            ):
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            print(
                f"FAIL: the {args.backend} source did not come up within {args.startup_timeout:g}s"
            )
            for e in read_log(log_path):
                if e.get("level") in ("warning", "error", "raw"):
                    print("  ", e.get("msg"))
            return 1
        time.sleep(0.2)

    cpu0, cycles0 = cpu_seconds(proc.pid), _cycle_stamp(body)
    latencies, durations = [], {}
    pause = args.seconds / max(1, args.scrapes)
    for _ in range(args.scrapes):
        elapsed, body = scrape(url)
        latencies.append(elapsed)
        samples = parse(body)
        stamp = _cycle_stamp(body)
        for n, lb, v in samples:
            if n == "exporter_collect_duration_seconds" and lb.get("source") == args.backend:
                durations[stamp] = v
        time.sleep(pause)
    cpu1, cycles1 = cpu_seconds(proc.pid), _cycle_stamp(body)
    if proc.poll() is not None:
        print(f"FAIL: the exporter died during the check (status {proc.returncode})")
        return 2

    samples = parse(body)
    log = read_log(log_path)
    gpus = sorted({lb["gpu"] for n, lb, _ in samples if n == "gpu_info"}, key=int)
    names = {lb["gpu"]: lb.get("name", "") for n, lb, _ in samples if n == "gpu_info"}
    up = {lb["gpu"]: v for n, lb, v in samples if n == "gpu_up"}
    unsupported: dict[str, str] = {}
    mig: set[str] = set()
    profiling = "serving" if args.backend == "dcgm" else ""
    for e in log:
        msg = str(e.get("msg", ""))
        if m := UNSUPPORTED_LOG.match(msg):
            unsupported[m.group(1)] = m.group(2)
        if m := PROFILING_LOG.match(msg):
            profiling = m.group(1) or m.group(2) or "serving"
        if m := MIG_LOG.match(msg):
            mig.add(m.group(1))

    print()
    info = next((lb for n, lb, _ in samples if n == "gpu_info"), {})
    print(
        f"driver {info.get('driver_version') or '?'}, CUDA {info.get('cuda_version') or '?'}, "
        f"{len(gpus)} GPU(s)"
    )
    rows, present = table(samples, gpus)
    print_table(rows, ["family", *(f"GPU {g}" for g in gpus)])

    if args.backend == "dcgm":
        print("\nNo value from DCGM (absent, seen at the first reading):")
    else:
        print("\nNot supported by NVML (absent, decided at start):")
    for gpu in gpus:
        print(f"  GPU {gpu}: {unsupported.get(gpu, 'nothing')}")
    if profiling:
        print(f"\nDCGM profiling module: {profiling}")

    print("\nTimings:")
    print(
        f"  scrape /metrics      p50 {percentile(latencies, 0.5) * 1e3:7.2f} ms   "
        f"p99 {percentile(latencies, 0.99) * 1e3:7.2f} ms   max {max(latencies) * 1e3:7.2f} ms"
        f"   ({len(latencies)} scrapes)"
    )
    d = list(durations.values())
    print(
        f"  collect ({args.backend})       p50 {statistics.median(d) * 1e3:7.2f} ms   "
        f"max {max(d) * 1e3:7.2f} ms   ({len(d)} cycles)"
    )
    cycles = len({s for s in durations if cycles0 < s <= cycles1}) or len(d)
    if cpu0 is not None and cpu1 is not None and cycles:
        print(
            f"  exporter CPU         {(cpu1 - cpu0) / cycles * 1e3:7.2f} ms per cycle "
            f"(scrapes included)"
        )

    problems = []
    if args.probe_dir is not None:
        print("\nAllocator probe (a PyTorch process writing its torch.cuda.memory_stats):")
        lines, found = check_probe(
            lambda: parse(scrape(url)[1]), args.probe_dir, args.probe_interval, args.probe_python
        )
        for line in lines:
            print(f"  {line}")
        problems += found
        if args.probe == "on" and lines and lines[0].startswith("skipped"):
            problems.append(f"--probe on: the probe check was {lines[0]}")
    for n, lb, v in samples:
        failed = n == "exporter_collect_errors_total" and lb.get("reason") in ("invalid", "error")
        if failed and lb.get("source") == args.backend and v > 0:
            problems.append(
                f"the {args.backend} source had {v:g} collection(s) fail: {lb['reason']}"
            )
    for gpu in gpus:
        if up.get(gpu) != 1:
            problems.append(f"GPU {gpu} is down (gpu_up {up.get(gpu)})")
            continue
        want = expected_for(names.get(gpu, ""), gpu in mig, args.backend) + args.expect
        missing = [f for f in want if f not in present[gpu] and f not in args.allow_missing]
        if missing:
            problems.append(f"GPU {gpu} ({names.get(gpu)}) is missing: {', '.join(missing)}")
    nans = [f"{n}{lb}" for n, lb, v in samples if math.isnan(v)]
    if nans:
        problems.append(f"NaN values: {', '.join(nans[:5])}")
    warnings = [e.get("msg") for e in log if e.get("level") in ("warning", "error")]
    if warnings:
        print("\nExporter warnings:")
        for w in warnings[-10:]:
            print(f"  {w}")
    print()
    if problems:
        for p in problems:
            print(f"FAIL: {p}")
        return 1
    print(f"OK: every expected family answered on {len(gpus)} GPU(s)")
    return 0


def _cycle_stamp(body: str) -> float:
    for line in body.splitlines():
        if line.startswith("exporter_last_collect_timestamp_seconds"):
            return float(line.split()[-1])
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
