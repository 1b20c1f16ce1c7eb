"""What the closed-form environments' tests share: running a config, and a 3-SE check."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ouro.config import validate
from ouro.runner import execute, prepare_run_dir
from ouro.summary import read_metrics


def run(tmp_path: Path, data: dict, name: str = "run") -> dict[str, dict[str, np.ndarray]]:
    """Run a config through the runner; metrics[arm][metric] as a (seeds, generations) array."""
    out = tmp_path / name
    config = validate({"name": "t", "researcher": {"kind": "statistical"}, **data})
    prepare_run_dir(config, out)
    execute(out, 1)
    metrics = read_metrics(out / "metrics.csv")
    return {
        arm: {k: np.array([[v[s][g] for g in sorted(v[s])] for s in sorted(v)]) for k, v in per_arm.items()}
        for arm, per_arm in metrics.items()
    }


def within_3se(values: np.ndarray, expected: float, se: float | None = None) -> None:
    """The mean of ``values`` within 3 standard errors of ``expected`` (SE estimated if not given)."""
    se = values.std(ddof=1) / np.sqrt(values.size) if se is None else se
    assert abs(values.mean() - expected) <= 3 * se, f"mean {values.mean():.5g} vs {expected:.5g} (se {se:.3g})"
