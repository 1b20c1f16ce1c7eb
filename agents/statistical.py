"""The embedded statistical researcher: a probability model over the method DSL.

It is the smallest model that can collapse or improve for real: a categorical
distribution over method families, and for each parametric family a normal
distribution of its hyper-parameter on an unbounded scale (logit of the position in
the allowed range). ``learn`` is maximum likelihood on the pool; ``propose`` samples.
Trained on its own samples it performs neutral drift (a Wright-Fisher process over
families, shrinking variances), so with nobody verifying, diversity is lost and
nothing pushes quality up. It learns exactly, on a CPU, in microseconds.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field
from scipy.special import ndtr

from ouro.environments.estimators.methods import FAMILIES, FAMILY_NAMES, param_of, parse_method

from .base import RESEARCHERS, ResearcherConfig

_EDGE = 1e-6  # keep hyper-parameters strictly inside their open ranges
BIN = 1e-3  # resolution of a hyper-parameter, as a fraction of its range, for likelihoods


def _to_unbounded(fam, value: np.ndarray) -> np.ndarray:
    lo, hi = (np.log(fam.low), np.log(fam.high)) if fam.log_scale else (fam.low, fam.high)
    v = np.log(value) if fam.log_scale else np.asarray(value, dtype=float)
    p = np.clip((v - lo) / (hi - lo), _EDGE, 1 - _EDGE)
    return np.log(p) - np.log1p(-p)


def _from_unbounded(fam, z: np.ndarray) -> np.ndarray:
    lo, hi = (np.log(fam.low), np.log(fam.high)) if fam.log_scale else (fam.low, fam.high)
    p = np.clip(1.0 / (1.0 + np.exp(-z)), _EDGE, 1 - _EDGE)
    v = lo + p * (hi - lo)
    return np.exp(v) if fam.log_scale else v


@RESEARCHERS.register
class StatisticalResearcherConfig(ResearcherConfig):
    kind: Literal["statistical"] = "statistical"
    smoothing: float = Field(
        0.0, ge=0.0, description="pseudo-count added to every family when learning (0: pure maximum likelihood)"
    )
    min_sd: float = Field(0.0, ge=0.0, description="floor of each hyper-parameter's standard deviation (unbounded scale)")

    def build(self, env: Any) -> "StatisticalResearcher":
        if getattr(env, "name", None) != "estimators":
            raise ValueError("researcher 'statistical' over methods needs the 'estimators' environment")
        return StatisticalResearcher(self)


class StatisticalResearcher:
    def __init__(self, config: StatisticalResearcherConfig) -> None:
        self.config = config
        k = len(FAMILY_NAMES)
        self.probs = np.full(k, 1.0 / k)
        self.loc = {f: 0.0 for f, fam in FAMILIES.items() if fam.param}
        self.sd = {f: 1.0 for f, fam in FAMILIES.items() if fam.param}

    # --------------------------------------------------------------- learning
    def learn(self, pool: list) -> None:
        """Maximum likelihood on the pool. An empty pool teaches nothing: the model stays."""
        if not any(parse_method(m).family in FAMILIES for m in pool):
            return
        methods = [m for m in map(parse_method, pool) if m.family in FAMILIES]  # it has no model of code
        counts = np.array([sum(m.family == f for m in methods) for f in FAMILY_NAMES], dtype=float)
        counts += self.config.smoothing
        self.probs = counts / counts.sum()
        for f in self.loc:
            vals = np.array([param_of(m) for m in methods if m.family == f])
            if vals.size:
                z = _to_unbounded(FAMILIES[f], vals)
                self.loc[f] = float(z.mean())
                self.sd[f] = max(float(z.std()), self.config.min_sd)  # the MLE: ddof = 0

    # --------------------------------------------------------------- proposing
    def propose(self, n: int, rng: np.random.Generator, feedback: Any = None) -> list:
        idx = rng.choice(len(FAMILY_NAMES), size=n, p=self.probs)
        z = rng.standard_normal(n)
        out = []
        for i, zi in zip(idx, z):
            fam = FAMILIES[FAMILY_NAMES[i]]
            if fam.param is None:
                out.append(fam.cls())
            else:
                value = float(_from_unbounded(fam, self.loc[fam.name] + self.sd[fam.name] * zi))
                out.append(fam.cls(**{fam.param: value}))
        return out

    def log_likelihood(self, methods: list) -> np.ndarray:
        """Log probability that the model proposes each method, at a fixed resolution.

        A method without a hyper-parameter has its family's mass. A parametric method is
        the event "this family, and a hyper-parameter within 1/1000 of its range of this
        value": family mass times the normal mass of that bin on the unbounded scale. Both
        are probabilities, so they can be ranked against each other (a density could not:
        it would favour whichever family happens to be concentrated).
        """
        out = np.empty(len(methods))
        for i, m in enumerate(methods):
            if m.family not in FAMILIES:
                out[i] = -np.inf  # a program: outside what this model can propose
                continue
            j = FAMILY_NAMES.index(m.family)
            lp = np.log(self.probs[j]) if self.probs[j] > 0 else -np.inf
            fam = FAMILIES[m.family]
            if fam.param is not None and np.isfinite(lp):
                lp += self._log_bin_mass(fam, param_of(m))
            out[i] = lp
        return out

    def _log_bin_mass(self, fam, value: float) -> float:
        lo, hi = (np.log(fam.low), np.log(fam.high)) if fam.log_scale else (fam.low, fam.high)
        u = ((np.log(value) if fam.log_scale else value) - lo) / (hi - lo)
        edges = np.clip([u - BIN / 2, u + BIN / 2], _EDGE, 1 - _EDGE)
        z_lo, z_hi = np.log(edges) - np.log1p(-edges)
        loc, sd = self.loc[fam.name], self.sd[fam.name]
        if sd == 0:
            return 0.0 if z_lo <= loc <= z_hi else -np.inf
        mass = ndtr((z_hi - loc) / sd) - ndtr((z_lo - loc) / sd)
        return float(np.log(mass)) if mass > 0 else -np.inf

    # --------------------------------------------------------------- state
    def state(self) -> dict:
        return {
            "probs": dict(zip(FAMILY_NAMES, map(float, self.probs))),
            "loc": dict(self.loc),
            "sd": dict(self.sd),
        }

    def load_state(self, state: dict) -> None:
        self.probs = np.array([state["probs"][f] for f in FAMILY_NAMES])
        self.loc = {k: float(v) for k, v in state["loc"].items()}
        self.sd = {k: float(v) for k, v in state["sd"].items()}
