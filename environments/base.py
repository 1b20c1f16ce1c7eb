"""The environment protocol and registry.

An environment is a problem: a space of methods, real seed data, a Monte Carlo simulator
and an oracle used only for measurement. Environments know nothing of researchers or
verifiers.
"""

from __future__ import annotations

from abc import abstractmethod

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from ouro.registry import ComponentConfig, Registry

ENVIRONMENTS: Registry = Registry("environment")


@dataclass
class Evidence:
    """Monte Carlo evidence for a batch of methods, paired against the baseline.

    ``losses[p, d, r]`` is the loss of method p on data set r of process d; ``baseline[d, r]``
    the baseline's loss on the same data set. ``errors[p]`` is a reason when method p
    could not be evaluated (its losses are then +inf).
    """

    losses: np.ndarray
    baseline: np.ndarray
    errors: list[str | None] = field(default_factory=list)

    @property
    def replications(self) -> int:
        return int(self.baseline.shape[0] * self.baseline.shape[1])


@runtime_checkable
class Environment(Protocol):
    name: str
    quality_metric: ClassVar[str]
    diversity_metric: ClassVar[str]

    def describe(self) -> str: ...

    def parse_method(self, obj: Any) -> Any: ...

    def method_key(self, method: Any) -> str: ...

    def real_data(self, rng: np.random.Generator) -> list: ...

    def simulate(self, methods: list, replications: int, rng: np.random.Generator) -> Evidence: ...

    def oracle(self, methods: list) -> np.ndarray: ...

    def is_good(self, quality: np.ndarray) -> np.ndarray: ...

    def diversity(self, methods: list) -> dict[str, float]:
        """Diversity measures of ``methods``; NaN, never 0, for an empty list (a generation
        without valid proposals has no diversity, and a 0 would read as a collapse)."""
        ...


class EnvironmentConfig(ComponentConfig):
    """Base of environment configs; ``build`` returns the environment.

    ``cohort`` names the loop driver: ``methods`` for environments whose proposals are
    methods judged one by one (the default), or an environment's own vectorized driver.
    """

    kind: str

    @abstractmethod
    def build(self) -> Environment:
        """The environment this config describes."""
