"""Every injected fault ends as the rules say, through the real SDKs and real sockets:
retried then answered, recorded as a failure with its reason, or fatal after exactly
one attempt; and the cost counts every attempt."""

from __future__ import annotations

import re
import time

import pytest

from ouro.agents.providers import CallResult, build_provider
from tests.providers.fake_servers import FakeServer, MESSAGES, Method, SERVER_FOR, TOKENS_IN, TOKENS_OUT, run_closed

FLAVOURS = ["openai", "vllm", "anthropic"]
PRICES = {"input_per_mtok": 3.0, "output_per_mtok": 15.0}


pytestmark = pytest.mark.usefixtures("api_keys")  # every test here talks to a loopback server


def ask(flavour: str, server: FakeServer, **overrides: object) -> CallResult:
    settings = dict(
        provider=flavour,
        model="fake-model",
        base_url=server.sdk_base_url,
        timeout_s=2.0,  # generous: a loaded CI machine must not turn answers into timeouts
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        prices=PRICES,
    )
    settings.update(overrides)
    provider = build_provider(settings)
    return run_closed(provider, "structured", MESSAGES, Method)


def usd(successes: int) -> float:
    return successes * (TOKENS_IN * PRICES["input_per_mtok"] + TOKENS_OUT * PRICES["output_per_mtok"]) / 1e6


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_clean_answer_costs_one_call(flavour: str) -> None:
    with SERVER_FOR[flavour]() as server:
        result = ask(flavour, server)
    assert result.ok and result.value == Method(family="trimmed_mean", alpha=0.2)
    assert (result.cost.calls, result.cost.retries) == (1, 0)
    assert (result.cost.tokens_in, result.cost.tokens_out) == (TOKENS_IN, TOKENS_OUT)
    assert result.cost.usd == pytest.approx(usd(1))
    assert result.cost.wall_seconds > 0
    assert result.model == "fake-model"


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("fault", ["429", "500", "503", "stall", "drop", "garbled"])
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_transport_fault_is_retried_then_answered(flavour: str, fault: str, transport: str) -> None:
    with SERVER_FOR[flavour]([fault], stall_s=5) as server:
        result = ask(flavour, server, timeout_s=0.5, transport=transport)
    assert result.ok, result.error
    assert result.value == Method(family="trimmed_mean", alpha=0.2)
    assert server.requests == 2
    assert (result.cost.calls, result.cost.retries) == (2, 1)
    # a failed attempt returns no usage: only the answered one counts tokens
    assert (result.cost.tokens_in, result.cost.tokens_out) == (TOKENS_IN, TOKENS_OUT)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("fault", ["not_json", "bad_schema"])
def test_invalid_output_is_asked_again_with_the_error(flavour: str, fault: str) -> None:
    with SERVER_FOR[flavour]([fault]) as server:
        result = ask(flavour, server)
    assert result.ok and result.value == Method(family="trimmed_mean", alpha=0.2)
    assert (result.cost.calls, result.cost.retries) == (2, 1)
    assert (result.cost.tokens_in, result.cost.tokens_out) == (2 * TOKENS_IN, 2 * TOKENS_OUT)
    assert result.cost.usd == pytest.approx(usd(2))
    second = server.bodies[1]["messages"]
    assert second[-2]["role"] == "assistant"
    assert second[-1]["role"] == "user" and "did not match the required JSON schema" in second[-1]["content"]
    expected = "not valid JSON" if fault == "not_json" else "family: Field required"
    assert expected in second[-1]["content"]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_output_invalid_every_time_is_recorded_as_invalid(flavour: str) -> None:
    with SERVER_FOR[flavour](["bad_schema"] * 3) as server:
        result = ask(flavour, server, validation_retries=2)
    assert result.value is None
    assert result.error.startswith("invalid output after 3 attempts: ")
    assert "alpha: Field required" in result.error
    assert server.requests == 3
    assert (result.cost.calls, result.cost.retries) == (3, 2)
    assert (result.cost.tokens_in, result.cost.tokens_out) == (3 * TOKENS_IN, 3 * TOKENS_OUT)
    assert result.cost.usd == pytest.approx(usd(3))
    assert '"unexpected": true' in result.raw


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("fault", ["401", "404"])
def test_bad_key_and_unknown_model_are_fatal_at_once(flavour: str, fault: str) -> None:
    with SERVER_FOR[flavour]([fault, "ok"]) as server:
        result = ask(flavour, server)
    assert result.value is None
    assert result.error.startswith(f"fatal error, not retried: HTTP {fault} ")
    assert server.requests == 1
    assert (result.cost.calls, result.cost.retries, result.cost.tokens_in) == (1, 0, 0)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_model_the_server_does_not_serve_is_fatal(flavour: str) -> None:
    with SERVER_FOR[flavour]() as server:
        result = ask(flavour, server, model="no-such-model")
    assert result.error.startswith("fatal error, not retried: HTTP 404 ")
    assert server.requests == 1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_persistent_rate_limit_gives_up_after_max_attempts(flavour: str) -> None:
    with SERVER_FOR[flavour](["429"] * 10) as server:
        result = ask(flavour, server, max_attempts=4)
    assert result.error == "rate limited: giving up after 4 attempts"
    assert server.requests == 4
    assert (result.cost.calls, result.cost.retries) == (4, 3)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_persistent_server_error_gives_up_with_its_reason(flavour: str) -> None:
    with SERVER_FOR[flavour](["503"] * 10) as server:
        result = ask(flavour, server, max_attempts=3)
    assert result.error.startswith("transient error (HTTP 503 ")
    assert result.error.endswith("giving up after 3 attempts")
    assert server.requests == 3


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
def test_retry_after_is_honoured(flavour: str) -> None:
    with SERVER_FOR[flavour](["429:1"]) as server:
        started = time.monotonic()
        result = ask(flavour, server)
        elapsed = time.monotonic() - started
    assert result.ok and server.requests == 2
    assert elapsed >= 0.95  # the server asked for one second; backoff alone is 0.01-0.05 s


def test_retry_after_beyond_the_budget_stops_before_sleeping() -> None:
    with SERVER_FOR["openai"](["429:1"]) as server:
        started = time.monotonic()
        result = ask("openai", server, max_total_s=0.5)
        elapsed = time.monotonic() - started
    assert re.fullmatch(
        r"rate limited: giving up after 1 attempts: "
        r"a further wait of 1\.0s after 0\.\ds would pass the 0\.5s budget",
        result.error,
    )
    assert server.requests == 1 and elapsed < 0.9


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_dropped_connection_is_named_in_the_reason(flavour: str, transport: str) -> None:
    """The SDKs say only "Connection error." (or, openai over aiohttp, "Request timed
    out."); the reason carries what they raised it from."""
    with SERVER_FOR[flavour](["drop"] * 2) as server:
        result = ask(flavour, server, max_attempts=2, transport=transport)
    assert result.error.startswith("transient error (")
    assert "Server disconnected" in result.error
    assert result.error.endswith("giving up after 2 attempts")
    assert server.requests == 2 and result.cost.calls == 2


def test_stall_is_cut_at_the_attempt_timeout() -> None:
    with SERVER_FOR["openai"](["stall"] * 3, stall_s=5) as server:
        started = time.monotonic()
        result = ask("openai", server, timeout_s=0.2, max_attempts=2)
        elapsed = time.monotonic() - started
    assert result.error.startswith("transient error (")
    assert result.error.endswith("giving up after 2 attempts")
    assert result.cost.calls == 2 and elapsed < 2.5  # two 0.2 s timeouts, not two 5 s stalls


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_garbled_reply_is_named_in_one_line(flavour: str, transport: str) -> None:
    """A 200 whose body is an HTML page: the reason quotes the body, on one line, and
    carries none of pydantic's multi-line report (nor its link to its documentation)."""
    with SERVER_FOR[flavour](["garbled"] * 2) as server:
        result = ask(flavour, server, max_attempts=2, transport=transport)
    assert result.error.startswith("transient error (MalformedResponse: not a ")
    assert "502 Bad Gateway" in result.error
    assert result.error.endswith("giving up after 2 attempts")
    assert "\n" not in result.error and "pydantic" not in result.error and "validation error" not in result.error
    assert server.requests == 2


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_tls_to_a_plain_http_server_is_fatal_at_once(flavour: str, transport: str) -> None:
    """``https://`` to a server that speaks plain HTTP (a local vLLM, say) fails the same
    way on every attempt: the SDKs call it a connection error (openai over aiohttp, a
    timeout), and it is not retried."""
    with SERVER_FOR[flavour]() as server:
        url = server.sdk_base_url.replace("http://", "https://")
        result = ask(flavour, server, base_url=url, transport=transport)
    assert result.error.startswith("fatal error, not retried: ")
    assert "WRONG_VERSION_NUMBER" in result.error and "\n" not in result.error
    assert (result.cost.calls, result.cost.retries) == (1, 0)
    assert server.requests == 0  # the server never read a request it could answer


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_a_url_the_client_cannot_send_to_is_fatal_at_once(flavour: str, transport: str) -> None:
    """A base URL without a scheme is refused by the config (tests/test_config.py); one
    that gets past it anyway (a config built without validation) still fails at once,
    not after five "transient" attempts."""
    from ouro.agents.providers import PROVIDERS

    config = PROVIDERS[flavour].model_construct(
        provider=flavour, model="fake-model", base_url="not-a-url", transport=transport, backoff_initial_s=0.01
    )
    result = run_closed(config.build(), "structured", MESSAGES, Method)
    assert result.error.startswith("fatal error, not retried: ")
    assert (result.cost.calls, result.cost.retries) == (1, 0)
