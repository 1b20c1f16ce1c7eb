"""Sweeps: one experiment config run over a grid of overrides, each cell a run directory.

A study is an experiment config plus a grid, either in the YAML file::

    sweep:
      grid:
        arms.montecarlo.verifier.replications: [2, 5, 20, 100, 500]
        loop.regime: [replace, accumulate]

or on the command line (``--grid KEY=V1,V2``, which adds a key or replaces its values).
Keys are the dotted paths of ``--set``. Every combination of values is a *cell*, run as
an ordinary run directory under ``SWEEP/cells/<slug>/``, so a cell is read, resumed and
reported exactly like a run. Which cells are finished is read off the disk, so running
the same command again skips finished cells and resumes unfinished ones, after a crash,
a kill or Ctrl-C alike. Results depend only on (seed, generation), so they are the same
whatever the backend or the number of workers.

Layout of a sweep directory::

    sweep.json           the plan: base config, grid, cells (what ``ouro report`` reads)
    cells/<slug>/        one run directory per cell
    sweep.csv            every cell's metrics, grid values as columns (see sweep_tables)
    sweep_summary.csv    one row per cell and arm: verdict, quality change, precision, cost
    failed.json          cells that failed in the last invocation, and why (absent if none)
"""

from __future__ import annotations

import copy
import fcntl
import functools
import hashlib
import itertools
import json
import multiprocessing as mp
import os
import re
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from ouro.config import ConfigError, apply_override, dump_config, read_yaml, validate
from ouro.interrupt import die_with_parent
from ouro.runner import arm_complete, human_arms
from ouro.store import RunDir, atomic_write_text

BACKENDS = ("local", "ray")
MANIFEST = "sweep.json"
FAILED = "failed.json"
TICK_SECONDS = 0.25
_SLUG_MAX = 100


# ------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its values, its directory name and its resolved config."""

    slug: str
    values: dict[str, Any]
    config_text: str
    arms: tuple[str, ...]
    generations: int


@dataclass(frozen=True)
class SweepPlan:
    name: str
    source: str
    base: dict
    grid: dict[str, list]
    cells: list[Cell]

    def default_dir(self, root: Path = Path("runs")) -> Path:
        """Deterministic, so that running the same command again resumes the same sweep."""
        digest = hashlib.sha256(json.dumps(self.base, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return root / f"sweep-{self.name}-{digest}"


def split_values(raw: str) -> list[str]:
    """Split ``a,b,[c,d]`` at the commas outside brackets and braces."""
    parts, depth, current = [], 0, []
    for ch in raw:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_grid_option(text: str) -> tuple[str, list]:
    """``KEY=V1,V2,...`` -> (KEY, [V1, V2, ...]), each value read as YAML (2 is an int)."""
    if "=" not in text:
        raise ConfigError(f"--grid {text!r}: expected KEY=V1,V2,..., e.g. loop.regime=replace,accumulate")
    key, raw = (s.strip() for s in text.split("=", 1))
    if not key:
        raise ConfigError(f"--grid {text!r}: empty key")
    raw_values = split_values(raw)
    if not raw or any(v == "" for v in raw_values):
        raise ConfigError(f"--grid {key}: needs one or more comma-separated values, e.g. {key}=1,2")
    values = []
    for v in raw_values:
        try:
            values.append(yaml.safe_load(v))
        except yaml.YAMLError:
            values.append(v)
    return key, values


def _file_grid(study: Any, source: str) -> dict[str, list]:
    if not isinstance(study, dict):
        raise ConfigError(f"{source}: sweep: must be a mapping with a 'grid' key")
    unknown = sorted(set(study) - {"grid"})
    if unknown:
        raise ConfigError(f"{source}: sweep.{unknown[0]}: unknown key (a study has only 'grid')")
    grid = study.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{source}: sweep.grid: must map dotted keys to lists of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: sweep.grid.{key}: needs a non-empty list of values")
    return {str(k): list(v) for k, v in grid.items()}


def _short_names(keys: list[str]) -> dict[str, str]:
    """The last part of each dotted key, or the whole key where two would read the same."""
    last = {k: k.rsplit(".", 1)[-1] for k in keys}
    counts = {n: list(last.values()).count(n) for n in last.values()}
    return {k: (last[k] if counts[last[k]] == 1 else k) for k in keys}


def value_text(value: Any) -> str:
    """How a grid value prints in slugs, tables and plots: strings bare, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _slugs(keys: list[str], combos: list[tuple]) -> list[str]:
    names = _short_names(keys)
    raw = [
        ",".join(f"{names[k]}={re.sub(r'[^A-Za-z0-9._+-]', '_', value_text(v))}" for k, v in zip(keys, combo))
        or "base"
        for combo in combos
    ]
    out = []
    for slug, combo in zip(raw, combos):
        if len(slug) > _SLUG_MAX or raw.count(slug) > 1:
            digest = hashlib.sha256(json.dumps(combo, default=str).encode()).hexdigest()[:8]
            slug = f"{slug[: _SLUG_MAX - 9]}~{digest}"
        out.append(slug)
    return out


def plan_sweep(
    config_path: str | Path,
    grid_options: list[str] | None = None,
    overrides: list[str] | None = None,
    seeds: int | None = None,
) -> SweepPlan:
    """Read a study (config + grid), validate every cell; raises ConfigError naming the field."""
    source = str(config_path)
    data = read_yaml(config_path)
    grid = _file_grid(data.pop("sweep"), source) if "sweep" in data else {}
    for text in grid_options or []:
        key, values = parse_grid_option(text)
        grid[key] = values
    for assignment in overrides or []:
        apply_override(data, assignment)
    if seeds is not None:
        if seeds < 1:
            raise ConfigError("--seeds: must be >= 1")
        data["seeds"] = seeds
    keys = list(grid)
    combos = list(itertools.product(*(grid[k] for k in keys)))
    cells = []
    for slug, combo in zip(_slugs(keys, combos), combos):
        cell_data = copy.deepcopy(data)
        for key, value in zip(keys, combo):
            try:
                apply_override(cell_data, f"{key}={json.dumps(value)}")
            except ConfigError as e:
                raise ConfigError(str(e).replace("--set", "--grid", 1)) from None
        try:
            config = validate(cell_data, source=source)
        except ConfigError as e:
            raise ConfigError(f"grid cell {slug}: {e}") from None
        asking = human_arms(config)
        if asking:
            raise ConfigError(f"{source}: arms.{asking[0]}: asks a person to judge; a sweep runs unattended")
        cells.append(
            Cell(
                slug=slug,
                values=dict(zip(keys, combo)),
                config_text=dump_config(config),
                arms=tuple(a.name for a in config.arms),
                generations=config.loop.generations,
            )
        )
    name = str(data.get("name", Path(source).stem))
    return SweepPlan(name=name, source=source, base=data, grid=grid, cells=cells)


# ------------------------------------------------------------------ the directory


def read_manifest(sweep_dir: Path) -> dict:
    path = Path(sweep_dir) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{sweep_dir}: not a sweep directory (no {MANIFEST})")
    return json.loads(path.read_text())


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def cell_dir(sweep_dir: Path, slug: str) -> Path:
    return Path(sweep_dir) / "cells" / slug


def is_finished(run_dir: Path, arms: tuple[str, ...] | list[str], generations: int) -> bool:
    """A run is finished when summary.json exists and every arm is complete: its last
    generation recorded, and not as a stop that resume redoes (``runner.arm_complete``).

    An arm that stopped early has no last record; its run counts as unfinished and is
    re-entered, which costs nothing unless resume has work to redo.
    """
    return (Path(run_dir) / "summary.json").is_file() and all(arm_complete(run_dir, a, generations) for a in arms)


@contextmanager
def _flock(path: Path, blocking: bool = True) -> Iterator[int]:
    """An exclusive advisory lock, released when the holder exits or dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield fd
    finally:
        os.close(fd)


def _is_locked(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with _flock(path, blocking=False):
            return False
    except BlockingIOError:
        return True


def _lock_sweep(sweep_dir: Path) -> int:
    """Hold the sweep directory for this process (the lock goes with it if it dies)."""
    fd = os.open(sweep_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"{sweep_dir}: another sweep is running in this directory") from None
    return fd


def prepare_cells(plan: SweepPlan, sweep_dir: Path) -> None:
    """Write the manifest and each cell's config.yaml; refuse cells made by another config."""
    sweep_dir = Path(sweep_dir)
    for cell in plan.cells:
        path = cell_dir(sweep_dir, cell.slug)
        cfg = RunDir(path).config_path
        if cfg.is_file():
            if cfg.read_text() != cell.config_text:
                raise ConfigError(
                    f"{path}: this cell was run with a different config (base, --set or --seeds changed); "
                    f"use another --out"
                )
        else:
            atomic_write_text(cfg, cell.config_text)
    manifest = {
        "name": plan.name,
        "source": plan.source,
        "grid": plan.grid,
        "base": plan.base,
        "cells": [{"slug": c.slug, "values": c.values} for c in plan.cells],
    }
    atomic_write_text(sweep_dir / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ one cell (in a worker)


def run_cell(path: str) -> None:
    """Run or resume the run directory of one cell, single-worker, and summarize it.

    A lock on the cell makes a second runner (e.g. a worker orphaned by a killed sweep)
    wait rather than write beside the first; whoever comes second finds it finished.
    """
    from ouro.runner import execute, load_run_config
    from ouro.summary import summarize

    run_dir = Path(path)
    with _flock(run_dir / ".lock") as fd:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        config = load_run_config(run_dir)
        arms = [a.name for a in config.arms]
        if is_finished(run_dir, arms, config.loop.generations):
            return
        outcomes = execute(run_dir, 1)
        short = [o.arm for o in outcomes if o.generations < config.loop.generations and not o.stopped]
        if short:  # never record a truncated arm as a finished cell
            raise RuntimeError(f"arm {short[0]} ended before its last generation without a reason to stop")
        summarize(run_dir, config)


def describe_error(exc: BaseException) -> str:
    """One line: the exception's type and the first line of its message."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


# ------------------------------------------------------------------ progress


class Observer:
    """What a sweep tells its user; the default tells nothing. The CLI draws a bar."""

    def start(self, name: str, cells_total: int, cells_done: int, gens_total: int, gens_done: int) -> None: ...

    def progress(self, cells_done: int, gens_done: int, running: list[tuple[str, int, int]]) -> None: ...

    def retry(self, slug: str, attempt: int, reason: str) -> None: ...

    def failed(self, slug: str, reason: str) -> None: ...


@dataclass
class Tracker:
    """Counts finished cells and generations, reading progress off the cells' directories."""

    sweep_dir: Path
    cells: list[Cell]
    observer: Observer
    done: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)
    _last: float = 0.0

    def gens(self, cell: Cell) -> int:
        if cell.slug in self.done:
            return len(cell.arms) * cell.generations
        return RunDir(cell_dir(self.sweep_dir, cell.slug)).progress(cell.arms)

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        gens, running = 0, []
        for cell in self.cells:
            g = self.gens(cell)
            gens += g
            if cell.slug not in self.done and _is_locked(cell_dir(self.sweep_dir, cell.slug) / ".lock"):
                running.append((cell.slug, g, len(cell.arms) * cell.generations))
        self.observer.progress(len(self.done), gens, running)

    def finished(self, slug: str) -> None:
        self.done.add(slug)
        self.tick(force=True)

    def retry(self, slug: str, attempt: int, reason: str) -> None:
        self.observer.retry(slug, attempt, reason)

    def fail(self, slug: str, reason: str) -> None:
        self.failures[slug] = reason
        self.observer.failed(slug, reason)


@dataclass(frozen=True)
class Job:
    """What a backend needs to run a cell anywhere: its name, its directory, its config."""

    slug: str
    path: str
    config_text: str


# ------------------------------------------------------------------ the local backend


def run_local(jobs: list[Job], workers: int, retries: int, tracker: Tracker) -> None:
    """Cells in parallel worker processes, each cell single-worker inside.

    A cell that raises is retried (it resumes from its checkpoint). A worker that dies
    (killed, out of memory) breaks the pool: every cell still in it fails at once, the
    pool is rebuilt, cells that had started count an attempt and the others simply go
    round again. After ``retries`` retries a cell is reported as failed.
    """
    ctx = mp.get_context("spawn")
    attempts: dict[str, int] = {}
    queue = list(jobs)
    while queue:
        started = time.time()
        pool = ProcessPoolExecutor(
            max_workers=max(1, min(workers, len(queue))),
            mp_context=ctx,
            initializer=die_with_parent,  # a killed sweep leaves no cell running
            initargs=(os.getpid(),),
        )
        futures = {pool.submit(run_cell, job.path): job for job in queue}
        queue = []
        try:
            while futures:
                finished, _ = wait(futures, timeout=TICK_SECONDS, return_when=FIRST_COMPLETED)
                tracker.tick()
                for fut in finished:
                    job = futures.pop(fut)
                    try:
                        fut.result()
                    except BrokenProcessPool:
                        if not _started_since(Path(job.path), started):
                            queue.append(job)  # the pool broke under another cell before this one began
                            continue
                        reason = "its worker process died (killed, or out of memory)"
                    except Exception as e:  # a cell's own error: reported, never fatal to the sweep
                        reason = describe_error(e)
                    else:
                        tracker.finished(job.slug)
                        continue
                    attempts[job.slug] = attempts.get(job.slug, 0) + 1
                    if attempts[job.slug] <= retries:
                        tracker.retry(job.slug, attempts[job.slug], reason)
                        queue.append(job)
                    else:
                        tracker.fail(job.slug, reason)
        finally:
            pool.shutdown(wait=not futures, cancel_futures=True)


def _started_since(path: Path, since: float) -> bool:
    """Whether a worker took this cell's lock (writing its pid) after ``since``."""
    lock = path / ".lock"
    return lock.exists() and lock.stat().st_mtime >= since


# ------------------------------------------------------------------ the whole sweep


@dataclass
class SweepResult:
    sweep_dir: Path
    cells: int
    skipped: int
    finished: int
    failures: dict[str, str]
    seconds: float


def _warm_up(cells: list[Cell]) -> None:
    """Fill each environment's caches once here, before workers race to fill them."""
    seen = set()
    for cell in cells:
        config = validate(yaml.safe_load(cell.config_text))
        key = json.dumps(config.environment.model_dump(mode="json"), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        env = config.environment.build()
        if hasattr(env, "warm_up"):
            env.warm_up()


def check_options(backend: str, workers: int, address: str | None = None, retries: int = 0) -> None:
    """The sweep's own options, checked before anything is made: a one-line ConfigError."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: unknown backend {backend!r} (choose one of: {', '.join(BACKENDS)})")
    if address and backend != "ray":
        raise ConfigError("--address: only the ray backend connects to a cluster (add --backend ray)")
    if workers < 1:
        raise ConfigError(f"--workers: must be >= 1, not {workers}")
    if retries < 0:
        raise ConfigError(f"--retries: must be >= 0, not {retries}")
    if backend == "ray":
        from ouro.sweep_ray import require_ray

        require_ray()


def run_sweep(
    plan: SweepPlan,
    sweep_dir: Path,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    retries: int = 2,
    observer: Observer | None = None,
) -> SweepResult:
    """Run every unfinished cell of the plan, then write the sweep's tables."""
    from ouro.sweep_tables import write_tables

    check_options(backend, workers, address, retries)
    run_backend: Callable[..., None] = run_local
    if backend == "ray":
        from ouro.sweep_ray import run_ray

        run_backend = functools.partial(run_ray, address=address)

    observer = observer or Observer()
    sweep_dir = Path(sweep_dir).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    lock = _lock_sweep(sweep_dir)
    try:
        prepare_cells(plan, sweep_dir)
        done = {c.slug for c in plan.cells if is_finished(cell_dir(sweep_dir, c.slug), c.arms, c.generations)}
        pending = [c for c in plan.cells if c.slug not in done]
        tracker = Tracker(sweep_dir, plan.cells, observer, done=set(done))
        gens_total = sum(len(c.arms) * c.generations for c in plan.cells)
        observer.start(plan.name, len(plan.cells), len(done), gens_total, sum(tracker.gens(c) for c in plan.cells))
        if pending:
            if backend == "local" or not address:
                _warm_up(pending)
            jobs = [Job(c.slug, str(cell_dir(sweep_dir, c.slug)), c.config_text) for c in pending]
            run_backend(jobs, workers, retries, tracker)
        tracker.tick(force=True)
        finished = [c for c in plan.cells if c.slug in tracker.done]
        write_tables(sweep_dir, plan, finished)
        failed_path = sweep_dir / FAILED
        if tracker.failures:
            atomic_write_text(failed_path, json.dumps(tracker.failures, indent=2) + "\n")
        else:
            failed_path.unlink(missing_ok=True)
    finally:
        os.close(lock)
    return SweepResult(
        sweep_dir=sweep_dir,
        cells=len(plan.cells),
        skipped=len(done),
        finished=len(finished),
        failures=dict(tracker.failures),
        seconds=time.perf_counter() - t0,
    )
