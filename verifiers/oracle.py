"""The oracle verifier: the ground truth, used as an upper bound on what verification can do.

It accepts exactly what the oracle says beats the target (the baseline, or the best
method of the current pool): the Monte Carlo verifier with infinitely many replications.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ouro.environments.closed_form import Batch, BatchVerdicts
from ouro.types import Verdict

from .base import VERIFIERS, JudgeContext, VerifierConfig


@VERIFIERS.register
class OracleVerifierConfig(VerifierConfig):
    kind: Literal["oracle"] = "oracle"
    target: Literal["baseline", "incumbent"] = "baseline"

    def build(self, env: Any) -> "OracleVerifier":
        return OracleVerifier(self)


class OracleVerifier:
    kind = "oracle"

    def __init__(self, config: OracleVerifierConfig) -> None:
        self.config = config

    async def judge(self, proposals: list, context: JudgeContext) -> list[Verdict]:
        env = context.env
        quality = env.oracle(list(proposals))
        threshold, name = env.baseline_quality, "the baseline"
        if self.config.target == "incumbent" and context.pool:
            best = float(np.max(env.oracle(list(context.pool))))
            if best > threshold:
                threshold, name = best, "the incumbent"
        failed = np.isnan(quality)
        explain = getattr(env, "oracle_failures", None)  # environments whose methods can fail to run (code)
        why = iter(explain([m for m, f in zip(proposals, failed) if f]) if explain and failed.any() else ())
        return [
            Verdict(accept=False, rationale=f"could not be evaluated: {next(why, None) or 'the oracle gave no quality'}")
            if f
            else Verdict(accept=bool(q > threshold), score=float(q), rationale=f"true quality {q:.3f} vs {name} {threshold:.3f}")
            for q, f in zip(quality.tolist(), failed.tolist())
        ]

    @property
    def needs(self) -> str:
        return "good" if self.config.target == "baseline" else "incumbent"

    def judge_batch(self, batch: Batch) -> BatchVerdicts:
        """Closed-form environments: accept exactly the truly good proposals."""
        return BatchVerdicts(accept=batch.good())
