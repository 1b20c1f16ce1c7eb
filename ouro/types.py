"""The small data contracts every part of the loop speaks: costs and verdicts."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Cost(BaseModel):
    """What one judgement (or one call) spent. Costs add up field by field."""

    model_config = ConfigDict(extra="forbid")

    replications: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    usd: float = 0.0
    human_seconds: float = 0.0
    wall_seconds: float = 0.0
    calls: int = 0
    retries: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(**{k: getattr(self, k) + getattr(other, k) for k in Cost.model_fields})

    @classmethod
    def total(cls, costs) -> "Cost":
        costs = list(costs)
        return cls(**{k: sum(getattr(c, k) for c in costs) for k in cls.model_fields})


class Verdict(BaseModel):
    """A verifier's judgement of one proposal.

    ``accept is None`` means *unscored*: the verifier failed (a judge call that never
    succeeded, a human who skipped). It is counted, and never turned into a reject.
    """

    model_config = ConfigDict(extra="forbid")

    accept: bool | None
    score: float | None = None
    rationale: str = ""
    cost: Cost = Field(default_factory=Cost)
    evidence: dict | None = None
