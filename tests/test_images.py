"""The container images, built with podman (scripts/build-images: no registry, no network in the
build) and run as a user runs them: the chart's hardening (read-only root, no capabilities, no
privilege escalation), /metrics scraped from the host, SIGTERM honoured."""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, parse_metrics, series

pytestmark = pytest.mark.image

NON_ROOT_UID = 65532  # the Containerfile's USER, the chart's runAsUser
CACHE = Path(
    os.environ.get("GIE_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpu-inference-exporter"
)
#: What a DaemonSet pod gets from the chart's securityContext (/tmp: an emptyDir there).
HARDENED = (
    "--read-only",
    "--tmpfs=/tmp",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
)


@dataclass(frozen=True)
class Image:
    name: str
    megabytes: int
    build_seconds: float


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CACHE / "containers.conf")}


def podman(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, check=check,
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="session")
def images(pytestconfig: pytest.Config) -> dict[str, Image]:
    """Both images, built once per session; their sizes and build times printed."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts/build-images"), "exporter", "harness"],
        env={**os.environ, "GIE_CACHE": str(CACHE), "PYTHON": str(REPO / ".venv/bin/python")},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    built = {}
    for line in done.stdout.splitlines():
        m = re.match(r"built (\S+) (\d+) MB ([\d.]+) s", line)
        if m:
            name, mb, seconds = m.group(1), int(m.group(2)), float(m.group(3))
            target = "harness" if "-harness:" in name else "exporter"
            built[target] = Image(name, mb, seconds)
    assert set(built) == {"exporter", "harness"}, done.stdout
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        for target, image in built.items():
            print(f"\nimage {target}: {image.name} {image.megabytes} MB, built in "
                  f"{image.build_seconds} s (scripts/build-images)", end="")  # fmt: skip
    return built


@contextmanager
def container(image: str, *args: str) -> Iterator[tuple[str, str]]:
    """Run `image ARGS` detached and hardened, port 9466 published on 127.0.0.1; yields
    (container id, base URL); removes the container afterwards."""
    port = free_port()
    run = podman("run", "--detach", *HARDENED, f"--publish=127.0.0.1:{port}:9466", image, *args)
    cid = run.stdout.strip()
    try:
        yield cid, f"http://127.0.0.1:{port}"
    finally:
        podman("rm", "--force", "--time=0", cid, check=False)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


def wait_ready(cid: str, url: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if get(url + "/readyz")[0] == 200:
            return
        time.sleep(0.2)
    logs = podman("logs", cid, check=False)
    pytest.fail(f"/readyz not 200 within {within} s:\n{logs.stdout}{logs.stderr}")


def pid1_uid(cid: str) -> int:
    """The real uid of the container's PID 1 (the exporter itself)."""
    status = podman("exec", cid, "cat", "/proc/1/status").stdout
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))


def stop(cid: str) -> tuple[float, int]:
    """`podman stop` with a 30 s grace: (seconds it took, the container's exit code)."""
    start = time.monotonic()
    podman("stop", "--time=30", cid, timeout=60)
    took = time.monotonic() - start
    code = int(podman("inspect", "--format", "{{.State.ExitCode}}", cid).stdout.strip())
    return took, code


def test_the_exporter_image_serves_the_simulated_fleet_as_non_root(images):
    image = images["exporter"]
    with container(image.name, "serve", "--backend", "simulated", "--simulate.gpus", "2") as (
        cid,
        url,
    ):
        wait_ready(cid, url)
        status, body = get(url + "/metrics")
        assert status == 200
        metrics = parse_metrics(body)
        assert len(series(metrics, "gpu_up")) == 2
        assert series(metrics, "exporter_build_info")
        assert not [k for k in metrics if k[0].startswith("inference_")]  # no harness here
        assert get(url + "/healthz")[0] == 200
        assert pid1_uid(cid) == NON_ROOT_UID
        took, code = stop(cid)
    # SIGTERM handled: a clean exit, long before the 30 s after which podman would SIGKILL.
    assert code == 0
    assert took < 5, f"podman stop took {took:.1f} s"


def test_the_exporter_image_has_no_pytorch_and_no_pip(images):
    image = images["exporter"]
    probe = (
        "import importlib.util as u, sys; "
        "sys.exit(any(u.find_spec(m) for m in ('torch', 'pip', 'setuptools')))"
    )
    done = podman("run", "--rm", *HARDENED, "--entrypoint=/opt/gie/bin/python", image.name,
                  "-c", probe, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert images["exporter"].megabytes < images["harness"].megabytes


def test_the_harness_image_runs_the_canary_on_cpu(images):
    """The canary's image with the pinned CPU PyTorch: the harness serves its synthetic load."""
    image = images["harness"]
    args = ["serve", "--backend", "simulated", "--simulate.gpus", "1", "--harness.device", "cpu"]
    with container(image.name, *args, "--harness.load", "5") as (cid, url):
        wait_ready(cid, url, within=120)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = parse_metrics(get(url + "/metrics")[1])
            if sum(series(metrics, "inference_requests_total", outcome="ok").values()) > 0:
                break
            time.sleep(0.5)
        assert sum(series(metrics, "inference_requests_total", outcome="ok").values()) > 0
        assert pid1_uid(cid) == NON_ROOT_UID
        took, code = stop(cid)
    assert code == 0
    assert took < 10, f"podman stop took {took:.1f} s"
