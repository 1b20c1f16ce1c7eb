"""Running and resuming experiments: one graph thread per arm, arms in parallel processes.

``run_arm`` is the whole life of one arm: it starts the arm's graph, or continues it
from the last checkpoint. Because every random draw is keyed by (seed, generation,
purpose), the records an arm writes do not depend on which process ran it or how many
ran beside it.

Arms that ask a person (``verifier.asks_human``) run after every automatic arm has
finished, one after another in the calling thread, which owns the terminal: when such an
arm's graph stops at an ``interrupt()``, ``run_arm`` hands the payload to an *answerer*
(the console) and resumes the graph with ``Command(resume=...)``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from langgraph.types import Command

from ouro import interrupt
from ouro.cohort import build_cohort
from ouro.config import ConfigError, dump_config, validate
from ouro.graph import DURABILITY, build_graph, sqlite_checkpointer, thread_config
from ouro.journal import forget_invalid
from ouro.ledger import INVALID_STOP, budget_stop, redone_on_resume, resumable
from ouro.store import RunDir, atomic_write_text, sync_records


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


Answerer = Callable[[Any], Any]  # an interrupt's payload -> the value to resume with


def run_arm(run_dir: str, arm: str, answer: Answerer | None = None) -> ArmOutcome:
    """Start or continue one arm's graph until it ends; returns where it ended.

    ``answer`` answers the arm's interrupts (a person's questions); an arm that asks and
    has no answerer is an error, never a silent wait. An arm that stopped because a
    generation's calls failed (or none of its outputs validated) redoes that generation:
    its record is set aside, and its call journal gives back every answer already paid
    for, so only the calls without one are made again. An arm stopped by the cost limit
    continues from the next generation; an arm does not start a generation while the run
    is over its cost limit.
    """
    interrupt.check()  # an arm queued before a Ctrl-C does not start after it
    run_dir_p = Path(run_dir)
    config = load_run_config(run_dir_p)
    generations = config.loop.generations
    rd = RunDir(run_dir_p)
    store = rd.arm(arm)
    # Where the arm stands is read from its generation records: a process killed between
    # a node's writes and its checkpoint can leave a thread whose ``next`` is empty
    # although it has not ended.
    finished = set(store.finished_generations())
    first_open = next((g for g in range(generations) if g not in finished), generations)
    stopped = store.read_record(first_open - 1).get("stopped") if first_open > 0 else None
    # before any record is set aside: what the generation to redo spent counts
    over_budget = budget_stop(run_dir_p, [a.name for a in config.arms], config.cost_limit_usd)
    if redone_on_resume(stopped):
        if over_budget:
            return ArmOutcome(arm, first_open, over_budget)  # redone once the limit is raised
        if stopped.startswith(INVALID_STOP):  # the model (or its server) was fixed: ask it again
            forget_invalid(store.calls_path(first_open - 1))
        store.supersede(first_open - 1)
        first_open, stopped = first_open - 1, None
    cohort = build_cohort(config, arm, run_dir_p)
    try:
        with sqlite_checkpointer(rd.checkpoints) as saver:
            graph = build_graph(cohort, generations, saver)
            cfg = thread_config(arm, generations)
            snapshot = graph.get_state(cfg)
            lift = bool(stopped) and resumable(stopped)
            if first_open >= generations or (stopped and not lift):
                return ArmOutcome(arm, first_open, stopped)
            # Continue where the graph stands only when it stands inside the first open
            # generation (a pending question); a checkpoint from an earlier generation is
            # stale. Otherwise start at the first open generation: every stage skips
            # finished work and reads back work that was paid for.
            in_flight = bool(snapshot.next) and snapshot.values.get("generation") == first_open and not lift
            if over_budget and not (in_flight and tuple(snapshot.next) != ("propose",)):
                return ArmOutcome(arm, first_open, over_budget)  # a generation in flight is finished first
            step: Any = None if in_flight else {"generation": first_open, "stopped": None}
            while True:
                if snapshot.interrupts and step is None:  # a question is open
                    if answer is None:
                        raise RuntimeError(f"arm {arm} waits for a person's answers, and nobody is asked")
                    sync_records()  # everything before the question is on disk while the person thinks
                    step = Command(resume=answer(snapshot.interrupts[0].value))
                graph.invoke(step, cfg, durability=DURABILITY, stream_mode="updates")  # the state is read below
                step = None
                snapshot = graph.get_state(cfg)
                if not snapshot.next:
                    break
            final = snapshot.values
    finally:
        if hasattr(cohort, "close"):
            cohort.close()
        sync_records()
    return ArmOutcome(arm, int(final.get("generation", 0)), final.get("stopped"))


def human_arms(config) -> list[str]:
    return [a.name for a in config.arms if a.verifier.asks_human]


def arm_complete(run_dir: Path, arm: str, generations: int) -> bool:
    """Whether the arm has nothing left to run: its last generation is recorded, and not
    as a stop that ``ouro resume`` redoes (failed calls, or no output that validated)."""
    store = RunDir(run_dir).arm(arm)
    return store.has_record(generations - 1) and not redone_on_resume(store.read_record(generations - 1).get("stopped"))


def unfinished_human_arms(run_dir: Path, config) -> list[str]:
    """Arms that will ask a person something: those with generations left to run."""
    return [a for a in human_arms(config) if not arm_complete(run_dir, a, config.loop.generations)]


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


def execute(run_dir: Path, workers: int, on_progress=None, answer: Answerer | None = None) -> list[ArmOutcome]:
    """Run (or continue) every arm of the run in ``run_dir``; assembles the outputs.

    Automatic arms first, in parallel; then the arms that ask a person, in this thread,
    with ``answer`` answering their questions.
    """
    config = load_run_config(run_dir)
    arms = [a.name for a in config.arms]
    human = human_arms(config)
    automatic = [a for a in arms if a not in human]
    rd = RunDir(run_dir)
    total = len(arms) * config.loop.generations
    env = config.environment.build()
    if hasattr(env, "warm_up"):
        env.warm_up()

    def tick() -> None:
        if on_progress:
            on_progress(rd.progress(arms), total)

    outcomes: dict[str, ArmOutcome] = {}
    try:
        if automatic:
            outcomes.update(_run_parallel(run_dir, automatic, workers, tick))
        for arm in human:
            outcomes[arm] = run_arm(str(run_dir), arm, answer)
            tick()
    finally:
        rd.assemble(arms)
    return [outcomes[a] for a in arms]


def _run_parallel(run_dir: Path, arms: list[str], workers: int, tick: Callable[[], None]) -> dict[str, ArmOutcome]:
    """The automatic arms, ``workers`` at a time: in a thread for one worker, else in
    worker processes. Ctrl-C (``KeyboardInterrupt`` here) sets the run's stop event; the
    arms stop before their next stage, or at once when they wait on model calls, and the
    interrupt is raised again once they have. A second Ctrl-C stops waiting for them."""
    workers = max(1, min(workers, len(arms)))
    if workers == 1:
        stop: Any = threading.Event()
        interrupt.install(stop)
        pool: Any = ThreadPoolExecutor(max_workers=1)
    else:
        context = mp.get_context("spawn")
        stop = context.Event()
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=interrupt.worker_init, initargs=(stop, os.getpid())
        )
    abandoned = False
    try:
        with interrupt.sigint_ignored():  # worker processes start here, and keep SIGINT ignored
            futures: list[Future] = [pool.submit(run_arm, str(run_dir), a) for a in arms]
        try:
            _wait_ticking(futures, tick)
        except KeyboardInterrupt:
            stop.set()
            for f in futures:
                f.cancel()  # arms not started yet never start
            try:
                _wait_ticking(futures, lambda: None)
            except KeyboardInterrupt:  # asked twice: stop waiting (a thread ends at its next stage)
                abandoned = True
                for child in mp.active_children():
                    child.kill()
            raise KeyboardInterrupt from None
        return {a: f.result() for a, f in zip(arms, futures)}
    finally:
        pool.shutdown(wait=not abandoned, cancel_futures=True)
        if workers == 1 and not abandoned:
            interrupt.install(None)


def _wait_ticking(futures: list[Future], tick: Callable[[], None]) -> None:
    while not all(f.done() for f in futures):
        tick()
        time.sleep(0.1)
    tick()
