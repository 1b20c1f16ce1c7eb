"""The recursive Gaussian fit against its closed forms, through the whole loop.

Every check compares a mean over seeds with its theoretical value within 3 standard
errors; the standard error is the theoretical one where the variance has a closed
form, else the sample's. Settings are fixed in advance (seeds 0..S-1).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ouro.config import ConfigError, validate
from ouro.environments import gaussian as G
from ouro.runner import prepare_run_dir
from tests.closed_form_runs import run, within_3se


NONE = [{"name": "none", "verifier": {"kind": "none"}}]


def gaussian(variance: str, regime: str, n: int, seeds: int, generations: int, **loop) -> dict:
    return {
        "seeds": seeds,
        "environment": {"kind": "gaussian", "variance": variance},
        "loop": {"generations": generations, "proposals": n, "regime": regime, **loop},
        "arms": NONE,
    }


def test_replace_unbiased_log_variance_drifts_down_and_mean_wanders(tmp_path):
    n, seeds = 10, 1000
    m = run(tmp_path, gaussian("unbiased", "replace", n, seeds, 15))["none"]
    for g in (0, 7, 14):
        se = float(np.sqrt(G.var_log_sigma2(g, n) / seeds))
        within_3se(m["log_sigma2"][:, g], float(G.expected_log_sigma2(g, n)), se)
        within_3se(m["mu"][:, g] ** 2, float(G.expected_mu2_replace(g, n)))
    # the median variance decays like exp(-g/(n-1)): sigma^2 -> 0 almost surely
    assert np.median(m["sigma2"][:, 14]) < np.exp(-14 / (n - 1)) * 1.2 < 1


def test_replace_mle_variance_decays_geometrically(tmp_path):
    n, seeds = 10, 1000
    m = run(tmp_path, gaussian("mle", "replace", n, seeds, 15))["none"]
    for g in (0, 7, 14):
        within_3se(m["sigma2"][:, g], float(G.expected_sigma2_mle(g, n)))


@pytest.mark.parametrize("variance", ["unbiased", "mle"])
def test_accumulate_does_not_collapse(tmp_path, variance):
    n, seeds, generations = 10, 1000, 15
    m = run(tmp_path, gaussian(variance, "accumulate", n, seeds, generations))["none"]
    v, mu2 = G.accumulate_moments(generations, n, variance)
    for g in (0, 7, 14):
        within_3se(m["sigma2"][:, g], v[g])
        within_3se(m["mu"][:, g] ** 2, mu2[g])
    # no collapse: E[sigma^2] loses at most a factor 1 - (pi^2/6 - 1)/(n - 1) after the
    # first fit, and E[mu^2] stays below pi^2/(6n)
    assert v[-1] >= v[0] * (1 - (np.pi**2 / 6 - 1) / (n - 1)) and mu2[-1] < np.pi**2 / (6 * n)


def test_mix_keeps_the_variance_away_from_zero(tmp_path):
    m = run(tmp_path, gaussian("unbiased", "mix", 10, 200, 40, real_fraction=0.5))["none"]
    assert m["sigma2"][:, -1].mean() > 0.6  # the median under replace is exp(-40/9) ~ 0.01 by now


def test_verifiers_self_judge_speeds_collapse_montecarlo_resists_it(tmp_path):
    data = gaussian("unbiased", "replace", 50, 60, 30)
    data["arms"] = NONE + [
        {"name": "self", "verifier": {"kind": "model", "judge": "self", "keep": 0.5}},
        {"name": "mc", "verifier": {"kind": "montecarlo", "replications": 200, "alpha": 0.05}},
    ]
    m = run(tmp_path, data)
    # E[sigma^2] stays 1 without a verifier (a martingale): compare the typical, log, scale
    end = {arm: m[arm]["log_sigma2"][:, -1].mean() for arm in m}
    # keeping the likelier half truncates the tails: sigma^2 shrinks ~3x per generation,
    # against a drift of ln sigma^2 by -0.62 in 30 generations without a verifier (se 0.14)
    assert end["self"] < 30 * np.log(0.5) < end["none"] < 0
    # a two-sample test against fresh real draws keeps the fit near N(0, 1)
    assert abs(end["mc"]) < 0.2 and m["mc"]["w2"][:, -1].mean() < m["none"]["w2"][:, -1].mean() / 2
    assert (m["mc"]["cost_replications"] == 200).all()
    assert m["self"]["accept_rate"].mean() == pytest.approx(0.5)
    assert "accept_rate" not in m["none"] and "tp" not in m["none"]


def test_a_seed_does_not_depend_on_the_seeds_beside_it(tmp_path):
    data = gaussian("unbiased", "mix", 7, 6, 5, real_fraction=0.3)
    data["arms"] = [{"name": "mc", "verifier": {"kind": "montecarlo", "replications": 20, "alpha": 0.2}}]
    many = run(tmp_path, data, "many")["mc"]
    one = run(tmp_path, {**data, "seeds": [3]}, "one")["mc"]
    for k in many:
        assert np.array_equal(many[k][3], one[k][0]), k


def test_record_every_thins_metrics_and_resume_replays_exactly(tmp_path):
    """A process that dies anywhere in a generation loses nothing: a fresh cohort (a new
    process) continues from the last record holding a state and replays the rest."""
    from ouro.cohort import STAGES, build_cohort

    data = gaussian("unbiased", "accumulate", 8, 4, 11, record_every=4)
    data["arms"] = [{"name": "self", "verifier": {"kind": "model", "judge": "self", "keep": 0.75}}]
    config = validate({"name": "t", "researcher": {"kind": "statistical"}, **data})

    def drive(out: Path, stop: tuple[int, str] | None) -> None:
        cohort = build_cohort(config, "self", out)
        for g in range(config.loop.generations):
            for stage in STAGES:
                if out.joinpath("arms", "self", f"gen-{g:06d}.jsonl").exists():
                    break  # finished before the crash
                if stop == (g, stage):
                    return
                getattr(cohort, stage)(g)

    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    for out in (whole, crashed):
        prepare_run_dir(config, out)
    drive(whole, None)
    drive(crashed, (6, "curate"))  # dies after verify of generation 6
    drive(crashed, None)
    for g in range(11):
        a = (whole / "arms" / "self" / f"gen-{g:06d}.jsonl").read_text()
        b = (crashed / "arms" / "self" / f"gen-{g:06d}.jsonl").read_text()
        assert a == b
    recorded = [g for g in range(11) if '"state"' in (whole / "arms" / "self" / f"gen-{g:06d}.jsonl").read_text()]
    assert recorded == [0, 4, 8, 10]
    shutil.rmtree(tmp_path)


def test_config_contract_and_errors(tmp_path):
    m = run(tmp_path, gaussian("unbiased", "replace", 5, 2, 2))["none"]
    assert set(m) == {"mu", "sigma2", "log_sigma2", "w2"}
    with pytest.raises(ConfigError, match="needs 'good'"):
        data = gaussian("unbiased", "replace", 5, 2, 2)
        run(tmp_path, {**data, "arms": [{"name": "n", "verifier": {"kind": "noisy", "tpr": 0.9, "fpr": 0.1}}]}, "bad")
    with pytest.raises(ConfigError, match="loop.proposals"):
        run(tmp_path, gaussian("unbiased", "replace", 1, 2, 2), "small")
