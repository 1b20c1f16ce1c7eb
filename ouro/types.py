"""The small data contracts every part of the loop speaks: costs and verdicts."""

from __future__ import annotations

from operator import attrgetter

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
        # column sums: this runs for every seed of every generation
        fields = tuple(cls.model_fields)
        columns = zip(*map(attrgetter(*fields), costs))
        return cls(**dict(zip(fields, map(sum, columns))))


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


# How a model judge words an unscored verdict (the start of its rationale), so that the
# ledger tells an endpoint that never answered from a model whose output never validated.
JUDGE_FAILED = "judge call failed"
JUDGE_INVALID = "judge output invalid"


class InvalidProposal(BaseModel):
    """A slot the researcher failed to fill: output that never validated after its
    re-asks, or a call that failed for good.

    It stays in the generation's proposal list, so that a generation always has its n
    slots and the failure is on record (``verdicts.jsonl`` shows it with its reason).
    No verifier ever sees it: it is rejected with its reason, never enters a pool, and
    is left out of quality, diversity and the verifier's confusion counts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    invalid: str
    raw: str = ""
    failed_call: bool = False  # the request itself failed (transport), not its content


def is_invalid(method: object) -> bool:
    # the exact type: pydantic's metaclass makes isinstance an ABC check, and this runs
    # for every proposal of every generation
    return type(method) is InvalidProposal


class Feedback(BaseModel):
    """What a researcher revising a rejected proposal is told: the proposal and the
    verifier's rationale and evidence (the researcher-verifier dialogue)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    proposal: BaseModel
    rationale: str = ""
    evidence: dict | None = None


class ProposalBatch(BaseModel):
    """What a model-backed researcher returns from ``apropose``: the proposals, and what
    making them cost, so that the ledger counts proposing as well as judging.

    ``requests`` counts logical requests (one per batch of ``per_call`` proposals),
    ``failed`` those that ended without a valid answer, and ``failed_calls`` those of
    them whose request itself failed (the endpoint never answered; the others got output
    that never validated); ``cost.calls`` counts HTTP attempts. ``provenance[i]`` says where proposal i came from (provider, model,
    adapter, prompt hash).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    methods: list = Field(default_factory=list)
    provenance: list[dict | None] = Field(default_factory=list)
    cost: Cost = Field(default_factory=Cost)
    requests: int = 0
    failed: int = 0
    failed_calls: int = 0
    last_error: str = ""

    def __add__(self, other: "ProposalBatch") -> "ProposalBatch":
        return ProposalBatch(
            methods=self.methods + other.methods,
            provenance=self.provenance + other.provenance,
            cost=self.cost + other.cost,
            requests=self.requests + other.requests,
            failed=self.failed + other.failed,
            failed_calls=self.failed_calls + other.failed_calls,
            last_error=other.last_error or self.last_error,
        )
