"""The LLM judge: structured verdicts through the real openai and anthropic SDKs against
loopback servers, faults ending as unscored verdicts (never rejects), Monte Carlo
evidence, its configuration, and the warning when the researcher grades itself."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from ouro.config import ConfigError, load_config
from ouro.preflight import preflight
from ouro.verifiers.base import JudgeContext

from .conftest import SCRIPTED, ouro_here as ouro
from .model_answers import ModelAnswers
from .providers.fake_servers import SERVER_FOR, TOKENS_IN, TOKENS_OUT

PRICES = {"input_per_mtok": 3.0, "output_per_mtok": 15.0}


@pytest.fixture(scope="module")
def env():
    return load_config().environment.build()


pytestmark = pytest.mark.usefixtures("api_keys")  # every test here talks to a loopback server


def judge_config(flavour: str, server, **fields):
    from ouro.verifiers.model import ModelVerifierConfig

    model = {
        "provider": flavour,
        "model": "fake-model",
        "base_url": server.sdk_base_url,
        "timeout_s": 0.5,
        "max_attempts": 2,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "validation_retries": 1,
        "prices": PRICES,
    }
    return ModelVerifierConfig(kind="model", judge="llm", model=model, **fields)


def judge(config, env, methods: list[dict]):
    verifier = config.build(env)
    proposals = [env.parse_method(m) for m in methods]

    async def go():
        try:
            ctx = JudgeContext(env=env, seed=0, generation=0, rng=np.random.default_rng(0))
            return await verifier.judge(proposals, ctx)
        finally:
            await verifier.provider.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
def test_verdicts_are_structured_output_with_their_cost(env, flavour):
    with SERVER_FOR[flavour](responder=ModelAnswers()) as server:
        verdicts = judge(judge_config(flavour, server), env, [{"family": "mean"}, {"family": "median"}])
    assert [v.accept for v in verdicts] == [False, True]
    assert [v.score for v in verdicts] == [1.0, 3.0]
    assert "robust" in verdicts[1].rationale
    for v in verdicts:
        assert (v.cost.calls, v.cost.retries, v.cost.tokens_in, v.cost.tokens_out) == (1, 0, TOKENS_IN, TOKENS_OUT)
        assert v.cost.usd == pytest.approx((TOKENS_IN * 3 + TOKENS_OUT * 15) / 1e6)
        assert v.evidence is None  # evidence: none
    prompt = json.dumps(server.bodies)
    assert "<proposal>" in prompt and "<bar>" in prompt and "<evidence>" not in prompt


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
@pytest.mark.parametrize(
    "script, accept, calls",
    [
        (["429:0"], True, 2),  # retried, then scored
        (["stall"], True, 2),
        (["not_json"], True, 2),  # re-asked, then scored
        (["500", "500"], None, 2),  # out of attempts: unscored, not rejected
        (["drop", "drop"], None, 2),
        (["bad_schema", "not_json"], None, 2),  # invalid after the re-ask: unscored
        (["401"], None, 1),  # fatal at once
    ],
)
def test_faults_end_as_the_rules_say(env, flavour, script, accept, calls):
    with SERVER_FOR[flavour](script, responder=ModelAnswers(), stall_s=2) as server:
        (verdict,) = judge(judge_config(flavour, server), env, [{"family": "huber", "c": 1.5}])
    assert verdict.accept is accept
    assert verdict.cost.calls == calls == server.requests  # the ledger counts every attempt
    assert verdict.cost.retries == calls - 1
    if accept is None:  # the endpoint failed, or it answered and the output never validated
        invalid = script[0] in ("bad_schema", "not_json")
        assert verdict.rationale.startswith("judge output invalid: " if invalid else "judge call failed: ")
        assert verdict.score is None


def test_montecarlo_evidence_is_shown_and_paid_for(env):
    with SERVER_FOR["openai"](responder=ModelAnswers()) as server:
        config = judge_config("openai", server, evidence="montecarlo", replications=50)
        verdicts = judge(config, env, [{"family": "median"}, {"family": "mean"}])
    assert all(v.cost.replications == 50 for v in verdicts)
    mc = verdicts[0].evidence["montecarlo"]
    assert mc["efficiency"] > 1 and {"se", "p", "replications"} <= set(mc)
    assert verdicts[1].evidence["montecarlo"]["efficiency"] == pytest.approx(1.0)
    assert all("<evidence>" in json.dumps(body) for body in server.bodies)


def test_config_rules():
    with pytest.raises(ConfigError, match="judge 'llm' needs a model"):
        load_config(SCRIPTED, ["arms.llm-judge.verifier.model=null"])
    with pytest.raises(ConfigError, match="model is only used by judge 'llm'"):
        load_config(SCRIPTED, ["arms.llm-judge.verifier.judge=surrogate"])
    with pytest.raises(ConfigError, match="unknown provider 'foo'"):
        load_config(SCRIPTED, ["arms.llm-judge.verifier.model.provider=foo"])
    cfg = load_config(SCRIPTED, ["arms.llm-judge.verifier.judge=self", "arms.llm-judge.verifier.model=null"])
    with pytest.raises(ConfigError, match="judge 'self' ranks by the researcher's likelihood"):
        preflight(cfg)


def test_a_researcher_grading_itself_is_warned_about():
    assert preflight(load_config(SCRIPTED)) == []
    cfg = load_config(SCRIPTED, ["arms.llm-judge.verifier.model.model=scripted-researcher"])
    (warning,) = preflight(cfg)
    assert "arm 'llm-judge'" in warning and "grading itself" in warning


def test_cli_warns_once_and_fails_on_a_missing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    small = ["--set", "seeds=1", "--set", "loop.generations=1", "--set", "loop.proposals=2", "--quiet"]
    result = ouro(
        "run", SCRIPTED, "--out", str(tmp_path / "self"), *small,
        "--set", "arms.llm-judge.verifier.model.model=scripted-researcher",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("grading itself") == 1
    monkeypatch.delenv("OPENAI_API_KEY")
    result = ouro("run", "configs/openai.yaml", "--out", str(tmp_path / "nokey"), "--quiet")
    assert result.returncode == 2
    assert "set the environment variable OPENAI_API_KEY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nokey").exists()  # nothing started


def test_judge_precision_and_recall_are_measured(scripted_run: Path):
    summary = json.loads((scripted_run / "summary.json").read_text())
    for arm in ("llm-judge", "llm-judge-mc"):
        assert summary["arms"][arm]["precision"] is not None
        assert summary["arms"][arm]["ledger"]["verifier"]["calls"] > 0
    assert summary["arms"]["llm-judge-mc"]["ledger"]["verifier"]["replications"] > 0
