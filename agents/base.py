"""The researcher protocol and registry.

A researcher is a generative agent over methods: it proposes, and it learns from a pool
of accepted methods. Its state is small and serializable; big artifacts (adapters,
archives) go to the run directory.
"""

from __future__ import annotations

from abc import abstractmethod

from typing import Any, Protocol, runtime_checkable

import numpy as np

from ouro.registry import ComponentConfig, Registry

RESEARCHERS: Registry = Registry("researcher")


@runtime_checkable
class Researcher(Protocol):
    def propose(self, n: int, rng: np.random.Generator, feedback: Any = None) -> list: ...

    def learn(self, pool: list) -> None: ...

    def state(self) -> dict: ...

    def load_state(self, state: dict) -> None: ...


class ResearcherConfig(ComponentConfig):
    kind: str

    @abstractmethod
    def build(self, env: Any) -> Researcher:
        """The researcher this config describes, for ``env``."""
