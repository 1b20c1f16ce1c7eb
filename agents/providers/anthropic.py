"""Anthropic messages, through the official ``anthropic.AsyncAnthropic`` client.

Structured output is a single forced tool: its ``input_schema`` is the pydantic JSON
schema and ``tool_choice`` names it, so the reply is a ``tool_use`` block whose input is
the object. System messages go in the ``system`` parameter, as the API requires.
The SDK is imported when a provider is built (see ``openai.py`` for why).
"""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from ._http import Endpoint, Transport, check_base_url, check_transport, sdk_http_client
from .base import (
    Failure,
    MalformedResponse,
    Message,
    Provider,
    ProviderConfig,
    ProviderConfigError,
    RawReply,
    classify_status,
    json_schema_of,
)


class AnthropicConfig(ProviderConfig):
    """An Anthropic endpoint. The key is read from the environment variable named by
    ``api_key_env``, never from the config file.

    ``temperature`` defaults to unset: recent SDKs no longer list it and recent models
    may refuse it; when set, it is sent as an extra body field.
    """

    provider: Literal["anthropic"] = "anthropic"
    temperature: float | None = Field(None, allow_inf_nan=False)
    base_url: str | None = None
    api_key_env: str = "ANTHROPIC_API_KEY"
    transport: Transport = "auto"
    """The SDK's HTTP transport: aiohttp when installed ("auto"), or httpx."""

    _base_url = field_validator("base_url")(check_base_url)

    def build(self) -> "AnthropicProvider":
        return AnthropicProvider(self)


class AnthropicProvider(Provider):
    name: ClassVar[str] = "anthropic"
    config: AnthropicConfig

    def __init__(self, config: AnthropicConfig) -> None:
        super().__init__(config)
        # The SDK constructs without a key and fails at the first request with a
        # TypeError; check here so the error comes first and names the variable.
        self._api_key = os.environ.get(config.api_key_env, "")
        if not self._api_key:
            raise ProviderConfigError(
                f"anthropic provider for model {config.model!r} needs an API key: "
                f"set the environment variable {config.api_key_env}"
            )
        import anthropic

        check_transport(anthropic, config.transport)
        self.api_errors = (anthropic.AnthropicError,)

    def _make_client(self) -> Endpoint:
        """The messages endpoint of a fresh ``anthropic.AsyncAnthropic`` client."""
        import anthropic

        client = anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=self.config.base_url,
            timeout=self.config.timeout_s,
            max_retries=0,
            http_client=sdk_http_client(
                anthropic, self.config.transport, self.config.concurrency, self.config.timeout_s
            ),
        )
        return Endpoint(anthropic, client, "/v1/messages")

    async def _call(self, messages: list[Message], schema: type[BaseModel] | None) -> RawReply:
        """One message.

        Posted through the SDK client as a raw request (:class:`~._http.Endpoint`), and the
        reply read with :class:`_Message`, rather than with ``messages.create``: measured
        here on sequential calls, a call cost about 1.5 ms of client CPU through ``create``
        and 0.9 ms this way; ``create`` builds the full ``Message`` from the reply (a call
        reads three of its fields) and a request body of every parameter it knows.
        What ``create`` does besides, and this does not: it warns about deprecated models,
        derives a timeout from ``max_tokens`` when the client's timeout is the SDK's
        default (a provider always sets ``timeout_s``), and names its tracing span.
        """
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        body: dict[str, Any] = {"max_tokens": self.config.max_tokens, "messages": turns, "model": self.request_model}
        if system:
            body["system"] = system
        if schema is not None:
            name, json_schema = json_schema_of(schema)
            description = (schema.__doc__ or "").strip() or "Give the answer as this tool's input."
            body["tool_choice"] = {"type": "tool", "name": name}
            body["tools"] = [{"name": name, "description": description, "input_schema": json_schema}]
        if self.config.temperature is not None:
            body["temperature"] = self.config.temperature
        response = await self._client().post(body)
        return _reply(response.content, want_tool=schema is not None)

    def classify(self, exc: BaseException) -> Failure:
        import anthropic

        if isinstance(exc, anthropic.APIStatusError):
            return classify_status(exc.status_code)
        if isinstance(exc, (anthropic.APIConnectionError, anthropic.RetryableError)):
            return "transient"  # timeouts included
        return "fatal"


class _Block(BaseModel):
    type: str
    text: str = ""
    input: Any = None  # a tool_use block's object


class _Usage(BaseModel):
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    cache_creation_input_tokens: int | None = 0
    cache_read_input_tokens: int | None = 0


class _Message(BaseModel):
    """The fields of a message that a call uses; the rest is ignored."""

    content: list[_Block]
    usage: _Usage | None = None


def _reply(content: bytes, want_tool: bool) -> RawReply:
    """The reply text and token counts of a 2xx body; a body that is not a message (a
    proxy's page) is a :class:`MalformedResponse`."""
    try:
        message = _Message.model_validate_json(content)
    except ValidationError as exc:
        raise MalformedResponse(f"not a message: {content[:200]!r}") from exc
    return RawReply(text=_reply_text(message.content, want_tool), **_usage(message.usage))


def _reply_text(blocks: list[_Block], want_tool: bool) -> str:
    """The tool input as JSON when a tool was forced, else the text blocks joined.

    A forced tool that did not come back yields the text instead, which then fails
    validation and is asked again, like any other invalid output.
    """
    if want_tool:
        for block in blocks:
            if block.type == "tool_use":
                return json.dumps(block.input, ensure_ascii=False)
    return "".join(block.text for block in blocks if block.type == "text")


def _usage(usage: _Usage | None) -> dict[str, int]:
    """Input tokens include cache writes and reads: they were all sent."""
    if usage is None:
        return {"tokens_in": 0, "tokens_out": 0}
    tokens_in = (usage.input_tokens or 0) + (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
    return {"tokens_in": tokens_in, "tokens_out": usage.output_tokens or 0}
