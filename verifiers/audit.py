"""The budgeted audit: a person checks a random few of an automatic verifier's verdicts.

    verifier:
      kind: audit
      verifier: {kind: montecarlo, replications: 200}   # what runs the loop
      k: 3                                               # verdicts per seed and generation
      human: {evidence: []}                              # what the person is shown

The audited verifier alone decides what the loop keeps; the audit changes no verdict. It
draws k of each batch's proposals uniformly, with ``stream(seed, generation, "audit")``,
asks the person about them (blind by default: ``show_verdict: false`` hides the audited
verifier's decision), and records both decisions. Every batch has the same size and the
same k, so the audited proposals are a self-weighting sample of all verdicts, and the
pooled counts ``audit_tp, audit_fp, audit_fn, audit_tn`` (the person's answer taken as
the truth) estimate the verifier's precision and recall where no oracle exists: the
summary reports them, with Wilson intervals, beside the oracle's figures. Proposals the
person skipped are left out of the counts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from ouro.rng import stream
from ouro.types import Verdict

from .base import VERIFIERS, JudgeContext, VerifierConfig
from .human import HumanVerifierConfig

AUDIT_METRICS = ("audit_tp", "audit_fp", "audit_fn", "audit_tn", "audit_skipped")


@VERIFIERS.register
class AuditVerifierConfig(VerifierConfig):
    nests_verifiers: ClassVar[bool] = True
    kind: Literal["audit"] = "audit"
    verifier: AnyVerifierConfig  # noqa: F821  (resolved by verifier_config_union)
    k: int = Field(3, ge=1, le=100_000, description="verdicts sent to the person per seed and generation")
    human: HumanVerifierConfig = Field(default_factory=HumanVerifierConfig, description="what the person is shown")
    show_verdict: bool = Field(False, description="show the person the audited verifier's verdict (not blind)")

    @field_validator("verifier")
    @classmethod
    def _automatic(cls, v: VerifierConfig) -> VerifierConfig:
        if v.asks_human:
            raise ValueError(f"an audit checks an automatic verifier; {v.kind!r} asks a person")
        return v

    @property
    def asks_human(self) -> bool:
        return True

    def build(self, env: Any) -> "Audit":
        return Audit(self, env)


class Audit:
    kind = "audit"
    costly = True

    def __init__(self, config: AuditVerifierConfig, env: Any) -> None:
        self.config = config
        self.audited = config.verifier.build(env)
        self.person = config.human.build(env, purpose="audit")

    async def judge(self, proposals: list, context: JudgeContext) -> list[Verdict]:
        verdicts = await self.audited.judge(proposals, context)
        k = min(self.config.k, len(proposals))
        if k == 0:
            return verdicts
        chosen = sorted(stream(context.seed, context.generation, "audit").choice(len(proposals), size=k, replace=False).tolist())
        prior = {f"audited {self.config.verifier.kind}": [verdicts[i] for i in chosen]} if self.config.show_verdict else {}
        answers = await self.person.judge([proposals[i] for i in chosen], replace(context, prior=prior))
        out = list(verdicts)
        for i, person in zip(chosen, answers):
            v = verdicts[i]
            out[i] = v.model_copy(
                update={
                    "cost": v.cost + person.cost,
                    "rationale": f"{v.rationale} | audit: {person.rationale}",
                    "evidence": {**(v.evidence or {}), "audit": {"accept": person.accept, "score": person.score}},
                }
            )
        return out

    def metrics(self, verdicts: list[Verdict]) -> dict[str, float]:
        """The confusion of the audited verdicts against the person's answers."""
        counts = dict.fromkeys(AUDIT_METRICS, 0.0)
        for v in verdicts:
            audit = (v.evidence or {}).get("audit")
            if audit is None:
                continue
            said, truth = v.accept, audit["accept"]
            if said is None or truth is None:
                counts["audit_skipped"] += 1
            else:
                counts["audit_" + {(True, True): "tp", (True, False): "fp", (False, True): "fn", (False, False): "tn"}[(said, truth)]] += 1
        return counts
