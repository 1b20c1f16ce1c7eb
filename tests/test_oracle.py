"""The oracle against known efficiencies, and its precision."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special, stats

from ouro.environments.estimators import EstimatorsConfig, parse_method
from ouro.environments.estimators.dgp import Contaminated, Laplace, Normal, StudentT
from ouro.environments.estimators.methods import FAMILIES
from ouro.environments.estimators.oracle import ProcessOracle

MEDIAN = parse_method({"family": "median"})
MEAN = parse_method({"family": "mean"})


def _efficiency_with_se(dgp, n, reps):
    """Median's efficiency vs the mean on one simulation, with its delta-method SE."""
    oracle = ProcessOracle(dgp, n, replications=reps)
    centres, x = oracle._samples()
    from ouro.environments.estimators.methods import evaluate
    from ouro.stats import log_efficiency_gain

    est = evaluate([MEAN, MEDIAN], x) - centres[None]
    gain, se = log_efficiency_gain(est[0][None] ** 2, (est[1] ** 2)[None, None])
    return float(np.exp(gain[0])), float(np.exp(gain[0]) * se[0])


@pytest.mark.parametrize(
    "dgp, asymptotic",
    [
        (Normal(), 2 / np.pi),  # the textbook 2/pi
        # 4 f(0)^2 Var(X) with f(0) = (0.9 + 0.1/10) / sqrt(2 pi), Var(X) = 0.9 + 0.1 * 100
        (Contaminated(), 4 * ((0.9 + 0.01) / np.sqrt(2 * np.pi)) ** 2 * 10.9),
    ],
)
def test_median_efficiency_tends_to_its_asymptotic_value(dgp, asymptotic):
    # n = 401: for a density smooth at the centre the finite-sample correction of the
    # median's variance is O(1/n), about 0.3% here, so the tolerance is 3 standard errors
    # plus 1% of the value for that bias. (The Laplace density has a cusp and converges
    # like 1/sqrt(n): it is checked exactly below instead.)
    eff, se = _efficiency_with_se(dgp, 401, 20_000)
    assert abs(eff - asymptotic) < 3 * se + 0.01 * asymptotic, (eff, se, asymptotic)


@pytest.mark.parametrize("dgp", [Normal(), Laplace(), Contaminated(), StudentT(df=3)], ids=lambda d: d.kind)
def test_median_mse_equals_the_order_statistic_integral(dgp):
    """Exact finite-sample check: for n = 2m + 1 the median is the (m+1)-th order statistic,
    whose density is n!/(m!)^2 F^m (1-F)^m f; its variance by quadrature vs the oracle's MSE."""
    n, m = 51, 25
    law = {
        "normal": stats.norm(),
        "laplace": stats.laplace(),
        "student_t": stats.t(3),
    }.get(dgp.kind)
    if law is None:  # contaminated: a mixture
        cdf = lambda x: 0.9 * stats.norm.cdf(x) + 0.1 * stats.norm.cdf(x / 10)  # noqa: E731
        pdf = lambda x: 0.9 * stats.norm.pdf(x) + 0.1 * stats.norm.pdf(x / 10) / 10  # noqa: E731
    else:
        cdf, pdf = law.cdf, law.pdf
    log_c = special.gammaln(n + 1) - 2 * special.gammaln(m + 1)

    def integrand(x):
        f = cdf(x)
        with np.errstate(divide="ignore"):  # F = 0 far in the tail: the term is 0
            return x * x * np.exp(log_c + m * np.log(f) + m * np.log1p(-f)) * pdf(x)

    exact = integrate.quad(integrand, -np.inf, 0, limit=200)[0] * 2  # symmetric about 0
    part = ProcessOracle(dgp, n)
    got = part.mse([MEDIAN])[0]
    rel_se = part.relative_se([MEDIAN])[0]
    assert abs(got / exact - 1) < 3 * rel_se, (got, exact, rel_se)


def test_oracle_relative_standard_error_is_below_one_percent(tmp_path, monkeypatch):
    env = EstimatorsConfig().build()
    methods = [parse_method(m) for m in ({"family": "median"}, {"family": "huber", "c": 1.345}, {"family": "trimmed_mean", "alpha": 0.1}, {"family": "hodges_lehmann"})]  # fmt: skip
    rel = env._oracle.parts[0].relative_se(methods)
    assert np.all(rel <= 0.01), rel


def test_mean_has_quality_one_and_baseline_is_not_good():
    env = EstimatorsConfig().build()
    q = env.oracle([MEAN, MEDIAN])
    assert q[0] == pytest.approx(1.0, abs=1e-12)
    assert list(env.is_good(q)) == [False, True]


@pytest.mark.parametrize("family, c", [("huber", 0.9), ("huber", 2.7), ("biweight", 3.3), ("biweight", 7.7)])
def test_spline_matches_direct_evaluation(family, c):
    """Interpolated M-estimator MSE equals the MSE computed directly on the same data (0.2%)."""
    part = EstimatorsConfig().build()._oracle.parts[0]
    m = FAMILIES[family].cls(c=c)
    direct, _, _ = part._mse([m])
    assert part.mse([m])[0] == pytest.approx(direct[0], rel=2e-3)


def test_oracle_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("OURO_CACHE_DIR", str(tmp_path))
    first = ProcessOracle(Normal(), 20, replications=2_000)
    value = first.mse([MEDIAN])
    files = list((tmp_path / "oracle").glob("*.json"))
    assert len(files) == 1
    second = ProcessOracle(Normal(), 20, replications=2_000)
    assert second._table  # loaded, not recomputed
    assert second.mse([MEDIAN])[0] == value[0]
