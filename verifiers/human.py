"""The human verifier: a person judges proposals at the console.

How it asks. ``judge`` gathers the evidence its config names (automatic verifiers run on
the same proposals, and whatever earlier verifiers said, ``context.prior``), then calls
LangGraph's ``interrupt()`` once with a ``Batch``: every proposal of one seed and one
generation. The command line shows the questions, saves each answer the moment it is
given (``ouro/answers.py``) and resumes the graph with ``Command(resume=Reply)``.

Why one interrupt per batch, not per proposal: ``back`` changes an earlier answer of the
batch, which an already resumed interrupt could not take back; and LangGraph re-runs the
whole ``verify`` node after every resume, so fewer interrupts mean fewer re-runs.

Why nothing happens before ``interrupt()`` that must not happen twice: the node re-runs
from its first line after a resume. Evidence is a deterministic function of the random
streams (each source draws from a fresh ``stream(seed, generation, "verify")``, the data
sets an automatic arm with the same verifier sees), it writes nothing, and it is memoized
in the process, so a re-run recomputes nothing and an ``ouro resume`` recomputes it once.
LangGraph matches resume values to ``interrupt()`` calls by their order in the node, so
the cohort judges the seeds of an arm that asks a person one after another, and
``Reply.batch`` is checked against the question it answers.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, Literal

from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ouro.rng import stream
from ouro.types import Cost, Verdict

from .base import VERIFIERS, JudgeContext, VerifierConfig

BATCH_FORMAT = "ouro.human/1"
DECISIONS = {"accept": True, "reject": False, "skip": None}


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Shown(_Message):
    """One piece of evidence shown beside a proposal: some verifier's verdict on it."""

    source: str
    accept: bool | None
    score: float | None = None
    rationale: str = ""


class Item(_Message):
    index: int
    key: str
    method: dict[str, Any]
    evidence: list[Shown] = Field(default_factory=list)


class Batch(_Message):
    """What ``interrupt()`` hands to the console: the questions of one seed and generation."""

    format: Literal["ouro.human/1"] = BATCH_FORMAT
    arm: str
    seed: int
    generation: int
    purpose: Literal["judge", "audit"] = "judge"
    problem: str
    threshold: float
    items: list[Item]

    @property
    def id(self) -> str:
        return f"{self.arm}/seed-{self.seed}/gen-{self.generation}/{self.purpose}"


class Answer(_Message):
    """A person's answer to one question; ``seconds`` is all the time it took, over every visit."""

    key: str
    decision: Literal["accept", "reject", "skip"]
    score: float | None = None
    note: str = ""
    seconds: float = Field(0.0, ge=0.0)


class Reply(_Message):
    """The resume value: the answers to a whole batch, in the batch's order."""

    batch: str
    answers: list[Answer]


def shown(source: str, verdict: Verdict) -> Shown:
    """A verdict as evidence: its decision, score and rationale (where estimates and SEs are said)."""
    return Shown(source=source, accept=verdict.accept, score=verdict.score, rationale=verdict.rationale)


@VERIFIERS.register
class HumanVerifierConfig(VerifierConfig):
    nests_verifiers: ClassVar[bool] = True
    kind: Literal["human"] = "human"
    evidence: list[AnyVerifierConfig] = Field(  # noqa: F821  (resolved by verifier_config_union)
        default_factory=list,
        description="automatic verifiers whose verdicts are shown beside each proposal, e.g. [montecarlo]",
    )
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="a score (0 to 1) at or above it accepts")

    @field_validator("evidence", mode="before")
    @classmethod
    def _kind_names(cls, v: Any) -> Any:
        """``evidence: [montecarlo]`` is short for ``[{kind: montecarlo}]``."""
        return [{"kind": x} if isinstance(x, str) else x for x in v] if isinstance(v, list) else v

    @field_validator("evidence")
    @classmethod
    def _automatic(cls, v: list) -> list:
        for config in v:
            if config.asks_human:
                raise ValueError(f"evidence comes from automatic verifiers; {config.kind!r} asks a person")
        return v

    @property
    def asks_human(self) -> bool:
        return True

    def build(self, env: Any, purpose: str = "judge") -> "HumanVerifier":
        return HumanVerifier(self, env, purpose)


class HumanVerifier:
    kind = "human"
    costly = True  # a person's time: the cohort saves these verdicts as soon as they exist

    def __init__(self, config: HumanVerifierConfig, env: Any, purpose: str = "judge") -> None:
        self.config = config
        self.purpose = purpose
        self.problem = env.describe()
        names = [c.kind for c in config.evidence]
        self.sources = [
            (name if names.count(name) == 1 else f"{name}#{i + 1}", c.build(env))
            for i, (name, c) in enumerate(zip(names, config.evidence))
        ]
        self._memo: dict[tuple, tuple[list[list[Shown]], list[Cost]]] = {}

    async def _sources(self, proposals: list, keys: tuple[str, ...], context: JudgeContext):
        """Verdicts of the evidence sources, and what they cost, per proposal (memoized)."""
        memo_key = (context.seed, context.generation, keys)
        if memo_key not in self._memo:
            evidence: list[list[Shown]] = [[] for _ in proposals]
            costs = [Cost() for _ in proposals]
            for name, verifier in self.sources:
                ctx = replace(context, rng=stream(context.seed, context.generation, "verify"), prior={})
                for i, v in enumerate(await verifier.judge(list(proposals), ctx)):
                    evidence[i].append(shown(name, v))
                    costs[i] = costs[i] + v.cost
            self._memo = {k: v for k, v in self._memo.items() if k[1] == context.generation}
            self._memo[memo_key] = (evidence, costs)
        return self._memo[memo_key]

    async def judge(self, proposals: list, context: JudgeContext) -> list[Verdict]:
        if not proposals:
            return []
        env = context.env
        keys = tuple(env.method_key(m) for m in proposals)
        evidence, costs = await self._sources(proposals, keys, context)
        items = [
            Item(
                index=i,
                key=keys[i],
                method=m.model_dump(mode="json"),
                evidence=[shown(name, vs[i]) for name, vs in context.prior.items()] + evidence[i],
            )
            for i, m in enumerate(proposals)
        ]
        batch = Batch(
            arm=context.arm,
            seed=context.seed,
            generation=context.generation,
            purpose=self.purpose,
            problem=self.problem,
            threshold=self.config.threshold,
            items=items,
        )
        reply = check_reply(Reply.model_validate(interrupt(batch.model_dump(mode="json"))), batch)
        return [to_verdict(a, c) for a, c in zip(reply.answers, costs)]


def check_reply(reply: Reply, batch: Batch) -> Reply:
    """Refuse answers that belong to another question: never judge a proposal by them."""
    if reply.batch != batch.id or [a.key for a in reply.answers] != [it.key for it in batch.items]:
        raise RuntimeError(
            f"the answers given for {reply.batch} do not fit the question {batch.id} "
            f"({[a.key for a in reply.answers]} vs {[it.key for it in batch.items]})"
        )
    return reply


def to_verdict(answer: Answer, evidence_cost: Cost) -> Verdict:
    """A person's answer as a verdict: skip is unscored (accept None), never a reject."""
    words = {"accept": "accepted", "reject": "rejected", "skip": "skipped"}
    rationale = f"person {words[answer.decision]}"
    if answer.score is not None:
        rationale += f" (score {answer.score:g})"
    if answer.note:
        rationale += f": {answer.note}"
    return Verdict(
        accept=DECISIONS[answer.decision],
        score=answer.score,
        rationale=rationale,
        cost=evidence_cost + Cost(human_seconds=answer.seconds),
        evidence={"note": answer.note} if answer.note else None,
    )
