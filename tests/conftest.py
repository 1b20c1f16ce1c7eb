"""Shared fixtures: an oracle cache inside the repository's pytest cache, and small configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("OURO_CACHE_DIR", str(ROOT / ".pytest_cache" / "ouro-cache"))

OURO = [sys.executable, "-m", "ouro.cli"]


def ouro(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run the ``ouro`` command line as a user would, in a subprocess."""
    return subprocess.run([*OURO, *args], capture_output=True, text=True, timeout=timeout, cwd=kw.pop("cwd", ROOT), **kw)


SMALL = [
    "--set", "seeds=2",
    "--set", "loop.generations=4",
    "--set", "loop.proposals=12",
]  # fmt: skip


@pytest.fixture
def small_overrides() -> list[str]:
    return list(SMALL)


def ouro_here(*args: str) -> subprocess.CompletedProcess:
    """The command line run in this process (typer's test runner), for tests that make
    several short runs: the same code path as ``ouro``, without paying the interpreter's
    start-up and imports (about 3 s of CPU) for each. Relative paths resolve from the
    repository root, as for ``ouro()``."""
    from typer.testing import CliRunner

    from ouro.cli import app

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        result = CliRunner().invoke(app, list(args))
    finally:
        os.chdir(cwd)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


SCRIPTED = "configs/scripted.yaml"
SCRIPTED_SMALL = [
    "--set", "seeds=2",
    "--set", "loop.generations=3",
    "--set", "loop.proposals=6",
]  # fmt: skip


@pytest.fixture(scope="session")
def scripted_run(tmp_path_factory) -> Path:
    """One small offline LLM run (configs/scripted.yaml), shared by the tests that read it."""
    out = tmp_path_factory.mktemp("scripted") / "run"
    result = ouro("run", SCRIPTED, "--out", str(out), "--quiet", *SCRIPTED_SMALL)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy keys in the variables the providers read (the loopback servers accept any)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
