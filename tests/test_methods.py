"""Each DSL estimator against an independent reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import optimize, stats

from ouro.environments.estimators.methods import evaluate, method_key, parse_method


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 31))
    x[:, :3] *= 20  # a few gross errors per row
    return x + rng.uniform(-5, 5, (40, 1))


def _one(spec: dict, x: np.ndarray) -> np.ndarray:
    return evaluate([parse_method(spec)], x)[0]


def test_mean_and_median(samples):
    np.testing.assert_allclose(_one({"family": "mean"}, samples), samples.mean(1), rtol=1e-12)
    np.testing.assert_allclose(_one({"family": "median"}, samples), np.median(samples, 1), rtol=1e-12)
    even = samples[:, :30]
    np.testing.assert_allclose(_one({"family": "median"}, even), np.median(even, 1), rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.1, 0.2, 0.3, 0.45])
def test_trimmed_mean_matches_scipy(samples, alpha):
    ref = np.array([stats.trim_mean(row, alpha) for row in samples])
    np.testing.assert_allclose(_one({"family": "trimmed_mean", "alpha": alpha}, samples), ref, rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.2, 0.4])
def test_winsorized_mean_matches_scipy(samples, alpha):
    ref = np.array([stats.mstats.winsorize(row, limits=(alpha, alpha)).mean() for row in samples])
    np.testing.assert_allclose(_one({"family": "winsorized_mean", "alpha": alpha}, samples), ref, rtol=1e-12)


def test_hodges_lehmann_brute_force(samples):
    def hl(row):
        n = len(row)
        return np.median([(row[i] + row[j]) / 2 for i in range(n) for j in range(i, n)])

    ref = np.array([hl(row) for row in samples])
    np.testing.assert_allclose(_one({"family": "hodges_lehmann"}, samples), ref, rtol=1e-12)


def _mad(row):
    return 1.482602218505602 * np.median(np.abs(row - np.median(row)))


@pytest.mark.parametrize("c", [0.5, 1.345, 3.0])
def test_huber_solves_its_estimating_equation(samples, c):
    """Reference: the root of sum psi((x - mu)/s) by Brent's method (psi is monotone)."""

    def ref(row):
        s = _mad(row)
        f = lambda mu: np.clip((row - mu) / s, -c, c).sum()  # noqa: E731
        return optimize.brentq(f, row.min(), row.max(), xtol=1e-13)

    expected = np.array([ref(row) for row in samples])
    np.testing.assert_allclose(_one({"family": "huber", "c": c}, samples), expected, atol=1e-8)


@pytest.mark.parametrize("c", [3.0, 4.685, 9.0])
def test_biweight_solves_its_estimating_equation(samples, c):
    """Reference: the root of the biweight psi nearest the median, by Brent's method on a bracket."""

    def psi_sum(row, mu):
        u = (row - mu) / (_mad(row) * c)
        return np.where(np.abs(u) < 1, u * (1 - u * u) ** 2, 0.0).sum()

    got = _one({"family": "biweight", "c": c}, samples)
    for row, mu in zip(samples, got):
        s = _mad(row)
        root = optimize.brentq(lambda m: psi_sum(row, m), mu - 0.05 * s, mu + 0.05 * s, xtol=1e-13)
        assert abs(root - mu) < 1e-8 * max(1.0, s)
        assert abs(mu - np.median(row)) < s  # the root that the median start leads to


def test_batch_of_mixed_methods_equals_one_by_one(samples):
    specs = [
        {"family": "huber", "c": 1.0}, {"family": "trimmed_mean", "alpha": 0.2}, {"family": "huber", "c": 2.0},
        {"family": "biweight", "c": 5.0}, {"family": "median"}, {"family": "huber", "c": 1.0},
    ]  # fmt: skip
    batch = evaluate([parse_method(s) for s in specs], samples)
    for row, spec in zip(batch, specs):
        np.testing.assert_allclose(row, _one(spec, samples), rtol=1e-12)


@pytest.mark.parametrize(
    "spec",
    [
        {"family": "trimmed_mean", "alpha": 0.5},
        {"family": "huber", "c": 0.0},
        {"family": "biweight", "c": 100},
        {"family": "median", "alpha": 0.1},
        {"family": "magic"},
    ],
)
def test_dsl_rejects_out_of_range_and_unknown(spec):
    with pytest.raises(ValidationError):
        parse_method(spec)


def test_method_key_rounds_to_three_digits():
    assert method_key(parse_method({"family": "huber", "c": 1.3449})) == "huber(1.34)"
    assert method_key(parse_method({"family": "mean"})) == "mean"
