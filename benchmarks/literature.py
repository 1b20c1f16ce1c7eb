"""Reproducing the literature: each closed form of the model-collapse literature beside the
simulation that `ouro run` produces for it.

Every row runs a config from configs/ (with the overrides shown) through the ordinary
runner into a temporary directory, reads metrics.csv, and prints the theoretical value,
the mean over seeds with its standard error, and z = (simulation - theory)/se.

    python benchmarks/literature.py            # every claim, about 3 minutes on 2 cores
    python benchmarks/literature.py gaussian   # claims whose name contains "gaussian"
    python benchmarks/literature.py --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ouro.config import ROOT, load_config
from ouro.environments import categorical as C
from ouro.environments import gaussian as G
from ouro.environments import regression as R
from ouro.runner import execute, prepare_run_dir
from ouro.summary import read_metrics

class Run:
    """One run's metrics: ``metrics[arm][metric]`` as (seeds, recorded generations)."""

    def __init__(self, config: str, overrides: list[str]) -> None:
        cfg = load_config(ROOT / "configs" / config, overrides)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            prepare_run_dir(cfg, out)
            start = time.perf_counter()
            execute(out, cfg.workers)
            self.seconds = time.perf_counter() - start
            raw = read_metrics(out / "metrics.csv")
        self.metrics = {
            arm: {k: np.array([[v[s][g] for g in sorted(v[s])] for s in sorted(v)]) for k, v in per_arm.items()}
            for arm, per_arm in raw.items()
        }
        per_seed = next(iter(next(iter(raw.values())).values()))
        self.generations = sorted(per_seed[min(per_seed)])

    def __getitem__(self, arm: str) -> dict[str, np.ndarray]:
        return self.metrics[arm]

    def at(self, arm: str, metric: str, generation: int) -> np.ndarray:
        """The metric of every seed at a recorded generation."""
        return self.metrics[arm][metric][:, self.generations.index(generation)]


def row(claim: str, g: int, theory: float, values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    se = float(values.std(ddof=1) / math.sqrt(values.size))
    return {"claim": claim, "g": int(g), "theory": float(theory), "sim": mean, "se": se, "z": (mean - theory) / se if se else 0.0}


# ---------------------------------------------------------------- the claims
def gaussian_replace_unbiased() -> tuple[str, list[dict], float]:
    cmd = "ouro run configs/gaussian-collapse.yaml"
    m = Run("gaussian-collapse.yaml", [])
    n = 100
    rows = []
    for g in (0, 10, 100, 500, 999):
        rows.append(row("E[ln sigma^2_g] = (g+1)(psi((n-1)/2) + ln(2/(n-1)))", g, float(G.expected_log_sigma2(g, n)), m.at("none", "log_sigma2", g)))
    for g in (0, 10, 100, 500, 999):
        rows.append(row("E[mu_g^2] = (g+1)/n", g, float(G.expected_mu2_replace(g, n)), m.at("none", "mu", g) ** 2))
    for g in (100, 500, 999):
        med = float(np.median(m.at("none", "sigma2", g)))
        rows.append({"claim": "median sigma^2_g ~ exp(-g/(n-1))", "g": g, "theory": math.exp(-g / (n - 1)), "sim": med, "se": None, "z": None})
    return cmd, rows, m.seconds


def gaussian_replace_mle() -> tuple[str, list[dict], float]:
    over = ["environment.variance=mle", "loop.generations=200"]
    m = Run("gaussian-collapse.yaml", over)
    rows = [row("E[sigma^2_g] = (1 - 1/n)^(g+1)", g, float(G.expected_sigma2_mle(g, 100)), m.at("none", "sigma2", g)) for g in (0, 50, 100, 199)]
    return "ouro run configs/gaussian-collapse.yaml --set " + " --set ".join(over), rows, m.seconds


def gaussian_accumulate() -> tuple[str, list[dict], float]:
    over = ["loop.regime=accumulate", "loop.generations=200"]
    m = Run("gaussian-collapse.yaml", over)
    v, mu2 = G.accumulate_moments(200, 100, "unbiased")
    rows = []
    for g in (0, 50, 199):
        rows.append(row("E[sigma^2_g] (exact; -> 0.9936, no collapse)", g, v[g], m.at("none", "sigma2", g)))
    for g in (0, 50, 199):
        rows.append(row("E[mu_g^2] (exact; < pi^2/(6n) = 0.01645)", g, mu2[g], m.at("none", "mu", g) ** 2))
    return "ouro run configs/gaussian-collapse.yaml --set " + " --set ".join(over), rows, m.seconds


def categorical_drift() -> tuple[str, list[dict], float]:
    over = ["arms=[{name: none, verifier: {kind: none}}]"]
    m = Run("categorical-verifier.yaml", over)
    p0 = np.full(10, 0.1)  # the config's ten equally likely answers
    rows = [row("E[GS_g] = (1 - 1/M)^(g+1) GS(p0)", g, float(C.expected_gini_simpson(g, 100, p0)), m["none"]["gini_simpson"][:, g]) for g in (0, 9, 29)]
    return "ouro run configs/categorical-verifier.yaml --set 'arms=[{name: none, verifier: {kind: none}}]'", rows, m.seconds


def categorical_fixation() -> tuple[str, list[dict], float]:
    p0 = [0.4, 0.3, 0.2, 0.1]
    over = [
        f"environment.categories={p0}", "environment.correct=null", "seeds=1000", "loop.proposals=10",
        "loop.generations=300", "loop.record_every=300", "arms=[{name: none, verifier: {kind: none}}]",
    ]  # fmt: skip
    m = Run("categorical-verifier.yaml", over)
    mode, fixed = m["none"]["mode"][:, -1], m["none"]["fixed"][:, -1]
    rows = [row(f"P(category {k} fixes) = p0[{k}]", 299, p, (mode == k) & (fixed == 1)) for k, p in enumerate(p0)]
    return "ouro run configs/categorical-verifier.yaml " + " ".join(f"--set '{o}'" for o in over), rows, m.seconds


def categorical_noisy() -> tuple[str, list[dict], float]:
    over = ["loop.proposals=10000", "loop.generations=5"]
    m = Run("categorical-verifier.yaml", over)
    rows = []
    for arm in m.metrics:
        if not arm.startswith("noisy-"):
            continue
        tpr, fpr = int(arm.split("-")[1][1:]) / 100, int(arm.split("-")[2][1:]) / 100
        p = m[arm]["p_correct"]
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.diff(np.log(p / (1 - p)), axis=1)[:, :3].mean(axis=1)  # before saturation
        ok = np.isfinite(step)
        rows.append(row(f"log-odds step = ln(tpr/fpr), {arm} (mean of steps to g=3)", 3, C.expected_log_odds_step(tpr, fpr), step[ok]))
    return "ouro run configs/categorical-verifier.yaml --set " + " --set ".join(over), rows, m.seconds


def regression_regimes() -> tuple[str, list[dict], float]:
    d, t = 10, 50
    rows, secs = [], 0.0
    for design in ("fixed", "fresh"):
        for regime in ("replace", "accumulate"):
            over = [f"loop.regime={regime}", f"environment.design={design}", "arms=[{name: none, verifier: {kind: none}}]"]
            m = Run("regression-replace-vs-accumulate.yaml", over)
            secs += m.seconds
            e = m["none"]["test_error"]
            for g in (0, 9, 49):
                if regime == "replace":
                    theory, claim = float(R.expected_test_error_replace(g, d, t, 1.0)), f"replace, {design}: (g+1) s^2 d/(T-d-1)"
                else:
                    theory = float(R.expected_test_error_accumulate(g, d, t, 1.0))
                    claim = f"accumulate, {design}: s^2 d/(T-d-1) sum 1/i^2" + ("" if design == "fixed" else " (fixed-design value; no closed form)")
                rows.append(row(claim, g, theory, e[:, g]))
    return "ouro run configs/regression-replace-vs-accumulate.yaml --set loop.regime=R --set environment.design=D", rows, secs


def regression_fresh_vs_fixed() -> tuple[str, list[dict], float]:
    d, g = 4, 19
    rows, secs = [], 0.0
    for t in (7, 12, 24, 100):
        for design in ("fixed", "fresh"):
            over = [
                "seeds=1000", "loop.regime=accumulate", f"environment.design={design}", f"environment.dim={d}",
                f"loop.proposals={t}", "loop.generations=20", "arms=[{name: none, verifier: {kind: none}}]",
            ]  # fmt: skip
            m = Run("regression-replace-vs-accumulate.yaml", over)
            secs += m.seconds
            theory = float(R.expected_test_error_accumulate(g, d, t, 1.0))
            rows.append(row(f"accumulate d=4 T={t}: {design} vs the fixed-design closed form", g, theory, m["none"]["test_error"][:, g]))
    return "ouro run configs/regression-replace-vs-accumulate.yaml --set loop.regime=accumulate --set environment.dim=4 --set loop.proposals=T ...", rows, secs


CLAIMS = {
    "gaussian-replace-unbiased": gaussian_replace_unbiased,
    "gaussian-replace-mle": gaussian_replace_mle,
    "gaussian-accumulate": gaussian_accumulate,
    "categorical-drift": categorical_drift,
    "categorical-fixation": categorical_fixation,
    "categorical-noisy": categorical_noisy,
    "regression-regimes": regression_regimes,
    "regression-fresh-vs-fixed": regression_fresh_vs_fixed,
}


def fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="?", default="", help="run the claims whose name contains this")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = []
    for name, claim in CLAIMS.items():
        if args.only not in name:
            continue
        cmd, rows, secs = claim()
        report.append({"name": name, "command": cmd, "run_seconds": round(secs, 1), "rows": rows})
        if not args.json:
            print(f"\n## {name}  ({secs:.1f} s)\n$ {cmd}")
            print(f"{'claim':<72} {'g':>4} {'theory':>10} {'simulation':>10} {'se':>9} {'z':>6}")
            for r in rows:
                print(f"{r['claim']:<72} {r['g']:>4} {fmt(r['theory']):>10} {fmt(r['sim']):>10} {fmt(r['se']):>9} {fmt(r['z']):>6}")
            sys.stdout.flush()
    if args.json:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
