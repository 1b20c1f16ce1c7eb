"""Running and resuming experiments: one graph thread per arm, arms in parallel processes.

``run_arm`` is the whole life of one arm: it starts the arm's graph, or continues it
from the last checkpoint. Because every random draw is keyed by (seed, generation,
purpose), the records an arm writes do not depend on which process ran it or how many
ran beside it.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from ouro.cohort import build_cohort
from ouro.config import ConfigError, dump_config, validate
from ouro.graph import build_graph, sqlite_checkpointer, thread_config
from ouro.store import RunDir, atomic_write_text


@dataclass
class ArmOutcome:
    arm: str
    generations: int
    stopped: str | None


def load_run_config(run_dir: Path):
    rd = RunDir(run_dir)
    if not rd.config_path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    from ouro.config import read_yaml

    return validate(read_yaml(rd.config_path), source=str(rd.config_path))


def run_arm(run_dir: str, arm: str) -> ArmOutcome:
    """Start or continue one arm's graph until it ends; returns where it ended."""
    run_dir_p = Path(run_dir)
    config = load_run_config(run_dir_p)
    generations = config.loop.generations
    cohort = build_cohort(config, arm, run_dir_p)
    rd = RunDir(run_dir_p)
    with sqlite_checkpointer(rd.checkpoints) as saver:
        graph = build_graph(cohort, generations, saver)
        cfg = thread_config(arm, generations)
        snapshot = graph.get_state(cfg)
        finished = rd.arm(arm).finished_generations()
        first_open = next((g for g in range(generations) if g not in set(finished)), generations)
        stopped = rd.arm(arm).read_record(first_open - 1).get("stopped") if first_open > 0 else None
        if first_open >= generations or stopped:
            final = {"generation": first_open, "stopped": stopped}
        elif snapshot.next:
            final = graph.invoke(None, cfg)  # continue where the graph stands (a pending interrupt too)
        else:
            # No checkpoint, or a last checkpoint that a killed process left without a next
            # step: the records say where the arm stands, and every stage skips finished work.
            final = graph.invoke({"generation": first_open, "stopped": None}, cfg)
    return ArmOutcome(arm, int(final.get("generation", 0)), final.get("stopped"))


def default_run_dir(config, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / f"{config.name}-{stamp}"
    i = 1
    while path.exists():
        i += 1
        path = root / f"{config.name}-{stamp}-{i}"
    return path


def prepare_run_dir(config, run_dir: Path) -> None:
    rd = RunDir(run_dir)
    if rd.config_path.exists():
        raise ConfigError(f"{run_dir} already holds a run; continue it with: ouro resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rd.config_path, dump_config(config))


def execute(run_dir: Path, workers: int, on_progress=None) -> list[ArmOutcome]:
    """Run (or continue) every arm of the run in ``run_dir``; assembles the outputs."""
    config = load_run_config(run_dir)
    arms = [a.name for a in config.arms]
    rd = RunDir(run_dir)
    total = len(arms) * config.loop.generations
    workers = max(1, min(workers, len(arms)))
    env = config.environment.build()
    if hasattr(env, "warm_up"):
        env.warm_up()
    pool = (
        ThreadPoolExecutor(max_workers=1)
        if workers == 1
        else ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    )
    outcomes: list[ArmOutcome] = []
    try:
        futures: list[Future] = [pool.submit(run_arm, str(run_dir), a) for a in arms]
        while not all(f.done() for f in futures):
            if on_progress:
                on_progress(rd.progress(arms), total)
            time.sleep(0.1)
        outcomes = [f.result() for f in futures]
        if on_progress:
            on_progress(rd.progress(arms), total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        rd.assemble(arms)
    return outcomes
