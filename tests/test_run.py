"""Whole runs, as a user starts them: outputs, determinism across workers, kill -9 and resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import OURO, ROOT, SMALL, ouro

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    result = ouro("run", "--out", str(out), "--workers", "1", "--quiet", *SMALL)
    assert result.returncode == 0, result.stderr
    return out


def test_run_writes_every_output(reference_run):
    for name in ("config.yaml", "metrics.csv", "verdicts.jsonl", "summary.json", "checkpoints.sqlite", "timings.csv"):
        assert (reference_run / name).is_file(), name
    rows = list(csv.DictReader(open(reference_run / "metrics.csv")))
    assert list(rows[0]) == ["arm", "seed", "generation", "metric", "value"]
    metrics = {r["metric"] for r in rows}
    assert {"quality_mean", "quality_best", "entropy", "distinct", "accept_rate"} <= metrics
    assert {r["generation"] for r in rows} == {"0", "1", "2", "3"}
    summary = json.loads((reference_run / "summary.json").read_text())
    assert set(summary["arms"]) == {"none", "self-judge", "surrogate", "montecarlo", "oracle"}
    arm = summary["arms"]["montecarlo"]
    assert arm["verdict"] in {"improved", "degraded", "collapsed", "stable"}
    assert {"start", "end", "delta", "delta_ci"} <= set(arm["quality"])
    assert arm["cost"]["replications"] == 2 * 4 * 12 * 200  # seeds x generations x proposals x replications
    lines = (reference_run / "verdicts.jsonl").read_text().splitlines()
    assert len(lines) == 5 * 2 * 4 * 12
    first = json.loads(lines[0])
    assert {"arm", "seed", "generation", "method", "accept", "oracle_quality", "cost", "rationale"} <= set(first)


def test_none_accepts_all_and_oracle_never_accepts_the_mean(reference_run):
    for line in (reference_run / "verdicts.jsonl").read_text().splitlines():
        v = json.loads(line)
        if v["arm"] == "none":
            assert v["accept"] is True
        if v["arm"] == "oracle":
            assert v["accept"] == (v["oracle_quality"] > 1.0)


def test_metrics_are_byte_identical_for_one_and_two_workers(reference_run, tmp_path):
    out = tmp_path / "two"
    result = ouro("run", "--out", str(out), "--workers", "2", "--quiet", *SMALL)
    assert result.returncode == 0, result.stderr
    assert (out / "metrics.csv").read_bytes() == (reference_run / "metrics.csv").read_bytes()


def test_show_prints_the_table_again(reference_run):
    result = ouro("show", str(reference_run))
    assert result.returncode == 0
    assert "montecarlo" in result.stdout and "verdict" in result.stdout


def test_existing_run_directory_is_not_overwritten(reference_run):
    result = ouro("run", "--out", str(reference_run), "--quiet", *SMALL)
    assert result.returncode == 2 and "ouro resume" in result.stderr


def _finished_records(run: Path) -> int:
    return len(list((run / "arms").glob("*/gen-*.jsonl"))) if (run / "arms").is_dir() else 0


@pytest.mark.parametrize("after_records", [1, 7])
def test_kill_9_then_resume_gives_the_same_metrics(reference_run, tmp_path, after_records):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [*OURO, "run", "--out", str(out), "--workers", "2", "--quiet", *SMALL],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so that the kill reaches the worker processes too
    )
    deadline = time.monotonic() + 120
    while _finished_records(out) < after_records and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists(), "the run finished before it could be killed"
    result = ouro("resume", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert (out / "metrics.csv").read_bytes() == (reference_run / "metrics.csv").read_bytes()
