"""From metrics.csv to summary.json: per arm, what happened, with confidence intervals."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ouro.cohort import COST_METRICS
from ouro.ledger import latest_spend, spend_summary
from ouro.stats import mean_ci, wilson_ci
from ouro.store import atomic_write_text
from ouro.verdict import arm_verdict


def read_metrics(path: Path) -> dict[str, dict[str, dict[int, dict[int, float]]]]:
    """metrics[arm][metric][seed][generation] = value."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out[row["arm"]][row["metric"]][int(row["seed"])][int(row["generation"])] = float(row["value"])
    return out


def _clean(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _nan(x: float | None) -> float:
    return math.nan if x is None else x


def missing_data(metrics: dict, quality_metric: str, diversity_metric: str) -> str:
    """Why an arm has no verdict: which generation's data are missing, and what it lacked.

    Quality is NaN in a seed's generation with no valid proposal, or with none the oracle
    could evaluate (code that failed in the sandbox); diversity is NaN only in the first
    case.
    """
    quality, diversity = metrics[quality_metric], metrics.get(diversity_metric, {})
    if not any(quality.values()):
        return f"no {quality_metric} recorded"
    first = min(min(per) for per in quality.values() if per)
    last = max(max(per) for per in quality.values() if per)
    where = {min: f"generation {first}", max: f"the last generation ({last})"}
    ends = (min, max) if last > first else (min,)  # one generation: its start is its end

    def has(series: dict, at) -> bool:
        """Whether any seed has a value at its first (``min``) or last (``max``) generation."""
        return any(math.isfinite(per[at(per)]) for per in series.values() if per)

    lacking = [at for at in ends if not has(quality, at)]
    if lacking:
        return "; ".join(
            f"no {'proposals the oracle could evaluate' if has(diversity, at) else 'valid proposals'} at {where[at]}"
            for at in lacking
        )
    start, end = _start_end(quality)
    if not np.isfinite(end - start).any():
        return f"no seed has a {quality_metric} at both {where[min]} and {where[max]}"
    # the quality change decided nothing, and the diversity to tell collapsed from stable is missing
    return "; ".join(f"no valid proposals at {where[at]}" for at in ends if not has(diversity, at)) or "missing data"


def _start_end(series: dict[int, dict[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    seeds = sorted(series)
    start = np.array([series[s][min(series[s])] for s in seeds])
    end = np.array([series[s][max(series[s])] for s in seeds])
    return start, end


def _block(series) -> dict:
    start, end = _start_end(series)
    m0, lo0, hi0 = mean_ci(start)
    m1, lo1, hi1 = mean_ci(end)
    d, dlo, dhi = mean_ci(end - start)
    return {
        "start": _clean(m0),
        "start_ci": [_clean(lo0), _clean(hi0)],
        "end": _clean(m1),
        "end_ci": [_clean(lo1), _clean(hi1)],
        "delta": _clean(d),
        "delta_ci": [_clean(dlo), _clean(dhi)],
    }


def summarize_arm(metrics: dict, quality_metric: str, diversity_metric: str, quality_direction: int = 1) -> dict:
    """``quality_direction`` is -1 when the quality metric is an error (lower is better)."""
    quality = _block(metrics[quality_metric])
    diversity = {diversity_metric: _block(metrics[diversity_metric])}
    for extra in ("distinct", "param_spread"):
        if extra in metrics:
            diversity[extra] = _block(metrics[extra])
    d = quality["delta_ci"]
    lo, hi = (_nan(x) * quality_direction for x in d)
    verdict = arm_verdict(
        _nan(quality["delta"]),
        (min(lo, hi), max(lo, hi)) if not (math.isnan(lo) or math.isnan(hi)) else (math.nan, math.nan),
        _nan(diversity[diversity_metric]["start"]),
        _nan(diversity[diversity_metric]["end"]),
    )

    def total(name: str) -> float:
        return float(sum(v for per_seed in metrics.get(name, {}).values() for v in per_seed.values()))

    tp, fp, fn = total("tp"), total("fp"), total("fn")
    precision, plo, phi = wilson_ci(int(tp), int(tp + fp))
    recall, rlo, rhi = wilson_ci(int(tp), int(tp + fn))
    out = {
        "verdict": verdict,
        "verdict_missing": None if verdict else missing_data(metrics, quality_metric, diversity_metric),
        "quality": quality,
        "diversity": diversity,
        "precision": _clean(precision),
        "precision_ci": [_clean(plo), _clean(phi)],
        "recall": _clean(recall),
        "recall_ci": [_clean(rlo), _clean(rhi)],
        "unscored": total("unscored"),
        "cost": {k: total(f"cost_{k}") for k in COST_METRICS},
        "seeds": len(metrics[quality_metric]),
    }
    if "audit_tp" in metrics:
        out["audit"] = audit_block(total)
    return out


def audit_block(total) -> dict:
    """The audited verifier's precision and recall from a person's answers alone (verifiers/audit.py).

    The audited proposals are a uniform sample of each batch, so the pooled counts
    estimate precision and recall; the intervals are Wilson's, at 95%.
    """
    tp, fp, fn, tn = (int(total(f"audit_{k}")) for k in ("tp", "fp", "fn", "tn"))
    precision, plo, phi = wilson_ci(tp, tp + fp)
    recall, rlo, rhi = wilson_ci(tp, tp + fn)
    agreement, alo, ahi = wilson_ci(tp + tn, tp + fp + fn + tn)
    return {
        "audited": tp + fp + fn + tn,
        "skipped": int(total("audit_skipped")),
        "counts": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "precision": _clean(precision),
        "precision_ci": [_clean(plo), _clean(phi)],
        "recall": _clean(recall),
        "recall_ci": [_clean(rlo), _clean(rhi)],
        "agreement": _clean(agreement),
        "agreement_ci": [_clean(alo), _clean(ahi)],
    }


def read_stage_seconds(path: Path) -> dict[str, dict[str, float]]:
    """seconds[arm][stage], summed over generations, from timings.csv (absent: empty)."""
    out: dict = defaultdict(lambda: defaultdict(float))
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                out[row["arm"]][row["stage"]] += float(row["seconds"])
    return out


def summarize(run_dir: Path, config) -> dict:
    env = config.environment.build()
    metrics = read_metrics(run_dir / "metrics.csv")
    seconds = read_stage_seconds(run_dir / "timings.csv")
    arms = {}
    for arm in config.arms:
        if arm.name in metrics:
            arms[arm.name] = summarize_arm(
                metrics[arm.name], env.quality_metric, env.diversity_metric, getattr(env, "quality_direction", 1)
            )
            arms[arm.name]["cost"]["wall_seconds"] = round(seconds[arm.name].get("verify", 0.0), 3)
            # the whole ledger, from the generation records: verifier and researcher, tokens and USD
            arms[arm.name]["ledger"] = spend_summary(latest_spend(run_dir, arm.name))
    summary = {
        "name": config.name,
        "quality_metric": env.quality_metric,
        "diversity_metric": env.diversity_metric,
        "arms": arms,
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
