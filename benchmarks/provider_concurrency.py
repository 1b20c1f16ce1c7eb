"""Throughput of the provider layer against a local fake OpenAI server.

The server answers each request after 100 ms, so with ``c`` requests in flight the ideal
is ``c * 10`` calls a second; the ratio to that ideal shows what the client side (SDK,
retry loop, semaphore, validation) costs. A second figure times sequential calls to a
server that answers at once: the client-side cost of a call, wall and CPU milliseconds,
through the provider and through the bare SDK (``chat.completions.create`` on the same
client and transport).

The server runs in a process of its own (``http.server`` threads, Nagle off); its CPU
per call is read from ``/proc`` and reported, to show it is not the bottleneck. The
client is one asyncio loop, as in one arm of an experiment; ``--processes N`` splits each
level's calls in flight over N client processes, as a run's arms are split over its
``workers``. ``client_full_gc_passes`` counts the garbage collector's full passes in the
client during a level's window: each stalls the loop for 50-100 ms with every call in
flight waiting.

Measured on the 2-core machine this was written on, shared with another engineer's work
(medians; 1-minute load average in brackets). The first row is from an earlier round;
each "before" and "now" pair ran in alternation, in the same hours:

    client                                      ratio at 1 / 8 / 64    client CPU ms/call at 64
    httpx2, SDK response objects (earlier)      0.95 / 0.89 / 0.38     3.8   (load 2.6-4.2)
    aiohttp, raw reply read (before)            0.97 / 0.96 / 0.85     1.29  (5 runs, load 1.1-1.3)
    first attempt outside tenacity, request
      options built once (now)                  0.97 / 0.96 / 0.87     1.02  (5 runs, same hours)
    before, --processes 2                       0.97 / 0.96 / 0.91     1.35  (3 runs, load 0.7-1.2)
    now, --processes 2                          0.98 / 0.97 / 0.94     1.02  (3 runs, same hours)
    before, --seconds 10                        0.97 / 0.97 / 0.85     1.24  (2 runs, load 0.8-1.9)
    now, --seconds 10                           0.98 / 0.97 / 0.93     0.97  (2 runs, load 1.1-2.3)

Where the 0.27 ms went: tenacity's loop, built for every request, cost its strategies
and about 40 objects in reference cycles a call, so the cyclic collector ran a full pass
of about 100 ms every 2.5 s at 64 in flight; the first attempt is now made directly, and
a steady run has no full pass at all, only one about a second after the client starts,
as the objects of the calls in flight (about 6,600 at 64) are first promoted (every
2.5-second window at 64 caught it here: hence the longer window's higher figure).
``asyncio.timeout`` instead of ``wait_for`` saves a task per attempt, and the SDK's
request options are built once per client instead of once per call
(:class:`ouro.agents.providers._http.Endpoint`). Of the 1.0 ms left, about 0.8 ms is the
SDK and its transport (building the request, httpx2's objects, aiohttp), 0.1 ms the
provider (retry bookkeeping, timeout, reading and validating the reply, the ledger) and
the rest the event loop; the bare SDK's ``chat.completions.create`` costs 1.7 ms CPU a
call sequentially, the provider 0.98.

Each level's 2.5 s window now follows 2 s at full load (``--warmup``), so that it
measures what a run of minutes sees, not the process's first second. Without the
warm-up (``--warmup 0``), and in the rows above, one process stays at 0.83-0.91 at 64:
the loop needs about 60% of a core at 576 calls a second, and the first second carries
one-off costs. Same code, same hour (2 runs each, load 1.3-2.0 with another engineer's
benchmarks running): 0.958 and 0.956 at 64 with the warm-up, 0.909 and 0.896 without.
The server is not what holds it back: a bare aiohttp client against it reaches 0.95, and two
cheaper servers tried (asyncio, and raw sockets with a thread per connection: 0.13-0.24
ms CPU a call against 0.30-0.39) gave no higher ratio. uvloop made no measurable difference.
``cpu_bound_ceiling_calls_per_s`` says where the client's ceiling lies on the machine at
hand.

    python benchmarks/provider_concurrency.py --json [--processes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
from ouro.agents.providers import OpenAIConfig, OpenAIProvider  # noqa: E402
from ouro.agents.providers._http import aiohttp_available  # noqa: E402

DELAY_S = 0.1
LEVELS = (1, 8, 64)
MESSAGES = [{"role": "user", "content": "Propose one estimator."}]
KEY_ENV = "OURO_BENCH_KEY"


class Method(BaseModel):
    family: str
    alpha: float


@contextlib.contextmanager
def fake_server(delay: float) -> Iterator[tuple[str, int]]:
    """A fake OpenAI server in a child process; yields its base URL (loopback only) and
    its process id, to read its CPU time."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.providers.fake_servers", "openai", "--delay", str(delay)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.stdin.close()  # the server exits when its stdin closes
        proc.wait(timeout=10)


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of another process (Linux ``/proc``; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/stats", timeout=5) as response:
        return json.load(response)


def make(url: str, concurrency: int) -> OpenAIProvider:
    config = OpenAIConfig(
        model="fake-model", base_url=url + "/v1", concurrency=concurrency, timeout_s=30, api_key_env=KEY_ENV
    )
    return OpenAIProvider(config)


async def timed_batch(provider: OpenAIProvider, calls: int) -> float:
    started = time.perf_counter()
    results = await asyncio.gather(*(provider.structured(MESSAGES, Method) for _ in range(calls)))
    elapsed = time.perf_counter() - started
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} calls failed, first: {failed[0]}")
    return elapsed


async def client(url: str, concurrency: int, seconds: float, start_at: float, warmup: float) -> tuple[int, float, float, int]:
    """One client process's share of a level: ``concurrency`` workers call back to back
    from the wall-clock time ``start_at``, so exactly that many calls are in flight
    however fast they go. The first ``warmup`` seconds are not counted: a process's
    first second at full load holds one-off costs (the cyclic collector's first full
    pass over the calls in flight, about 70 ms at 64) that a run of minutes pays once.
    Returns the calls that ended in the ``seconds`` after the warm-up, the wall and CPU
    seconds from the window's start until the last call ended, and the garbage
    collector's full passes in that time (each stalls the event loop for tens of
    milliseconds with every call in flight waiting)."""
    async with make(url, concurrency) as provider:
        await timed_batch(provider, concurrency)  # open the connections first
        await asyncio.sleep(max(0.0, start_at - time.time()))
        window_start = time.perf_counter() + warmup
        deadline = window_start + seconds

        async def worker() -> int:
            done = 0
            while time.perf_counter() < deadline:
                result = await provider.structured(MESSAGES, Method)
                if not result.ok:
                    raise RuntimeError(result.error)
                done += time.perf_counter() >= window_start
            return done

        async def window_opens() -> tuple[float, float, int]:
            await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
            return time.perf_counter(), time.process_time(), gc.get_stats()[2]["collections"]

        opened = asyncio.ensure_future(window_opens())
        calls = sum(await asyncio.gather(*(worker() for _ in range(concurrency))))
        started, cpu, full_gcs = await opened
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        return calls, wall, cpu, gc.get_stats()[2]["collections"] - full_gcs


def client_process(args: tuple[str, int, float, float, float]) -> tuple[int, float, float, int]:
    os.environ.setdefault(KEY_ENV, "sk-bench")
    return asyncio.run(client(*args))


async def level(concurrency: int, seconds: float, processes: int = 1, warmup: float = 0.0) -> dict:
    """``concurrency`` calls in flight for ``seconds``: from this process's event loop, or
    split evenly over ``processes`` client processes, as a run's arms are over its
    ``workers`` (each arm's process has its own provider and its own limit)."""
    ideal = concurrency / DELAY_S
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    shares = [s for s in shares if s]
    with fake_server(DELAY_S) as (url, pid):
        server_cpu = process_cpu_s(pid)
        if len(shares) == 1:
            outcomes = [await client(url, concurrency, seconds, time.time(), warmup)]
        else:
            start_at = time.time() + 3.0  # spawned processes import the SDK first
            context = multiprocessing.get_context("spawn")
            with context.Pool(len(shares)) as pool:
                outcomes = pool.map(client_process, [(url, s, seconds, start_at, warmup) for s in shares])
        after = process_cpu_s(pid)
        observed = server_stats(url)["max_in_flight"]
    calls = sum(o[0] for o in outcomes)
    elapsed = max(o[1] for o in outcomes)
    cpu = sum(o[2] for o in outcomes)
    rate = calls / elapsed
    return {
        "concurrency": concurrency,
        "client_processes": len(shares),
        "calls": calls,
        "seconds": round(elapsed, 3),
        "calls_per_s": round(rate, 1),
        "ideal_calls_per_s": ideal,
        "ratio": round(rate / ideal, 3),
        "ms_per_call_in_flight": round(1e3 * elapsed * concurrency / calls, 2),
        "client_cpu_ms_per_call": round(1e3 * cpu / calls, 3),
        "cpu_bound_ceiling_calls_per_s": round(len(shares) * calls / cpu, 1),
        "server_cpu_ms_per_call": None if after is None else round(1e3 * (after - server_cpu) / calls, 3),
        "client_full_gc_passes": sum(o[3] for o in outcomes),
        "max_in_flight_seen_by_server": observed,
    }


async def overhead(calls: int) -> dict:
    """Sequential calls to an instant server, through the provider and through the bare
    SDK client it wraps (same client, same transport), so the provider layer's own share
    is visible. Wall time includes the server's turn; CPU time is the client's alone."""
    with fake_server(0.0) as (url, _):
        async with make(url, 1) as provider:
            await timed_batch(provider, 30)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                await timed_batch(provider, 1)
            provider_wall, provider_cpu = time.perf_counter() - wall, time.process_time() - cpu
            sdk = provider._client().sdk_client
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                await sdk.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=16)
            sdk_wall, sdk_cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "overhead_ms_per_call": round(1e3 * provider_wall / calls, 3),
        "overhead_cpu_ms_per_call": round(1e3 * provider_cpu / calls, 3),
        "sdk_only_ms_per_call": round(1e3 * sdk_wall / calls, 3),
        "sdk_only_cpu_ms_per_call": round(1e3 * sdk_cpu / calls, 3),
    }


async def main(seconds: float, overhead_calls: int, processes: int, warmup: float) -> dict:
    load_before = os.getloadavg()[0]
    levels = [await level(c, seconds, processes, warmup) for c in LEVELS]
    return {
        "benchmark": "provider_concurrency",
        "server_delay_s": DELAY_S,
        "warmup_s": warmup,
        "transport": transport(),
        "levels": levels,
        **await overhead(overhead_calls),
        "ratio_at_64_meets_0.9": levels[-1]["ratio"] >= 0.9,
        "cpu_count": os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def transport() -> str:
    import openai

    return "aiohttp" if aiohttp_available(openai) else "httpx"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seconds", type=float, default=2.5, help="target duration of each level's measured window")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds at full load before each level's window (0: none)"
    )
    parser.add_argument("--overhead-calls", type=int, default=300)
    parser.add_argument(
        "--processes", type=int, default=1, help="client processes sharing each level's calls in flight"
    )
    args = parser.parse_args()
    os.environ.setdefault(KEY_ENV, "sk-bench")  # a fake server: no real key is involved
    report = asyncio.run(main(args.seconds, args.overhead_calls, args.processes, args.warmup))
    if args.json:
        print(json.dumps(report))
    else:
        for row in report["levels"]:
            print(
                f"c={row['concurrency']:>3}  {row['calls_per_s']:>7.1f}/s  "
                f"ideal {row['ideal_calls_per_s']:>5.0f}/s  ratio {row['ratio']:.3f}"
            )
        print(
            f"per call {report['overhead_ms_per_call']:.3f} ms, {report['overhead_cpu_ms_per_call']:.3f} ms CPU "
            f"(bare SDK {report['sdk_only_ms_per_call']:.3f} ms, {report['sdk_only_cpu_ms_per_call']:.3f} ms CPU)"
        )
