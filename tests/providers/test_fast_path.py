"""The first attempt made outside tenacity ends exactly as when tenacity makes it.

``Provider.first_attempt_outside_tenacity = False`` sends every attempt through
tenacity (the reference); each case runs both ways and must agree on everything a
caller or a ledger can see: the value or the reason, attempts, retries, tokens,
dollars, what the server received, and, for a bug, which exception escaped after how
many attempts.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import pytest
from pydantic import BaseModel

from ouro.agents.providers import CallResult, Provider, ProviderConfig, RawReply, build_provider
from ouro.agents.providers.base import Failure
from tests.providers.fake_servers import MESSAGES, Method, SERVER_FOR, run_closed



def seen_by_caller(result: CallResult) -> dict[str, Any]:
    """Everything a caller and the ledger read; the budget message's clock readings
    ("after 0.1s") are the only part allowed to differ between two runs."""
    error = re.sub(r"after \d+\.\ds", "after N s", result.error) if result.error else None
    cost = result.cost
    return {
        "value": result.value,
        "error": error,
        "raw": result.raw,
        "attempts": (cost.calls, cost.retries),
        "tokens": (cost.tokens_in, cost.tokens_out),
        "usd": cost.usd,
    }


# ----- through the SDKs, against the fault-injecting servers ---------------------------

CASES: list[tuple[list[str], dict[str, Any]]] = [
    ([], {}),
    (["429"], {}),
    (["500"], {}),
    (["garbled"], {}),
    (["drop"], {}),
    (["stall"], {"timeout_s": 0.3}),
    (["not_json"], {}),
    (["bad_schema"] * 3, {}),
    (["401", "ok"], {}),
    (["404"], {}),
    (["429"] * 10, {"max_attempts": 4}),
    (["503"] * 10, {"max_attempts": 3}),
    (["drop"] * 2, {"max_attempts": 2}),
    (["500"], {"max_attempts": 1}),
    (["429:1"], {"max_total_s": 0.5}),
]


def run_case(flavour: str, script: list[str], overrides: dict[str, Any], fast: bool) -> dict[str, Any]:
    Provider.first_attempt_outside_tenacity = fast  # the test's monkeypatch restores it
    random.seed(7)  # the backoff's jitter: the same draws on both paths
    with SERVER_FOR[flavour](script, stall_s=3) as server:
        settings = {
            "provider": flavour,
            "model": "fake-model",
            "base_url": server.sdk_base_url,
            "timeout_s": 2.0,
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.05,
            "prices": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
            **overrides,
        }
        result = run_closed(build_provider(settings), "structured", MESSAGES, Method)
    return {**seen_by_caller(result), "requests": server.requests, "bodies": server.bodies}


@pytest.mark.usefixtures("api_keys")
@pytest.mark.parametrize("flavour", ["openai", "vllm", "anthropic"])
@pytest.mark.parametrize(("script", "overrides"), CASES, ids=[",".join(s) or "clean" for s, _ in CASES])
def test_fault_ends_the_same_on_both_paths(
    flavour: str, script: list[str], overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Provider, "first_attempt_outside_tenacity", True)
    fast = run_case(flavour, script, overrides, fast=True)
    reference = run_case(flavour, script, overrides, fast=False)
    assert fast == reference


# ----- in process: exceptions of every kind, bugs included ----------------------------


class ApiError(Exception):
    """An API failure of the given kind."""

    def __init__(self, kind: Failure) -> None:
        super().__init__(f"injected {kind}")
        self.kind = kind


class _NoClient:
    async def close(self) -> None:
        return None


class Stepper(Provider):
    """Each attempt takes the next step of its script: an exception to raise, "slow"
    (longer than the attempt timeout), or "ok". Like the scripted provider, it calls
    any exception that is not an API error transient, so a bug is retried too."""

    name = "stepper"
    api_errors = (ApiError,)

    def __init__(self, config: ProviderConfig, script: list[Any]) -> None:
        super().__init__(config)
        self.script = list(script)
        self.attempts = 0

    def _make_client(self) -> _NoClient:
        return _NoClient()

    async def _call(self, messages: list[dict[str, str]], schema: type[BaseModel] | None) -> RawReply:
        self.attempts += 1
        step = self.script.pop(0) if self.script else "ok"
        if step == "slow":
            await asyncio.sleep(1.0)
        elif isinstance(step, BaseException):
            raise step
        return RawReply(text='{"family": "median", "alpha": 0}', tokens_in=5, tokens_out=3)

    def classify(self, exc: BaseException) -> Failure:
        return getattr(exc, "kind", "transient")


STEPS: dict[str, tuple[list[Any], dict[str, Any]]] = {
    "clean": ([], {}),
    "transient then ok": ([ApiError("transient")], {}),
    "rate limit then ok": ([ApiError("rate_limit")], {}),
    "fatal": ([ApiError("fatal"), "ok"], {}),
    "transient every time": ([ApiError("transient")] * 9, {"max_attempts": 3}),
    "one attempt allowed": ([ApiError("transient")], {"max_attempts": 1}),
    "timeout then ok": (["slow"], {"timeout_s": 0.05}),
    "timeouts every time": (["slow"] * 9, {"timeout_s": 0.05, "max_attempts": 2}),
    "budget spent at once": (
        [ApiError("transient")] * 9,
        {"backoff_initial_s": 0.2, "backoff_max_s": 1.0, "max_total_s": 0.1},
    ),
    "budget spent later": (
        [ApiError("transient")] * 9,
        {"backoff_initial_s": 0.05, "backoff_max_s": 1.0, "max_total_s": 0.25},
    ),
    "bug then ok": ([ZeroDivisionError("bug")], {}),
    "bug every time": ([ZeroDivisionError("bug")] * 9, {"max_attempts": 3}),
    "fatal bug": ([KeyError("bug")], {}),
}


def run_steps(script: list[Any], overrides: dict[str, Any]) -> dict[str, Any]:
    random.seed(7)  # the backoff's jitter: the same draws on both paths
    settings = {"provider": "stepper", "model": "m", "backoff_initial_s": 0.0, "backoff_max_s": 0.0, **overrides}
    provider = Stepper(ProviderConfig(**settings), script)
    try:
        outcome: dict[str, Any] = seen_by_caller(asyncio.run(provider.structured(MESSAGES, Method)))
    except Exception as exc:  # a bug escapes: which one, after how many attempts
        outcome = {"raised": type(exc)}
    return {**outcome, "calls_made": provider.attempts}


@pytest.mark.parametrize("case", list(STEPS))
def test_every_kind_of_outcome_is_the_same_on_both_paths(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    script, overrides = STEPS[case]
    if case == "fatal bug":  # a provider that calls its bugs fatal: raised after one attempt
        monkeypatch.setattr(Stepper, "classify", lambda self, exc: getattr(exc, "kind", "fatal"))
    outcomes = []
    for fast in (True, False):
        monkeypatch.setattr(Provider, "first_attempt_outside_tenacity", fast)
        outcomes.append(run_steps(script, overrides))
    assert outcomes[0] == outcomes[1]


def test_the_reference_cases_mean_what_they_say() -> None:
    """The cases above are worth comparing only if they reach the branches they name."""
    assert run_steps(*STEPS["transient every time"])["attempts"] == (3, 2)
    assert run_steps(*STEPS["bug every time"]) == {"raised": ZeroDivisionError, "calls_made": 3}
    assert run_steps(*STEPS["fatal"])["error"].startswith("fatal error, not retried")
    assert run_steps(*STEPS["timeouts every time"])["error"].startswith("transient error (TimeoutError")
    assert "after 1 attempts: a further wait" in run_steps(*STEPS["budget spent at once"])["error"]
    late = run_steps(*STEPS["budget spent later"])
    assert "would pass the 0.25s budget" in late["error"] and late["calls_made"] > 1


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "tenacity-only"])
@pytest.mark.parametrize("failures_first", [0, 1])
def test_a_cancelled_request_is_not_retried(fast: bool, failures_first: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelling a call mid-attempt cancels it, on the first attempt or a later one,
    although this provider calls every exception it does not know transient."""
    monkeypatch.setattr(Provider, "first_attempt_outside_tenacity", fast)
    config = ProviderConfig(provider="stepper", model="m", backoff_initial_s=0.0, backoff_max_s=0.0, timeout_s=5.0)
    provider = Stepper(config, [ApiError("transient")] * failures_first + ["slow"])

    async def cancel_mid_attempt() -> None:
        task = asyncio.create_task(provider.structured(MESSAGES, Method))
        while provider.attempts <= failures_first:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_mid_attempt())
    assert provider.attempts == failures_first + 1
