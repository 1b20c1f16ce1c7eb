"""Model verifiers: judgements made by a model rather than by fresh evidence.

* ``judge: self``: the researcher grades its own proposals by its own likelihood and
  keeps the ones it likes best. It injects no information about quality: what it
  converges to is the mode of what it already believed.
* ``judge: surrogate``: a regression of quality on method features, fitted once on a
  few oracle-labelled real methods and then frozen: a cheap learned judge whose errors
  are those of a small, fixed training set.
* ``judge: llm``: a language model reads the problem, the proposal and, optionally,
  Monte Carlo evidence, and answers accept / predicted quality / rationale
  (``verifiers/llm_judge.py``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from ouro.agents.providers import AnyProviderConfig

from ouro.environments.closed_form import Batch, BatchVerdicts
from ouro.environments.estimators.methods import FAMILIES, FAMILY_NAMES, param_of
from ouro.types import Verdict

from .base import VERIFIERS, JudgeContext, VerifierConfig


@VERIFIERS.register
class ModelVerifierConfig(VerifierConfig):
    kind: Literal["model"] = "model"
    judge: Literal["self", "surrogate", "llm"] = "self"
    keep: float = Field(0.5, gt=0.0, le=1.0, description="self: fraction of each batch kept, most likely first")
    ridge: float = Field(1.0, gt=0.0, description="surrogate: ridge penalty of the feature regression")
    model: AnyProviderConfig | None = Field(None, description="llm: the provider block of the judging model")
    evidence: Literal["none", "montecarlo"] = Field("none", description="llm: what the judge sees besides the proposal")
    replications: int = Field(200, ge=2, le=1_000_000, description="llm with evidence montecarlo: simulated data sets")
    threshold: float = Field(1.0, description="llm: the bar a proposal's quality must exceed, stated in the prompt")
    max_failed_share: float = Field(
        0.5, ge=0.0, le=1.0, description="llm: the generation fails when more than this share of its calls failed for good"
    )

    @model_validator(mode="after")
    def _model_for_llm(self) -> "ModelVerifierConfig":
        if self.judge == "llm" and self.model is None:
            raise ValueError("judge 'llm' needs a model: {provider: ..., model: ...}")
        if self.judge != "llm" and self.model is not None:
            raise ValueError(f"model is only used by judge 'llm' (this judge is {self.judge!r})")
        return self

    def build(self, env: Any):
        if self.judge == "self":
            return SelfJudge(self)
        if self.judge == "llm":
            from .llm_judge import LLMJudge

            return LLMJudge(self, env)
        return SurrogateJudge(self, env)


class SelfJudge:
    kind = "model"
    needs = "likelihood"  # what it asks a closed-form environment's batch

    def __init__(self, config: ModelVerifierConfig) -> None:
        self.config = config

    async def judge(self, proposals: list, context: JudgeContext) -> list[Verdict]:
        researcher = context.researcher
        if not hasattr(researcher, "log_likelihood"):
            raise TypeError("judge 'self' needs a researcher with log_likelihood()")
        ll = researcher.log_likelihood(list(proposals))
        k = math.ceil(self.config.keep * len(proposals))
        order = np.argsort(-ll, kind="stable")
        kept = set(order[:k].tolist())
        return [
            Verdict(accept=i in kept, score=float(ll[i]), rationale=f"own log-likelihood {ll[i]:.3f}")
            for i in range(len(proposals))
        ]

    def judge_batch(self, batch: Batch) -> BatchVerdicts:
        """Closed-form environments: each seed keeps the ``keep`` fraction of its batch
        that its own model finds most likely (ties in proposal order)."""
        ll = batch.log_likelihood()
        k = math.ceil(self.config.keep * ll.shape[1])
        order = np.argsort(-ll, axis=1, kind="stable")[:, :k]
        accept = np.zeros(ll.shape, dtype=bool)
        np.put_along_axis(accept, order, True, axis=1)
        return BatchVerdicts(accept=accept)


def method_features(methods: list) -> tuple[np.ndarray, np.ndarray]:
    """One-hot family, and per parametric family its centred normalized parameter and square.

    Returns the feature matrix and a mask of the family-indicator columns.
    """
    cols, indicator = [], []
    for fam_name in FAMILY_NAMES:
        fam = FAMILIES[fam_name]
        ind = np.array([m.family == fam_name for m in methods], dtype=float)
        cols.append(ind)
        indicator.append(True)
        if fam.param is not None:
            v = np.array([param_of(m) if m.family == fam_name else fam.low for m in methods])
            if fam.log_scale:
                u = (np.log(v) - np.log(fam.low)) / (np.log(fam.high) - np.log(fam.low))
            else:
                u = (v - fam.low) / (fam.high - fam.low)
            cols += [ind * (u - 0.5), ind * (u - 0.5) ** 2]
            indicator += [False, False]
    return np.stack(cols, axis=1), np.array(indicator)


class SurrogateJudge:
    kind = "model"

    def __init__(self, config: ModelVerifierConfig, env: Any) -> None:
        if getattr(env, "name", None) != "estimators":
            raise ValueError("judge 'surrogate' is defined for the 'estimators' environment")
        self.config = config
        labelled = list({env.method_key(m): m for m in env.real_data(np.random.default_rng(0))}.values())
        self.labelled = len(labelled)
        x, indicator = method_features(labelled)
        y = np.log(env.oracle(labelled))
        # ridge on the slopes only, so that a family's level is its labelled mean
        penalty = np.diag(np.where(indicator, 0.0, self.config.ridge))
        self.coef = np.linalg.solve(x.T @ x + penalty + 1e-9 * np.eye(x.shape[1]), x.T @ y)
        self.threshold = float(np.log(env.baseline_quality))

    async def judge(self, proposals: list, context: JudgeContext) -> list[Verdict]:
        dsl = [m for m in proposals if m.family in FAMILIES]
        pred = iter(method_features(dsl)[0] @ self.coef if dsl else [])
        return [
            Verdict(accept=False, rationale="the surrogate has no features for code methods")
            if m.family not in FAMILIES
            else self._verdict(next(pred))
            for m in proposals
        ]

    def _verdict(self, p: float) -> Verdict:
        return Verdict(
            accept=bool(p > self.threshold),
            score=float(np.exp(p)),
            rationale=f"surrogate predicts quality {np.exp(p):.3f} (fitted on {self.labelled} labelled methods)",
        )

