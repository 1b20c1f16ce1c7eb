"""Invalid input at the command line: one line on stderr naming what is wrong, exit 2,
no traceback, and nothing made. Most tests run the command line in this process
(``ouro_here``, typer's runner over the same app); those marked "as a user" run it in a
subprocess."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ouro.config import load_config, load_yaml_text
from ouro.sweep import plan_sweep, prepare_cells

from .conftest import ROOT, ouro, ouro_here

TINY = ["--set", "seeds=1", "--set", "loop.generations=1", "--set", "loop.proposals=2"]
HAS_RAY = importlib.util.find_spec("ray") is not None


def one_line(result, expected: str) -> str:
    """The result failed with exit 2 and one stderr line that contains ``expected``."""
    assert result.returncode == 2, (result.returncode, result.stderr, result.stdout)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ 6: --out


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "afile"
    path.write_text("not a directory\n")
    return path


def test_out_that_is_a_file_or_under_a_file_is_one_line(a_file):
    one_line(ouro_here("run", "--out", str(a_file), *TINY), f"--out {a_file}: it is a file, not a directory")
    under = a_file / "run"
    one_line(ouro_here("run", "--out", str(under), *TINY), f"--out {under}: {a_file} is a file, not a directory")
    assert a_file.read_text() == "not a directory\n"


def test_out_that_cannot_be_created_is_one_line_as_a_user():
    one_line(ouro("run", "--out", "/proc/nope", *TINY), "--out /proc/nope: cannot create it: No such file or directory")


def test_out_that_fails_leaves_no_partial_directory(tmp_path):
    parent = tmp_path / "new"
    out = parent / ("x" * 300)  # the parent can be made; a name this long cannot
    one_line(ouro_here("run", "--out", str(out), *TINY), f"--out {out}: cannot create it: File name too long")
    assert not parent.exists()


def test_sweep_out_that_is_a_file_is_one_line(a_file):
    result = ouro_here("sweep", "configs/default.yaml", "--out", str(a_file), *TINY)
    one_line(result, f"--out {a_file}: it is a file, not a directory")


# ------------------------------------------------------------------ 8: no markup


def test_bracketed_text_in_messages_is_printed_as_it_is_as_a_user():
    one_line(ouro("run", "no/[such]/file.yaml"), "config file not found: no/[such]/file.yaml")


@pytest.mark.skipif(HAS_RAY, reason="Ray is installed")
def test_install_hint_keeps_its_extra(tmp_path):
    out = tmp_path / "sweep"
    one_line(ouro_here("sweep", "configs/default.yaml", "--backend", "ray", "--out", str(out)), "pip install 'ouro[ray]'")
    assert not out.exists()


# ------------------------------------------------------------------ 9: not UTF-8


def test_config_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    one_line(ouro_here("run", str(path)), f"{path}: not UTF-8 text (byte 0xe9 on line 1)")


def test_method_file_that_is_not_utf8_is_one_line_as_a_user(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"family: trimmed_mean\nalpha: \x9d\xff\n")
    one_line(ouro("evaluate", "--method-file", str(path)), f"{path}: not UTF-8 text (byte 0x9d on line 2)")


# ------------------------------------------------------------------ 11: option errors


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--workers", "0"], "error: --workers: Input should be greater than or equal to 1 (see "),
        (["resume", "runs/x", "--workers", "0"], "error: --workers: Input should be greater than or equal to 1"),
        (["evaluate", "--method-file", "m.json", "--replications", "1"], "error: --replications: Input should be greater"),
        (["evaluate", "--replications", "1"], "error: --replications: Input should be greater"),
        (["evaluate"], "error: Missing option '--method-file'"),
        (["run", "--wrkers", "2"], "error: No such option: --wrkers"),
        (["resume"], "error: Missing argument"),
    ],
)
def test_option_errors_are_one_line(args, expected):
    one_line(ouro_here(*args), expected)


def test_option_error_is_one_line_as_a_user_and_help_is_unchanged():
    one_line(ouro("run", "--workers", "0"), "error: --workers: Input should be greater than or equal to 1")
    helped = ouro("run", "--help")
    assert helped.returncode == 0 and "Usage:" in helped.stdout and "--workers" in helped.stdout
    assert len(helped.stdout.splitlines()) > 10


# ------------------------------------------------------------------ 15: sweep options first


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--workers", "0"], "error: --workers: must be >= 1, not 0"),
        (["--workers", "-1"], "error: --workers: must be >= 1, not -1"),
        (["--retries", "-1"], "error: --retries: must be >= 0, not -1"),
        (["--backend", "foo"], "error: --backend: unknown backend 'foo'"),
        (["--address", "localhost:6379"], "error: --address: only the ray backend connects to a cluster"),
    ],
)
def test_sweep_option_errors_come_first_and_make_nothing(tmp_path, args, expected):
    out = tmp_path / "sweep"
    one_line(ouro_here("sweep", "configs/default.yaml", "--out", str(out), *args), expected)
    assert not out.exists()


# ------------------------------------------------------------------ 16: what a path is


@pytest.fixture
def sweep_dir(tmp_path) -> Path:
    """A sweep directory as ``ouro sweep`` lays it out (its cells not run)."""
    out = tmp_path / "sweep"
    prepare_cells(plan_sweep(ROOT / "configs/default.yaml", ["loop.regime=replace,accumulate"]), out)
    return out


def test_show_and_resume_say_what_a_path_is(tmp_path, a_file, sweep_dir):
    missing = tmp_path / "missing"
    one_line(ouro_here("show", str(missing)), f"{missing}: not a run directory: it does not exist")
    one_line(ouro_here("show", str(a_file)), f"{a_file}: not a run directory: it is a file")
    line = one_line(ouro_here("show", str(sweep_dir)), f"{sweep_dir}: a sweep directory, not a run")
    assert f"ouro report {sweep_dir}" in line and "ouro resume" not in line
    line = one_line(ouro_here("resume", str(sweep_dir)), f"{sweep_dir}: a sweep directory, not a run")
    assert "ouro sweep" in line
    one_line(ouro_here("show", str(tmp_path)), f"{tmp_path}: not a run directory (no config.yaml)")
    # the command the hint names reads it as a sweep (here: one whose cells have not run)
    one_line(ouro_here("report", str(sweep_dir)), f"{sweep_dir}: no finished cell yet")


def test_run_on_a_directory_says_it_is_one():
    one_line(ouro_here("run", "configs"), "configs: is a directory, not a config file")


# ------------------------------------------------------------------ 12: unions


@pytest.mark.parametrize(
    "value, expected",
    [
        ("abc", "default.yaml: seeds: Input should be an integer or a list of integers, not 'abc'"),
        ("2.5", "seeds: Input should be an integer or a list of integers, not 2.5"),
        ("{a: 1}", "seeds: Input should be an integer or a list of integers, not {'a': 1}"),
        ("[1, x]", "seeds[1]: Input should be a valid integer"),
    ],
)
def test_a_union_says_what_it_accepts(value, expected):
    line = one_line(ouro_here("run", "--set", f"seeds={value}"), expected)
    assert "constrained" not in line and "list[int]" not in line and "more error" not in line


def test_a_discriminator_value_is_not_part_of_the_path(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"family": "trimmed_mean", "alpha": 3}')
    one_line(ouro_here("evaluate", "--method-file", str(path)), f"{path}: alpha: Input should be less than")


# ------------------------------------------------------------------ 13: bracket paths


def test_set_accepts_the_paths_errors_print():
    line = one_line(ouro_here("run", "--set", "arms[3].verifier.alpha=1.5"), "arms[3].verifier.alpha: Input should be less than 1")
    path = line.split(": ")[2]
    cfg = load_config(None, [f"{path}=0.1", "arms[oracle].name=truth", "seeds=[0, 2]", "seeds[1]=5"])
    by_name = {a.name: a for a in cfg.arms}
    assert by_name["montecarlo"].verifier.alpha == 0.1 and by_name["truth"].verifier.kind == "oracle"
    assert cfg.seed_list == [0, 5]
    assert load_config(None, ["arms.3.verifier.alpha=0.1"]) == load_config(None, ["arms[3].verifier.alpha=0.1"])


def test_bracket_paths_work_in_a_grid():
    plan = plan_sweep(ROOT / "configs/default.yaml", ["arms[montecarlo].verifier.replications=10,20"])
    assert len(plan.cells) == 2 and "replications: 20" in plan.cells[1].config_text


def test_a_malformed_key_is_one_line():
    one_line(ouro_here("run", "--set", "arms[3.verifier.alpha=1"), "--set arms[3.verifier.alpha: not a key")


# ------------------------------------------------------------------ 18: duplicate keys


def test_a_key_given_twice_is_one_line_naming_key_and_file(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text((ROOT / "configs/default.yaml").read_text() + "name: other\n")
    line = one_line(ouro_here("run", str(path)), f"{path}: name: key given twice (lines ")
    nested = tmp_path / "nested.yaml"
    nested.write_text("name: x\narms:\n  - name: a\n    verifier: {kind: none, kind: oracle}\n")
    one_line(ouro_here("run", str(nested)), f"{nested}: arms[0].verifier.kind: key given twice (on line 4)")
    assert line


def test_a_key_given_twice_in_a_set_value_or_method_file(tmp_path):
    one_line(ouro_here("run", "--set", "environment.dgp={kind: normal, kind: laplace}"), "--set environment.dgp: 'kind' is given twice")
    path = tmp_path / "m.json"
    path.write_text('{"family": "trimmed_mean", "alpha": 0.1, "alpha": 0.2}')
    one_line(ouro_here("evaluate", "--method-file", str(path)), f"{path}: alpha: key given twice (on line 1)")


def test_yaml_merge_keys_are_not_duplicates():
    # merge a mapping and override one of its keys: legal YAML, and no key given twice
    data = load_yaml_text("base: &b {a: 1, b: 2}\nmine: {<<: *b, b: 3}\n")
    assert data["mine"] == {"a": 1, "b": 3}


# ------------------------------------------------------------------ 14: booleans are not numbers


@pytest.mark.parametrize(
    "override, expected",
    [
        ("loop.generations=true", "loop.generations: Input should be a number, not a boolean"),
        ("loop.generations=false", "loop.generations: Input should be a number, not a boolean"),
        ("arms.montecarlo.verifier.alpha=true", "arms[3].verifier.alpha: Input should be a number, not a boolean"),
        ("cost_limit_usd=true", "cost_limit_usd: Input should be a number, not a boolean"),
        ("seeds=[0, true]", "seeds[1]: Input should be a number, not a boolean"),
    ],
)
def test_a_boolean_is_not_a_number(override, expected):
    one_line(ouro_here("run", "--set", override), expected)


def test_a_boolean_is_not_a_number_in_a_yaml_file_or_a_method(tmp_path):
    path = tmp_path / "bool.yaml"
    path.write_text((ROOT / "configs/default.yaml").read_text().replace("n: 50", "n: true"))
    one_line(ouro_here("run", str(path)), f"{path}: environment.n: Input should be a number, not a boolean")
    method = tmp_path / "m.json"
    method.write_text('{"family": "trimmed_mean", "alpha": true}')
    one_line(ouro_here("evaluate", "--method-file", str(method)), f"{method}: alpha: Input should be a number, not a boolean")
    one_line(ouro_here("evaluate", "--method-file", str(method), "--set", "n=true"), "environment: n: Input should be a number, not a boolean")


def test_configs_with_real_booleans_still_load():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        text = path.read_text()
        if "true" in text or "false" in text:
            if "sweep:" in text:
                assert plan_sweep(path).cells
            else:
                assert load_config(path)
