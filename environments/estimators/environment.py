"""The estimators environment, problem ``location``: estimate the centre of a symmetric law."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from ouro.environments.base import ENVIRONMENTS, EnvironmentConfig, Evidence

from .dgp import DGP, Contaminated, simulate_samples
from .methods import (
    FAMILIES, CodeMethod, DSLMethod, _Method, data_space, evaluate_with_errors, method_key, param_of, parse_method,
)
from .oracle import Oracle
from .sources import method_source

# The human knowledge the loop starts from: what statistics textbooks reach for. The
# sample mean is by far the most common choice, then the median; robust estimators
# appear with their textbook tuning constants.
SEED_CORPUS: tuple[dict, ...] = (
    {"family": "mean"}, {"family": "mean"}, {"family": "mean"},
    {"family": "mean"}, {"family": "mean"}, {"family": "mean"},
    {"family": "median"}, {"family": "median"}, {"family": "median"},
    {"family": "trimmed_mean", "alpha": 0.1}, {"family": "trimmed_mean", "alpha": 0.2},
    {"family": "trimmed_mean", "alpha": 0.25},
    {"family": "winsorized_mean", "alpha": 0.1}, {"family": "winsorized_mean", "alpha": 0.2},
    {"family": "huber", "c": 1.345}, {"family": "huber", "c": 1.5}, {"family": "huber", "c": 2.0},
    {"family": "biweight", "c": 4.685}, {"family": "biweight", "c": 6.0},
    {"family": "hodges_lehmann"},
)  # fmt: skip


@ENVIRONMENTS.register
class EstimatorsConfig(EnvironmentConfig):
    kind: Literal["estimators"] = "estimators"
    problem: Literal["location"] = "location"
    n: int = Field(50, ge=5, le=5000, description="sample size of each data set")
    dgp: list[DGP] = Field(
        default_factory=lambda: [Contaminated()],
        min_length=1,
        description="one process or a set; quality averages log-efficiency across the set",
    )
    location_spread: float = Field(100.0, gt=0, description="true centres are drawn from U(-spread, spread)")

    @field_validator("dgp", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, dict) else v

    def build(self) -> "EstimatorsEnvironment":
        return EstimatorsEnvironment(self)


class EstimatorsEnvironment:
    name = "estimators"
    quality_metric: ClassVar[str] = "quality_mean"
    diversity_metric: ClassVar[str] = "entropy"
    baseline_quality: ClassVar[float] = 1.0
    quality_label: ClassVar[str] = "efficiency relative to the sample mean (×)"  # axis labels of reports
    diversity_label: ClassVar[str] = "entropy over method families (nats)"
    method_type: ClassVar[Any] = DSLMethod  # what a proposal is: the schema model-backed researchers write
    code_method_type: ClassVar[Any] = CodeMethod  # a method as Python source, run in the sandbox (method_kind: code)

    def __init__(self, config: EstimatorsConfig) -> None:
        self.config = config
        self.n = config.n
        self.dgps = list(config.dgp)
        self._oracle = Oracle(self.dgps, self.n)

    # ------------------------------------------------------------- describing
    def describe(self) -> str:
        laws = ", ".join(d.label() for d in self.dgps)
        fams = "; ".join(
            f.name if f.param is None else f"{f.name}({f.param} in [{f.low:g}, {f.high:g}])" for f in FAMILIES.values()
        )
        return (
            f"Location problem: from n={self.n} independent observations of a distribution symmetric about an "
            f"unknown centre theta, estimate theta. Noise law(s): {laws}. Quality is the efficiency relative to "
            f"the sample mean, MSE(mean)/MSE(method) (geometric mean over the laws); higher is better, 1 equals "
            f"the mean. Methods: {fams}."
        )

    def parse_method(self, obj: Any) -> _Method:
        return parse_method(obj)

    def method_key(self, method: _Method) -> str:
        return method_key(method)

    def method_source(self, method: _Method) -> str:
        """``method`` as Python source: its own for a code method, equivalent numpy for a DSL one."""
        return method.source if isinstance(method, CodeMethod) else method_source(method)

    def real_data(self, rng: np.random.Generator) -> list[_Method]:
        return [parse_method(m) for m in SEED_CORPUS]

    def baseline(self) -> _Method:
        return parse_method({"family": "mean"})

    # ------------------------------------------------------------- judging
    def simulate(self, methods: list[_Method], replications: int, rng: np.random.Generator) -> Evidence:
        """Squared errors of every method and of the sample mean on the same data sets."""
        losses = np.empty((len(methods), len(self.dgps), replications))
        baseline = np.empty((len(self.dgps), replications))
        errors: list[str | None] = [None] * len(methods)
        for d, dgp in enumerate(self.dgps):
            with data_space(methods, replications, self.n) as space:
                centres, x = simulate_samples(dgp, rng, replications, self.n, self.config.location_spread, out=space)
                baseline[d] = (x.mean(axis=1) - centres) ** 2
                if methods:
                    values, errs = evaluate_with_errors(methods, x)
                    losses[:, d] = (values - centres[None]) ** 2
                    errors = [e or errors[i] for i, e in enumerate(errs)]
        losses[[i for i, e in enumerate(errors) if e]] = np.inf
        return Evidence(losses=losses, baseline=baseline, errors=errors)

    def warm_up(self) -> None:
        """Fill the oracle's cache once, before worker processes start reading it."""
        self._oracle.warm_up()

    def oracle(self, methods: list[_Method]) -> np.ndarray:
        return self._oracle.quality(methods)

    def oracle_failures(self, methods: list[_Method]) -> list[str | None]:
        """Why the oracle gave a method no quality (NaN): code that failed in the sandbox."""
        return self._oracle.failures(methods)

    def is_good(self, quality: np.ndarray) -> np.ndarray:
        """Good means better than the textbook baseline, the sample mean (a method that
        cannot be evaluated, quality NaN, is not good)."""
        return np.asarray(quality) > self.baseline_quality

    # ------------------------------------------------------------- diversity
    def diversity(self, methods: list[_Method]) -> dict[str, float]:
        """Entropy over families (nats), distinct fraction, and spread of hyper-parameters.

        ``param_spread`` is the mean, over parametric families present, of the standard
        deviation of the hyper-parameter normalized to its range (log range for tuning
        constants): it falls to 0 when every member of a family uses the same value.

        No methods (a generation without one valid proposal) have no diversity: every
        measure is NaN, not 0, which would read as a collapse.
        """
        if not methods:
            return dict.fromkeys(("entropy", "distinct", "param_spread", "families"), math.nan)
        # a code method is its own category, by normalized AST: programs that differ only in
        # layout and comments count as one
        categories = [m.family if m.family in FAMILIES else method_key(m) for m in methods]
        counts = np.array([categories.count(c) for c in sorted(set(categories))], dtype=float)
        p = counts / counts.sum()
        spreads = []
        for fam in FAMILIES.values():
            if fam.param is None:
                continue
            vals = [param_of(m) for m in methods if m.family == fam.name]
            if len(vals) >= 2:
                v = np.array(vals)
                u = (np.log(v) - np.log(fam.low)) / (np.log(fam.high) - np.log(fam.low)) if fam.log_scale else (
                    (v - fam.low) / (fam.high - fam.low)
                )
                spreads.append(float(np.std(u)))
        return {
            "entropy": float(-(p * np.log(p)).sum()) + 0.0,
            "distinct": len({method_key(m) for m in methods}) / len(methods),
            "param_spread": float(np.mean(spreads)) if spreads else 0.0,
            "families": float(len(counts)),
        }
