"""The Monte Carlo verifier: run each proposal on simulated data and test it.

A proposal is accepted when a one-sided paired test says it beats the target: the
environment's baseline (the sample mean), or the incumbent (the best method of the
current pool on the same simulated data). Every proposal and the reference see the same
data sets (common random numbers), so the test is paired and cheap.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from ouro.environments.closed_form import Batch, BatchVerdicts
from ouro.stats import log_efficiency_gain, one_sided_p
from ouro.types import Cost, Verdict

from .base import VERIFIERS, JudgeContext, VerifierConfig


@VERIFIERS.register
class MonteCarloVerifierConfig(VerifierConfig):
    kind: Literal["montecarlo"] = "montecarlo"
    replications: int = Field(200, ge=2, le=1_000_000, description="simulated data sets per process")
    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="level of the one-sided paired test")
    target: Literal["baseline", "incumbent"] = "baseline"

    def build(self, env: Any) -> "MonteCarloVerifier":
        return MonteCarloVerifier(self)


class MonteCarloVerifier:
    kind = "montecarlo"

    def __init__(self, config: MonteCarloVerifierConfig) -> None:
        self.config = config

    def _reference(self, evidence, pool_losses) -> tuple[np.ndarray, str]:
        if pool_losses is None or pool_losses.shape[0] == 0:
            return evidence.baseline, "the baseline"
        # the incumbent: the pool member with the lowest simulated risk on these data sets
        risk = np.log(pool_losses.mean(-1)).mean(-1)
        best = int(np.argmin(risk))
        if np.log(evidence.baseline.mean(-1)).mean() <= risk[best]:
            return evidence.baseline, "the baseline"
        return pool_losses[best], "the incumbent"

    async def judge(self, proposals: list, context: JudgeContext) -> list[Verdict]:
        env, r = context.env, self.config.replications
        incumbents = []
        if self.config.target == "incumbent":
            incumbents = list({env.method_key(m): m for m in context.pool}.values())
        evidence = env.simulate(list(proposals) + incumbents, r, context.rng)
        losses = evidence.losses[: len(proposals)]
        pool_losses = evidence.losses[len(proposals) :] if incumbents else None
        reference, ref_name = self._reference(evidence, pool_losses)
        gain, se = log_efficiency_gain(reference, losses)
        p = one_sided_p(gain, se)
        base_gain, _ = log_efficiency_gain(evidence.baseline, losses)
        per_method = Cost(replications=int(evidence.baseline.size))
        out = []
        for i in range(len(proposals)):
            err = evidence.errors[i] if evidence.errors else None
            if err:
                out.append(Verdict(accept=False, rationale=f"could not be evaluated: {err}", cost=per_method))
                continue
            accept = bool(p[i] < self.config.alpha)
            out.append(
                Verdict(
                    accept=accept,
                    score=float(np.exp(base_gain[i])),
                    rationale=(
                        f"log-efficiency gain over {ref_name} {gain[i]:+.3f} (se {se[i]:.3f}, p={p[i]:.3g}); "
                        f"{'beats' if accept else 'does not beat'} it at alpha={self.config.alpha}"
                    ),
                    cost=per_method,
                    evidence={"efficiency": float(np.exp(base_gain[i])), "gain": float(gain[i]), "se": float(se[i]), "p": float(p[i])},
                )
            )
        return out

    @property
    def needs(self) -> str:
        return "fresh" if self.config.target == "baseline" else "incumbent"

    def judge_batch(self, batch: Batch) -> BatchVerdicts:
        """Closed-form environments: a seed's whole batch is accepted when a two-sample
        test at level alpha does not tell it from ``replications`` fresh real draws."""
        ok = batch.fresh_check(self.config.replications, self.config.alpha)
        s, n = batch.shape
        return BatchVerdicts(
            accept=np.broadcast_to(ok[:, None], (s, n)).copy(),
            replications=np.full(s, self.config.replications),
        )
