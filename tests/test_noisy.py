"""The noisy verifier: accepts good proposals with probability tpr, bad ones with fpr."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ouro.config import ConfigError, validate
from ouro.environments.categorical import CategoricalConfig
from ouro.environments.closed_form import Batch
from ouro.runner import execute, prepare_run_dir
from ouro.summary import read_metrics
from ouro.verifiers.base import JudgeContext
from ouro.verifiers.noisy import NoisyVerifierConfig


class HalfGood:
    """A method environment in miniature: method i is good when i is even."""

    def oracle(self, methods: list) -> np.ndarray:
        return np.array([float(m % 2 == 0) for m in methods])

    def is_good(self, quality: np.ndarray) -> np.ndarray:
        return quality > 0.5


def within_3se(hits: np.ndarray, p: float) -> None:
    se = np.sqrt(p * (1 - p) / hits.size)
    assert abs(hits.mean() - p) <= 3 * se, f"rate {hits.mean():.4f} vs {p} (se {se:.3g})"


def test_method_judge_accepts_at_the_given_rates():
    verifier = NoisyVerifierConfig(tpr=0.7, fpr=0.2).build(HalfGood())
    proposals = list(range(20_000))
    ctx = JudgeContext(env=HalfGood(), seed=0, generation=0, rng=np.random.default_rng(1))
    verdicts = asyncio.run(verifier.judge(proposals, ctx))
    accept = np.array([v.accept for v in verdicts])
    within_3se(accept[0::2], 0.7)
    within_3se(accept[1::2], 0.2)
    assert "truly good" in verdicts[0].rationale and "truly bad" in verdicts[1].rationale


def test_batch_judge_accepts_at_the_given_rates():
    env = CategoricalConfig(categories=4, correct=[True, False, False, False]).build()
    env.bind_loop(5000)
    seeds = np.arange(8)
    params = {"p": np.full((8, 4), 0.25)}
    batch = Batch(env, seeds, 3, params, env.propose(params, seeds, 3))
    verdicts = NoisyVerifierConfig(tpr=0.9, fpr=0.35).build(env).judge_batch(batch)
    good = batch.good()
    within_3se(verdicts.accept[good], 0.9)
    within_3se(verdicts.accept[~good], 0.35)
    # the coins come from each seed's verify stream: the same in every arm with that seed
    again = NoisyVerifierConfig(tpr=0.9, fpr=0.35).build(env).judge_batch(batch)
    assert np.array_equal(verdicts.accept, again.accept)


@pytest.mark.parametrize("bad", [{"tpr": 1.2, "fpr": 0.1}, {"tpr": 0.5, "fpr": -0.1}, {"tpr": 0.5}])
def test_rates_are_validated(bad):
    with pytest.raises(ConfigError, match="fpr|tpr"):
        validate(
            {
                "name": "t",
                "environment": {"kind": "categorical"},
                "researcher": {"kind": "statistical"},
                "arms": [{"name": "n", "verifier": {"kind": "noisy", **bad}}],
            }
        )


def test_noisy_arm_in_the_estimators_loop(tmp_path):
    """Method environments: "good" is env.is_good(env.oracle(methods)), as for the oracle."""
    config = validate(
        {
            "name": "t",
            "seeds": 2,
            "environment": {"kind": "estimators", "n": 20},
            "researcher": {"kind": "statistical"},
            "loop": {"generations": 2, "proposals": 40},
            "arms": [
                {"name": "perfect", "verifier": {"kind": "noisy", "tpr": 1.0, "fpr": 0.0}},
                {"name": "oracle", "verifier": {"kind": "oracle"}},
                {"name": "coin", "verifier": {"kind": "noisy", "tpr": 0.5, "fpr": 0.5}},
            ],
        }
    )
    prepare_run_dir(config, tmp_path / "run")
    execute(tmp_path / "run", 1)
    m = read_metrics(tmp_path / "run" / "metrics.csv")
    # tpr = 1, fpr = 0 is the oracle: the same pools, so the same metrics
    assert {k: v for k, v in m["perfect"].items() if k != "cost_wall_seconds"} == {
        k: v for k, v in m["oracle"].items() if k != "cost_wall_seconds"
    }
    fp = sum(v for per_seed in m["coin"]["fp"].values() for v in per_seed.values())
    tn = sum(v for per_seed in m["coin"]["tn"].values() for v in per_seed.values())
    assert fp > 0 and tn > 0
