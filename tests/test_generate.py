"""Generated artifacts are committed and a stale one fails."""

import shutil

from exporter.catalog import FAMILIES
from exporter.generate import METRICS_BEGIN, METRICS_END, stale_artifacts
from tests.conftest import REPO
from tests.test_cli import cli


def test_committed_artifacts_are_up_to_date():
    assert stale_artifacts(REPO) == [], "run `gpu-inference-exporter generate` and commit"


def test_readme_metric_table_lists_every_family():
    readme = (REPO / "README.md").read_text()
    table = readme.split(METRICS_BEGIN)[1].split(METRICS_END)[0]
    for name in FAMILIES:
        assert f"| `{name}` |" in table


def test_generate_check_fails_on_a_stale_copy_and_generate_repairs_it(tmp_path):
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| `gpu_up` |", "| `gpu_upp` |"))
    check = cli("generate", "--check", "--root", str(tmp_path))
    assert check.returncode == 1
    assert "stale: README.md" in check.stderr
    assert cli("generate", "--root", str(tmp_path)).returncode == 0
    assert cli("generate", "--check", "--root", str(tmp_path)).returncode == 0
    assert readme.read_text() == (REPO / "README.md").read_text()
