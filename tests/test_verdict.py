"""The arm verdict rules, exactly as the README states them, and no verdict without data."""

import csv
import json
import math
from pathlib import Path

import pytest

from ouro.summary import summarize_arm
from ouro.verdict import arm_verdict
from tests.conftest import ouro
from tests.model_answers import ModelAnswers
from tests.providers.fake_servers import FakeOpenAI

NAN = math.nan


@pytest.mark.parametrize(
    "delta, ci, div_start, div_end, expected",
    [
        (0.3, (0.1, 0.5), 1.7, 0.1, "improved"),  # quality first: improved even though diversity collapsed
        (-0.3, (-0.5, -0.1), 1.7, 1.7, "degraded"),
        (0.05, (-0.2, 0.3), 1.7, 0.85, "collapsed"),  # fell by exactly half
        (0.05, (-0.2, 0.3), 1.7, 0.86, "stable"),
        (0.15, (0.0, 0.3), 1.7, 1.6, "stable"),  # a CI touching 0 is not above 0
        (0.1, (NAN, NAN), 1.7, 0.2, "collapsed"),  # one seed: no CI, only diversity can speak
        (0.1, (NAN, NAN), 0.0, 0.0, "stable"),  # a real 0 (one family from the start) cannot fall
        # no data to decide: no verdict
        (NAN, (NAN, NAN), 1.7, 0.2, None),  # no seed has a quality at both ends
        (NAN, (NAN, NAN), NAN, NAN, None),
        (0.05, (-0.2, 0.3), NAN, 0.85, None),  # no diversity at the start: collapsed or stable is unknown
        (0.05, (-0.2, 0.3), 1.7, NAN, None),
        (0.3, (0.1, 0.5), NAN, 1.0, "improved"),  # quality decides without diversity
        (-0.3, (-0.5, -0.1), 1.7, NAN, "degraded"),
    ],
)
def test_rules(delta, ci, div_start, div_end, expected):
    assert arm_verdict(delta, ci, div_start, div_end) == expected


def metrics_of(quality: dict[int, list[float]], entropy: dict[int, list[float]]) -> dict:
    """metrics[metric][seed][generation], as summary.read_metrics gives them."""
    return {
        "quality_mean": {s: dict(enumerate(v)) for s, v in quality.items()},
        "entropy": {s: dict(enumerate(v)) for s, v in entropy.items()},
    }


@pytest.mark.parametrize(
    "quality, entropy, missing",
    [
        # generation 0 had no valid proposal in any seed (every call failed), later ones did
        ({0: [NAN, 6.0], 1: [NAN, 6.2]}, {0: [NAN, 1.6], 1: [NAN, 1.6]}, "no valid proposals at generation 0"),
        # nothing valid at all, over two generations
        ({0: [NAN, NAN], 1: [NAN, NAN]}, {0: [NAN, NAN], 1: [NAN, NAN]},
         "no valid proposals at generation 0; no valid proposals at the last generation (1)"),
        # the run stopped after generation 0: its start is its end, said once
        ({0: [NAN], 1: [NAN]}, {0: [NAN], 1: [NAN]}, "no valid proposals at generation 0"),
        # valid proposals, but none the oracle could evaluate (code that failed in the sandbox)
        ({0: [5.0, NAN], 1: [5.1, NAN]}, {0: [1.7, 0.6], 1: [1.7, 0.0]},
         "no proposals the oracle could evaluate at the last generation (1)"),
        # each seed has one end only: nothing to pair
        ({0: [5.0, NAN], 1: [NAN, 6.0]}, {0: [1.7, NAN], 1: [NAN, 1.0]},
         "no seed has a quality_mean at both generation 0 and the last generation (1)"),
    ],
)  # fmt: skip
def test_an_arm_without_the_data_to_decide_has_no_verdict_and_says_what_is_missing(quality, entropy, missing):
    arm = summarize_arm(metrics_of(quality, entropy), "quality_mean", "entropy")
    assert arm["verdict"] is None
    assert arm["verdict_missing"] == missing


def test_missing_diversity_is_reported_as_missing_never_as_0():
    # generation 0 valid in both seeds; the last one valid in one seed only, so its
    # quality change has no interval, and only diversity could speak, which is missing
    arm = summarize_arm(metrics_of({0: [5.0, 5.5], 1: [5.2, NAN]}, {0: [1.7, NAN], 1: [1.6, NAN]}), "quality_mean", "entropy")
    assert arm["verdict"] is None
    assert arm["verdict_missing"] == "no valid proposals at the last generation (1)"
    assert arm["diversity"]["entropy"]["start"] == pytest.approx(1.65) and arm["diversity"]["entropy"]["end"] is None
    # the same arm with real data decides as ever, and says nothing is missing
    arm = summarize_arm(metrics_of({0: [5.0, 5.5], 1: [5.2, 5.3]}, {0: [1.7, 0.1], 1: [1.6, 0.2]}), "quality_mean", "entropy")
    assert (arm["verdict"], arm["verdict_missing"]) == ("collapsed", None)


def test_no_methods_have_nan_diversity_not_0():
    from ouro.environments.estimators import EstimatorsConfig

    env = EstimatorsConfig().build()
    assert all(math.isnan(v) for v in env.diversity([]).values())
    assert set(env.diversity([])) == set(env.diversity([env.parse_method({"family": "mean"})] * 2))


def test_a_run_whose_generation_0_failed_has_no_verdict_anywhere(tmp_path: Path):
    """The model answers generation 0 with an HTML page (every call). With the default
    failure share the arm stops there, in one line (resume would redo it); with a share of
    1 the generation is kept, all invalid, and generation 1 is valid. Start quality and
    diversity are then missing, not 0, and every output says there is no verdict, and why."""
    args = [
        "--set", "researcher.model.max_attempts=1",
        "--set", "seeds=2", "--set", "loop.generations=2", "--set", "loop.proposals=2",
        "--set", "arms=[{name: none, verifier: {kind: none}}]",
    ]  # fmt: skip
    model = "Qwen/Qwen2.5-7B-Instruct"
    with FakeOpenAI(["garbled"] * 4, models=[model], responder=ModelAnswers()) as server:
        url = ["--set", f"researcher.model.base_url={server.sdk_base_url}"]
        stopping = ouro("run", "configs/vllm-local.yaml", "--out", str(tmp_path / "stops"), "--quiet", *url, *args)
    assert stopping.returncode == 4, stopping.stderr
    # the stop names the garbled reply in one line, without pydantic's report
    (stopped,) = [line for line in stopping.stderr.splitlines() if "stopped:" in line]
    assert "502 Bad Gateway" in stopped and "ouro resume" in stopped
    assert "pydantic" not in stopping.stderr and "validation error" not in stopping.stderr

    out = tmp_path / "run"
    with FakeOpenAI(["garbled"] * 4, models=[model], responder=ModelAnswers()) as server:
        url = ["--set", f"researcher.model.base_url={server.sdk_base_url}", "--set", "researcher.max_failed_share=1.0"]
        kept = ouro("run", "configs/vllm-local.yaml", "--out", str(out), "--quiet", *url, *args)
    assert kept.returncode == 0, kept.stderr

    rows = list(csv.DictReader(open(out / "metrics.csv")))
    entropy = {(r["seed"], r["generation"]): float(r["value"]) for r in rows if r["metric"] == "entropy"}
    assert math.isnan(entropy[("0", "0")]) and math.isnan(entropy[("1", "0")])
    assert entropy[("0", "1")] > 0 and entropy[("1", "1")] > 0

    arm = json.loads((out / "summary.json").read_text())["arms"]["none"]
    assert arm["verdict"] is None and arm["verdict_missing"] == "no valid proposals at generation 0"
    assert arm["quality"]["start"] is None and arm["quality"]["end"] > 0
    assert arm["diversity"]["entropy"]["start"] is None and arm["diversity"]["entropy"]["end"] > 0
    table = " ".join(kept.stdout.split())
    assert "no verdict for none: no valid proposals at generation 0" in table
    assert "stable" not in table and "0 →" not in table
    report = (out / "report.md").read_text()
    assert "| none | none | – (no valid proposals at generation 0) | – → " in report
