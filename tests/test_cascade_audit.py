"""Cascades spare a person questions; audits measure a verifier from a person's answers alone.

The "person" here is a function that answers as the oracle would (accept what truly beats
the sample mean), so what the audit estimates can be checked against the truth exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ouro.cli import audit_table
from ouro.config import ConfigError, load_config
from ouro.rng import stream
from ouro.runner import execute, prepare_run_dir
from ouro.summary import summarize
from ouro.types import Verdict
from ouro.verifiers.cascade import forwarded, is_uncertain
from ouro.verifiers.human import Answer, Batch, Reply

PROPOSALS = 8


class OraclePerson:
    """Answers every question as the oracle would, and remembers what it was asked."""

    def __init__(self, config) -> None:
        self.env = config.environment.build()
        self.batches: list[Batch] = []

    def __call__(self, payload: dict) -> dict:
        batch = Batch.model_validate(payload)
        self.batches.append(batch)
        good = self.env.is_good(self.env.oracle([self.env.parse_method(it.method) for it in batch.items]))
        answers = [Answer(key=it.key, decision="accept" if g else "reject", seconds=2.0) for it, g in zip(batch.items, good)]
        return Reply(batch=batch.id, answers=answers).model_dump()


def _run(tmp_path: Path, arms: str, seeds: int = 2, generations: int = 3) -> tuple[Path, OraclePerson, dict]:
    cfg = load_config("configs/human.yaml", [f"seeds={seeds}", f"loop.generations={generations}", f"loop.proposals={PROPOSALS}", f"arms={arms}"])
    run = tmp_path / "run"
    prepare_run_dir(cfg, run)
    person = OraclePerson(cfg)
    execute(run, 1, answer=person)
    return run, person, summarize(run, cfg)


def _lines(run: Path, arm: str) -> list[dict]:
    return [v for line in (run / "verdicts.jsonl").read_text().splitlines() if (v := json.loads(line))["arm"] == arm]


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize(
    "verifier, expected",
    [
        ("{kind: cascade, stages: [{kind: montecarlo, replications: 1}, {kind: human}]}", "arms[2].verifier.stages[0].replications: Input should be greater than or equal to 2"),
        ("{kind: cascade, stages: [{kind: montecarlo}, {kind: human, evidence: [human]}]}", "arms[2].verifier.stages[1].evidence: evidence comes from automatic verifiers"),
        ("{kind: cascade, stages: [{kind: montecarlo}]}", "arms[2].verifier.stages: List should have at least 2 items"),
        ("{kind: cascade, stages: [{kind: none}, {kind: psychic}]}", "arms[2].verifier.stages[1]: unknown kind 'psychic'"),
        ("{kind: audit, verifier: {kind: human}}", "arms[2].verifier.verifier: an audit checks an automatic verifier"),
        ("{kind: audit, verifier: {kind: cascade, stages: [{kind: none}, {kind: oracle, target: x}]}}", "arms[2].verifier.verifier.stages[1].target"),
        ("{kind: audit, verifier: {kind: none}, k: 0}", "arms[2].verifier.k: Input should be greater than or equal to 1"),
        ("{kind: human, evidence: [montecarlo], colour: red}", "arms[2].verifier.colour: unknown key"),
    ],
)
def test_nested_verifier_errors_are_one_line_naming_the_field(verifier, expected):
    with pytest.raises(ConfigError) as e:
        load_config("configs/human.yaml", [f"arms.human.verifier={verifier}"])
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_nested_configs_round_trip_and_know_whether_they_ask():
    cfg = load_config(
        "configs/human.yaml",
        ["arms.human.verifier={kind: audit, k: 2, verifier: {kind: cascade, only: uncertain, stages: [{kind: montecarlo, replications: 20}, {kind: oracle}]}, human: {evidence: [montecarlo]}}"],
    )
    audit = cfg.arms[2].verifier
    assert audit.asks_human and not audit.verifier.asks_human
    assert audit.verifier.stages[0].replications == 20 and audit.human.evidence[0].kind == "montecarlo"
    again = load_config("configs/human.yaml", [f"arms.human.verifier={json.dumps(audit.model_dump(mode='json'))}"])
    assert again.arms[2].verifier == audit
    assert [a.verifier.asks_human for a in load_config("configs/human.yaml").arms] == [False, False, True]


# ------------------------------------------------------------------ cascade


def test_forwarding_policies():
    vs = [
        Verdict(accept=True, evidence={"gain": 0.5, "se": 0.1}),
        Verdict(accept=True, evidence={"gain": 0.1, "se": 0.1}),
        Verdict(accept=False, evidence={"gain": -0.05, "se": 0.1}),
        Verdict(accept=False),
        Verdict(accept=None),
    ]
    assert forwarded(vs, "accepted", 2.0) == [0, 1]
    assert forwarded(vs, "rejected", 2.0) == [2, 3]
    assert forwarded(vs, "uncertain", 2.0) == [1, 2, 4]
    assert forwarded(vs, "all", 2.0) == [0, 1, 2, 3, 4]
    assert not is_uncertain(vs[0], 2.0) and is_uncertain(vs[0], 6.0)


def test_cascade_asks_the_person_only_what_the_simulator_accepted(tmp_path):
    mc = "{kind: montecarlo, replications: 50}"
    run, person, summary = _run(
        tmp_path, f"[{{name: montecarlo, verifier: {mc}}}, {{name: cascade, verifier: {{kind: cascade, only: accepted, stages: [{mc}, {{kind: human}}]}}}}]"
    )
    mc_lines, cascade = _lines(run, "montecarlo"), _lines(run, "cascade")
    asked = sum(len(b.items) for b in person.batches)
    assert asked == sum("human: person" in v["rationale"] for v in cascade)
    assert 0 < asked < len(cascade)  # the mean is rejected by the simulator, and never shown
    for v in cascade:
        if "human:" not in v["rationale"]:
            assert v["accept"] is False and "human_seconds" not in v["cost"]
        else:
            assert v["cost"]["human_seconds"] == 2.0 and v["cost"]["replications"] == 50
    # generation 0 proposes the same methods in both arms, judged on the same simulated data:
    # the person is asked about exactly what the Monte Carlo arm accepts
    first = [(v["key"], v["accept"]) for v in mc_lines if v["generation"] == 0]
    assert first == [(v["key"], "human:" in v["rationale"]) for v in cascade if v["generation"] == 0]
    assert all(b.items and b.items[0].evidence[0].source == "montecarlo" for b in person.batches)  # why the person is asked
    assert summary["arms"]["cascade"]["cost"]["human_seconds"] == 2.0 * asked


# ------------------------------------------------------------------ audit


def test_audit_estimates_precision_and_recall_from_the_answers_alone(tmp_path):
    k = 4
    judge = "{kind: model, judge: self, keep: 0.5}"
    run, person, summary = _run(
        tmp_path, f"[{{name: self-judge, verifier: {judge}}}, {{name: audited, verifier: {{kind: audit, k: {k}, verifier: {judge}}}}}]", seeds=3
    )
    plain, audited = _lines(run, "self-judge"), _lines(run, "audited")
    # the audit changes no verdict: the loop is the audited verifier's
    assert [(v["key"], v["accept"]) for v in plain] == [(v["key"], v["accept"]) for v in audited]
    # k per seed and generation, drawn from the "audit" stream, shown blind
    for b in person.batches:
        chosen = sorted(stream(b.seed, b.generation, "audit").choice(PROPOSALS, size=k, replace=False).tolist())
        keys = [v["key"] for v in audited if v["seed"] == b.seed and v["generation"] == b.generation]
        assert [it.key for it in b.items] == [keys[i] for i in chosen]
        assert all(not it.evidence for it in b.items)
    assert len(person.batches) == 3 * 3
    # the audit's counts are the audited verdicts' confusion against the person's (here: the oracle's) answers
    checked = [v for v in audited if "audit:" in v["rationale"]]
    assert len(checked) == 3 * 3 * k
    block = summary["arms"]["audited"]["audit"]
    said, truth = np.array([v["accept"] for v in checked]), np.array([v["good"] for v in checked])
    assert block["counts"] == {
        "tp": int((said & truth).sum()), "fp": int((said & ~truth).sum()),
        "fn": int((~said & truth).sum()), "tn": int((~said & ~truth).sum()),
    }  # fmt: skip
    assert block["audited"] == len(checked) and block["skipped"] == 0
    oracle = summary["arms"]["audited"]
    for name in ("precision", "recall"):
        lo, hi = block[f"{name}_ci"]
        assert lo <= block[name] <= hi and lo <= oracle[name] <= hi  # the truth lies in the audit's interval
    assert oracle["precision"] < 1.0  # the self-judge keeps the mean: an audit has something to find
    assert summary["arms"]["audited"]["cost"]["human_seconds"] == 2.0 * len(checked)
    table = audit_table(summary)
    assert table is not None and table.row_count == 1
    assert audit_table({"arms": {"x": {}}}) is None
