"""What goes over the wire: each provider asks for structured output the way its API
expects, sends keys from the environment, and keeps working across event loops."""

from __future__ import annotations

import asyncio

import pytest

from ouro.agents.providers import Provider, _http, build_provider
from tests.providers.fake_servers import FakeAnthropic, FakeOpenAI, FakeServer, MESSAGES, Method, run_closed



@pytest.fixture(autouse=True)
def keys(api_keys: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)


def provider(flavour: str, server: FakeServer, **overrides: object) -> Provider:
    return build_provider({"provider": flavour, "model": "fake-model", "base_url": server.sdk_base_url, **overrides})


def test_openai_asks_for_a_json_schema_response() -> None:
    with FakeOpenAI() as server:
        p = provider("openai", server, temperature=0.3, max_tokens=99)
        run_closed(p, "structured", MESSAGES, Method)
    body = server.bodies[0]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Method", "schema": Method.model_json_schema(), "strict": False},
    }
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("fake-model", 0.3, 99)
    assert body["messages"] == MESSAGES
    assert server.auth == ["Bearer sk-test"]


def test_openai_strict_mode_is_optional() -> None:
    with FakeOpenAI() as server:
        run_closed(provider("openai", server, strict=True), "structured", MESSAGES, Method)
    assert server.bodies[0]["response_format"]["json_schema"]["strict"] is True


@pytest.mark.parametrize(
    ("mode", "field", "value"),
    [
        ("structured_outputs", "structured_outputs", {"json": Method.model_json_schema()}),
        ("guided_json", "guided_json", Method.model_json_schema()),
    ],
)
def test_vllm_uses_guided_decoding(mode: str, field: str, value: dict) -> None:
    with FakeOpenAI() as server:
        run_closed(provider("vllm", server, structured_mode=mode), "structured", MESSAGES, Method)
    body = server.bodies[0]
    assert body[field] == value
    assert "response_format" not in body


def test_vllm_can_use_response_format_instead() -> None:
    with FakeOpenAI() as server:
        run_closed(provider("vllm", server, structured_mode="response_format"), "structured", MESSAGES, Method)
    assert server.bodies[0]["response_format"]["type"] == "json_schema"


def test_vllm_needs_no_key_and_sends_a_placeholder() -> None:
    with FakeOpenAI() as server:
        result = run_closed(provider("vllm", server), "structured", MESSAGES, Method)
    assert result.ok and server.auth == ["Bearer EMPTY"]


def test_vllm_uses_its_key_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_API_KEY", "local-secret")
    with FakeOpenAI() as server:
        run_closed(provider("vllm", server), "structured", MESSAGES, Method)
    assert server.auth == ["Bearer local-secret"]


def test_vllm_adapter_is_selected_by_model_name() -> None:
    with FakeOpenAI(models=["base", "gen-3"]) as server:
        p = provider("vllm", server, model="base", adapter="gen-3")
        result = run_closed(p, "structured", MESSAGES, Method)
    assert result.ok and result.model == "gen-3"
    assert server.bodies[0]["model"] == "gen-3"


def test_vllm_lists_served_models() -> None:
    with FakeOpenAI(models=["base", "gen-1", "gen-2"]) as server:
        names = run_closed(provider("vllm", server), "list_models")
    assert names == ["base", "gen-1", "gen-2"]


def test_anthropic_forces_one_tool_and_lifts_the_system_prompt() -> None:
    with FakeAnthropic() as server:
        result = run_closed(provider("anthropic", server, max_tokens=77), "structured", MESSAGES, Method)
    assert result.ok
    body = server.bodies[0]
    assert body["system"] == "You propose estimators."
    assert body["messages"] == [{"role": "user", "content": "Propose one."}]
    assert body["tools"] == [
        {"name": "Method", "description": "An estimator of location.", "input_schema": Method.model_json_schema()}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "Method"}
    assert body["max_tokens"] == 77
    assert "temperature" not in body
    assert server.auth[0].endswith("sk-ant-test")  # x-api-key or Bearer, by SDK release


def test_anthropic_sends_temperature_only_when_set() -> None:
    with FakeAnthropic() as server:
        run_closed(provider("anthropic", server, temperature=0.2), "structured", MESSAGES, Method)
    assert server.bodies[0]["temperature"] == 0.2


@pytest.mark.parametrize(("flavour", "server_class"), [("openai", FakeOpenAI), ("anthropic", FakeAnthropic)])
def test_chat_returns_text_with_its_cost(flavour: str, server_class: type[FakeServer]) -> None:
    with server_class() as server:
        result = run_closed(provider(flavour, server), "chat", MESSAGES)
    assert result.ok and result.value is None
    assert result.text == '{"family": "trimmed_mean", "alpha": 0.2}'
    assert result.cost.calls == 1 and result.cost.tokens_in > 0
    assert "tools" not in server.bodies[0] and "response_format" not in server.bodies[0]


def test_chat_failure_is_a_value_not_an_exception() -> None:
    with FakeOpenAI(["401"]) as server:
        result = run_closed(provider("openai", server), "chat", MESSAGES)
    assert not result.ok and result.error.startswith("fatal error, not retried: HTTP 401")


def test_fenced_json_is_accepted() -> None:
    with FakeOpenAI() as server:
        server.ok_body = lambda request, content: FakeOpenAI.ok_body(  # type: ignore[method-assign]
            server, request, '```json\n{"family": "median", "alpha": 0}\n```'
        )
        result = run_closed(provider("openai", server), "structured", MESSAGES, Method)
    assert result.value == Method(family="median", alpha=0)


@pytest.mark.parametrize(("flavour", "server_class"), [("vllm", FakeOpenAI), ("anthropic", FakeAnthropic)])
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the first loop's client is left open on purpose
def test_one_provider_survives_several_event_loops(flavour: str, server_class: type[FakeServer]) -> None:
    """Callers may use asyncio.run more than once, closing the client or not; each loop
    gets its own client and concurrency gate."""
    with server_class() as server:
        p = provider(flavour, server)
        first = asyncio.run(p.structured(MESSAGES, Method))  # never closed
        second = run_closed(p, "structured", MESSAGES, Method)
        third = run_closed(p, "chat", MESSAGES)
    assert first.ok and second.ok and third.ok
    assert server.requests == 3


@pytest.mark.parametrize(
    ("flavour", "server_class", "path"),
    [("openai", FakeOpenAI, "/chat/completions"), ("anthropic", FakeAnthropic, "/v1/messages")],
)
@pytest.mark.parametrize("prepared", [True, False])
def test_the_endpoint_sends_what_the_sdks_post_sends(
    flavour: str, server_class: type[FakeServer], path: str, prepared: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The providers post through an endpoint that builds the SDK's request options once;
    the request that reaches the server is byte for byte the one ``client.post`` sends.
    An SDK release without the options the endpoint prepares is sent through ``client.post``."""
    if not prepared:
        monkeypatch.setattr(_http, "_request_options", lambda sdk: None)
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "Schätze µ — 推定"}],
        "max_tokens": 64,
        "temperature": 0.25,
        "nested": {"schema": Method.model_json_schema(), "flags": [True, False, None], "n": 10**12},
    }
    with server_class() as server:
        p = provider(flavour, server)

        async def both() -> None:
            async with p:
                endpoint = p._client()
                assert endpoint.prepared is prepared
                via_endpoint = await endpoint.post(body)
                via_post = await endpoint.sdk_client.post(path, body=body, cast_to=type(via_endpoint))
                assert via_endpoint.content == via_post.content

        asyncio.run(both())
    (path_a, headers_a, body_a), (path_b, headers_b, body_b) = server.raw
    assert (path_a, body_a) == (path_b, body_b)
    assert headers_a == headers_b
