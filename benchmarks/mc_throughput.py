"""Throughput of the Monte Carlo simulator: vectorized `simulate` against a plain loop.

64 proposals (the DSL families in turn, hyper-parameters spread over their ranges) x
1,000 replications x n = 50 under the default contaminated normal. The baseline is
what one would write first: for each replication, draw a sample, and for each method
compute its estimate with NumPy/SciPy on that one sample. Both do the same work (the
same estimators, the same number of method-replications); the baseline is timed on a
subset of replications and scaled, since it is slow.

    python benchmarks/mc_throughput.py --json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy import stats

from ouro.environments.estimators import EstimatorsConfig, FAMILIES

PROPOSALS, REPLICATIONS, N = 64, 1_000, 50


def proposals() -> list:
    names = list(FAMILIES)
    out = []
    for i in range(PROPOSALS):
        fam = FAMILIES[names[i % len(names)]]
        if fam.param is None:
            out.append(fam.cls())
        else:
            u = ((i // len(names)) + 0.5) / (PROPOSALS // len(names) + 1)
            lo, hi = fam.low, fam.high
            value = float(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))) if fam.log_scale else lo + u * (hi - lo) * 0.999
            out.append(fam.cls(**{fam.param: value}))
    return out


def naive_estimate(m, x: np.ndarray) -> float:
    """One method on one sample, written the straightforward way."""
    if m.family == "mean":
        return float(np.mean(x))
    if m.family == "median":
        return float(np.median(x))
    if m.family == "trimmed_mean":
        return float(stats.trim_mean(x, m.alpha))
    if m.family == "winsorized_mean":
        return float(stats.mstats.winsorize(x, limits=(m.alpha, m.alpha)).mean())
    if m.family == "hodges_lehmann":
        i, j = np.triu_indices(len(x))
        return float(np.median((x[i] + x[j]) / 2))
    med = np.median(x)
    s = 1.482602218505602 * np.median(np.abs(x - med))
    mu = med
    for _ in range(100):
        r = (x - mu) / s
        if m.family == "huber":
            w = np.minimum(1.0, m.c / np.maximum(np.abs(r), 1e-300))
        else:
            w = np.where(np.abs(r) < m.c, (1 - (r / m.c) ** 2) ** 2, 0.0)
        new = np.sum(w * x) / np.sum(w)
        if abs(new - mu) < 1e-9 * s:
            break
        mu = new
    return float(mu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--naive-replications", type=int, default=40)
    args = ap.parse_args()

    env = EstimatorsConfig(n=N).build()
    methods = proposals()
    env.simulate(methods, 50, np.random.default_rng(99))  # warm-up (imports, caches)
    repeats = 3
    start = time.perf_counter()
    for r in range(repeats):
        env.simulate(methods, REPLICATIONS, np.random.default_rng(r))
    fast = (time.perf_counter() - start) / repeats
    throughput = PROPOSALS * REPLICATIONS / fast

    rng = np.random.default_rng(0)
    dgp = env.dgps[0]
    start = time.perf_counter()
    for _ in range(args.naive_replications):
        theta = rng.uniform(-100, 100)
        x = theta + dgp.sample(rng, N)
        _ = np.mean(x)  # the baseline's estimate, as simulate computes it too
        for m in methods:
            naive_estimate(m, x)
    naive = time.perf_counter() - start
    naive_throughput = PROPOSALS * args.naive_replications / naive

    result = {
        "proposals": PROPOSALS,
        "replications": REPLICATIONS,
        "n": N,
        "seconds": round(fast, 4),
        "throughput": round(throughput),
        "naive_throughput": round(naive_throughput),
        "speedup": round(throughput / naive_throughput, 1),
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
