"""Nobody verifies: every proposal is accepted. The self-consuming loop in its pure form."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ouro.environments.closed_form import Batch, BatchVerdicts
from ouro.types import Verdict

from .base import VERIFIERS, JudgeContext, VerifierConfig


@VERIFIERS.register
class NoneVerifierConfig(VerifierConfig):
    kind: Literal["none"] = "none"

    def build(self, env: Any) -> "AcceptAll":
        return AcceptAll()


class AcceptAll:
    kind = "none"
    needs = None

    async def judge(self, proposals: list, context: JudgeContext) -> list[Verdict]:
        return [Verdict(accept=True, rationale="accepted unverified") for _ in proposals]

    def judge_batch(self, batch: Batch) -> BatchVerdicts:
        """Closed-form environments: every proposal of every seed, unjudged."""
        return BatchVerdicts(accept=np.ones(batch.shape, dtype=bool), judged=False)
