"""``method_kind: code``: the LLM researcher proposes Python source, judged in the sandbox."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from ouro.agents.llm import LLMResearcherConfig
from ouro.agents.method_kinds import METHOD_KINDS
from ouro.agents.providers.scripted import BROKEN_SOURCE
from ouro.environments.estimators import EstimatorsConfig, evaluate, parse_method
from ouro.environments.estimators.sources import method_source, source_dsl
from ouro.sandbox import check_source, run_methods
from ouro.types import InvalidProposal
from ouro.verifiers import JudgeContext
from ouro.verifiers.montecarlo import MonteCarloVerifierConfig
from ouro.verifiers.oracle import OracleVerifierConfig

from .conftest import ouro
from .providers.fake_servers import FakeOpenAI

CODE = METHOD_KINDS["code"]
EVERY_FAMILY = [
    {"family": "mean"},
    {"family": "median"},
    {"family": "trimmed_mean", "alpha": 0.2},
    {"family": "trimmed_mean", "alpha": 0.0},
    {"family": "winsorized_mean", "alpha": 0.15},
    {"family": "hodges_lehmann"},
    {"family": "huber", "c": 1.345},
    {"family": "biweight", "c": 4.685},
]
FORBIDDEN = "import os\n\ndef estimate(x):\n    return float(os.getpid())\n"


@pytest.fixture(scope="module")
def env():
    return EstimatorsConfig().build()


def reply(*items: dict) -> str:
    return json.dumps({"proposals": list(items)})


def propose(researcher, n: int, seed: int = 0):
    async def go():
        try:
            return await researcher.apropose(n, np.random.default_rng(seed))
        finally:
            await researcher.provider.aclose()

    return asyncio.run(go())


def code_researcher(env, model: dict, **fields):
    r = LLMResearcherConfig(model=model, method_kind="code", **fields).build(env)
    r.learn(env.real_data(np.random.default_rng(0)))
    return r


# ------------------------------------------------------------------ DSL methods as source


def test_dsl_methods_written_as_source_compute_the_same_in_the_sandbox(env):
    methods = [parse_method(m) for m in EVERY_FAMILY]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 51)) * np.where(rng.random((500, 51)) < 0.1, 10.0, 1.0)
    x[0] = 2.0  # a constant sample: zero MAD, the M-estimators fall back to the median
    sources = [method_source(m) for m in methods]
    assert all(check_source(s) is None for s in sources)
    assert [source_dsl(s) for s in sources] == [m.model_dump(mode="json") for m in methods]
    expected = evaluate(methods, x)
    for method, result, want in zip(methods, run_methods(sources, x), expected):
        assert result.ok, (method, result.error)
        np.testing.assert_allclose(result.values, want, rtol=1e-12, atol=1e-12, err_msg=str(method))


# ------------------------------------------------------------------ the reply schema


def test_code_reply_validates_and_unpacks_into_code_methods(env):
    schema = CODE.reply_schema(env, 2)
    items = schema.model_json_schema()["$defs"]["CodeProposal"]
    assert set(items["required"]) == {"name", "source"}
    trimmed = method_source(parse_method({"family": "trimmed_mean", "alpha": 0.2}))
    value = schema.model_validate_json(reply({"name": "t20", "source": trimmed}, {"name": "mom", "source": BROKEN_SOURCE}))
    methods = CODE.unpack(env, value)
    assert [(m.family, m.name) for m in methods] == [("code", "t20"), ("code", "mom")]
    assert methods[0].source == trimmed
    with pytest.raises(ValidationError, match="exactly|at least|too_short"):
        schema.model_validate_json(reply({"name": "t20", "source": trimmed}))


@pytest.mark.parametrize(
    "source, reason",
    [
        (FORBIDDEN, "forbidden import 'os' (line 1)"),
        ("def estimate(x):\n    return x[0\n", "syntax error"),
        ("import numpy as np\nX = 1\n", "no top-level function named estimate_batch or estimate"),
        ("x = 1\n" * 5000, "at most 20000 characters"),
    ],
)
def test_a_source_the_sandbox_refuses_fails_validation_with_its_reason(env, source, reason):
    with pytest.raises(ValidationError) as caught:
        CODE.reply_schema(env, 1).model_validate_json(reply({"name": "x", "source": source}))
    assert reason in str(caught.value)


def test_rendering_shows_source_one_json_object_a_line(env):
    dsl = parse_method({"family": "huber", "c": 1.5})
    line = CODE.render(env, dsl)
    assert "\n" not in line
    shown = json.loads(line)
    assert shown["name"] == "huber(1.5)" and source_dsl(shown["source"]) == {"family": "huber", "c": 1.5}
    own = parse_method({"family": "code", "source": BROKEN_SOURCE, "name": "per column"})
    assert json.loads(CODE.render(env, own)) == {"name": "per column", "source": BROKEN_SOURCE}
    hint = CODE.instructions(env)
    assert "estimate_batch(X)" in hint and "scipy.stats" in hint and "sandbox" in hint


def test_an_environment_without_code_methods_fails_at_build():
    from ouro.environments.gaussian import GaussianConfig

    with pytest.raises(TypeError, match="cannot take code proposals"):
        LLMResearcherConfig(model={"provider": "scripted"}, method_kind="code").build(GaussianConfig().build())


# ------------------------------------------------------------------ through a model


def test_forbidden_source_from_a_model_is_reasked_then_recorded_invalid_with_the_reason(env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    asked: list[str] = []

    def answer(request: dict) -> dict:
        asked.append(request["messages"][-1]["content"])
        return {"proposals": [{"name": "pid", "source": FORBIDDEN}]}

    with FakeOpenAI(responder=answer) as server:
        model = {"provider": "openai", "model": "fake-model", "base_url": server.sdk_base_url, "validation_retries": 1}
        batch = propose(code_researcher(env, model, per_call=1), 1)
    (placeholder,) = batch.methods
    assert isinstance(placeholder, InvalidProposal) and not placeholder.failed_call
    assert "the sandbox refuses this source: forbidden import 'os' (line 1)" in placeholder.invalid
    assert len(asked) == 2 and "forbidden import 'os'" in asked[1]  # the re-ask carried the reason
    assert "<exemplars>" in asked[0] and "def estimate_batch(X)" in asked[0]  # the archive, shown as source


def test_scripted_model_writes_code_that_runs_and_a_told_bug_is_rejected_with_its_reason(env):
    r = code_researcher(env, {"provider": "scripted"}, per_call=3)
    a, b = propose(r, 6), propose(r, 6)
    assert [m.source for m in a.methods] == [m.source for m in b.methods]  # deterministic
    assert all(m.family == "code" and source_dsl(m.source) for m in a.methods)
    quality = env.oracle(a.methods)
    assert np.all(np.isfinite(quality)) and np.all(quality > 0)
    twins = [parse_method(source_dsl(m.source)) for m in a.methods]
    # code and DSL agree on the truth (the DSL oracle interpolates M-estimators in c, within 0.1%)
    np.testing.assert_allclose(quality, env.oracle(twins), rtol=1e-3)

    broken = propose(code_researcher(env, {"provider": "scripted", "broken_code_share": 1.0}), 2)
    assert [m.source for m in broken.methods] == [BROKEN_SOURCE] * 2
    ctx = JudgeContext(env=env, seed=0, generation=0, rng=np.random.default_rng(0))
    verdicts = asyncio.run(MonteCarloVerifierConfig(replications=60).build(env).judge(broken.methods, ctx))
    assert [v.accept for v in verdicts] == [False, False]
    assert all("wrong shape (50,) for 60 rows" in v.rationale for v in verdicts)
    # the oracle says why too: the sandbox's reason, from its own (larger) data sets
    verdicts = asyncio.run(OracleVerifierConfig().build(env).judge(broken.methods, ctx))
    assert [v.accept for v in verdicts] == [False, False]
    assert all(v.rationale.startswith("could not be evaluated: ") and "wrong shape (50,)" in v.rationale for v in verdicts)


# ------------------------------------------------------------------ a whole run


@pytest.mark.slow
def test_scripted_code_config_runs_end_to_end(tmp_path: Path):
    out = tmp_path / "run"
    result = ouro("run", "configs/scripted-code.yaml", "--out", str(out), "--quiet", "--set", "loop.generations=3")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (out / "verdicts.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 2 * 3 * 8  # arms x seeds x generations x proposals
    assert all(v["method"]["family"] == "code" for v in lines)
    by_arm = {arm: [v for v in lines if v["arm"] == arm] for arm in ("none", "montecarlo", "oracle")}

    accepted = [v for v in by_arm["montecarlo"] if v["accept"]]
    assert accepted and all(v["oracle_quality"] is not None and np.isfinite(v["oracle_quality"]) for v in accepted)
    broken = [v for v in by_arm["montecarlo"] if v["method"]["source"] == BROKEN_SOURCE]
    assert broken and all(v["accept"] is False and "wrong shape (50,)" in v["rationale"] for v in broken)
    broken = [v for v in by_arm["oracle"] if v["method"]["source"] == BROKEN_SOURCE]
    assert broken and all(v["accept"] is False and "wrong shape (50,)" in v["rationale"] for v in broken)
    unverified = [v for v in by_arm["none"] if v["method"]["source"] == BROKEN_SOURCE]
    assert unverified and all(v["accept"] is True and v["oracle_quality"] is None for v in unverified)

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["arms"]) == {"none", "montecarlo", "oracle"}
    assert summary["arms"]["oracle"]["precision"] == 1.0 and summary["arms"]["none"]["precision"] < 1.0
    assert summary["arms"]["montecarlo"]["cost"]["replications"] > 0
