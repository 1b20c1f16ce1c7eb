"""The Ray backend: the same results as the local backend, failures reported, --address joins a cluster.

Skipped when Ray is not installed (``pip install 'ouro[ray]'``). The module starts one
local Ray (two CPUs) in a temporary directory and stops it at the end, removing the
token Ray writes under ``~/.ray`` if this module made it.
"""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ouro.sweep import cell_dir, plan_sweep, run_sweep
from tests.test_sweep import reference, study, sweep_values  # noqa: F401 (fixtures: the same study, run locally)

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for this module; yields its address."""
    home_token = Path.home() / ".ray"
    had_token = home_token.exists()
    temp = tempfile.mkdtemp(prefix="ouro-ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(num_cpus=2, _temp_dir=temp, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        if not had_token:
            shutil.rmtree(home_token, ignore_errors=True)


def summary_values(out: Path) -> list[dict]:
    with open(out / "sweep_summary.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "cost_wall_seconds"} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_ray_gives_the_local_backends_values(local_ray, study, reference, tmp_path):
    result = run_sweep(plan_sweep(study), tmp_path, backend="ray")
    assert (result.finished, result.failures) == (4, {})
    assert sweep_values(tmp_path) == sweep_values(reference)
    assert summary_values(tmp_path) == summary_values(reference)
    assert ray.is_initialized()  # a Ray the sweep did not start is left running


@pytest.mark.slow
def test_a_failing_cell_is_retried_then_reported_with_its_reason(local_ray, study, tmp_path):
    plan = plan_sweep(study, ["loop.regime=replace"])
    broken = cell_dir(tmp_path, plan.cells[0].slug) / "arms" / "none" / "gen-000000.jsonl"
    (broken / "in-the-way").mkdir(parents=True)
    result = run_sweep(plan, tmp_path, backend="ray", retries=1)
    assert result.finished == 1 and list(result.failures) == [plan.cells[0].slug]
    assert "IsADirectoryError" in result.failures[plan.cells[0].slug]
    assert (tmp_path / "failed.json").is_file()


@pytest.mark.slow
def test_the_command_line_joins_a_running_cluster_with_address(local_ray, study, reference, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ouro.cli", "sweep", str(study), "--backend", "ray", "--address", local_ray,
         "--out", str(tmp_path / "s"), "--quiet", "--no-report"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "4/4 cells finished" in done.stdout
    assert sweep_values(tmp_path / "s") == sweep_values(reference)
