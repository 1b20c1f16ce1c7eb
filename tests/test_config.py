"""Config validation and overrides: one line naming the field, exit 2, no traceback."""

from __future__ import annotations

import pytest

from ouro.config import ConfigError, apply_override, load_config

from .conftest import ouro


def test_default_config_loads_with_five_named_arms():
    cfg = load_config()
    assert [a.name for a in cfg.arms] == ["none", "self-judge", "surrogate", "montecarlo", "oracle"]
    assert cfg.environment.dgp[0].kind == "contaminated"
    assert cfg.seed_list == list(range(cfg.seeds))


def test_overrides_reach_nested_fields_and_arms_by_name():
    cfg = load_config(None, ["loop.generations=5", "environment.n=30", "arms.montecarlo.verifier.replications=50", "seeds=[3, 5]"])
    assert cfg.loop.generations == 5 and cfg.environment.n == 30
    assert next(a for a in cfg.arms if a.name == "montecarlo").verifier.replications == 50
    assert cfg.seed_list == [3, 5]


def test_override_by_index():
    data = {"arms": [{"name": "a", "verifier": {"kind": "none"}}]}
    apply_override(data, "arms.0.verifier.kind=oracle")
    assert data["arms"][0]["verifier"]["kind"] == "oracle"
    with pytest.raises(ConfigError, match="index out of range"):
        apply_override(data, "arms.3.name=x")


@pytest.mark.parametrize(
    "override, expected",
    [
        ("loop.generationz=3", "loop.generationz: unknown key"),
        ("loop.generations=many", "loop.generations: Input should be a valid integer"),
        ("loop.generations=0", "loop.generations: Input should be greater than or equal to 1"),
        ("environment.dgp.eps=3", "environment.dgp.eps: Input should be less than or equal to 1"),
        ("environment.dgp={kind: normal, eps: 0.1}", "environment.dgp.eps: unknown key"),
        ("environment.kind=astrology", "unknown kind 'astrology'; known kinds: "),
        ("arms.montecarlo.verifier.alpha=2", "arms[3].verifier.alpha: Input should be less than 1"),
        ("arms.oracle.verifier.kind=psychic", "arms[4].verifier: unknown kind 'psychic'; known kinds: "),
        ("loop.regime=mix", "loop: regime 'mix' needs real_fraction > 0"),
        ("seeds=0", "seeds"),
        ("arms.1.name=none", "arms: arm names must be unique; repeated: none"),
    ],
)
def test_invalid_config_is_one_line_naming_the_field(override, expected):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--set", "loop.generations=-1", "--quiet"], "loop.generations"),
        (["run", "no/such/file.yaml"], "config file not found: no/such/file.yaml"),
        (["run", "--set", "environment.n=abc"], "environment.n"),
        (["run", "--set", "noequals"], "expected KEY=VALUE"),
        (["resume", "/nonexistent/run"], "not a run directory"),
        # a base URL the SDK would take for a path (and retry as "transient" at every call)
        (["run", "configs/openai.yaml", "--set", "researcher.model.base_url=not-a-url"],
         "configs/openai.yaml: researcher.model.base_url: 'not-a-url' is not an http:// or https:// URL"),
        # a judge's provider block, under a verifier whose kind is also named `model`
        (["run", "configs/openai.yaml", "--set", "arms.gpt-judge.verifier.model.base_url=localhost:8000"],
         "configs/openai.yaml: arms[1].verifier.model.base_url: 'localhost:8000' is not"),
    ],
)
def test_cli_reports_bad_input_in_one_line_with_exit_2(args, expected):
    result = ouro(*args)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_researcher_missing_its_extra_is_refused_in_one_line_before_anything_runs(tmp_path, monkeypatch):
    """The local-lm researcher without its train extra: one line naming the field and the
    install command, exit 2, and no run directory (a module that no Python has stands in
    for a missing torch)."""
    from ouro.agents.lora import researcher

    from .conftest import ouro_here

    monkeypatch.setattr(researcher, "TRAIN_MODULES", (*researcher.TRAIN_MODULES, "ouro_missing_module_for_a_test"))
    out = tmp_path / "run"
    result = ouro_here("run", "configs/lora-tiny.yaml", "--out", str(out), "--quiet")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: researcher: researcher 'local-lm' needs the train extra")
    assert "missing: ouro_missing_module_for_a_test" in lines[0] and "pip install 'ouro[train]'" in lines[0]
    assert not out.exists()
