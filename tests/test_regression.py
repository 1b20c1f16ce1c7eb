"""Recursive least squares against its closed forms: replace adds errors, accumulate damps them.

Means over seeds are compared with theory within 3 sample standard errors. Settings
fixed in advance: d = 4, T = 12 (so T - d - 1 = 7), noise 1.
"""

from __future__ import annotations

import numpy as np
import pytest

from ouro.config import ConfigError
from ouro.environments import regression as R
from tests.closed_form_runs import run, within_3se


D, T, SEEDS, GENERATIONS = 4, 12, 1000, 8


def regression(design: str, regime: str, **loop) -> dict:
    return {
        "seeds": SEEDS,
        "environment": {"kind": "regression", "dim": D, "noise": 1.0, "design": design},
        "loop": {"generations": GENERATIONS, "proposals": T, "regime": regime, **loop},
        "arms": [{"name": "none", "verifier": {"kind": "none"}}],
    }


@pytest.mark.parametrize("design", ["fixed", "fresh"])
def test_replace_test_error_grows_linearly(tmp_path, design):
    e = run(tmp_path, regression(design, "replace"))["none"]["test_error"]
    for g in (0, 3, 7):
        within_3se(e[:, g], float(R.expected_test_error_replace(g, D, T, 1.0)))


def test_accumulate_fixed_design_stays_below_pi2_over_6(tmp_path):
    e = run(tmp_path, regression("fixed", "accumulate"))["none"]["test_error"]
    for g in (0, 3, 7):
        within_3se(e[:, g], float(R.expected_test_error_accumulate(g, D, T, 1.0)))
    assert R.expected_test_error_accumulate(10_000, D, T, 1.0) < np.pi**2 / 6 * R.real_data_error(D, T, 1.0)


def test_accumulate_fresh_design_is_bounded_too(tmp_path):
    """No closed form: measured, it stays below the fixed-design value (more distinct
    rows), and approaches it only when T >> d (docs/literature.md has the table)."""
    e = run(tmp_path, {**regression("fresh", "accumulate"), "seeds": 300})["none"]["test_error"][:, -1]
    fixed = float(R.expected_test_error_accumulate(GENERATIONS - 1, D, T, 1.0))
    assert e.mean() < fixed < np.pi**2 / 6 * R.real_data_error(D, T, 1.0)


def test_verifiers_and_mix(tmp_path):
    data = regression("fixed", "replace")
    # filters leave fewer rows: with T = 12 a seed may refit on 4 rows in 4 dimensions
    data.update(seeds=100, loop={**data["loop"], "proposals": 50})
    data["arms"] = [
        {"name": "none", "verifier": {"kind": "none"}},
        {"name": "oracle", "verifier": {"kind": "oracle"}},
        {"name": "noisy", "verifier": {"kind": "noisy", "tpr": 0.9, "fpr": 0.3}},
        {"name": "self", "verifier": {"kind": "model", "judge": "self", "keep": 0.75}},
    ]
    m = run(tmp_path, data)
    end = {arm: m[arm]["test_error"][:, -1].mean() for arm in m}
    # the oracle keeps labels near the truth; the self-judge only trims its own noise
    assert end["oracle"] < end["noisy"] < end["none"]
    assert end["self"] < end["none"]
    assert (m["oracle"]["fp"] == 0).all() and (m["oracle"]["fn"] == 0).all()
    mix = run(tmp_path, {**data, "arms": data["arms"][:1], "loop": {**data["loop"], "regime": "mix", "real_fraction": 0.5}}, "mix")
    assert mix["none"]["test_error"][:, -1].mean() < end["none"]


def test_a_seed_does_not_depend_on_the_seeds_beside_it(tmp_path):
    data = regression("fresh", "mix", real_fraction=0.25)
    data.update(seeds=5, arms=[{"name": "noisy", "verifier": {"kind": "noisy", "tpr": 0.8, "fpr": 0.2}}])
    many = run(tmp_path, data, "many")["noisy"]
    one = run(tmp_path, {**data, "seeds": [2]}, "one")["noisy"]
    for k in many:
        assert np.array_equal(many[k][2], one[k][0]), k


def test_too_few_proposals_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="dim \\+ 2"):
        run(tmp_path, {**regression("fixed", "replace"), "loop": {"generations": 2, "proposals": D + 1}})
