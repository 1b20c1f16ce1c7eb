"""The Monte Carlo verifier's paired test: its standard errors and its decisions."""

from __future__ import annotations

import asyncio

import numpy as np

from ouro.environments.estimators import EstimatorsConfig, parse_method
from ouro.stats import log_efficiency_gain, one_sided_p
from ouro.verifiers import JudgeContext
from ouro.verifiers.montecarlo import MonteCarloVerifierConfig


def test_delta_method_se_matches_spread_across_simulations():
    """The reported SE of the log-efficiency gain equals its SD over independent batches.

    With B = 300 batches the SD's own relative SE is 1/sqrt(2B) = 4%: the tolerance is 3 of those.
    """
    env = EstimatorsConfig().build()
    methods = [parse_method({"family": "median"}), parse_method({"family": "huber", "c": 1.5})]
    gains, ses = [], []
    for b in range(300):
        ev = env.simulate(methods, 100, np.random.default_rng(b))
        g, se = log_efficiency_gain(ev.baseline, ev.losses)
        gains.append(g)
        ses.append(se)
    sd = np.std(gains, axis=0, ddof=1)
    mean_se = np.mean(ses, axis=0)
    assert np.all(np.abs(mean_se / sd - 1) < 3 / np.sqrt(2 * 300)), (mean_se, sd)


def test_identical_method_is_never_significant():
    assert one_sided_p(np.array([0.0]), np.array([0.0]))[0] == 1.0


def _judge(config, proposals, pool=(), seed=0):
    env = EstimatorsConfig().build()
    ctx = JudgeContext(env=env, seed=seed, generation=0, rng=np.random.default_rng(seed), pool=list(pool))
    return asyncio.run(config.build(env).judge(proposals, ctx))


def test_montecarlo_accepts_robust_and_rejects_the_mean():
    props = [parse_method({"family": "mean"}), parse_method({"family": "median"}), parse_method({"family": "huber", "c": 1.345})]
    verdicts = _judge(MonteCarloVerifierConfig(replications=200), props)
    assert [v.accept for v in verdicts] == [False, True, True]
    assert all(v.cost.replications == 200 for v in verdicts)


def test_incumbent_target_is_harder_than_baseline():
    props = [parse_method({"family": "median"})]
    pool = [parse_method({"family": "huber", "c": 1.345})]  # efficiency ~7.3 vs the median's ~5.9
    base = _judge(MonteCarloVerifierConfig(replications=400, target="baseline"), props, pool)
    inc = _judge(MonteCarloVerifierConfig(replications=400, target="incumbent"), props, pool)
    assert base[0].accept is True and inc[0].accept is False
    assert "incumbent" in inc[0].rationale
