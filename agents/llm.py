"""The LLM researcher: a language model proposes methods, learning in context.

Its prompt holds the environment's ``describe()``, exemplars drawn from its archive (the
pool it learned from last: the regimes replace / accumulate / mix act on it) and, when a
verifier rejected one of its proposals, that proposal with the verdict and its evidence,
so that it can revise it (the researcher-verifier dialogue, driven by the cohort).

A generation's n proposals are asked for in ceil(n / per_call) requests that run
concurrently under the provider's concurrency limit. One proposal a request keeps every
request short and independent (a local vLLM server batches them and caches the shared
prompt prefix); several a request send the prompt fewer times, which is cheaper on a
priced API. A reply that never validates, or a request that fails for good, leaves
``InvalidProposal`` placeholders with the reason: recorded, rejected, never judged.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ouro.types import Feedback, InvalidProposal, ProposalBatch

from .base import RESEARCHERS, ResearcherConfig
from .learners import LEARNERS
from .method_kinds import METHOD_KINDS
from .prompts import prompt_hash, researcher_messages, revision_messages
from .providers import AnyProviderConfig, CallResult, Provider, shared_provider


@RESEARCHERS.register
class LLMResearcherConfig(ResearcherConfig):
    kind: Literal["llm"] = "llm"
    model: AnyProviderConfig = Field(description="the provider block: provider, model, prices, concurrency, ...")
    exemplars: int = Field(8, ge=0, le=200, description="methods from the archive shown in each prompt")
    per_call: int = Field(1, ge=1, le=64, description="proposals asked for in one request")
    feedback_rounds: int = Field(0, ge=0, le=10, description="revisions of a rejected proposal within a generation")
    method_kind: Literal["dsl", "code"] = Field(
        "dsl", description="what a proposal is written as: a JSON object of the DSL, or Python source run in the sandbox"
    )
    learner: Literal["context"] = Field("context", description="how the pool is learned from")
    max_failed_share: float = Field(
        0.5, ge=0.0, le=1.0, description="the generation fails when more than this share of its requests failed for good"
    )

    def build(self, env: Any) -> "LLMResearcher":
        return LLMResearcher(self, env)


class LLMResearcher:
    """Proposes through a model provider; learns by keeping the pool as its archive."""

    costly = True  # its proposals cost money: the cohort saves them as soon as they exist

    def __init__(self, config: LLMResearcherConfig, env: Any) -> None:
        self.config = config
        self.env = env
        self.kind = METHOD_KINDS[config.method_kind]
        self.learner = LEARNERS[config.learner]()
        self.kind.reply_schema(env, 1)  # fails now, not mid-run, when the environment cannot take this kind
        shared_provider(self.provider_config)  # a missing API key is an error here, before any work

    # ------------------------------------------------------------ what the loop reads
    @property
    def feedback_rounds(self) -> int:
        return self.config.feedback_rounds

    @property
    def max_failed_share(self) -> float:
        return self.config.max_failed_share

    @property
    def provider_config(self) -> Any:
        """The provider config requests go to now (a learner may point it at an adapter)."""
        return self.learner.provider_config(self.config.model)

    @property
    def provider(self) -> Provider:
        return shared_provider(self.provider_config)

    # ------------------------------------------------------------ learning
    def learn(self, pool: list) -> None:
        self.learner.learn(pool)

    def state(self) -> dict:
        return {"learner": self.learner.state()}

    def load_state(self, state: dict) -> None:
        self.learner.load_state(state["learner"], self.env.parse_method)

    # ------------------------------------------------------------ proposing
    def propose(self, n: int, rng: np.random.Generator, feedback: Any = None) -> list:
        """The synchronous protocol, for use outside the loop (the cohort awaits ``apropose``)."""

        async def run() -> list:
            try:
                return (await self.apropose(n, rng, feedback)).methods
            finally:
                await self.provider.aclose()

        return asyncio.run(run())

    async def apropose(self, n: int, rng: np.random.Generator, feedback: Feedback | None = None) -> ProposalBatch:
        """n proposals (or one revision, when ``feedback`` is given), with what they cost.

        Every random draw (exemplars) happens before the first request is sent, so the
        prompts depend only on ``rng``, never on the order in which replies arrive.
        """
        problem, hint = self.env.describe(), self.kind.instructions(self.env)
        if feedback is not None:
            messages = revision_messages(
                problem,
                self._exemplars(rng),
                self.kind.render(self.env, feedback.proposal),
                feedback.rationale,
                feedback.evidence,
                hint,
            )
            return await self._ask(messages, 1)
        k = self.config.per_call
        sizes = [k] * (n // k) + ([n % k] if n % k else [])
        requests = [
            (researcher_messages(problem, self._exemplars(rng), size, i, len(sizes), hint), size)
            for i, size in enumerate(sizes)
        ]
        parts = await asyncio.gather(*(self._ask(m, size) for m, size in requests))
        return sum(parts, ProposalBatch())

    def _exemplars(self, rng: np.random.Generator) -> list[str]:
        archive = self.learner.archive
        k = min(self.config.exemplars, len(archive))
        if k == 0:
            return []
        idx = rng.choice(len(archive), size=k, replace=False)
        return [self.kind.render(self.env, archive[i]) for i in idx]

    async def _ask(self, messages: list[dict[str, str]], count: int) -> ProposalBatch:
        result: CallResult = await self.provider.structured(messages, self.kind.reply_schema(self.env, count))
        cfg = self.provider_config
        origin = {
            "provider": cfg.provider,
            "model": cfg.model,
            "adapter": getattr(cfg, "adapter", None),
            "prompt_hash": prompt_hash(messages),
        }
        if result.ok:
            methods = self.kind.unpack(self.env, result.value)
            return ProposalBatch(methods=methods, provenance=[dict(origin) for _ in methods], cost=result.cost, requests=1)
        error = result.error or "unknown error"
        placeholder = InvalidProposal(invalid=error, raw=result.raw[:500], failed_call=not result.invalid)
        return ProposalBatch(
            methods=[placeholder] * count,
            provenance=[dict(origin) for _ in range(count)],
            cost=result.cost,
            requests=1,
            failed=1,
            failed_calls=0 if result.invalid else 1,
            last_error=error,
        )

