"""The call journal: a model's answer is paid for once. A run killed in the middle of a
stage, or stopped because calls failed or no output validated, is resumed asking only the
calls without a saved answer, and its ledger counts every answer once.

Every test talks to a real HTTP server on 127.0.0.1 through the real SDK clients.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from ouro.agents.providers import build_provider
from ouro.journal import CallJournal

from .conftest import OURO, ROOT, ouro_here as ouro
from .model_answers import METHODS, ModelAnswers, request_schema
from .providers.fake_servers import MESSAGES, TOKENS_IN, TOKENS_OUT, FakeOpenAI, Method

pytestmark = pytest.mark.usefixtures("api_keys")  # dummy keys; the loopback servers accept any

MODELS = ["gpt-4o-mini", "gpt-4o", "Qwen/Qwen2.5-7B-Instruct"]
RESEARCHER_PRICES = (0.15, 0.60)  # configs/openai.yaml's researcher
JUDGE_PRICES = (2.50, 10.00)  # and its judge, below


class AnswersByRequest(ModelAnswers):
    """Proposals drawn from the request itself rather than from one sequence shared by all
    requests: the same request gets the same answer, so a resumed run asks exactly what an
    uninterrupted run asks, and the two can be compared call for call."""

    def __call__(self, request: dict) -> dict:
        props = request_schema(request).get("properties", {})
        if "proposals" not in props:
            return super().__call__(request)
        count = int(props["proposals"].get("minItems", 1))
        h = int(hashlib.sha256(json.dumps(request["messages"], sort_keys=True).encode()).hexdigest(), 16)
        with self._lock:
            self.asked.append("proposals")
        return {"proposals": [dict(METHODS[(h + i) % len(METHODS)]) for i in range(count)]}


def judge_only(server: FakeOpenAI, **model: object) -> str:
    """configs/openai.yaml's judge arm alone, pointed at ``server``."""
    fields = {"base_url": server.sdk_base_url, "concurrency": 4, **model}
    extra = "".join(f", {k}: {v}" for k, v in fields.items())
    return (
        "arms=[{name: gpt-judge, verifier: {kind: model, judge: llm, evidence: none, threshold: 1.0, "
        "model: {provider: openai, model: gpt-4o, temperature: 0.0, "
        f"prices: {{input_per_mtok: {JUDGE_PRICES[0]}, output_per_mtok: {JUDGE_PRICES[1]}}}{extra}}}}}}}]"
    )


def openai_args(server: FakeOpenAI, *more: str) -> list[str]:
    return ["--quiet", "--no-report", "--set", f"researcher.model.base_url={server.sdk_base_url}", *more]


def ledger(run: Path) -> dict:
    arms = json.loads((run / "summary.json").read_text())["arms"]
    return {name: a["ledger"] for name, a in arms.items()}


def paid(run: Path, arm: str) -> dict[str, float]:
    """An arm's ledger, flat, without the wall-clock seconds (which differ between two runs)."""
    books = ledger(run)[arm]
    flat = {k: v for k, v in books.items() if not isinstance(v, dict)}
    for part in ("verifier", "researcher"):
        flat.update({f"{part}_{k}": v for k, v in books[part].items() if k != "wall_seconds"})
    return flat


def verdicts_paid(run: Path) -> list[dict]:
    """verdicts.jsonl without the wall-clock seconds of each cost."""
    lines = [json.loads(x) for x in (run / "verdicts.jsonl").read_text().splitlines()]
    for line in lines:
        line["cost"].pop("wall_seconds", None)
    return lines


def journal_lines(run: Path) -> int:
    """Calls whose outcome the journal holds (complete lines only)."""
    n = 0
    for path in (run / "work").glob("*/*.calls.jsonl"):
        n += sum(1 for line in path.read_bytes().split(b"\n") if line.endswith(b"}"))
    return n


def billed_usd(asked: Counter) -> float:
    """What the server's answers cost at configs/openai.yaml's prices (every answer has the same tokens)."""
    per = {
        kind: (TOKENS_IN * p_in + TOKENS_OUT * p_out) / 1e6
        for kind, (p_in, p_out) in {"proposals": RESEARCHER_PRICES, "judge": JUDGE_PRICES}.items()
    }
    return sum(per[kind] * n for kind, n in asked.items())


# ------------------------------------------------------------------ the journal itself


def test_an_answer_is_read_back_with_its_cost_and_a_failed_call_is_asked_again(tmp_path: Path):
    path = tmp_path / "calls.jsonl"
    model = {"provider": "openai", "model": "fake-model", "max_attempts": 1, "prices": {"input_per_mtok": 1, "output_per_mtok": 2}}

    def ask(server: FakeOpenAI, scope: str, times: int):
        provider = build_provider({**model, "base_url": server.sdk_base_url})
        journal = CallJournal(path)  # a fresh process reads the file anew

        async def go():
            async with provider:
                with journal.scope(scope):
                    return await asyncio.gather(*(provider.structured(MESSAGES, Method) for _ in range(times)))

        try:
            return asyncio.run(go())
        finally:
            journal.close()

    with FakeOpenAI(["ok", "ok", "ok", "500"]) as server:
        first = ask(server, "propose/s0", 2)  # two identical requests: two calls, two lines
        assert server.requests == 2 and not any(r.replayed for r in first)
        again = ask(server, "propose/s0", 3)  # the two are read back; only the third is asked
        assert server.requests == 3
        assert [r.replayed for r in again] == [True, True, False] and again[2].ok
        assert [r.value for r in again[:2]] == [r.value for r in first]
        assert [r.cost for r in again[:2]] == [r.cost for r in first]  # counted as paid, once

        (failed,) = ask(server, "verify/s0", 1)  # HTTP 500, one attempt: failed for good
        assert server.requests == 4 and not failed.ok and not failed.invalid
        (retried,) = ask(server, "verify/s0", 1)  # not replayed: asked again, and answered
        assert server.requests == 5 and retried.ok and not retried.replayed
        assert retried.cost.calls == 2  # the failed attempt stays on the books
        (read_back,) = ask(server, "verify/s0", 1)
        assert server.requests == 5 and read_back.replayed and read_back.cost == retried.cost

    # outside a scope nothing is looked up or written
    with FakeOpenAI() as server:
        provider = build_provider({**model, "base_url": server.sdk_base_url})

        async def bare():
            async with provider:
                return await provider.structured(MESSAGES, Method)

        size = path.stat().st_size
        assert asyncio.run(bare()).ok and server.requests == 1 and path.stat().st_size == size


# ------------------------------------------------------------------ D2: kill -9 mid-stage


def test_kill_9_during_the_judge_stage_then_resume_pays_each_answer_once(tmp_path: Path):
    """configs/openai.yaml with its judge arm alone, killed after 12 of generation 0's 20
    judge calls: resume asks only what the killed process had not been answered, and the
    ledger equals an uninterrupted run's."""
    shape = ["--set", "seeds=1", "--set", "loop.generations=2", "--set", "loop.proposals=20"]

    reference = tmp_path / "reference"
    ref_answers = AnswersByRequest()
    with FakeOpenAI(models=MODELS, responder=ref_answers) as server:
        result = ouro("run", "configs/openai.yaml", "--out", str(reference), *openai_args(server, *shape, "--set", judge_only(server)))
        assert result.returncode == 0, result.stderr
        uninterrupted = server.requests
    assert Counter(ref_answers.asked)["judge"] >= 40  # 20 a generation, and the revisions'

    out = tmp_path / "killed"
    answers = AnswersByRequest()
    with FakeOpenAI(models=MODELS, responder=answers, delay=0.05) as server:
        args = openai_args(server, *shape, "--set", judge_only(server))
        proc = subprocess.Popen(
            [*OURO, "run", "configs/openai.yaml", "--out", str(out), *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while answers.asked.count("judge") < 12 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert answers.asked.count("judge") < 20, "generation 0's judge stage ended before the kill"
        at_kill = server.requests
        # requests the server had received whose answer the dead process never saved: the
        # calls in flight when it died (at most the judge's concurrency of 4)
        lost = at_kill - journal_lines(out)
        assert 0 <= lost <= 4

        resumed = ouro("resume", str(out), "--quiet", "--no-report")
        assert resumed.returncode == 0, resumed.stderr
        assert server.requests == uninterrupted + lost  # without the journal: + every call before the kill

    # the ledger counts each answer once: the same as the uninterrupted run's, to the dollar
    assert paid(out, "gpt-judge") == pytest.approx(paid(reference, "gpt-judge"))
    calls = ledger(out)["gpt-judge"]
    assert calls["calls"] == uninterrupted == server.requests - lost
    assert calls["usd"] == pytest.approx(billed_usd(Counter(ref_answers.asked)))
    assert (out / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()
    assert verdicts_paid(out) == verdicts_paid(reference)
    assert not (out / "work").exists()  # every journal went with its generation's record


# ------------------------------------------------------------------ D3: a stopped generation is redone


def test_a_generation_stopped_for_failed_judge_calls_is_redone_asking_only_those(tmp_path: Path):
    """The last (only) generation: 3 of 4 judge calls fail (HTTP 500, one attempt each).
    Resume redoes it: the researcher's answer and the one verdict are read back, the three
    failed calls asked again; the ledger counts every attempt the server saw, once."""
    out = tmp_path / "run"
    shape = ["--set", "seeds=1", "--set", "loop.generations=1", "--set", "loop.proposals=4"]
    shape += ["--set", "researcher.feedback_rounds=0", "--set", "researcher.model.max_attempts=1"]
    answers = AnswersByRequest()
    with FakeOpenAI(["ok", "500", "500", "500"], models=MODELS, responder=answers) as server:
        args = openai_args(server, *shape, "--set", judge_only(server, max_attempts=1))
        result = ouro("run", "configs/openai.yaml", "--out", str(out), *args)
        assert result.returncode == 4, result.stderr  # stopped before the end
        assert "too many failed calls: 3 of 4 judge calls failed for good (the endpoint never answered)" in result.stderr
        assert f"redo this generation with: ouro resume {out}" in result.stderr
        assert server.requests == 5  # 1 researcher call (5 a request), 4 judge calls

        resumed = ouro("resume", str(out), "--quiet", "--no-report")  # the server answers now
        assert resumed.returncode == 0, resumed.stderr
        assert "stopped" not in resumed.stderr
        assert server.requests == 8  # only the 3 failed calls were asked again

        again = ouro("resume", str(out), "--quiet", "--no-report")  # nothing left to do, and it says nothing of resuming
        assert again.returncode == 0 and "stopped" not in again.stderr and "resume" not in again.stderr
        assert server.requests == 8

    lines = [json.loads(x) for x in (out / "verdicts.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(v["accept"] is not None for v in lines)
    assert len(list((out / "arms" / "gpt-judge" / "superseded").glob("gen-000000.*.jsonl"))) == 1
    books = ledger(out)["gpt-judge"]
    assert books["calls"] == 8 == server.requests  # the 3 failed attempts are on the books too
    assert (books["researcher"]["calls"], books["verifier"]["calls"]) == (1, 7)
    assert books["tokens_in"] == 5 * TOKENS_IN  # 5 answers; a 500 carries no tokens
    assert books["usd"] == pytest.approx(billed_usd(Counter(answers.asked)))


def _vllm_run(server: FakeOpenAI, out: Path, *more: str):
    args = [
        "--set", f"researcher.model.base_url={server.sdk_base_url}",
        "--set", "researcher.model.concurrency=1",  # one request at a time: the script's order is the calls'
        "--set", "seeds=1", "--set", "arms=[{name: none, verifier: {kind: none}}]",
        *more,
    ]  # fmt: skip
    return ouro("run", "configs/vllm-local.yaml", "--out", str(out), "--quiet", "--no-report", *args)


def _metric_sums(run: Path) -> Counter:
    out: Counter = Counter()
    for row in csv.DictReader(open(run / "metrics.csv")):
        out[row["metric"]] += float(row["value"])
    return out


# ------------------------------------------------------------------ D7: output that never validates


def test_output_that_never_validates_is_named_for_what_it_is_and_redone_once_fixed(tmp_path: Path):
    out = tmp_path / "run"
    # 2 calls x 3 attempts (validation_retries 2) answered with text that is not JSON
    with FakeOpenAI(["not_json"] * 6, models=MODELS, responder=AnswersByRequest()) as server:
        result = _vllm_run(server, out, "--set", "loop.generations=1", "--set", "loop.proposals=2")
        assert result.returncode == 4, result.stderr  # stopped before the end
        stop = result.stderr.replace("\n", " ")
        assert "model output never validated: none of 2 researcher calls gave usable output" in stop
        assert "invalid output after 3 attempts: not valid JSON" in stop
        assert "endpoint never answered" not in stop and "Fix the endpoint" not in stop
        lines = [json.loads(x) for x in (out / "verdicts.jsonl").read_text().splitlines()]
        assert [v["method"]["failed_call"] for v in lines] == [False, False]

        resumed = ouro("resume", str(out), "--quiet", "--no-report")  # the model answers in JSON now
        assert resumed.returncode == 0, resumed.stderr
        assert "stopped" not in resumed.stderr
        assert server.requests == 8  # the two calls asked again
    assert _metric_sums(out)["invalid"] == 0
    assert ledger(out)["none"]["researcher"]["calls"] == 8  # every attempt, the invalid ones too


def test_a_share_of_invalid_output_is_measured_and_does_not_stop_the_run(tmp_path: Path):
    out = tmp_path / "run"
    with FakeOpenAI(["not_json"] * 2, models=MODELS, responder=AnswersByRequest()) as server:
        # generation 0: two of its three calls never validate (no re-asks), the third does
        more = ["--set", "loop.generations=2", "--set", "loop.proposals=3", "--set", "researcher.model.validation_retries=0"]
        result = _vllm_run(server, out, *more)
    assert result.returncode == 0, result.stderr
    assert "stopped" not in result.stderr
    assert len(list((out / "arms" / "none").glob("gen-*.jsonl"))) == 2
    sums = _metric_sums(out)
    assert sums["invalid"] == 2 and sums["researcher_failed"] == 2


def test_a_call_asked_again_after_invalid_output_counts_each_earlier_try_once(tmp_path: Path):
    """An answer's line carries the cost of the failed tries before it. When invalid
    answers are to be asked again (``forget_invalid``, a generation redone after nothing
    validated), that line replaces the earlier failures of its call, once per redo."""
    from ouro.journal import INVALID, FAILED, forget_invalid
    from ouro.types import Cost

    path = tmp_path / "calls.jsonl"
    dollar = Cost(calls=1, usd=1.0)

    def earlier() -> Cost | None:
        journal = CallJournal(path)  # as a resumed process reads it
        try:
            return journal._claim("verify/s0", "request").earlier_failures()
        finally:
            journal.close()

    journal = CallJournal(path)
    slot = journal._claim("verify/s0", "request")
    slot.save(FAILED, dollar)  # a try that failed for good (and the process was killed)
    slot.save(INVALID, dollar + dollar)  # the next try: invalid output, carrying both tries
    journal.close()
    forget_invalid(path)
    assert earlier() == dollar + dollar  # two tries so far, not three

    journal = CallJournal(path)
    slot = journal._claim("verify/s0", "request")
    slot.save(INVALID, dollar + slot.earlier_failures())  # the redo's try: invalid again
    journal.close()
    forget_invalid(path)  # redone a second time
    assert earlier() == dollar + dollar + dollar


def test_a_human_arm_stopped_for_failed_calls_is_redone_with_its_questions_asked(tmp_path: Path):
    """Resume must know that a human arm whose last generation stopped for failed calls
    will ask questions again, and give it the console."""
    from ouro.sweep import is_finished

    from .conftest import ouro as ouro_process

    out = tmp_path / "run"
    with FakeOpenAI(["500"] * 2, models=MODELS, responder=ModelAnswers()) as server:
        args = [
            "--quiet", "--no-report",
            "--set", f"researcher.model.base_url={server.sdk_base_url}",
            "--set", "researcher.model.max_attempts=1", "--set", "researcher.feedback_rounds=0",
            "--set", "seeds=1", "--set", "loop.generations=1", "--set", "loop.proposals=2",
            "--set", "arms=[{name: person, verifier: {kind: human}}]",
        ]  # fmt: skip
        first = ouro_process("run", "configs/vllm-local.yaml", "--out", str(out), *args, input="")
        assert first.returncode == 4, first.stderr  # the researcher's calls failed: nobody was asked
        assert not is_finished(out, ["person"], 1)  # a sweep re-entering this cell redoes it too
        resumed = ouro_process("resume", str(out), "--quiet", "--no-report", input="a\na\n")
    assert resumed.returncode == 0, resumed.stderr
    assert is_finished(out, ["person"], 1)
    lines = [json.loads(x) for x in (out / "verdicts.jsonl").read_text().splitlines()]
    assert [v["accept"] for v in lines] == [True, True]


def test_a_generation_to_redo_waits_while_the_run_is_over_its_cost_limit(tmp_path: Path):
    """What the stopped generation spent counts towards the limit: over it, resume redoes
    nothing (and asks nothing) until the limit is raised."""
    out = tmp_path / "run"
    shape = ["--set", "seeds=1", "--set", "loop.generations=1", "--set", "loop.proposals=4"]
    shape += ["--set", "researcher.feedback_rounds=0", "--set", "researcher.model.max_attempts=1"]
    shape += ["--set", "cost_limit_usd=1e-9"]
    with FakeOpenAI(["ok", "500", "500", "500"], models=MODELS, responder=AnswersByRequest()) as server:
        args = openai_args(server, *shape, "--set", judge_only(server, max_attempts=1))
        assert ouro("run", "configs/openai.yaml", "--out", str(out), *args).returncode == 4
        assert server.requests == 5

        held = ouro("resume", str(out), "--quiet", "--no-report")
        assert held.returncode == 4 and "cost limit reached" in held.stderr
        assert server.requests == 5  # nothing asked, nothing set aside
        assert not (out / "arms" / "gpt-judge" / "superseded").exists()

        raised = ouro("resume", str(out), "--quiet", "--no-report", "--set", "cost_limit_usd=100")
        assert raised.returncode == 0, raised.stderr
        assert server.requests == 8  # now the 3 failed calls are asked again
