"""The statistical researcher: maximum likelihood recovers what generated the pool."""

from __future__ import annotations

import numpy as np
import pytest

from ouro.agents.statistical import StatisticalResearcherConfig, _to_unbounded
from ouro.environments.estimators import EstimatorsConfig
from ouro.environments.estimators.methods import FAMILIES, FAMILY_NAMES, param_of


def _researcher(**kw):
    return StatisticalResearcherConfig(**kw).build(EstimatorsConfig().build())


def test_mle_recovers_known_parameters():
    truth = _researcher()
    truth.load_state(
        {
            "probs": dict(zip(FAMILY_NAMES, [0.1, 0.1, 0.2, 0.1, 0.3, 0.1, 0.1])),
            "loc": {"trimmed_mean": -0.5, "winsorized_mean": 0.3, "huber": 0.8, "biweight": -1.0},
            "sd": {"trimmed_mean": 0.4, "winsorized_mean": 0.2, "huber": 0.6, "biweight": 0.5},
        }
    )
    n = 20_000
    pool = truth.propose(n, np.random.default_rng(1))
    fitted = _researcher()
    fitted.learn(pool)
    for f, p in zip(FAMILY_NAMES, truth.probs):
        se = np.sqrt(p * (1 - p) / n)
        assert abs(fitted.probs[FAMILY_NAMES.index(f)] - p) < 3 * se
    for f in truth.loc:
        k = sum(m.family == f for m in pool)
        sd = truth.sd[f]
        assert abs(fitted.loc[f] - truth.loc[f]) < 3 * sd / np.sqrt(k)
        assert abs(fitted.sd[f] - sd) < 3 * sd / np.sqrt(2 * k)


def test_proposals_stay_inside_the_dsl_ranges():
    r = _researcher()
    r.load_state({"probs": dict.fromkeys(FAMILY_NAMES, 1 / 7), "loc": dict.fromkeys(r.loc, 0.0), "sd": dict.fromkeys(r.sd, 30.0)})
    for m in r.propose(2_000, np.random.default_rng(0)):
        fam = FAMILIES[m.family]
        if fam.param:
            assert fam.low <= param_of(m) <= fam.high


def test_empty_pool_teaches_nothing_and_state_round_trips():
    r = _researcher()
    r.learn(EstimatorsConfig().build().real_data(np.random.default_rng(0)))
    before = r.state()
    r.learn([])
    assert r.state() == before
    clone = _researcher()
    clone.load_state(before)
    assert clone.propose(5, np.random.default_rng(3)) == r.propose(5, np.random.default_rng(3))


def test_one_member_family_collapses_to_a_point_and_likelihood_says_so():
    env = EstimatorsConfig().build()
    r = _researcher()
    r.learn([env.parse_method({"family": "huber", "c": 1.5})])
    props = r.propose(10, np.random.default_rng(0))
    assert all(param_of(m) == pytest.approx(1.5) for m in props)
    ll = r.log_likelihood([env.parse_method({"family": "huber", "c": 1.5}), env.parse_method({"family": "huber", "c": 2.5})])
    assert ll[0] == 0.0 and ll[1] == -np.inf  # all the mass on c = 1.5: probability 1 and 0


def test_smoothing_keeps_lost_families_alive():
    env = EstimatorsConfig().build()
    r = _researcher(smoothing=1.0)
    r.learn([env.parse_method({"family": "mean"})] * 10)
    assert np.all(r.probs > 0)
    assert r.probs[FAMILY_NAMES.index("mean")] == pytest.approx(11 / 17)


def test_likelihood_is_a_probability_comparable_across_families():
    env = EstimatorsConfig().build()
    r = _researcher()
    r.learn(env.real_data(None))
    methods = env.real_data(None)
    p = np.exp(r.log_likelihood(methods))
    assert np.all((p >= 0) & (p <= 1))
    # the mean is 6 of 20 in the corpus: probability 0.3 exactly
    assert p[0] == pytest.approx(0.3)
    # a bin of 1/1000 of the range holds far less than its family's mass of 3/20
    huber = [i for i, m in enumerate(methods) if m.family == "huber"]
    assert np.all(p[huber] < 0.15 * 0.01)


def test_unbounded_transform_round_trips():
    from ouro.agents.statistical import _from_unbounded

    for fam in FAMILIES.values():
        if fam.param:
            v = np.linspace(fam.low, fam.high, 9)[1:-1]
            np.testing.assert_allclose(_from_unbounded(fam, _to_unbounded(fam, v)), v, rtol=1e-9)
