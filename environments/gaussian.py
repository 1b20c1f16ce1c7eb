"""The recursive Gaussian fit: the textbook case of model collapse.

Real data are n draws from N(0, 1); the researcher is a normal distribution fitted to
its pool (mean, and variance with divisor n - 1 or n); each generation it samples n
proposals. Under ``replace`` with nobody verifying, log sigma^2 is a random walk with a
negative drift, so sigma^2 -> 0 almost surely while the mean wanders off (Shumailov et
al. 2024); under ``accumulate`` the variance stays near 1 (Kazdan, Schaeffer et al.).
The closed forms are below, next to the simulation that they check.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from scipy import special
from scipy import stats as st

from ouro.rng import per_seed

from .base import ENVIRONMENTS
from .closed_form import Arrays, Batch, ClosedFormConfig, ClosedFormEnvironment, padded


@ENVIRONMENTS.register
class GaussianConfig(ClosedFormConfig):
    kind: Literal["gaussian"] = "gaussian"
    variance: Literal["unbiased", "mle"] = "unbiased"

    def build(self) -> "GaussianEnvironment":
        return GaussianEnvironment(self)


def _moments(x: np.ndarray, mask: np.ndarray) -> Arrays:
    """Count, mean and sum of squared deviations of the masked values of each row."""
    m = mask.astype(float)
    count = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, (x * m).sum(axis=1) / count, 0.0)
    m2 = (((x - mean[:, None]) ** 2) * m).sum(axis=1)
    return {"count": count, "mean": mean, "m2": m2}


class GaussianEnvironment(ClosedFormEnvironment):
    name = "gaussian"
    quality_metric: ClassVar[str] = "w2"
    diversity_metric: ClassVar[str] = "sigma2"
    quality_direction: ClassVar[int] = -1
    judgements = frozenset({"likelihood", "fresh"})
    min_proposals: ClassVar[int] = 2

    def __init__(self, config: GaussianConfig) -> None:
        self.config = config
        self.ddof = 1 if config.variance == "unbiased" else 0

    def describe(self) -> str:
        return (
            "Fit a normal distribution to the pool (mean, and the variance with divisor "
            f"{'n - 1' if self.ddof else 'n'}); real data are draws from N(0, 1). Quality is the "
            "Wasserstein-2 distance to N(0, 1) (lower is better)."
        )

    # ------------------------------------------------------------ data and model
    def initial_data(self, seeds: np.ndarray) -> tuple[Arrays, np.ndarray]:
        x = np.stack(per_seed(seeds, 0, "real", lambda rng: rng.standard_normal(self.proposals)))
        return {"x": x}, np.ones(x.shape, dtype=bool)

    def fresh_data(self, seeds: np.ndarray, generation: int, sizes: np.ndarray) -> tuple[Arrays, np.ndarray]:
        sizes_left = iter(sizes.tolist())
        rows = per_seed(seeds, generation, "mix", lambda rng: rng.standard_normal(next(sizes_left)))
        x, mask = padded(rows, sizes)
        return {"x": x}, mask

    def stats(self, data: Arrays, mask: np.ndarray) -> Arrays:
        return _moments(data["x"], mask)

    def merge(self, a: Arrays, b: Arrays) -> Arrays:
        """Chan et al.'s pairwise update: exact, and stable when the variance is tiny."""
        n = a["count"] + b["count"]
        safe = np.where(n > 0, n, 1.0)
        delta = b["mean"] - a["mean"]
        mean = a["mean"] + delta * b["count"] / safe
        m2 = a["m2"] + b["m2"] + delta**2 * a["count"] * b["count"] / safe
        return {"count": n, "mean": mean, "m2": m2}

    def fit(self, stats: Arrays) -> tuple[Arrays, np.ndarray]:
        count = stats["count"]
        ok = count >= 1 + self.ddof
        var = stats["m2"] / np.where(ok, count - self.ddof, 1.0)
        return {"mu": stats["mean"].copy(), "sigma2": var}, ok

    def propose(self, params: Arrays, seeds: np.ndarray, generation: int) -> Arrays:
        z = np.empty((len(seeds), self.proposals))
        rows = iter(z)
        per_seed(seeds, generation, "propose", lambda rng: rng.standard_normal(out=next(rows)))
        return {"x": params["mu"][:, None] + np.sqrt(params["sigma2"])[:, None] * z}

    def metrics(self, params: Arrays) -> dict[str, np.ndarray]:
        mu, s2 = params["mu"], params["sigma2"]
        with np.errstate(divide="ignore"):
            log_s2 = np.log(s2)
        return {
            "mu": mu,
            "sigma2": s2,
            "log_sigma2": log_s2,
            "w2": np.sqrt(mu**2 + (np.sqrt(s2) - 1.0) ** 2),
        }

    # ------------------------------------------------------------ judging
    def log_likelihood(self, batch: Batch) -> np.ndarray:
        mu, s2 = batch.params["mu"][:, None], batch.params["sigma2"][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            return -0.5 * ((batch.data["x"] - mu) ** 2 / s2 + np.log(2 * np.pi * s2))

    def fresh_check(self, batch: Batch, replications: int, alpha: float) -> np.ndarray:
        """Welch's t-test of the means and the F-test of the variances against fresh
        N(0, 1) draws, each at alpha / 2 (Bonferroni): the two moments the fit keeps."""
        y = batch.draw(lambda rng: rng.standard_normal(replications))
        x = batch.data["x"]
        n, m = x.shape[1], y.shape[1]
        vx, vy = x.var(axis=1, ddof=1), y.var(axis=1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            se2 = vx / n + vy / m
            t = (x.mean(axis=1) - y.mean(axis=1)) / np.sqrt(se2)
            df = se2**2 / ((vx / n) ** 2 / (n - 1) + (vy / m) ** 2 / (m - 1))
            p_mean = 2 * st.t.sf(np.abs(t), df)
            f = vx / vy
            p_var = 2 * np.minimum(st.f.cdf(f, n - 1, m - 1), st.f.sf(f, n - 1, m - 1))
        p = np.minimum(np.nan_to_num(p_mean, nan=0.0), np.nan_to_num(p_var, nan=0.0))
        return p >= alpha / 2


# ---------------------------------------------------------------- closed forms
def expected_log_sigma2(generation: int | np.ndarray, n: int) -> np.ndarray:
    """``replace``, unbiased variance: E[ln sigma^2_g] = (g + 1)(psi((n-1)/2) + ln(2/(n-1))).

    Each fit multiplies sigma^2 by an independent chi^2_{n-1}/(n-1) (Shumailov et al.)."""
    g = np.asarray(generation, dtype=float)
    return (g + 1) * (special.digamma((n - 1) / 2) + np.log(2 / (n - 1)))


def var_log_sigma2(generation: int | np.ndarray, n: int) -> np.ndarray:
    """Variance of ln sigma^2_g under ``replace``: (g + 1) psi'((n-1)/2)."""
    return (np.asarray(generation, dtype=float) + 1) * special.polygamma(1, (n - 1) / 2)


def expected_mu2_replace(generation: int | np.ndarray, n: int) -> np.ndarray:
    """``replace``, unbiased variance: E[mu_g^2] = (g + 1)/n (E[sigma^2] stays 1)."""
    return (np.asarray(generation, dtype=float) + 1) / n


def expected_sigma2_mle(generation: int | np.ndarray, n: int) -> np.ndarray:
    """``replace``, MLE variance: E[sigma^2_g] = (1 - 1/n)^(g + 1)."""
    return (1 - 1 / n) ** (np.asarray(generation, dtype=float) + 1)


def accumulate_moments(generations: int, n: int, variance: str) -> tuple[np.ndarray, np.ndarray]:
    """``accumulate``, exact: E[sigma^2_g] and E[mu_g^2] for g = 0 .. generations - 1.

    The pool at generation t holds N_t = (t + 1) n points; adding n draws from the
    current fit multiplies E[sigma^2] by 1 - n/(N_t (N_t - 1)) (unbiased) or
    1 - n/N_t^2 (MLE), and adds E[sigma^2_{t-1}]/(n (t + 1)^2) to E[mu^2]. With
    E[sigma^2] ~ 1 this is E[mu_g^2] ~ (1/n) sum_{i=1}^{g+1} 1/i^2 < pi^2/(6n): the
    bound Kazdan, Schaeffer et al. state.
    """
    v = np.empty(generations)
    mu2 = np.empty(generations)
    v[0] = 1.0 if variance == "unbiased" else 1 - 1 / n
    mu2[0] = 1 / n
    for t in range(1, generations):
        big_n = (t + 1) * n
        factor = 1 - n / (big_n * (big_n - 1)) if variance == "unbiased" else 1 - n / big_n**2
        v[t] = v[t - 1] * factor
        mu2[t] = mu2[t - 1] + v[t - 1] / (n * (t + 1) ** 2)
    return v, mu2
