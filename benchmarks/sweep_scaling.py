"""Speed-up of a 16-cell sweep from 1 to 2 local workers (cells in parallel processes).

The cells are equal work: the Monte Carlo verifier's test level (4 values) times four
disjoint blocks of seeds, each cell a run of three arms (none, montecarlo with 1000
replications, oracle) over 4 seeds and 8 generations of 30 proposals, on the default
problem: enough simulation per generation that computing, not writing records, is
what a cell spends its time on. The oracle's tables are filled before the clock
starts, and the two sweeps' results are compared (they must be identical, the
verifiers' measured wall-clock seconds aside).

On a machine shared with other work, one run can be slowed by a burst of load on the
other core. The 1- and 2-worker sweeps therefore alternate ``--repeat`` times and the
speed-up is taken from the best time of each; every time is printed too.

With ``--arms`` it also times the other way to use two workers: cells one after another,
the arms of each cell in parallel; with one arm costing most of a cell, that cannot
reach the speed-up of running cells in parallel.

    python benchmarks/sweep_scaling.py --json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from ouro.config import DEFAULT_CONFIG, read_yaml
from ouro.sweep import _warm_up, cell_dir, plan_sweep, prepare_cells, run_sweep

SEED_BLOCKS = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
ALPHAS = [0.01, 0.02, 0.05, 0.1]


def write_study(directory: Path, generations: int, replications: int) -> Path:
    base = read_yaml(DEFAULT_CONFIG)
    base.update(name="sweep-scaling", workers=1)
    base["loop"] = {**base["loop"], "generations": generations, "proposals": 30}
    base["arms"] = [
        {"name": "none", "verifier": {"kind": "none"}},
        {"name": "montecarlo", "verifier": {"kind": "montecarlo", "replications": replications}},
        {"name": "oracle", "verifier": {"kind": "oracle"}},
    ]
    base["sweep"] = {"grid": {"arms.montecarlo.verifier.alpha": ALPHAS, "seeds": SEED_BLOCKS}}
    path = directory / "study.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def values(out: Path) -> list[list[str]]:
    with open(out / "sweep.csv", newline="") as f:
        return [row for row in csv.reader(f) if row[-2] != "cost_wall_seconds"]


def time_sweep(study: Path, out: Path, workers: int) -> float:
    start = time.perf_counter()
    result = run_sweep(plan_sweep(study), out, workers=workers)
    seconds = time.perf_counter() - start
    if result.finished != result.cells or result.failures:
        raise SystemExit(f"sweep on {workers} worker(s) did not finish: {result.failures}")
    return seconds


def time_arms_in_parallel(study: Path, out: Path) -> float:
    """Cells one after another, each cell's arms on two worker processes."""
    from ouro.runner import execute, load_run_config
    from ouro.summary import summarize

    plan = plan_sweep(study)
    out.mkdir(parents=True)
    prepare_cells(plan, out)
    start = time.perf_counter()
    for cell in plan.cells:
        path = cell_dir(out, cell.slug)
        execute(path, 2)
        summarize(path, load_run_config(path))
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--generations", type=int, default=8, help="generations per cell (cell size)")
    ap.add_argument("--replications", type=int, default=1000, help="Monte Carlo replications (work per generation)")
    ap.add_argument("--repeat", type=int, default=2, help="alternating runs on 1 and 2 workers; the best of each counts")
    ap.add_argument("--arms", action="store_true", help="also time cells in sequence with arms in parallel")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ouro-sweep-scaling-") as tmp:
        root = Path(tmp)
        study = write_study(root, args.generations, args.replications)
        plan = plan_sweep(study)
        _warm_up(plan.cells)  # the oracle's cache, outside both timings
        times: dict[int, list[float]] = {1: [], 2: []}
        for i in range(args.repeat):
            for workers in (1, 2):
                times[workers].append(time_sweep(study, root / f"w{workers}-{i}", workers))
        one, two = min(times[1]), min(times[2])
        result = {
            "cells": len(plan.cells),
            "arms_per_cell": len(plan.cells[0].arms),
            "generations_per_cell": args.generations,
            "replications": args.replications,
            "seconds_1_worker": round(one, 2),
            "seconds_2_workers": round(two, 2),
            "speedup": round(one / two, 3),
            "all_seconds_1_worker": [round(t, 2) for t in times[1]],
            "all_seconds_2_workers": [round(t, 2) for t in times[2]],
            "same_results": values(root / "w1-0") == values(root / "w2-0"),
            "cpu_count": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
        }
        if args.arms:
            arms = time_arms_in_parallel(study, root / "arms")
            result["seconds_cells_in_sequence_arms_on_2_workers"] = round(arms, 2)
            result["speedup_arms_in_parallel"] = round(one / arms, 3)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
