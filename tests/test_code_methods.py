"""Methods as code in the estimators environment: judged like DSL methods, run only in the sandbox."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ouro.environments.estimators import EstimatorsConfig, method_key, parse_method
from ouro.stats import log_efficiency_gain

from .conftest import ouro

TRIMMED = """
import numpy as np

def estimate_batch(X):
    s = np.sort(X, axis=1)
    k = int(0.2 * X.shape[1])
    return s[:, k:X.shape[1] - k].mean(axis=1)
"""

HUBER = """
import numpy as np

def estimate(x):
    med = np.median(x)
    s = 1.482602218505602 * np.median(np.abs(x - med))
    mu = med
    for _ in range(200):
        r = (x - mu) / s
        psi = np.clip(r, -1.345, 1.345)
        step = s * psi.sum() / max(1, int((np.abs(r) < 1.345).sum()))
        mu = mu + step
        if abs(step) < 1e-12 * s:
            break
    return float(mu)
"""

MEDIAN_OF_MEANS = """
import numpy as np

def estimate_batch(X):
    groups = X[:, : (X.shape[1] // 5) * 5].reshape(X.shape[0], -1, 5)
    return np.median(groups.mean(axis=2), axis=1)
"""


@pytest.fixture(scope="module")
def env():
    return EstimatorsConfig().build()


@pytest.mark.parametrize(
    "source, dsl",
    [(TRIMMED, {"family": "trimmed_mean", "alpha": 0.2}), (HUBER, {"family": "huber", "c": 1.345})],
    ids=["trimmed", "huber"],
)
def test_honest_code_matches_its_dsl_twin_within_standard_error(env, source, dsl):
    code, twin = parse_method({"family": "code", "source": source}), parse_method(dsl)
    ev = env.simulate([code, twin], 400, np.random.default_rng(5))
    assert ev.errors == [None, None]
    gain, se = log_efficiency_gain(ev.baseline, ev.losses)
    assert abs(gain[0] - gain[1]) < 3 * max(se), (gain, se)


def test_simulating_with_code_draws_the_same_data_sets(env):
    """A batch holding code draws its data into the sandbox's memory: the baseline's losses
    are the very ones drawn for a DSL-only batch from the same stream, and the code's
    trimmed mean gives the DSL trimmed mean's losses up to summation order."""
    code, twin = parse_method({"family": "code", "source": TRIMMED}), parse_method({"family": "trimmed_mean", "alpha": 0.2})
    with_code = env.simulate([code, twin], 300, np.random.default_rng(11))
    dsl_only = env.simulate([twin], 300, np.random.default_rng(11))
    np.testing.assert_array_equal(with_code.baseline, dsl_only.baseline)
    np.testing.assert_array_equal(with_code.losses[1], dsl_only.losses[0])
    np.testing.assert_allclose(with_code.losses[0], dsl_only.losses[0], rtol=1e-6, atol=1e-10)


def test_vectorized_median_of_means_runs_and_is_scored(env):
    m = parse_method({"family": "code", "source": MEDIAN_OF_MEANS})
    ev = env.simulate([m], 200, np.random.default_rng(1))
    assert ev.errors == [None] and np.all(np.isfinite(ev.losses))
    q = env.oracle([m])[0]
    assert 1.0 < q < 10.0


@pytest.mark.parametrize(
    "source, reason",
    [
        ("import os\ndef estimate(x):\n    return os.getpid()", "forbidden import 'os'"),
        ("def estimate(x):\n    return float('nan')", "non-finite"),
        ("def estimate(x):\n    while True:\n        pass", "time"),  # CPU limit or wall timeout, whichever first
        ("def estimate_batch(X):\n    return X[:3, 0]", "shape"),
    ],
)
def test_broken_code_is_rejected_with_its_reason_and_never_crashes(env, source, reason):
    from ouro.verifiers import JudgeContext
    from ouro.verifiers.montecarlo import MonteCarloVerifierConfig
    import asyncio

    m = parse_method({"family": "code", "source": source})
    ctx = JudgeContext(env=env, seed=0, generation=0, rng=np.random.default_rng(0))
    verdict = asyncio.run(MonteCarloVerifierConfig(replications=50).build(env).judge([m], ctx))[0]
    assert verdict.accept is False and reason in verdict.rationale
    if reason != "time":  # (the oracle would run the endless loop for another 10 s)
        assert np.isnan(env.oracle([m])[0])


def test_layout_and_comments_do_not_make_a_program_new(env):
    a = parse_method({"family": "code", "source": TRIMMED})
    b = parse_method({"family": "code", "source": "# a comment\n" + TRIMMED.replace("\n\n", "\n\n\n")})
    c = parse_method({"family": "code", "source": MEDIAN_OF_MEANS})
    assert method_key(a) == method_key(b) != method_key(c)
    div = env.diversity([a, b, c, parse_method({"family": "mean"})])
    assert div["families"] == 3.0
    assert div["distinct"] == pytest.approx(3 / 4)


def test_ouro_evaluate_prints_one_json_object(tmp_path):
    f = tmp_path / "trim.py"
    f.write_text(TRIMMED)
    result = ouro("evaluate", "--method-file", str(f), "--replications", "300")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["accepted"] is True and out["verdict"] == "accepted"
    assert out["evidence"]["efficiency"] > 1 and out["oracle_quality"] > 1
    evil = tmp_path / "evil.py"
    evil.write_text("import subprocess\ndef estimate(x):\n    return 0.0\n")
    out = json.loads(ouro("evaluate", "--method-file", str(evil)).stdout)
    assert out["verdict"] == "rejected" and "subprocess" in out["reason"] and out["oracle_quality"] is None


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("gaussian", "error: --env: 'gaussian' has no methods to evaluate; environments with methods: estimators"),
        ("astrology", "error: --env: unknown kind 'astrology'; environments with methods: estimators"),
    ],
)
def test_ouro_evaluate_refuses_an_environment_without_methods_in_one_line(tmp_path, kind, message):
    f = tmp_path / "median.json"
    f.write_text('{"family": "median"}')
    result = ouro("evaluate", "--method-file", str(f), "--env", kind)
    assert result.returncode == 2
    assert result.stderr.strip() == message
