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
