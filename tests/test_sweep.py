"""Sweeps: grid plans, resuming, killing, failing cells, tables, and the CLI's errors."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ouro.cli import app
from ouro.config import ConfigError, load_config
from ouro.sweep import Observer, cell_dir, parse_grid_option, plan_sweep, run_sweep, split_values

STUDY = """
name: tiny
seeds: 2
workers: 1
environment: {kind: estimators, problem: location, n: 50, dgp: {kind: contaminated, eps: 0.1, scale: 10.0}}
researcher: {kind: statistical}
loop: {generations: 4, proposals: 8, regime: replace}
arms:
  - {name: none, verifier: {kind: none}}
  - {name: montecarlo, verifier: {kind: montecarlo, replications: 10}}
sweep:
  grid:
    arms.montecarlo.verifier.replications: [5, 40]
    loop.regime: [replace, accumulate]
"""
SLUGS = [
    "replications=5,regime=replace",
    "replications=5,regime=accumulate",
    "replications=40,regime=replace",
    "replications=40,regime=accumulate",
]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("study") / "study.yaml"
    path.write_text(STUDY)
    return path


@pytest.fixture(scope="module")
def reference(study, tmp_path_factory) -> Path:
    """The study run once, uninterrupted, on two workers: what every other way must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    result = run_sweep(plan_sweep(study), out, workers=2)
    assert result.finished == 4 and not result.failures
    return out


def sweep_values(out: Path) -> list[list[str]]:
    """sweep.csv without the verifiers' measured wall-clock seconds, the one thing no rerun reproduces."""
    with open(out / "sweep.csv", newline="") as f:
        return [row for row in csv.reader(f) if row[-2] != "cost_wall_seconds"]


# ------------------------------------------------------------------ the plan


def test_grid_option_values_are_yaml_and_brackets_hold_together():
    assert parse_grid_option("loop.regime=replace,accumulate") == ("loop.regime", ["replace", "accumulate"])
    assert parse_grid_option("a.b=2, 0.5 ,true") == ("a.b", [2, 0.5, True])
    assert split_values("[1,2],{k: 3},x") == ["[1,2]", "{k: 3}", "x"]
    for bad in ("loop.regime", "=1,2", "loop.regime=", "loop.regime=a,,b"):
        with pytest.raises(ConfigError):
            parse_grid_option(bad)


def test_plan_is_the_product_in_grid_order_and_cli_grid_replaces_or_adds(study):
    plan = plan_sweep(study)
    assert [c.slug for c in plan.cells] == SLUGS
    assert plan.cells[1].values == {"arms.montecarlo.verifier.replications": 5, "loop.regime": "accumulate"}
    assert "replications: 5" in plan.cells[1].config_text and "regime: accumulate" in plan.cells[1].config_text
    plan = plan_sweep(study, ["loop.regime=replace", "loop.proposals=4,6"], seeds=3)
    assert [c.slug for c in plan.cells] == [
        "replications=5,regime=replace,proposals=4",
        "replications=5,regime=replace,proposals=6",
        "replications=40,regime=replace,proposals=4",
        "replications=40,regime=replace,proposals=6",
    ]
    assert all("seeds: 3" in c.config_text for c in plan.cells)
    assert plan.default_dir() == plan_sweep(study, ["loop.regime=replace"], seeds=3).default_dir()
    assert plan.default_dir() != plan_sweep(study, seeds=4).default_dir()


@pytest.mark.parametrize(
    "grid, expected",
    [
        (["loop.bogus=1,2"], "loop.bogus: unknown key"),
        (["loop.regime=sideways"], "loop.regime"),
        (["arms.nobody.verifier.replications=1,2"], "no item named 'nobody'"),
        (["arms.montecarlo.verifier.replications=1"], "replications"),
    ],
)
def test_invalid_grid_names_the_field(study, grid, expected):
    with pytest.raises(ConfigError, match=expected):
        plan_sweep(study, grid)


def test_malformed_sweep_section_and_missing_file(tmp_path, study):
    bad = tmp_path / "bad.yaml"
    bad.write_text(STUDY.replace("  grid:", "  grids:"))
    with pytest.raises(ConfigError, match="sweep.grids: unknown key"):
        plan_sweep(bad)
    bad.write_text(STUDY.replace("[replace, accumulate]", "replace"))
    with pytest.raises(ConfigError, match="sweep.grid.loop.regime: needs a non-empty list"):
        plan_sweep(bad)
    with pytest.raises(ConfigError, match="not found"):
        plan_sweep(tmp_path / "missing.yaml")


def test_ouro_run_rejects_a_study_with_a_pointer_to_sweep(study):
    with pytest.raises(ConfigError, match="ouro sweep"):
        load_config(study)


# ------------------------------------------------------------------ running


def test_tables_hold_every_cell_with_grid_columns(reference):
    with open(reference / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    assert header == ["cell", "arms.montecarlo.verifier.replications", "loop.regime", "arm", "seed", "generation",
                      "metric", "value"]  # fmt: skip
    cells_rows = 0
    for slug in SLUGS:
        with open(cell_dir(reference, slug) / "metrics.csv", newline="") as f:
            cells_rows += sum(1 for _ in f) - 1
    assert len(rows) == cells_rows
    assert {(r["cell"], r["arms.montecarlo.verifier.replications"], r["loop.regime"]) for r in rows} == {
        (s, s.split(",")[0].split("=")[1], s.split("=")[-1]) for s in SLUGS
    }
    with open(reference / "sweep_summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 4 * 2
    assert {r["verdict"] for r in summary} <= {"improved", "degraded", "collapsed", "stable"}
    assert float(summary[1]["cost_replications"]) > 0 and float(summary[0]["cost_replications"]) == 0
    manifest = json.loads((reference / "sweep.json").read_text())
    assert [c["slug"] for c in manifest["cells"]] == SLUGS


def test_parquet_tables_when_pyarrow_is_installed(reference, study, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(reference / "sweep.parquet")
    assert table.column("arms.montecarlo.verifier.replications").type.bit_width == 64
    assert table.num_rows == sum(1 for _ in open(reference / "sweep.csv")) - 1


def test_running_again_skips_finished_cells(reference, study):
    before = {s: (cell_dir(reference, s) / "summary.json").stat().st_mtime_ns for s in SLUGS}
    result = run_sweep(plan_sweep(study), reference, workers=2)
    assert (result.skipped, result.finished, result.failures) == (4, 4, {})
    assert before == {s: (cell_dir(reference, s) / "summary.json").stat().st_mtime_ns for s in SLUGS}


def test_a_changed_base_config_is_refused_in_the_same_directory(reference, study):
    with pytest.raises(ConfigError, match="different config"):
        run_sweep(plan_sweep(study, seeds=3), reference)


def _finished(out: Path) -> dict[str, tuple]:
    """Finished cells with the modification times of everything they wrote."""
    done = {}
    for slug in SLUGS:
        path = cell_dir(out, slug)
        if (path / "summary.json").is_file():
            files = sorted(path.glob("arms/*/gen-*.jsonl")) + [path / "summary.json", path / "metrics.csv"]
            done[slug] = tuple((f.name, f.stat().st_mtime_ns) for f in files)
    return done


@pytest.mark.slow
def test_killed_sweep_completes_on_rerun_without_redoing_finished_cells(study, reference, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ouro.cli", "sweep", str(study), "--out", str(out), "--workers", "1", "--quiet",
           "--no-report"]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not _finished(out):
        assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, "no cell finished in time"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers, as a terminal's kill would
    proc.wait()
    proc.stderr.close()
    done_before = _finished(out)
    assert 0 < len(done_before) < 4
    assert not (out / "sweep.csv").exists()

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    assert f"4/4 cells finished ({len(done_before)} were already)" in rerun.stdout
    done_after = _finished(out)
    assert {s: done_after[s] for s in done_before} == done_before  # finished cells untouched
    assert sweep_values(out) == sweep_values(reference)


class _Recorder(Observer):
    def __init__(self) -> None:
        self.retries: list[tuple[str, int, str]] = []
        self.failures: list[tuple[str, str]] = []

    def retry(self, slug: str, attempt: int, reason: str) -> None:
        self.retries.append((slug, attempt, reason))

    def failed(self, slug: str, reason: str) -> None:
        self.failures.append((slug, reason))


@pytest.mark.slow
def test_a_cell_whose_worker_dies_is_retried_and_finishes(study, reference, tmp_path):
    out, recorder, results = tmp_path / "died", _Recorder(), []
    thread = threading.Thread(target=lambda: results.append(run_sweep(plan_sweep(study), out, observer=recorder)))
    thread.start()
    deadline = time.monotonic() + 240
    while not list(out.glob("cells/*/arms/*/gen-000001.jsonl")):
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.02)
    victims = multiprocessing.active_children()
    assert victims
    for child in victims:
        os.kill(child.pid, signal.SIGKILL)
    thread.join(timeout=240)
    assert results and results[0].finished == 4 and not results[0].failures
    assert recorder.retries and "worker process died" in recorder.retries[0][2]
    assert sweep_values(out) == sweep_values(reference)


@pytest.mark.slow
def test_a_cell_that_keeps_failing_is_reported_and_the_rest_finish(study, tmp_path):
    plan = plan_sweep(study, ["loop.regime=replace"])
    broken = cell_dir(tmp_path, plan.cells[0].slug) / "arms" / "none" / "gen-000000.jsonl"
    (broken / "in-the-way").mkdir(parents=True)  # a directory where the first record must go
    recorder = _Recorder()
    result = run_sweep(plan, tmp_path, workers=2, retries=1, observer=recorder)
    assert result.finished == 1 and list(result.failures) == [plan.cells[0].slug]
    assert "IsADirectoryError" in result.failures[plan.cells[0].slug]
    assert [r[:2] for r in recorder.retries] == [(plan.cells[0].slug, 1)]
    assert json.loads((tmp_path / "failed.json").read_text()) == result.failures
    cells_in_table = {row["cell"] for row in csv.DictReader(open(tmp_path / "sweep.csv", newline=""))}
    assert cells_in_table == {plan.cells[1].slug}


# ------------------------------------------------------------------ the command line


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--backend", "nope"], "--backend: unknown backend 'nope'"),
        (["--grid", "loop.bogus=1,2"], "loop.bogus: unknown key"),
        (["--grid", "loop.regime=sideways"], "loop.regime"),
        (["--grid", "loop.regime"], "--grid 'loop.regime': expected KEY=V1,V2"),
        (["--workers", "0"], "--workers: must be >= 1"),
        (["--address", "127.0.0.1:1"], "--address: only the ray backend"),
    ],
)
def test_invalid_input_is_one_line_and_exit_2(study, tmp_path, args, expected):
    result = CliRunner().invoke(app, ["sweep", str(study), "--out", str(tmp_path / "s"), "--quiet", *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1


def test_missing_study_file_and_study_given_to_run(study, tmp_path):
    result = CliRunner().invoke(app, ["sweep", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "config file not found" in result.output
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "run it with: ouro sweep" in result.output


def test_a_worker_that_cannot_see_the_sweep_sends_the_cell_back(reference, study, tmp_path):
    """What a Ray worker on another machine does: run in scratch space and return the run directory."""
    from ouro.sweep_ray import run_cell_anywhere, unpack_cell

    cell = plan_sweep(study).cells[0]
    data = run_cell_anywhere(str(tmp_path / "elsewhere" / cell.slug), cell.config_text)
    assert isinstance(data, bytes) and not (tmp_path / "elsewhere").exists()
    unpack_cell(data, tmp_path / "back")
    ours, theirs = tmp_path / "back", cell_dir(reference, cell.slug)
    assert (ours / "config.yaml").read_text() == (theirs / "config.yaml").read_text()
    rows = [[r for r in csv.reader(open(d / "metrics.csv")) if r[3] != "cost_wall_seconds"] for d in (ours, theirs)]
    assert rows[0] == rows[1]
    assert (ours / "summary.json").is_file() and not (ours / ".lock").exists()
