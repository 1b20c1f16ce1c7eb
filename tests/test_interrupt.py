"""Ctrl-C stops a model-backed run at once: no more paid calls, one message, exit 130.

The run is a real ``ouro run`` process in its own process group, and the Ctrl-C is what
a terminal sends: SIGINT to the whole group, worker processes included. The model is a
fake OpenAI-compatible server on 127.0.0.1 that answers each call after a delay, so
calls are always in flight when the signal comes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ouro import interrupt
from tests.model_answers import ModelAnswers
from tests.providers.fake_servers import FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
MODEL = "Qwen/Qwen2.5-7B-Instruct"  # the name configs/vllm-local.yaml asks for
CONCURRENCY = 2
DELAY_S = 0.3


def start_run(server, run_dir: Path, workers: int, generations: int = 40) -> subprocess.Popen:
    overrides = [
        f"researcher.model.base_url={server.sdk_base_url}",
        f"researcher.model.concurrency={CONCURRENCY}",
        "seeds=2",
        f"loop.generations={generations}",
        "loop.proposals=4",
    ]
    args = [sys.executable, "-m", "ouro.cli", "run", str(ROOT / "configs/vllm-local.yaml"), "--quiet", "--no-report"]
    for o in overrides:
        args += ["--set", o]
    args += ["--out", str(run_dir), "--workers", str(workers)]
    return subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=sigint_default,
    )


def sigint_default() -> None:
    """SIGINT as a terminal's process has it, even where these tests run with it ignored
    (a background job of a shell without job control), which exec would pass on."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_requests(server, count: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while server.requests < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"only {server.requests} requests"
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_model_calls_and_resume_finishes(tmp_path, workers):
    run_dir = tmp_path / "run"
    with FakeOpenAI(models=[MODEL], responder=ModelAnswers(), delay=DELAY_S) as server:
        proc = start_run(server, run_dir, workers)
        wait_for_requests(server, 12, proc)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        at_signal = server.requests
        _, stderr = proc.communicate(timeout=60)
        after = server.requests - at_signal
        time.sleep(2 * DELAY_S)  # a call still being sent would arrive by now
        assert server.requests - at_signal == after

    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert f"ouro resume {run_dir}" in stderr
    # Each running arm may start at most one call per slot that frees up before it sees
    # the stop (it looks every POLL_SECONDS, shorter than a call): `CONCURRENCY` per arm.
    assert after <= CONCURRENCY * workers, after
    assert len(list(run_dir.glob("arms/*/gen-*.jsonl"))) < 3 * 40  # it stopped well before the end


def test_resume_after_ctrl_c_finishes_the_run(tmp_path):
    run_dir = tmp_path / "run"
    with FakeOpenAI(models=[MODEL], responder=ModelAnswers(), delay=0.05) as server:
        proc = start_run(server, run_dir, workers=1, generations=3)
        wait_for_requests(server, 6, proc)
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=60)
        assert proc.returncode == 130
        resumed = subprocess.run(
            [sys.executable, "-m", "ouro.cli", "resume", str(run_dir), "--quiet", "--no-report"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
    assert resumed.returncode == 0, resumed.stderr
    generations = {line.split(",")[2] for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]}
    assert generations == {"0", "1", "2"}


def test_cancellable_cancels_the_calls_in_flight_when_asked_to_stop():
    stop = threading.Event()
    cancelled = []

    async def call(i: int) -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    async def calls() -> list[int]:
        return await asyncio.gather(*(call(i) for i in range(3)))

    threading.Timer(0.2, stop.set).start()
    interrupt.install(stop)
    try:
        with pytest.raises(interrupt.RunInterrupted):
            asyncio.run(interrupt.cancellable(calls()))
    finally:
        interrupt.install(None)
    assert sorted(cancelled) == [0, 1, 2]


def test_cancellable_without_a_stop_event_just_awaits():
    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    interrupt.install(None)
    assert asyncio.run(interrupt.cancellable(value())) == 7


def children_of(pid: int) -> set[int]:
    """Live processes whose parent is ``pid`` (from /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_kill_9_of_a_run_leaves_no_worker_running(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ouro.cli", "run", "--quiet", "--no-report", "--workers", "2",
         "--set", "loop.generations=400", "--out", str(tmp_path / "run")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("run/arms/*/gen-*.jsonl")):  # the workers are computing
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        workers = {c for c in children_of(proc.pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()}
        assert len(workers) == 2  # the two workers (not multiprocessing's resource tracker)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if alive(w)]
    finally:
        proc.kill()
        for w in workers:
            if alive(w):
                os.kill(w, signal.SIGKILL)
