"""An offline, deterministic model: demos and tests without a key, a GPU or a network.

It reads the prompt as a model would and writes JSON text, which then goes through the
same parsing, validation, re-asks and accounting as a real model's reply:

* asked for proposals (a schema with a ``proposals`` array), it fits the embedded
  statistical researcher to the exemplars in the prompt and samples from it: in-context
  learning, done by maximum likelihood. Asked to revise a rejected proposal, it samples
  again, away from the rejected family. Asked for code (items with a ``source``), it
  reads each exemplar's source for the DSL method it says it is (its ``# dsl:`` line),
  samples the same way and writes each draw as equivalent hand-written numpy;
  ``broken_code_share`` of those come out with a bug that only a run reveals (a median
  over the wrong axis), so the sandbox's rejections run offline too.
* asked for a judgement (a schema with ``accept`` and ``predicted_quality``), it applies
  a fixed rule: with Monte Carlo evidence in the prompt it trusts the estimated
  efficiency; without, it uses a fixed table of textbook beliefs about each family.

Every draw is seeded from the request itself (model name and messages), so the same
prompt always gets the same answer, and arms with the same seed see the same proposals.
``invalid_share`` of replies are malformed (not JSON, or JSON outside the schema) and
``failure_share`` of requests fail at every attempt, so the invalid, re-ask and failed
paths run offline too. Token counts are estimated (4 characters a token), so prices
give a ledger in dollars.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from ..prompts import json_lines, sections
from .base import Failure, Message, Provider, ProviderConfig, RawReply, json_schema_of

# What a textbook-trained judge believes about efficiency under heavy tails, with no
# evidence: right in direction, wrong in detail, blind to the parameter's sweet spot.
PRIOR_BELIEF: dict[str, float] = {
    "mean": 1.0,
    "median": 1.6,
    "hodges_lehmann": 2.2,
    "trimmed_mean": 2.0,
    "winsorized_mean": 1.8,
    "huber": 2.2,
    "biweight": 2.0,
}


class ScriptedFault(Exception):
    """An injected request failure (``failure_share``), or a request it cannot answer."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class ScriptedConfig(ProviderConfig):
    """The offline model. Backoff defaults to 0 so that injected failures cost no time."""

    provider: Literal["scripted"] = "scripted"
    model: str = "scripted"
    invalid_share: float = Field(0.0, ge=0.0, le=1.0, description="share of replies that are malformed")
    failure_share: float = Field(0.0, ge=0.0, le=1.0, description="share of requests that fail at every attempt")
    smoothing: float = Field(0.0, ge=0.0, description="pseudo-count when fitting the exemplars (0: maximum likelihood)")
    broken_code_share: float = Field(
        0.0, ge=0.0, le=1.0, description="share of code proposals written with a bug the sandbox rejects at run time"
    )
    latency_s: float = Field(0.0, ge=0.0, le=60.0, description="simulated time to answer, per attempt")
    backoff_initial_s: float = Field(0.0, ge=0)
    backoff_max_s: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _shares(self) -> "ScriptedConfig":
        if self.invalid_share + self.failure_share > 1.0:
            raise ValueError("invalid_share + failure_share must be at most 1")
        return self

    def build(self) -> "ScriptedProvider":
        return ScriptedProvider(self)


class _NoClient:
    """The scripted model needs no connection; ``aclose`` still has something to close."""

    async def close(self) -> None:
        return None


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


class ScriptedProvider(Provider):
    name: ClassVar[str] = "scripted"
    api_errors = (ScriptedFault,)
    config: ScriptedConfig

    def _make_client(self) -> _NoClient:
        return _NoClient()

    def classify(self, exc: BaseException) -> Failure:
        return "fatal" if getattr(exc, "fatal", False) else "transient"

    async def _call(self, messages: list[Message], schema: type[BaseModel] | None) -> RawReply:
        if self.config.latency_s:
            await asyncio.sleep(self.config.latency_s)
        request = json.dumps([self.config.model, messages], sort_keys=True)
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(request.encode()).digest()[:8], "little"))
        u = rng.random()
        if u < self.config.failure_share:
            raise ScriptedFault("injected failure (failure_share)")
        prompt = "\n\n".join(m["content"] for m in messages if m["role"] == "user")
        if u < self.config.failure_share + self.config.invalid_share:
            text = self._malformed(rng)
        elif schema is None:
            text = "A robust estimator such as a trimmed mean would be my choice."
        else:
            text = json.dumps(self._answer(prompt, schema, rng))
        return RawReply(text=text, tokens_in=_tokens("".join(m["content"] for m in messages)), tokens_out=_tokens(text))

    # ----- answers ----------------------------------------------------------------------

    def _answer(self, prompt: str, schema: type[BaseModel], rng: np.random.Generator) -> dict[str, Any]:
        _, json_schema = json_schema_of(schema)
        props = json_schema.get("properties", {})
        tags = sections(prompt)
        if "proposals" in props:
            count = int(props["proposals"].get("minItems", 1))
            if "source" in _item_properties(json_schema, props["proposals"]):
                return {"proposals": self._propose_code(tags, count, rng)}
            return {"proposals": self._propose(tags, count, rng)}
        if {"accept", "predicted_quality"} <= set(props):
            return self._judge(tags)
        raise ScriptedFault(f"the scripted model cannot answer schema {schema.__name__}", fatal=True)

    def _propose(self, tags: dict[str, str], count: int, rng: np.random.Generator) -> list[dict]:
        exemplars = json_lines(tags.get("exemplars", ""))
        rejected = json_lines(tags.get("rejected", ""))
        return self._draw(exemplars, rejected[0] if rejected else None, count, rng)

    def _propose_code(self, tags: dict[str, str], count: int, rng: np.random.Generator) -> list[dict]:
        """Draws written as code: ``{"name", "source"}`` items, as a model asked for code writes them."""
        from ouro.environments.estimators.methods import method_key, parse_method
        from ouro.environments.estimators.sources import method_source

        exemplars = [_code_dsl(e) for e in json_lines(tags.get("exemplars", ""))]
        rejected = [_code_dsl(e) for e in json_lines(tags.get("rejected", ""))]
        out: list[dict] = []
        for spec in self._draw([e for e in exemplars if e], rejected[0] if rejected else None, count, rng):
            if rng.random() < self.config.broken_code_share:
                out.append({"name": "median (per column)", "source": BROKEN_SOURCE})
            else:
                method = parse_method(spec)
                out.append({"name": method_key(method), "source": method_source(method)})
        return out

    def _draw(self, exemplars: list, rejected: Any, count: int, rng: np.random.Generator) -> list[dict]:
        """``count`` DSL methods from the statistical researcher fitted to the exemplars,
        away from the family of ``rejected`` when there is one."""
        # imported here: the statistical researcher lives in the package that imports providers
        from ouro.agents.statistical import StatisticalResearcher, StatisticalResearcherConfig
        from ouro.environments.estimators.methods import FAMILY_NAMES, parse_method

        model = StatisticalResearcher(StatisticalResearcherConfig(smoothing=self.config.smoothing))
        model.learn([parse_method(m) for m in exemplars if _is_method(m)])
        avoid = rejected.get("family") if isinstance(rejected, dict) else None
        if avoid in FAMILY_NAMES and model.probs[FAMILY_NAMES.index(avoid)] > 1.0 - 1e-9:
            model = StatisticalResearcher(StatisticalResearcherConfig())  # knows nothing else: try anything
        out: list[dict] = []
        for _ in range(count):
            draw = model.propose(1, rng)[0]
            for _ in range(50):  # a revision moves away from the family that was rejected
                if draw.family != avoid:
                    break
                draw = model.propose(1, rng)[0]
            out.append(draw.model_dump(mode="json"))
        return out

    def _judge(self, tags: dict[str, str]) -> dict[str, Any]:
        proposal = next(iter(json_lines(tags.get("proposal", ""))), {})
        evidence = next(iter(json_lines(tags.get("evidence", ""))), None)
        bar = float(tags.get("bar", "1") or 1)
        family = proposal.get("family", "?") if isinstance(proposal, dict) else "?"
        if isinstance(evidence, dict) and "efficiency" in evidence:
            quality = float(evidence["efficiency"])
            why = f"the simulation estimates efficiency {quality:.3g}"
        else:
            quality = _believed_quality(proposal if isinstance(proposal, dict) else {})
            why = f"{family} is usually about {quality:.3g} times as efficient as the mean under heavy tails"
        accept = quality > bar
        return {
            "accept": accept,
            "predicted_quality": round(quality, 4),
            "rationale": f"{why}; {'above' if accept else 'not above'} the bar {bar:g}",
        }

    def _malformed(self, rng: np.random.Generator) -> str:
        if rng.random() < 0.5:
            return "I would suggest a trimmed mean with a moderate trimming proportion."
        return json.dumps({"proposals": [{"family": "trimmed_mean", "alpha": 0.9}], "accept": "maybe"})


# The bug the scripted model writes on purpose: a median over the wrong axis, one value
# per column instead of one per sample. It passes the static check; the sandbox rejects
# it at run time ("wrong shape (n,) for R rows").
BROKEN_SOURCE = """import numpy as np


def estimate_batch(X):
    return np.median(X, axis=0)
"""


def _item_properties(schema: dict[str, Any], array: dict[str, Any]) -> dict[str, Any]:
    """The properties of an array's items, following a local ``$ref``."""
    items = array.get("items", {})
    ref = items.get("$ref", "") if isinstance(items, dict) else ""
    if ref.startswith("#/$defs/"):
        items = schema.get("$defs", {}).get(ref.split("/")[-1], {})
    return items.get("properties", {}) if isinstance(items, dict) else {}


def _code_dsl(item: Any) -> dict | None:
    """The DSL method a code exemplar says it is (its ``# dsl:`` line), or None."""
    from ouro.environments.estimators.sources import source_dsl

    source = item.get("source") if isinstance(item, dict) else None
    return source_dsl(source) if isinstance(source, str) else None


def _is_method(obj: Any) -> bool:
    from ouro.environments.estimators.methods import parse_method

    try:
        parse_method(obj)
    except (ValueError, TypeError):
        return False
    return True


def _believed_quality(method: dict[str, Any]) -> float:
    """The prior table, shrunk towards the mean's 1 where a parameter makes a method mean-like."""
    family = method.get("family", "mean")
    belief = PRIOR_BELIEF.get(family, 1.0)
    strength = 1.0
    if family in ("trimmed_mean", "winsorized_mean"):
        strength = min(1.0, float(method.get("alpha", 0.0)) / 0.1)
    elif family == "huber":
        strength = min(1.0, 2.0 / max(float(method.get("c", 1.345)), 1e-9))
    elif family == "biweight":
        strength = min(1.0, 6.0 / max(float(method.get("c", 4.685)), 1e-9))
    return 1.0 + (belief - 1.0) * strength
