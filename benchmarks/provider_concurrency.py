"""Throughput of the provider layer against a local fake OpenAI server.

The server answers each request after 100 ms, so with ``c`` requests in flight the ideal
is ``c * 10`` calls a second; the ratio to that ideal shows what the client side (SDK,
retry loop, semaphore, validation) costs. A second figure times sequential calls to a
server that answers at once: the whole client-side cost of a call, in milliseconds,
through the provider and through the bare SDK.

The server runs in a process of its own, so its CPU does not share the client's
interpreter; the client is one asyncio loop, as in an experiment. The client's CPU time
per call is reported too: one loop cannot go faster than one core allows, and
``cpu_bound_ceiling_calls_per_s`` says where that is on the machine at hand.

    python benchmarks/provider_concurrency.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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

DELAY_S = 0.1
LEVELS = (1, 8, 64)
MESSAGES = [{"role": "user", "content": "Propose one estimator."}]
KEY_ENV = "OURO_BENCH_KEY"


class Method(BaseModel):
    family: str
    alpha: float


@contextlib.contextmanager
def fake_server(delay: float) -> Iterator[str]:
    """A fake OpenAI server in a child process; yields its base URL (loopback only)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.providers.fake_servers", "openai", "--delay", str(delay)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stdin.close()  # the server exits when its stdin closes
        proc.wait(timeout=10)


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


async def level(concurrency: int, seconds: float) -> dict:
    """``concurrency`` workers call back to back for ``seconds``: the level lasts that
    long whatever the throughput, and exactly ``concurrency`` calls are in flight."""
    ideal = concurrency / DELAY_S
    with fake_server(DELAY_S) as url:
        async with make(url, concurrency) as provider:
            await timed_batch(provider, concurrency)  # open the connections first
            deadline = time.perf_counter() + seconds

            async def worker() -> int:
                done = 0
                while time.perf_counter() < deadline:
                    result = await provider.structured(MESSAGES, Method)
                    if not result.ok:
                        raise RuntimeError(result.error)
                    done += 1
                return done

            started, cpu = time.perf_counter(), time.process_time()
            calls = sum(await asyncio.gather(*(worker() for _ in range(concurrency))))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        observed = server_stats(url)["max_in_flight"]
    rate = calls / elapsed
    return {
        "concurrency": concurrency,
        "calls": calls,
        "seconds": round(elapsed, 3),
        "calls_per_s": round(rate, 1),
        "ideal_calls_per_s": ideal,
        "ratio": round(rate / ideal, 3),
        "client_cpu_ms_per_call": round(1e3 * cpu / calls, 3),
        "cpu_bound_ceiling_calls_per_s": round(calls / cpu, 1),
        "max_in_flight_seen_by_server": observed,
    }


async def overhead(calls: int) -> dict:
    """Sequential calls to an instant server, through the provider and through the bare
    SDK client it wraps, so the provider layer's own share is visible."""
    with fake_server(0.0) as url:
        async with make(url, 1) as provider:
            await timed_batch(provider, 30)
            provider_s = sum([await timed_batch(provider, 1) for _ in range(calls)])
            client = provider._client()
            sdk_s = 0.0
            for _ in range(calls):
                started = time.perf_counter()
                await client.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=16)
                sdk_s += time.perf_counter() - started
    return {
        "overhead_ms_per_call": round(1e3 * provider_s / calls, 3),
        "sdk_only_ms_per_call": round(1e3 * sdk_s / calls, 3),
    }


async def main(seconds: float, overhead_calls: int) -> dict:
    levels = [await level(c, seconds) for c in LEVELS]
    return {
        "benchmark": "provider_concurrency",
        "server_delay_s": DELAY_S,
        "levels": levels,
        **await overhead(overhead_calls),
        "ratio_at_64_meets_0.9": levels[-1]["ratio"] >= 0.9,
        "cpu_count": os.cpu_count(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seconds", type=float, default=2.5, help="target duration of each level")
    parser.add_argument("--overhead-calls", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault(KEY_ENV, "sk-bench")  # a fake server: no real key is involved
    report = asyncio.run(main(args.seconds, args.overhead_calls))
    if args.json:
        print(json.dumps(report))
    else:
        for row in report["levels"]:
            print(
                f"c={row['concurrency']:>3}  {row['calls_per_s']:>7.1f}/s  "
                f"ideal {row['ideal_calls_per_s']:>5.0f}/s  ratio {row['ratio']:.3f}"
            )
        print(f"per call {report['overhead_ms_per_call']:.3f} ms (bare SDK {report['sdk_only_ms_per_call']:.3f} ms)")
