"""The verifier protocol, its judging context, and the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ouro.registry import ComponentConfig, Registry
from ouro.types import Verdict

VERIFIERS: Registry = Registry("verifier")


@dataclass
class JudgeContext:
    """What a verifier may look at besides the proposals.

    ``pool`` is the researcher's current training pool (what it learned from last), for
    verifiers that judge against an incumbent; ``rng`` is this seed's and generation's
    verification stream, shared by every arm with the same seed (common random numbers).
    """

    env: Any
    seed: int
    generation: int
    rng: np.random.Generator
    researcher: Any = None
    pool: list = field(default_factory=list)
    arm: str = ""


@runtime_checkable
class Verifier(Protocol):
    kind: str

    async def judge(self, proposals: list, context: JudgeContext) -> list[Verdict]: ...


class VerifierConfig(ComponentConfig):
    kind: str

    def build(self, env: Any) -> Verifier:
        raise NotImplementedError(f"{type(self).__name__} must implement build()")
