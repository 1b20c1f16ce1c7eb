"""The LLM judge (``kind: model``, ``judge: llm``): a language model grades each proposal.

It sees the problem, the proposal and, with ``evidence: montecarlo``, a paired Monte
Carlo comparison with the baseline on the arm's common random numbers; it answers, as
structured output, accept, predicted quality and a rationale. Its precision and recall
against the oracle are measured like any verifier's.

A call that fails for good (transport errors past the retry budget: rationale ``judge
call failed: ...``) or whose output never validates (``judge output invalid: ...``) is an
*unscored* verdict with the reason: counted, never turned into a reject. Every attempt's tokens, dollars, wall time and retries go into the verdict's
cost, and the Monte Carlo replications too when evidence was simulated.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ouro.agents.prompts import judge_messages
from ouro.agents.providers import Provider, shared_provider
from ouro.stats import log_efficiency_gain, one_sided_p
from ouro.types import JUDGE_FAILED, JUDGE_INVALID, Cost, Verdict

from .base import JudgeContext


class JudgeReply(BaseModel):
    """Your judgement of the proposed method."""

    model_config = ConfigDict(extra="forbid")

    accept: bool
    predicted_quality: float = Field(description="the quality you expect the method to have")
    rationale: str = Field(max_length=2000)


class LLMJudge:
    kind = "model"
    costly = True  # its verdicts cost money: the cohort saves them as soon as they exist

    def __init__(self, config: Any, env: Any) -> None:
        self.config = config
        self.max_failed_share = config.max_failed_share
        shared_provider(config.model)  # a missing API key is an error here, before any work

    @property
    def provider(self) -> Provider:
        return shared_provider(self.config.model)

    def describe(self) -> dict:
        """Who judged, for the provenance of accepted proposals."""
        cfg = self.config.model
        return {
            "kind": "model",
            "judge": "llm",
            "provider": cfg.provider,
            "model": cfg.model,
            "adapter": getattr(cfg, "adapter", None),
            "evidence": self.config.evidence,
        }

    def _evidence(self, proposals: list, context: JudgeContext) -> tuple[list[dict | None], int]:
        """Per proposal: efficiency against the baseline on shared simulated data sets."""
        if self.config.evidence != "montecarlo" or not proposals:
            return [None] * len(proposals), 0
        sim = context.env.simulate(list(proposals), self.config.replications, context.rng)
        gain, se = log_efficiency_gain(sim.baseline, sim.losses)
        p = one_sided_p(gain, se)
        out: list[dict | None] = []
        for i in range(len(proposals)):
            if sim.errors and sim.errors[i]:
                out.append({"error": sim.errors[i]})
            else:
                out.append(
                    {
                        "efficiency": round(float(np.exp(gain[i])), 4),
                        "se": round(float(se[i]), 4),
                        "p": round(float(p[i]), 4),
                        "replications": int(sim.baseline.size),
                    }
                )
        return out, int(sim.baseline.size)

    async def judge(self, proposals: list, context: JudgeContext) -> list[Verdict]:
        env = context.env
        evidence, replications = self._evidence(list(proposals), context)
        problem = env.describe()

        async def one(method: Any, ev: dict | None) -> Verdict:
            messages = judge_messages(problem, _render(method), ev, self.config.threshold)
            result = await self.provider.structured(messages, JudgeReply)
            cost = result.cost + Cost(replications=replications)
            seen = {"montecarlo": ev} if ev else None  # what the judge saw, and what a revising researcher is shown
            if not result.ok:
                what = JUDGE_INVALID if result.invalid else JUDGE_FAILED
                return Verdict(accept=None, rationale=f"{what}: {result.error}", cost=cost, evidence=seen)
            reply: JudgeReply = result.value  # type: ignore[assignment]
            return Verdict(
                accept=reply.accept,
                score=float(reply.predicted_quality),
                rationale=reply.rationale,
                cost=cost,
                evidence=seen,
            )

        return list(await asyncio.gather(*(one(m, ev) for m, ev in zip(proposals, evidence))))


def _render(method: Any) -> str:
    return json.dumps(method.model_dump(mode="json"), sort_keys=True)
