"""A verifier of known error rates: verifier quality as a dial.

It accepts a truly good proposal with probability ``tpr`` and a bad one with probability
``fpr``, whatever the proposal looks like otherwise. "Good" is the environment's own
oracle label: ``env.is_good(env.oracle(methods))`` for method environments, ``good()``
for closed-form ones. With ``tpr = 1, fpr = 0`` it is the oracle; with ``tpr = fpr`` it
injects no information at all, and it is a coin: the loop's answer to "does verification
help?" can then be read off as a function of the two rates. In the categorical
environment the odds of a correct proposal multiply by tpr/fpr per generation (for large
pools), so the loop improves exactly when tpr > fpr.

Its coins come from each seed's ``verify`` stream, which every arm with the same seed
shares, so a grid of noisy arms is a paired comparison.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from ouro.environments.closed_form import Batch, BatchVerdicts
from ouro.types import Verdict

from .base import VERIFIERS, JudgeContext, VerifierConfig


@VERIFIERS.register
class NoisyVerifierConfig(VerifierConfig):
    kind: Literal["noisy"] = "noisy"
    tpr: float = Field(ge=0.0, le=1.0, description="probability of accepting a truly good proposal")
    fpr: float = Field(ge=0.0, le=1.0, description="probability of accepting a truly bad proposal")

    def build(self, env: Any) -> "NoisyVerifier":
        return NoisyVerifier(self)


def noisy_accept(good: np.ndarray, coins: np.ndarray, tpr: float, fpr: float) -> np.ndarray:
    """Accept where the uniform coin falls below the rate of the proposal's true class."""
    return np.where(good, coins < tpr, coins < fpr)


class NoisyVerifier:
    kind = "noisy"
    needs = "good"

    def __init__(self, config: NoisyVerifierConfig) -> None:
        self.config = config

    async def judge(self, proposals: list, context: JudgeContext) -> list[Verdict]:
        env = context.env
        good = np.asarray(env.is_good(env.oracle(list(proposals))), dtype=bool)
        coins = context.rng.random(len(proposals))
        accept = noisy_accept(good, coins, self.config.tpr, self.config.fpr)
        return [
            Verdict(
                accept=bool(a),
                rationale=(
                    f"truly {'good' if g else 'bad'}: accepted with probability "
                    f"{self.config.tpr if g else self.config.fpr:g}"
                ),
            )
            for a, g in zip(accept, good)
        ]

    def judge_batch(self, batch: Batch) -> BatchVerdicts:
        good = batch.good()
        coins = batch.draw(lambda rng: rng.random(good.shape[1]))
        return BatchVerdicts(accept=noisy_accept(good, coins, self.config.tpr, self.config.fpr))
