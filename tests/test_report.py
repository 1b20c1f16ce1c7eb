"""Reports: the files a run and a sweep get, self-contained HTML, and the command's errors."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ouro.cli import app
from ouro.report import Para, Table, choose_axis, render_html, render_markdown, write_report
from ouro.sweep import plan_sweep, run_sweep

BASE = """
name: tiny-report
seeds: 3
workers: 1
environment: {kind: estimators, problem: location, n: 50, dgp: {kind: contaminated, eps: 0.1, scale: 10.0}}
researcher: {kind: statistical}
loop: {generations: 4, proposals: 8, regime: replace}
arms:
  - {name: none, verifier: {kind: none}}
  - {name: montecarlo, verifier: {kind: montecarlo, replications: 20}}
  - {name: oracle, verifier: {kind: oracle}}
"""
SMALL = ["--set", "seeds=3", "--set", "loop.generations=4", "--set", "loop.proposals=10"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def check_report(directory: Path, plots: set[str]) -> None:
    """Every expected plot exists and is a readable size; the markdown links them; the HTML embeds them."""
    assert {p.name for p in (directory / "plots").glob("*.png")} == plots
    for name in plots:
        width, height = png_size(directory / "plots" / name)
        assert width >= 900 and height >= 400, (name, width, height)
    md = (directory / "report.md").read_text()
    assert {m for m in re.findall(r"\]\(plots/([\w.-]+\.png)\)", md)} == plots
    html = (directory / "report.html").read_text()
    assert html.count("src='data:image/png;base64,") == len(plots)
    assert "plots/" not in re.sub(r"<code>[^<]*</code>", "", html.split("<body>")[1]).replace("plots in", "")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """Two regimes x two proposal counts: a numeric axis and a second key as panels."""
    root = tmp_path_factory.mktemp("report-sweep")
    (root / "base.yaml").write_text(BASE)
    plan = plan_sweep(root / "base.yaml", ["loop.regime=replace,accumulate", "loop.proposals=6,10"])
    result = run_sweep(plan, root / "out", workers=2)
    assert result.finished == 4
    return root / "out"


def test_run_writes_its_report_unless_told_not_to(tmp_path):
    cmd = [sys.executable, "-m", "ouro.cli", "run", "--quiet", *SMALL]
    done = subprocess.run([*cmd, "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "report:" in done.stdout
    check_report(tmp_path / "r", {"quality.png", "diversity.png", "precision.png", "ledger.png"})
    md = (tmp_path / "r" / "report.md").read_text()
    for arm in ("none", "self-judge", "surrogate", "montecarlo", "oracle"):
        assert f"| {arm} |" in md
    assert "## Information ledger" in md and "Verdicts (rules in ouro/verdict.py)" in md

    done = subprocess.run([*cmd, "--out", str(tmp_path / "q"), "--no-report"], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "q" / "report.md").exists() and not (tmp_path / "q" / "plots").exists()


def test_sweep_report_has_the_phase_diagram_and_every_cell(sweep_dir):
    files = write_report(sweep_dir)
    check_report(
        sweep_dir, {"phase.png", "verdicts.png", "ledger.png", "precision.png", "quality.png", "diversity.png"}
    )
    assert files.html == sweep_dir / "report.html"
    md = (sweep_dir / "report.md").read_text()
    assert "`loop.regime` ∈ {replace, accumulate} × `loop.proposals` ∈ {6, 10}" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "accumulate" in line]
    assert len(rows) == 2 * 3  # two cells, three arms each


def test_a_sweep_over_names_only_draws_a_categorical_axis(sweep_dir, tmp_path):
    (tmp_path / "base.yaml").write_text(BASE.replace("generations: 4", "generations: 3"))
    plan = plan_sweep(tmp_path / "base.yaml", ["loop.regime=replace,accumulate"], seeds=2)
    run_sweep(plan, tmp_path / "out", workers=2)
    write_report(tmp_path / "out")
    assert (tmp_path / "out" / "plots" / "phase.png").is_file()


def test_the_report_command_reports_bad_input_in_one_line(tmp_path):
    for target, expected in [
        (tmp_path / "missing", "no such directory"),
        (tmp_path, "neither a run directory"),
    ]:
        result = CliRunner().invoke(app, ["report", str(target)])
        assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output
    run = tmp_path / "unfinished"
    run.mkdir()
    (run / "config.yaml").write_text(BASE)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 2 and "not finished" in result.output


def test_axis_choice_and_rendering():
    assert choose_axis({"loop.regime": ["a", "b"], "x.reps": [1, 2, 3], "y": [1, 2]}) == "x.reps"
    assert choose_axis({"loop.regime": ["a", "b"], "one": [1]}) == "loop.regime"
    assert choose_axis({"one": [1]}) is None
    blocks = [Para("a *b* and `c`"), Table(["k", "v"], [["x|y", "1"]], right=(1,))]
    md = render_markdown(blocks)
    assert "| x\\|y | 1 |" in md and "|---|---:|" in md
    html = render_html(blocks, "t", Path("."))
    assert "<em>b</em>" in html and "<code>c</code>" in html and "x|y" in html


def test_an_arm_without_a_verdict_reads_as_such_in_the_sweep_tables_report_and_plots(sweep_dir, tmp_path):
    """One cell's arm `none` as a run whose generation 0 had no valid proposal records it
    (NaN quality and diversity): every consumer copes, and says there is no verdict and why."""
    import csv
    import json
    import shutil

    from ouro.runner import load_run_config
    from ouro.summary import summarize

    out = tmp_path / "out"
    shutil.copytree(sweep_dir, out)
    cell = next(p for p in sorted((out / "cells").iterdir()) if p.is_dir())
    lost = {"quality_mean", "quality_best", "entropy", "distinct", "param_spread", "families"}
    with open(cell / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    for r in rows[1:]:
        if r[0] == "none" and r[2] == "0" and r[3] in lost:
            r[4] = "nan"
    with open(cell / "metrics.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    arm = summarize(cell, load_run_config(cell))["arms"]["none"]
    assert arm["verdict"] is None and arm["verdict_missing"] == "no valid proposals at generation 0"
    assert arm["diversity"]["entropy"]["start"] is None

    plan = plan_sweep(sweep_dir.parent / "base.yaml", ["loop.regime=replace,accumulate", "loop.proposals=6,10"])
    assert run_sweep(plan, out, workers=1).skipped == 4  # every cell done: only the tables are written again
    with open(out / "sweep_summary.csv", newline="") as f:
        table = [r for r in csv.DictReader(f) if r["cell"] == cell.name and r["arm"] == "none"]
    assert [(r["verdict"], r["verdict_missing"], r["diversity_start"]) for r in table] == [
        ("", "no valid proposals at generation 0", "")
    ]
    write_report(out)
    check_report(out, {"phase.png", "verdicts.png", "ledger.png", "precision.png", "quality.png", "diversity.png"})
    assert "| none | – (no valid proposals at generation 0) |" in (out / "report.md").read_text()
    write_report(cell)  # the cell's own report
    assert "| none | none | – (no valid proposals at generation 0) | – → " in (cell / "report.md").read_text()
    assert json.loads((cell / "summary.json").read_text())["arms"]["none"]["verdict"] is None
