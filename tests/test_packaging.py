"""The package as a user installs it: a wheel built from this tree, installed (not editable) into a
fresh virtual environment in a temporary directory, run from elsewhere.

The wheel's dependencies come from this checkout's .venv, made visible to the fresh environment
through a .pth file pointing at a directory of links to its packages, all but the ones a test
leaves out (so that "extra not installed" is real). The wheel's metadata is checked to declare
each extra's imports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this tree, built from a copy (setuptools writes build/ beside the sources)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in ("exporter", "dashboards", "alerts"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (path,) = out.glob("gpu_inference_exporter-*.whl")
    return path


def requirements(wheel: Path) -> dict[str, set[str]]:
    """extra ("" for the base) → the distribution names it requires."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(zf.read(name).decode())
    out: dict[str, set[str]] = {}
    for line in metadata.get_all("Requires-Dist") or []:
        req = Requirement(line)
        extra = ""
        if req.marker is not None:
            marker = str(req.marker)
            extra = marker.split("extra ==")[1].strip().strip("'\"") if "extra ==" in marker else ""
        out.setdefault(extra, set()).add(req.name.lower().replace("_", "-"))
    return out


def test_the_extras_declare_what_their_commands_import(wheel):
    req = requirements(wheel)
    assert {"prometheus-client", "aiohttp", "pyyaml", "nvidia-ml-py", "bcrypt"} <= req[""]
    assert {"grafanalib"} <= req["generate"]
    assert {"grafanalib", "matplotlib"} <= req["preview"]
    assert {"torch"} <= req["harness"]


def test_the_wheel_carries_the_runbooks(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    runbooks = sorted(p.name for p in (REPO / "alerts" / "runbooks").glob("*.md"))
    assert runbooks
    for name in runbooks:
        assert f"alerts/runbooks/{name}" in names


def _environment(tmp: Path, wheel: Path, leave_out: tuple[str, ...]) -> Path:
    """A fresh venv with the wheel installed; the .venv's packages but `leave_out` visible."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    # install the wheel with this interpreter's pip into the fresh environment
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    deps = tmp / "deps"
    deps.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    left_out = tuple(n.lower() for n in leave_out)
    for entry in ours.iterdir():
        lowered = entry.name.lower()
        if lowered.startswith(("__editable__", "gpu_inference_exporter", "_virtualenv")):
            continue
        if lowered.startswith(left_out):
            continue
        (deps / entry.name).symlink_to(entry)
    (site / "deps.pth").write_text(f"{deps}\n")
    return python


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(python), "-m", "exporter", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_generate_and_preview_work_from_an_installed_package(wheel, tmp_path):
    python = _environment(tmp_path, wheel, leave_out=())
    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.check_output(
        [str(python), "-c", "import exporter; print(exporter.__file__)"], cwd=work, text=True
    )
    assert str(tmp_path / "venv") in where  # the installed copy, not this checkout
    result = _run(python, "generate", cwd=work)
    assert result.returncode == 0, result.stderr
    assert (work / "alerts" / "generated").is_dir()
    assert (work / "dashboards" / "generated" / "gpu-fleet.json").is_file()
    index = (work / "alerts" / "runbooks" / "README.md").read_text()
    assert "[GpuLost](GpuLost.md)" in index and (work / "alerts/runbooks/GpuLost.md").is_file()
    assert not (work / "README.md").exists()  # the checkout's README is not a user's artifact
    assert not (work / "helm").exists()  # nor its chart
    assert _run(python, "generate", "--check", cwd=work).returncode == 0
    # the previews' libraries import; an unreachable Prometheus is one line
    preview = _run(python, "dashboards", "preview", "--prometheus=http://127.0.0.1:1", cwd=work)
    assert preview.returncode == 1
    assert preview.stderr.startswith("gpu-inference-exporter: error: cannot query Prometheus")
    assert len(preview.stderr.strip().splitlines()) == 1


def test_a_missing_extra_is_one_line_naming_it(wheel, tmp_path):
    python = _environment(tmp_path, wheel, leave_out=("grafanalib", "matplotlib"))
    generate = _run(python, "generate", cwd=tmp_path)
    assert generate.returncode == 2
    assert generate.stderr.strip().splitlines() == [
        "gpu-inference-exporter: error: generate needs grafanalib, which the generate extra "
        "installs: pip install 'gpu-inference-exporter[generate]'"
    ]
    preview = _run(python, "dashboards", "preview", "--prometheus=http://127.0.0.1:1", cwd=tmp_path)
    assert preview.returncode == 2
    lines = preview.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'gpu-inference-exporter[preview]'" in lines[0]
