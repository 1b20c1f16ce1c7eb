"""The LLM researcher: offline through the scripted model, and through the real openai and
anthropic SDKs against loopback servers with injected faults; the dialogue; whole runs."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest

from ouro.agents.llm import LLMResearcherConfig
from ouro.config import load_config
from ouro.dialogue import verify_with_dialogue
from ouro.types import Cost, InvalidProposal, ProposalBatch, Verdict
from ouro.verifiers.base import JudgeContext

from .conftest import ouro
from .model_answers import ModelAnswers
from .providers.fake_servers import SERVER_FOR, TOKENS_IN, TOKENS_OUT, FakeOpenAI

PRICES = {"input_per_mtok": 3.0, "output_per_mtok": 15.0}


@pytest.fixture(scope="module")
def env():
    return load_config().environment.build()


pytestmark = pytest.mark.usefixtures("api_keys")  # every test here talks to a loopback server


def researcher(env, model: dict, **fields):
    r = LLMResearcherConfig(model=model, **fields).build(env)
    r.learn(env.real_data(np.random.default_rng(0)))
    return r


def propose(r, n: int, seed: int = 0, feedback=None) -> ProposalBatch:
    """``apropose`` on a fresh loop, closing the client before the loop ends."""

    async def go() -> ProposalBatch:
        try:
            return await r.apropose(n, np.random.default_rng(seed), feedback)
        finally:
            await r.provider.aclose()

    return asyncio.run(go())


# ------------------------------------------------------------------ offline (scripted)


def test_scripted_proposals_are_deterministic_and_concurrent_requests(env):
    r = researcher(env, {"provider": "scripted", "prices": PRICES}, per_call=3, exemplars=5)
    a, b = propose(r, 10), propose(r, 10)
    assert [m.model_dump() for m in a.methods] == [m.model_dump() for m in b.methods]
    assert len(a.methods) == 10 and not any(isinstance(m, InvalidProposal) for m in a.methods)
    assert a.requests == 4 and a.failed == 0  # 3 + 3 + 3 + 1
    assert a.cost.calls == 4 and a.cost.tokens_in > 0 and a.cost.tokens_out > 0
    assert a.cost.usd == pytest.approx((a.cost.tokens_in * 3 + a.cost.tokens_out * 15) / 1e6)
    assert len({p["prompt_hash"] for p in a.provenance}) == 4
    assert {p["provider"] for p in a.provenance} == {"scripted"}


def test_scripted_malformed_replies_are_reasked_then_recorded_invalid(env):
    r = researcher(env, {"provider": "scripted", "invalid_share": 1.0, "validation_retries": 2}, per_call=2)
    batch = propose(r, 4)
    assert all(isinstance(m, InvalidProposal) and not m.failed_call for m in batch.methods)
    assert batch.methods[0].invalid.startswith("invalid output after 3 attempts")
    assert (batch.requests, batch.failed, batch.cost.calls, batch.cost.retries) == (2, 2, 6, 4)
    some = researcher(env, {"provider": "scripted", "invalid_share": 0.5, "validation_retries": 3})
    mixed = propose(some, 12)
    assert mixed.cost.retries > 0  # re-asks happened, and most of them then validated
    assert sum(isinstance(m, InvalidProposal) for m in mixed.methods) < 12


def test_scripted_failed_requests_leave_failed_call_placeholders(env):
    r = researcher(env, {"provider": "scripted", "failure_share": 1.0, "max_attempts": 3})
    batch = propose(r, 2)
    assert all(isinstance(m, InvalidProposal) and m.failed_call for m in batch.methods)
    assert (batch.failed, batch.cost.calls) == (2, 6)  # every attempt counted
    assert "giving up after 3 attempts" in batch.last_error


# ------------------------------------------------------------------ through the real SDKs


def served(flavour: str, server, **overrides) -> dict:
    model = {
        "provider": flavour,
        "model": "fake-model",
        "base_url": server.sdk_base_url,
        "timeout_s": 2.0,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "validation_retries": 1,
        "prices": PRICES,
    }
    model.update(overrides)
    return model


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
def test_clean_batch_through_the_sdk(env, flavour):
    answers = ModelAnswers()
    with SERVER_FOR[flavour](responder=answers) as server:
        batch = propose(researcher(env, served(flavour, server), per_call=3), 6)
    # the two requests run concurrently: which gets which three answers is up to the server
    assert sorted(m.family for m in batch.methods) == ["biweight", "hodges_lehmann", "huber", "mean", "median", "trimmed_mean"]
    assert (batch.requests, batch.failed, batch.cost.calls, batch.cost.retries) == (2, 0, 2, 0)
    assert (batch.cost.tokens_in, batch.cost.tokens_out) == (2 * TOKENS_IN, 2 * TOKENS_OUT)
    prompt = json.dumps(server.bodies[0])
    assert "<exemplars>" in prompt and "Location problem" in prompt


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", ["429:1", "500", "stall", "drop", "not_json", "bad_schema"])
def test_one_fault_is_retried_or_reasked_then_answered(env, flavour, fault):
    with SERVER_FOR[flavour]([fault], responder=ModelAnswers(), stall_s=3) as server:
        start = time.monotonic()
        batch = propose(researcher(env, served(flavour, server, timeout_s=0.5), per_call=2), 2)
        elapsed = time.monotonic() - start
    assert not any(isinstance(m, InvalidProposal) for m in batch.methods), batch.last_error
    assert (batch.requests, batch.failed, batch.cost.calls, batch.cost.retries) == (1, 0, 2, 1)
    assert server.requests == 2
    if fault == "429:1":
        assert elapsed >= 0.95  # Retry-After honoured
    if fault in ("not_json", "bad_schema"):  # a re-ask: both replies carried tokens
        assert batch.cost.tokens_in == 2 * TOKENS_IN
        assert "did not match the required JSON schema" in json.dumps(server.bodies[1])


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
@pytest.mark.parametrize(
    "script, failed_call",
    [(["500", "503"], True), (["not_json", "bad_schema"], False), (["401"], True)],
)
def test_a_request_that_fails_for_good_is_recorded(env, flavour, script, failed_call):
    with SERVER_FOR[flavour](script, responder=ModelAnswers()) as server:
        batch = propose(researcher(env, served(flavour, server, max_attempts=2), per_call=2), 2)
    assert all(isinstance(m, InvalidProposal) and m.failed_call == failed_call for m in batch.methods)
    assert (batch.requests, batch.failed) == (1, 1)
    assert batch.cost.calls == server.requests == len(script)  # a 401 is fatal: one attempt
    assert batch.methods[0].invalid == batch.last_error


# ------------------------------------------------------------------ the dialogue


class RejectsTheMean:
    """A verifier that rejects the sample mean and says why; it costs one replication."""

    kind = "test"

    async def judge(self, proposals, context):
        return [
            Verdict(
                accept=m.family != "mean",
                rationale="no better than the mean" if m.family == "mean" else "fine",
                evidence={"efficiency": 1.0 if m.family == "mean" else 2.0},
                cost=Cost(replications=1),
            )
            for m in proposals
        ]


def test_rejected_proposals_are_revised_with_the_verdict(env):
    r = researcher(env, {"provider": "scripted"}, exemplars=20)
    proposals = [env.parse_method({"family": "mean"})] * 3 + [env.parse_method({"family": "median"})]
    proposals.append(InvalidProposal(invalid="invalid output after 3 attempts: x"))

    def context(round_: int) -> JudgeContext:
        return JudgeContext(env=env, seed=0, generation=0, rng=np.random.default_rng(round_))

    async def go():
        try:
            return await verify_with_dialogue(
                RejectsTheMean(), r, proposals, None, context, lambda k: np.random.default_rng(100 + k), 2
            )
        finally:
            await r.provider.aclose()

    out = asyncio.run(go())
    assert out.rounds >= 1 and out.revised[:3] != [0, 0, 0] and out.revised[3:] == [0, 0]
    assert all(m.family != "mean" for m in out.proposals[:3])  # the scripted model moves away from a rejected family
    assert all(v.accept for v in out.verdicts[:4]) and out.verdicts[4].accept is False
    assert out.verdicts[0].cost.replications == 1 + out.revised[0]  # every judgement of the slot is paid
    assert out.revision.requests == sum(out.revised) and out.revision.cost.calls >= out.revision.requests
    assert out.provenance[0]["revision"] == out.revised[0]


# ------------------------------------------------------------------ whole runs


def test_scripted_config_runs_offline_with_the_foundation_outputs(scripted_run: Path):
    for name in ("config.yaml", "metrics.csv", "verdicts.jsonl", "summary.json", "checkpoints.sqlite", "timings.csv"):
        assert (scripted_run / name).is_file(), name
    rows = list(csv.DictReader(open(scripted_run / "metrics.csv")))
    metrics = {r["metric"] for r in rows}
    assert {"quality_mean", "entropy", "accept_rate", "cost_usd", "researcher_usd", "researcher_requests", "invalid"} <= metrics
    assert {"feedback_rounds", "revised", "quality_mean_first"} <= metrics
    summary = json.loads((scripted_run / "summary.json").read_text())
    for arm in summary["arms"].values():
        assert arm["ledger"]["researcher"]["tokens_in"] > 0 and arm["ledger"]["usd"] > 0
        assert arm["verdict"] in {"improved", "degraded", "collapsed", "stable"}
    lines = [json.loads(line) for line in (scripted_run / "verdicts.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * 2 * 3 * 6  # arms x seeds x generations x proposals
    accepted = [v for v in lines if v["accept"] is True]
    assert accepted and all(v["provenance"]["prompt_hash"] and v["provenance"]["model"] for v in accepted)
    assert {v["provenance"]["verifier"]["arm"] for v in accepted} == {"none", "llm-judge", "llm-judge-mc", "montecarlo"}


def test_vllm_local_config_runs_unchanged_against_an_openai_compatible_server(tmp_path):
    answers = ModelAnswers()
    with FakeOpenAI(models=["Qwen/Qwen2.5-7B-Instruct"], responder=answers) as server:
        result = ouro(
            "run", "configs/vllm-local.yaml", "--out", str(tmp_path / "run"), "--quiet",
            "--set", f"researcher.model.base_url={server.sdk_base_url}",
            "--set", "seeds=2", "--set", "loop.generations=2", "--set", "loop.proposals=3",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert server.requests >= 2 * 2 * 3 * 3  # seeds x generations x proposals x arms, one proposal a request
    assert all("structured_outputs" in body for body in server.bodies)  # vLLM's guided decoding
    assert server.bodies[0]["model"] == "Qwen/Qwen2.5-7B-Instruct"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["arms"]) == {"none", "montecarlo", "oracle"}
    assert summary["arms"]["none"]["ledger"]["researcher"]["tokens_in"] > 0
