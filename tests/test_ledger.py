"""The ledger: spend per generation and arm adds up; the cost limit stops a run at the end
of a generation and `ouro resume --set cost_limit_usd=...` continues it to the same
result; failed calls stop an arm until the endpoint is fixed, and resume then redoes the generation;
resume refuses unsafe changes."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from .conftest import SCRIPTED, SCRIPTED_SMALL, ouro_here as ouro
from .model_answers import ModelAnswers
from .providers.fake_servers import FakeOpenAI


def _metric_sums(run: Path) -> dict[tuple[str, str], float]:
    out: dict = defaultdict(float)
    for row in csv.DictReader(open(run / "metrics.csv")):
        out[(row["arm"], row["metric"])] += float(row["value"])
    return out


def test_ledger_totals_are_the_sums_of_what_each_call_spent(scripted_run: Path):
    summary = json.loads((scripted_run / "summary.json").read_text())
    sums = _metric_sums(scripted_run)
    verdict_usd: dict = defaultdict(float)
    for line in (scripted_run / "verdicts.jsonl").read_text().splitlines():
        v = json.loads(line)
        verdict_usd[v["arm"]] += v["cost"].get("usd", 0.0)
    for name, arm in summary["arms"].items():
        ledger = arm["ledger"]
        assert ledger["verifier"]["usd"] == pytest.approx(verdict_usd[name])
        assert ledger["verifier"]["usd"] == pytest.approx(sums[(name, "cost_usd")])
        assert ledger["researcher"]["calls"] == sums[(name, "researcher_calls")]
        assert ledger["researcher"]["usd"] == pytest.approx(sums[(name, "researcher_usd")])
        assert ledger["researcher"]["calls"] >= sums[(name, "researcher_requests")]  # attempts >= requests
        assert ledger["usd"] == pytest.approx(ledger["verifier"]["usd"] + ledger["researcher"]["usd"])
        assert ledger["tokens_in"] == ledger["verifier"]["tokens_in"] + ledger["researcher"]["tokens_in"]


def test_cost_limit_stops_and_resume_with_a_higher_limit_continues(scripted_run: Path, tmp_path: Path):
    total = json.loads((scripted_run / "summary.json").read_text())
    limit = 0.5 * sum(a["ledger"]["usd"] for a in total["arms"].values())
    out = tmp_path / "limited"
    result = ouro("run", SCRIPTED, "--out", str(out), "--quiet", *SCRIPTED_SMALL, "--set", f"cost_limit_usd={limit}")
    assert result.returncode == 4, result.stderr  # stopped before the end: a script can tell
    assert "cost limit reached" in result.stderr and f"ouro resume {out} --set cost_limit_usd=HIGHER" in result.stderr
    assert (out / "summary.json").is_file()  # a stopped run still reports what it did
    stopped = json.loads((out / "summary.json").read_text())
    spent = sum(a["ledger"]["usd"] for a in stopped["arms"].values())
    assert limit <= spent < sum(a["ledger"]["usd"] for a in total["arms"].values())
    assert (out / "metrics.csv").read_bytes() != (scripted_run / "metrics.csv").read_bytes()

    # still over the limit: resume says so and does nothing
    again = ouro("resume", str(out), "--quiet")
    assert again.returncode == 4 and "cost limit reached" in again.stderr

    # unsafe changes are refused in one line, before anything runs
    refused = ouro("resume", str(out), "--set", "loop.proposals=7", "--quiet")
    assert refused.returncode == 2 and "cannot be changed when resuming" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    more = ouro("resume", str(out), "--set", "cost_limit_usd=100", "--set", "researcher.model.concurrency=4", "--quiet")
    assert more.returncode == 0, more.stderr
    assert "stopped" not in more.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["cost_limit_usd"] == 100 and saved["researcher"]["model"]["concurrency"] == 4
    # the same generations, the same proposals, the same ledger as a run never stopped
    assert (out / "metrics.csv").read_bytes() == (scripted_run / "metrics.csv").read_bytes()


def test_failed_calls_stop_the_arm_and_resume_redoes_the_generation_once_the_endpoint_answers(tmp_path: Path):
    out = tmp_path / "flaky"
    with FakeOpenAI(["500", "500"], models=["Qwen/Qwen2.5-7B-Instruct"], responder=ModelAnswers()) as server:
        args = [
            "--set", f"researcher.model.base_url={server.sdk_base_url}",
            "--set", "researcher.model.max_attempts=1",
            "--set", "seeds=1", "--set", "loop.generations=2", "--set", "loop.proposals=2",
            "--set", "arms=[{name: none, verifier: {kind: none}}]",
        ]  # fmt: skip
        result = ouro("run", "configs/vllm-local.yaml", "--out", str(out), "--quiet", *args)
        assert result.returncode == 4, result.stderr
        assert "too many failed calls: 2 of 2 researcher calls failed for good" in result.stderr
        lines = [json.loads(x) for x in (out / "verdicts.jsonl").read_text().splitlines()]
        assert [(v["key"], v["accept"], v["oracle_quality"]) for v in lines] == [("invalid", False, None)] * 2
        assert "HTTP 500" in lines[0]["method"]["invalid"] and lines[0]["method"]["failed_call"] is True
        sums = _metric_sums(out)
        assert sums[("none", "invalid")] == 2 and sums[("none", "researcher_failed")] == 2

        resumed = ouro("resume", str(out), "--quiet")  # the server answers now
        assert server.requests == 6  # generation 0's two calls again, then generation 1's two
    assert resumed.returncode == 0, resumed.stderr
    assert len(list((out / "arms" / "none").glob("gen-*.jsonl"))) == 2
    assert _metric_sums(out)[("none", "invalid")] == 0  # generation 0 was redone, and is valid now
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arms"]["none"]["ledger"]["researcher"]["calls"] == 6  # the failed attempts too


def test_a_judge_failing_past_its_share_fails_the_generation():
    from ouro.ledger import failure_stop, resumable, verifier_failures
    from ouro.types import Cost, Verdict

    paid = Cost(calls=2, retries=1)
    verdicts = [Verdict(accept=None, rationale="judge call failed: HTTP 500", cost=paid)] * 3
    verdicts += [Verdict(accept=True, cost=Cost(calls=1)), Verdict(accept=False, rationale="invalid proposal: x")]
    failed, judged, last = verifier_failures(verdicts)
    assert (failed, judged, last) == (3, 4, "judge call failed: HTTP 500")  # the invalid slot made no call
    reason = failure_stop("judge", failed, judged, 0.5, Path("runs/x"), last)
    assert reason.startswith("too many failed calls: 3 of 4 judge calls") and "ouro resume runs/x" in reason
    assert resumable(reason)
    assert failure_stop("judge", 2, 4, 0.5, Path("runs/x")) is None  # exactly the share: not more
