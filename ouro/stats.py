"""Small statistics used in several places: confidence intervals and the paired test."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _st


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t confidence interval across independent values (e.g. seeds).

    With fewer than two values the interval is (nan, nan): one seed says nothing about
    spread, and a verdict must not be read off it.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    se = float(x.std(ddof=1) / math.sqrt(x.size))
    half = float(_st.t.ppf(0.5 + level / 2, x.size - 1)) * se
    return m, m - half, m + half


def wilson_ci(successes: int, trials: int, level: float = 0.95) -> tuple[float, float, float]:
    """A proportion with its Wilson score interval; (nan, nan, nan) for zero trials."""
    if trials <= 0:
        return math.nan, math.nan, math.nan
    z = float(_st.norm.ppf(0.5 + level / 2))
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


def log_efficiency_gain(reference: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paired estimate of log(MSE_ref / MSE_method), averaged over data-generating processes.

    ``reference`` has shape (D, R) and ``losses`` (P, D, R): squared errors of the
    reference and of P methods on the *same* R simulated data sets of each of D processes
    (common random numbers). Returns the estimate and its standard error by the delta
    method, which uses the pairing: a method close to the reference has a small SE.
    """
    ref = np.asarray(reference, dtype=float)[None]
    los = np.asarray(losses, dtype=float)
    r = ref.shape[-1]
    m_ref = ref.mean(-1)
    m_los = los.mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.log(m_ref) - np.log(m_los)  # (P, D)
        # gradient of log(a) - log(b) w.r.t. (a, b) is (1/a, -1/b)
        a = ref / m_ref[..., None]
        b = los / m_los[..., None]
        var = np.var(a - b, axis=-1, ddof=1) / r  # (P, D)
    d = gain.shape[-1]
    est = gain.mean(-1)
    se = np.sqrt(var.sum(-1)) / d
    return est, se


def one_sided_p(estimate: np.ndarray, se: np.ndarray) -> np.ndarray:
    """P-value of H0: gain <= 0 against gain > 0 (normal approximation, R is large).

    A zero standard error (a method identical to its reference) gives p = 1 unless the
    gain is strictly positive.
    """
    est = np.asarray(estimate, dtype=float)
    se = np.asarray(se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, est / se, np.where(est > 0, np.inf, -np.inf))
    p = _st.norm.sf(z)
    return np.where(np.isfinite(est), p, 1.0)
