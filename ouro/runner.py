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
from ouro.ledger import budget_stop, resumable
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
    """Start or continue one arm's graph until it ends; returns where it ended.

    An arm that stopped early for a reason ``resume`` may lift (the cost limit, too many
    failed calls) continues from the next generation; an arm does not start a generation
    while the run is over its cost limit.
    """
    run_dir_p = Path(run_dir)
    config = load_run_config(run_dir_p)
    generations = config.loop.generations
    over_budget = budget_stop(run_dir_p, [a.name for a in config.arms], config.cost_limit_usd)
    cohort = build_cohort(config, arm, run_dir_p)
    rd = RunDir(run_dir_p)
    try:
        with sqlite_checkpointer(rd.checkpoints) as saver:
            graph = build_graph(cohort, generations, saver)
            cfg = thread_config(arm, generations)
            snapshot = graph.get_state(cfg)
            final = snapshot.values or {}
            # Ended is what the state says (the graph's own exit rule), not an empty ``next``:
            # a process killed after a node's writes were saved but before the step's
            # checkpoint leaves ``next`` empty in a thread that has not ended.
            ended = bool(final) and (final.get("generation", 0) >= generations or bool(final.get("stopped")))
            lift = ended and final.get("generation", 0) < generations and resumable(final.get("stopped"))
            between_generations = not final or tuple(snapshot.next) in ((), ("propose",)) or lift
            if over_budget and between_generations:  # a generation in flight is finished first
                return ArmOutcome(arm, int(final.get("generation", 0)), over_budget)
            if not final:
                final = graph.invoke({"generation": 0, "stopped": None}, cfg)
            elif not ended:
                final = graph.invoke(None, cfg)
            elif lift:
                graph.update_state(cfg, {"stopped": None}, as_node="measure")
                final = graph.invoke(None, cfg)
    finally:
        if hasattr(cohort, "close"):
            cohort.close()
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
