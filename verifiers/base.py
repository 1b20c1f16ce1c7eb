"""The verifier protocol, its judging context, and the registry."""

from __future__ import annotations

from abc import abstractmethod

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Protocol, Union, runtime_checkable

import numpy as np
from pydantic import Field

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
    # verdicts earlier verifiers gave these same proposals (a cascade's earlier stages,
    # the verifier an audit checks), by name: what a person may be shown as evidence
    prior: dict[str, list[Verdict]] = field(default_factory=dict)


@runtime_checkable
class Verifier(Protocol):
    kind: str

    async def judge(self, proposals: list, context: JudgeContext) -> list[Verdict]: ...


class VerifierConfig(ComponentConfig):
    kind: str
    # True on configs whose fields hold other verifier configs (annotated with the forward
    # reference ``AnyVerifierConfig``): resolved by ``verifier_config_union``
    nests_verifiers: ClassVar[bool] = False

    @property
    def asks_human(self) -> bool:
        """Whether judging needs a person: such arms run after the automatic ones, in the
        main process, one seed after another (the order of their questions is fixed)."""
        return False

    @abstractmethod
    def build(self, env: Any) -> Verifier:
        """The verifier this config describes, for ``env``."""


def verifier_config_union() -> Any:
    """The discriminated union of every registered verifier config.

    Configs that nest verifiers (a cascade's stages, what an audit wraps, a person's
    evidence) annotate those fields with the forward reference ``AnyVerifierConfig``; this
    resolves it against the registry as it stands now, so that kinds registered by later
    modules are included, and nested errors keep their full path
    (``arms[2].verifier.stages[0].replications``).
    """
    models = VERIFIERS.models()
    union = models[0] if len(models) == 1 else Annotated[Union[models], Field(discriminator="kind")]
    for model in models:
        if model.nests_verifiers:
            model.model_rebuild(force=True, _types_namespace={"AnyVerifierConfig": union})
    return union
