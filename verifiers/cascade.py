"""The cascade: verifiers in stages, each seeing only what the previous stage forwards.

A cheap verifier first, an expensive one (a person) only where it matters:

    verifier:
      kind: cascade
      stages: [{kind: montecarlo, replications: 200}, {kind: human}]
      only: accepted          # the person sees only what the simulator accepted

``only`` says which proposals go on to the next stage: ``accepted``, ``rejected``,
``uncertain`` or ``all``. A verdict is *uncertain* when it is unscored, or when its
evidence carries an estimate and a standard error (``gain`` and ``se``, as the Monte
Carlo verifier's does) within ``band`` standard errors of zero. A proposal's final
verdict is that of the last stage that judged it (a person's skip included: the
proposal is dropped); its cost is the sum over the stages. Later stages see the earlier
stages' verdicts in ``context.prior``, so a person is shown why they are asked.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, Literal

from pydantic import Field

from ouro.types import Cost, Verdict

from .base import VERIFIERS, JudgeContext, VerifierConfig


@VERIFIERS.register
class CascadeVerifierConfig(VerifierConfig):
    nests_verifiers: ClassVar[bool] = True
    kind: Literal["cascade"] = "cascade"
    stages: list[AnyVerifierConfig] = Field(min_length=2)  # noqa: F821  (resolved by verifier_config_union)
    only: Literal["accepted", "rejected", "uncertain", "all"] = "accepted"
    band: float = Field(2.0, gt=0.0, description="uncertain: |estimate| below band standard errors")

    @property
    def asks_human(self) -> bool:
        return any(stage.asks_human for stage in self.stages)

    def build(self, env: Any) -> "Cascade":
        return Cascade(self, env)


def is_uncertain(verdict: Verdict, band: float) -> bool:
    if verdict.accept is None:
        return True
    ev = verdict.evidence or {}
    gain, se = ev.get("gain"), ev.get("se")
    if isinstance(gain, (int, float)) and isinstance(se, (int, float)):
        return abs(gain) < band * se
    return False


def forwarded(verdicts: list[Verdict], only: str, band: float) -> list[int]:
    """Indices of the verdicts whose proposals go on to the next stage."""
    keep = {
        "accepted": lambda v: v.accept is True,
        "rejected": lambda v: v.accept is False,
        "uncertain": lambda v: is_uncertain(v, band),
        "all": lambda v: True,
    }[only]
    return [i for i, v in enumerate(verdicts) if keep(v)]


class Cascade:
    kind = "cascade"

    def __init__(self, config: CascadeVerifierConfig, env: Any) -> None:
        self.config = config
        kinds = [s.kind for s in config.stages]
        self.stages = [
            (kind if kinds.count(kind) == 1 else f"{kind}#{i + 1}", stage.build(env))
            for i, (kind, stage) in enumerate(zip(kinds, config.stages))
        ]
        self.costly = any(getattr(v, "costly", False) for _, v in self.stages)

    async def judge(self, proposals: list, context: JudgeContext) -> list[Verdict]:
        n = len(proposals)
        trail: list[list[tuple[str, Verdict]]] = [[] for _ in range(n)]
        todo = list(range(n))
        for s, (name, verifier) in enumerate(self.stages):
            if not todo:
                break
            prior = {**context.prior, **{earlier: [dict(trail[i])[earlier] for i in todo] for earlier, _ in self.stages[:s]}}
            verdicts = await verifier.judge([proposals[i] for i in todo], replace(context, prior=prior))
            if len(verdicts) != len(todo):
                raise RuntimeError(f"cascade stage {name} returned {len(verdicts)} verdicts for {len(todo)} proposals")
            for i, v in zip(todo, verdicts):
                trail[i].append((name, v))
            todo = [todo[j] for j in forwarded(verdicts, self.config.only, self.config.band)]
        return [combine(t) for t in trail]

    def metrics(self, verdicts: list[Verdict]) -> dict[str, float]:
        """How many proposals each stage judged (the questions a person was spared show here)."""
        depth = [len((v.evidence or {}).get("stages", [])) for v in verdicts]
        return {f"cascade_stage{k + 1}": float(sum(d > k for d in depth)) for k in range(len(self.stages))}


def combine(trail: list[tuple[str, Verdict]]) -> Verdict:
    """The last stage's verdict, with every stage's cost, rationale and decision."""
    name, last = trail[-1]
    return Verdict(
        accept=last.accept,
        score=last.score,
        rationale=" -> ".join(f"{n}: {v.rationale}" for n, v in trail),
        cost=Cost.total(v.cost for _, v in trail),
        evidence={**(last.evidence or {}), "stages": [{"stage": n, "accept": v.accept, "score": v.score} for n, v in trail]},
    )
