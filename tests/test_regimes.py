"""The regimes build the pools they claim, from the verdicts of one generation."""

from __future__ import annotations

import pytest

from ouro.cohort import MethodCohort
from ouro.config import load_config
from ouro.runner import prepare_run_dir


def _cohort(tmp_path, regime: str, arm: str = "oracle", extra=()):
    cfg = load_config(None, ["seeds=2", "loop.proposals=20", "loop.generations=3", f"loop.regime={regime}", *extra])
    prepare_run_dir(cfg, tmp_path)
    return MethodCohort(cfg, arm, tmp_path)


def _generation(c: MethodCohort, g: int):
    c.propose(g)
    c.verify(g)
    c.curate(g)
    return c._get(g, "proposals"), c._get(g, "verdicts"), c._get(g, "pools")


def test_replace_keeps_only_this_generations_accepted(tmp_path):
    c = _cohort(tmp_path, "replace")
    proposals, verdicts, pools = _generation(c, 0)
    for s in c.seeds:
        accepted = [m for m, v in zip(proposals[s], verdicts[s]) if v.accept]
        assert pools[s] == accepted
        assert all(m.family != "mean" for m in pools[s])  # the oracle arm never accepts the baseline


def test_accumulate_keeps_the_real_data_and_everything_accepted(tmp_path):
    c = _cohort(tmp_path, "accumulate")
    real = c._previous_pools(0)
    _, _, pools0 = _generation(c, 0)
    c.learn(0)
    c.measure(0)
    proposals1, verdicts1, pools1 = _generation(c, 1)
    for s in c.seeds:
        assert pools0[s][: len(real[s])] == real[s]
        accepted1 = [m for m, v in zip(proposals1[s], verdicts1[s]) if v.accept]
        assert pools1[s] == pools0[s] + accepted1


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_mix_holds_the_real_fraction(tmp_path, fraction):
    c = _cohort(tmp_path, "mix", arm="none", extra=[f"loop.real_fraction={fraction}"])
    proposals, _, pools = _generation(c, 0)
    corpus_keys = {c.env.method_key(m) for m in c.env.real_data(None)}
    for s in c.seeds:
        n_real = len(pools[s]) - len(proposals[s])  # `none` accepts all proposals, which come first
        assert pools[s][: len(proposals[s])] == proposals[s]
        assert n_real == round(len(proposals[s]) * fraction / (1 - fraction))
        assert {c.env.method_key(m) for m in pools[s][len(proposals[s]) :]} <= corpus_keys


def test_an_empty_pool_leaves_the_researcher_unchanged(tmp_path):
    cfg = load_config(None, ["seeds=1", "loop.proposals=5", "arms.none.verifier.kind=oracle", "arms.none.verifier.target=incumbent"])
    prepare_run_dir(cfg, tmp_path)
    c = MethodCohort(cfg, "none", tmp_path)
    c.propose(0)
    before = c.researchers[0].state()
    c._put(0, "pools", {0: []})
    c.learn(0)
    assert c._get(0, "states")[0] == before
