"""Share of the default run's wall time spent outside the work itself.

"Work" is what the environment, the researchers and the verifiers do: proposing,
learning, judging, simulating, the oracle and the diversity measures. Everything else
(the LangGraph graph and its SQLite checkpoints, stage outputs and generation records
written to the run directory, assembling metrics.csv) is overhead. The run is the
default config, arms one after another in this process; the work is timed by wrapping
those methods with a clock.

The clock around each piece of work costs about a microsecond a call, and the default
run makes some 50,000 such calls (``method_key`` for every verdict line), so the
instrumented run is slower than the real one. That cost belongs to neither side: it is
calibrated on a wrapped no-op (per call, what it adds to the run and what of it lands
inside the measured work) and taken out of both. The same config is also run without
any instrumentation, and its wall time is reported beside the corrected total, as a
check of the correction.

The target is on wall time. On a machine shared with other work, wall time measures the
neighbours too, so the same shares are also given in CPU time (this process's CPU for
the whole run; the main thread's CPU for the work), which other load disturbs far less.
``--repeat`` runs the whole measurement several times and reports the median share.

    python benchmarks/loop_overhead.py --json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from pathlib import Path

from ouro import cohort as cohort_module
from ouro import runner as runner_module
from ouro.agents.statistical import StatisticalResearcher
from ouro.cohort import STAGES, MethodCohort
from ouro.config import load_config
from ouro.environments.estimators import EstimatorsEnvironment
from ouro.graph import DURABILITY, build_graph, sqlite_checkpointer, thread_config
from ouro.runner import prepare_run_dir
from ouro.store import ArmStore, RunDir
from ouro.verifiers import model, montecarlo, none, oracle

WORK = {"seconds": 0.0, "cpu": 0.0, "depth": 0, "calls": 0}


def timed(fn):
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        if WORK["depth"]:
            return fn(*a, **kw)  # nested work (a verifier calling the environment) counts once
        WORK["calls"] += 1
        WORK["depth"] += 1
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            WORK["seconds"] += time.perf_counter() - start
            WORK["cpu"] += time.thread_time() - cpu
            WORK["depth"] -= 1

    @functools.wraps(fn)
    async def async_wrapper(*a, **kw):
        WORK["calls"] += 1
        WORK["depth"] += 1
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return await fn(*a, **kw)
        finally:
            WORK["seconds"] += time.perf_counter() - start
            WORK["cpu"] += time.thread_time() - cpu
            WORK["depth"] -= 1

    import inspect

    return async_wrapper if inspect.iscoroutinefunction(fn) else wrapper


def instrument() -> None:
    for cls, names in [
        (StatisticalResearcher, ("propose", "learn", "log_likelihood", "state", "load_state")),
        (EstimatorsEnvironment, ("simulate", "oracle", "diversity", "real_data", "is_good", "parse_method", "method_key")),
        (none.AcceptAll, ("judge",)),
        (model.SelfJudge, ("judge",)),
        (model.SurrogateJudge, ("judge", "__init__")),
        (montecarlo.MonteCarloVerifier, ("judge",)),
        (oracle.OracleVerifier, ("judge",)),
    ]:
        for name in names:
            setattr(cls, name, timed(getattr(cls, name)))


# Where the overhead goes: sections of the loop's own code, each timed inclusively with
# the work done inside it taken out ("verdict_lines" builds the lines of verdicts.jsonl,
# "verdict_encoding" turns them into JSON). They are disjoint, and all but "assembly" run inside
# the stages; what the stages cost beyond their work and these sections is "stage
# plumbing", and what the arm costs beyond its stages is the graph engine and the arm's
# set-up (config, cohort, checkpointer).
SECTIONS = {
    "verdict_lines": (MethodCohort, "_verdict_lines"),
    "metric_rows": (MethodCohort, "_metric_rows"),
    "oracle_truth": (MethodCohort, "_oracle_truth"),
    "records": (ArmStore, "write_record"),
    "assembly": (RunDir, "assemble"),
}
SPENT: dict[str, float] = {}
OUTSIDE_CLOCK = {"seconds": 0.0}   # per wrapped work call: clock cost that lands outside the work


def sectioned(label: str, fn):
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        work, calls, start = WORK["seconds"], WORK["calls"], time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            elapsed = time.perf_counter() - start
            clock = (WORK["calls"] - calls) * OUTSIDE_CLOCK["seconds"]
            SPENT[label] = SPENT.get(label, 0.0) + elapsed - (WORK["seconds"] - work) - clock

    return wrapper


def instrument_sections() -> None:
    for label, (cls, name) in SECTIONS.items():
        setattr(cls, name, sectioned(label, getattr(cls, name)))
    for stage in STAGES:
        setattr(MethodCohort, stage, sectioned("stages", getattr(MethodCohort, stage)))
    cohort_module.stream = sectioned("random_streams", cohort_module.stream)
    cohort_module.json_lines = sectioned("verdict_encoding", cohort_module.json_lines)
    runner_module.run_arm = sectioned("arms", runner_module.run_arm)


def breakdown(overhead: float) -> dict:
    """Seconds of overhead per section (their clock cost is a few hundred calls: left in)."""
    inner = ("verdict_lines", "verdict_encoding", "metric_rows", "oracle_truth", "records", "random_streams")
    out = {k: SPENT.get(k, 0.0) for k in inner}
    out["stage_plumbing"] = SPENT.get("stages", 0.0) - sum(out.values())
    out["graph_and_arm_setup"] = SPENT.get("arms", 0.0) - SPENT.get("stages", 0.0)
    out["assembly"] = SPENT.get("assembly", 0.0)
    out["rest"] = overhead - sum(out.values())   # run directory set-up, and what the clock corrections leave
    return {k: round(v, 3) for k, v in out.items()}


def calibrate(calls: int = 200_000) -> dict:
    """Per wrapped call: the time the wrapper adds, and the part of it counted as work."""

    def noop() -> None:
        return None

    wrapped = timed(noop)
    best = {"seconds": float("inf"), "cpu": float("inf"), "inside": float("inf"), "inside_cpu": float("inf")}
    for _ in range(5):
        WORK.update(seconds=0.0, cpu=0.0, calls=0)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            wrapped()
        wall, wall_cpu = time.perf_counter() - start, time.process_time() - cpu
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            noop()
        bare, bare_cpu = time.perf_counter() - start, time.process_time() - cpu
        best["seconds"] = min(best["seconds"], (wall - bare) / calls)
        best["cpu"] = min(best["cpu"], (wall_cpu - bare_cpu) / calls)
        best["inside"] = min(best["inside"], WORK["seconds"] / calls)
        best["inside_cpu"] = min(best["inside_cpu"], WORK["cpu"] / calls)
    return best


class NoOpCohort:
    """The five stages doing nothing: what the graph engine costs on its own."""

    arm = "noop"

    def propose(self, generation: int) -> None: ...

    def verify(self, generation: int) -> None: ...

    def curate(self, generation: int) -> None: ...

    def learn(self, generation: int) -> None: ...

    def measure(self, generation: int) -> None: ...


def graph_floor(config) -> float:
    """Seconds the LangGraph graph takes for the run's arms and generations with no-op
    nodes, checkpointed as the runner checkpoints it: the part of the overhead that is
    the graph engine's own, whatever the stages do."""
    with tempfile.TemporaryDirectory() as tmp, sqlite_checkpointer(Path(tmp) / "c.sqlite") as saver:
        start = time.perf_counter()
        for arm in config.arms:
            graph = build_graph(NoOpCohort(), config.loop.generations, saver)
            graph.invoke({"generation": 0, "stopped": None}, thread_config(arm.name, config.loop.generations), durability=DURABILITY)
        return time.perf_counter() - start


def run_config(config) -> tuple[float, float]:
    """Wall and CPU seconds of the whole run: every arm in this process, then assembly."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        prepare_run_dir(config, run_dir)
        start, cpu = time.perf_counter(), time.process_time()
        for arm in config.arms:
            runner_module.run_arm(str(run_dir), arm.name)
        RunDir(run_dir).assemble([a.name for a in config.arms])
        return time.perf_counter() - start, time.process_time() - cpu


def measure_once(config, clock: dict) -> dict:
    WORK.update(seconds=0.0, cpu=0.0, calls=0)
    SPENT.clear()
    raw_total, raw_cpu = run_config(config)
    calls = WORK["calls"]
    total = raw_total - calls * clock["seconds"]
    work = WORK["seconds"] - calls * clock["inside"]
    total_cpu = raw_cpu - calls * clock["cpu"]
    work_cpu = WORK["cpu"] - calls * clock["inside_cpu"]
    return {
        "total_seconds": round(total, 3),
        "work_seconds": round(work, 3),
        "overhead_seconds": round(total - work, 3),
        "overhead_share": round(1 - work / total, 4),
        "cpu_total_seconds": round(total_cpu, 3),
        "cpu_work_seconds": round(work_cpu, 3),
        "cpu_overhead_share": round(1 - work_cpu / total_cpu, 4),
        "overhead_breakdown_seconds": breakdown(total - work),
        "timed_calls": calls,
        "instrumented_total_seconds": round(raw_total, 3),
        "uncorrected_overhead_share": round(1 - WORK["seconds"] / raw_total, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="whole runs measured; the median share is reported")
    args = ap.parse_args()

    config = load_config()
    config.environment.build().warm_up()  # the oracle's one-off table build is not loop overhead
    run_config(config)  # a process's first run also pays its lazy imports and first-use set-up
    plain = sorted(run_config(config)[0] for _ in range(args.repeat))
    floor = sorted(graph_floor(config) for _ in range(args.repeat))[args.repeat // 2]
    instrument()
    instrument_sections()
    clock = calibrate()
    OUTSIDE_CLOCK["seconds"] = clock["seconds"] - clock["inside"]
    runs = [measure_once(config, clock) for _ in range(args.repeat)]
    median = sorted(runs, key=lambda r: r["overhead_share"])[len(runs) // 2]
    result = {
        "config": "configs/default.yaml",
        "generations": len(config.arms) * config.loop.generations,
        **median,
        "uninstrumented_total_seconds": round(plain[len(plain) // 2], 3),
        "graph_floor_seconds": round(floor, 3),
        "graph_floor_share": round(floor / median["total_seconds"], 4),
        "clock_us_per_call": round(clock["seconds"] * 1e6, 3),
        "overhead_shares": [r["overhead_share"] for r in runs],
        "cpu_overhead_shares": [r["cpu_overhead_share"] for r in runs],
        "target_share": 0.10,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
