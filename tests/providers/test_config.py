"""Configs: the registry, strict validation, and keys checked before any request."""

from __future__ import annotations

import asyncio
import types

import pytest
from pydantic import BaseModel, ValidationError

from ouro.agents.providers import (
    PROVIDERS,
    AnthropicConfig,
    AnthropicProvider,
    CallResult,
    OpenAIConfig,
    Provider,
    ProviderConfig,
    ProviderConfigError,
    RawReply,
    ScriptedConfig,
    VLLMConfig,
    VLLMProvider,
    build_provider,
    provider_config,
)
from ouro.agents.providers._http import check_transport, sdk_http_client
from tests.providers.fake_servers import FakeAnthropic, FakeOpenAI


def test_registry_names_every_provider() -> None:
    assert PROVIDERS == {"openai": OpenAIConfig, "vllm": VLLMConfig, "anthropic": AnthropicConfig, "scripted": ScriptedConfig}


def test_yaml_mapping_picks_the_config_class() -> None:
    cfg = provider_config({"provider": "vllm", "model": "m", "adapter": "gen-2", "concurrency": 32})
    assert isinstance(cfg, VLLMConfig)
    assert (cfg.base_url, cfg.adapter, cfg.concurrency, cfg.max_attempts) == (
        "http://127.0.0.1:8000/v1",
        "gen-2",
        32,
        5,
    )
    assert isinstance(build_provider(cfg), VLLMProvider)


def test_unknown_keys_and_providers_are_errors() -> None:
    with pytest.raises(ValidationError):
        provider_config({"provider": "openai", "model": "m", "api_key": "sk-in-a-file"})
    with pytest.raises(ValidationError):
        provider_config({"provider": "nope", "model": "m"})


def test_prices_turn_tokens_into_dollars() -> None:
    cfg = OpenAIConfig(model="m", prices={"input_per_mtok": 2.5, "output_per_mtok": 10})
    assert cfg.prices.usd(1_000_000, 100_000) == pytest.approx(3.5)


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"provider": "openai", "model": "m"}, "OPENAI_API_KEY"),
        ({"provider": "anthropic", "model": "m"}, "ANTHROPIC_API_KEY"),
        ({"provider": "openai", "model": "m", "api_key_env": "MY_GATEWAY_KEY"}, "MY_GATEWAY_KEY"),
    ],
)
def test_missing_key_fails_at_construction_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, settings: dict, variable: str
) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MY_GATEWAY_KEY"):
        monkeypatch.delenv(name, raising=False)
    server_class = FakeAnthropic if settings["provider"] == "anthropic" else FakeOpenAI
    with server_class() as server:
        with pytest.raises(ProviderConfigError, match=f"set the environment variable {variable}"):
            build_provider({**settings, "base_url": server.sdk_base_url})
    assert server.requests == 0


def test_empty_key_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "")
    with pytest.raises(ProviderConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider(AnthropicConfig(model="m"))


class Answer(BaseModel):
    x: int


class _Broken(Provider):
    """A provider whose code has a bug: the bug must surface, not pass for an API failure."""

    name = "broken"

    def _make_client(self) -> None:
        return None

    async def _call(self, messages, schema) -> RawReply:  # type: ignore[no-untyped-def]
        return RawReply(text=str(1 / 0))

    def classify(self, exc: BaseException) -> str:  # type: ignore[override]
        return "fatal"


def test_a_bug_is_raised_not_recorded_as_a_failed_call() -> None:
    p = _Broken(ProviderConfig(provider="broken", model="m"))
    with pytest.raises(ZeroDivisionError):
        asyncio.run(p.structured([{"role": "user", "content": "x"}], Answer))


def test_call_result_reports_success() -> None:
    assert CallResult(value=Answer(x=1)).ok
    assert not CallResult(error="rate limited: giving up after 5 attempts").ok


@pytest.mark.parametrize("sdk_name", ["openai", "anthropic"])
def test_aiohttp_is_the_default_transport_when_installed(sdk_name: str) -> None:
    sdk = pytest.importorskip(sdk_name)
    pytest.importorskip("aiohttp")
    auto = sdk_http_client(sdk, "auto", concurrency=3, timeout_s=5.0)
    httpx_client = sdk_http_client(sdk, "httpx", concurrency=3, timeout_s=5.0)
    assert isinstance(auto, sdk.DefaultAioHttpClient)
    assert isinstance(httpx_client, sdk.DefaultAsyncHttpxClient)
    assert not isinstance(httpx_client, sdk.DefaultAioHttpClient)


def test_aiohttp_asked_of_an_sdk_without_it_fails_at_construction() -> None:
    old_sdk = types.ModuleType("old_sdk")  # a release that predates DefaultAioHttpClient
    with pytest.raises(ProviderConfigError, match=r"pip install 'old_sdk\[aiohttp\]'"):
        check_transport(old_sdk, "aiohttp")
    check_transport(old_sdk, "auto")  # auto falls back to httpx
    check_transport(old_sdk, "httpx")


@pytest.mark.parametrize("provider", ["openai", "vllm", "anthropic"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_temperature_that_is_not_json_is_refused_in_the_config(provider: str, value: float) -> None:
    with pytest.raises(ValidationError, match="finite number"):
        provider_config({"provider": provider, "model": "m", "temperature": value})


@pytest.mark.parametrize("provider", ["openai", "vllm", "anthropic"])
@pytest.mark.parametrize("url", ["not-a-url", "localhost:8000/v1", "ftp://host/v1", "http:///v1", "http://host:port/v1"])
def test_a_base_url_that_is_no_http_url_is_refused_in_the_config(provider: str, url: str) -> None:
    with pytest.raises(ValidationError, match=r"base_url\n.*(is not an http:// or https:// URL|is not a URL)"):
        provider_config({"provider": provider, "model": "m", "base_url": url})


@pytest.mark.parametrize("provider", ["openai", "vllm", "anthropic"])
@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "https://api.example.com", "http://[::1]:8000/v1"])
def test_an_http_base_url_is_kept_as_given(provider: str, url: str) -> None:
    assert provider_config({"provider": provider, "model": "m", "base_url": url}).base_url == url
