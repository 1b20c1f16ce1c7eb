"""Share of the default run's wall time spent outside the work itself.

"Work" is what the environment, the researchers and the verifiers do: proposing,
learning, judging, simulating, the oracle and the diversity measures. Everything else
(the LangGraph graph and its SQLite checkpoints, stage outputs and generation records
written to the run directory, assembling metrics.csv) is overhead. The run is the
default config, arms one after another in this process; the work is timed by wrapping
those methods with a clock.

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

from ouro.agents.statistical import StatisticalResearcher
from ouro.config import load_config
from ouro.environments.estimators import EstimatorsEnvironment
from ouro.runner import prepare_run_dir, run_arm
from ouro.store import RunDir
from ouro.verifiers import model, montecarlo, none, oracle

WORK = {"seconds": 0.0, "cpu": 0.0, "depth": 0}


def timed(fn):
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        if WORK["depth"]:
            return fn(*a, **kw)  # nested work (a verifier calling the environment) counts once
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


def measure_once(config) -> dict:
    WORK.update(seconds=0.0, cpu=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        prepare_run_dir(config, run_dir)
        start, cpu = time.perf_counter(), time.process_time()
        for arm in config.arms:
            run_arm(str(run_dir), arm.name)
        RunDir(run_dir).assemble([a.name for a in config.arms])
        total, total_cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "total_seconds": round(total, 3),
        "work_seconds": round(WORK["seconds"], 3),
        "overhead_seconds": round(total - WORK["seconds"], 3),
        "overhead_share": round(1 - WORK["seconds"] / total, 4),
        "cpu_total_seconds": round(total_cpu, 3),
        "cpu_work_seconds": round(WORK["cpu"], 3),
        "cpu_overhead_share": round(1 - WORK["cpu"] / total_cpu, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="whole runs measured; the median share is reported")
    args = ap.parse_args()

    config = load_config()
    config.environment.build().warm_up()  # the oracle's one-off table build is not loop overhead
    instrument()
    runs = [measure_once(config) for _ in range(args.repeat)]
    median = sorted(runs, key=lambda r: r["overhead_share"])[len(runs) // 2]
    result = {
        "config": "configs/default.yaml",
        "generations": len(config.arms) * config.loop.generations,
        **median,
        "overhead_shares": [r["overhead_share"] for r in runs],
        "cpu_overhead_shares": [r["cpu_overhead_share"] for r in runs],
        "target_share": 0.10,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
