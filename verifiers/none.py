"""Nobody verifies: every proposal is accepted. The self-consuming loop in its pure form."""

from __future__ import annotations

from typing import Any, Literal

from ouro.types import Verdict

from .base import VERIFIERS, JudgeContext, VerifierConfig


@VERIFIERS.register
class NoneVerifierConfig(VerifierConfig):
    kind: Literal["none"] = "none"

    def build(self, env: Any) -> "AcceptAll":
        return AcceptAll()


class AcceptAll:
    kind = "none"

    async def judge(self, proposals: list, context: JudgeContext) -> list[Verdict]:
        return [Verdict(accept=True, rationale="accepted unverified") for _ in proposals]
