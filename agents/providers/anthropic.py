"""Anthropic messages, through the official ``anthropic.AsyncAnthropic`` client.

Structured output is a single forced tool: its ``input_schema`` is the pydantic JSON
schema and ``tool_choice`` names it, so the reply is a ``tool_use`` block whose input is
the object. System messages go in the ``system`` parameter, as the API requires.
The SDK is imported when a provider is built (see ``openai.py`` for why).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    import anthropic

from ._http import Transport, check_transport, sdk_http_client
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
    temperature: float | None = None
    base_url: str | None = None
    api_key_env: str = "ANTHROPIC_API_KEY"
    transport: Transport = "auto"
    """The SDK's HTTP transport: aiohttp when installed ("auto"), or httpx."""

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

    def _make_client(self) -> "anthropic.AsyncAnthropic":
        import anthropic

        return anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=self.config.base_url,
            timeout=self.config.timeout_s,
            max_retries=0,
            http_client=sdk_http_client(
                anthropic, self.config.transport, self.config.concurrency, self.config.timeout_s
            ),
        )

    async def _call(self, messages: list[Message], schema: type[BaseModel] | None) -> RawReply:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        fields: dict[str, Any] = {}
        if system:
            fields["system"] = system
        if schema is not None:
            name, json_schema = json_schema_of(schema)
            description = (schema.__doc__ or "").strip() or "Give the answer as this tool's input."
            fields["tools"] = [{"name": name, "description": description, "input_schema": json_schema}]
            fields["tool_choice"] = {"type": "tool", "name": name}
        if self.config.temperature is not None:
            fields["extra_body"] = {"temperature": self.config.temperature}
        response = await self._client().messages.create(
            model=self.request_model,
            max_tokens=self.config.max_tokens,
            messages=turns,
            **fields,
        )
        if not isinstance(getattr(response, "content", None), list):
            # the SDK hands back the text of a 2xx reply that is not JSON (a proxy's page)
            raise MalformedResponse(f"not a message: {str(response)[:200]!r}")
        return RawReply(text=_reply_text(response.content, schema is not None), **_usage(response.usage))

    def classify(self, exc: BaseException) -> Failure:
        import anthropic

        if isinstance(exc, anthropic.APIStatusError):
            return classify_status(exc.status_code)
        if isinstance(exc, (anthropic.APIConnectionError, anthropic.RetryableError)):
            return "transient"  # timeouts included
        return "fatal"


def _reply_text(blocks: list[Any], want_tool: bool) -> str:
    """The tool input as JSON when a tool was forced, else the text blocks joined.

    A forced tool that did not come back yields the text instead, which then fails
    validation and is asked again, like any other invalid output.
    """
    if want_tool:
        for block in blocks:
            if block.type == "tool_use":
                return json.dumps(block.input, ensure_ascii=False)
    return "".join(block.text for block in blocks if block.type == "text")


def _usage(usage: Any) -> dict[str, int]:
    """Input tokens include cache writes and reads: they were all sent."""
    if usage is None:
        return {"tokens_in": 0, "tokens_out": 0}
    tokens_in = (
        (usage.input_tokens or 0)
        + (getattr(usage, "cache_creation_input_tokens", 0) or 0)
        + (getattr(usage, "cache_read_input_tokens", 0) or 0)
    )
    return {"tokens_in": tokens_in, "tokens_out": usage.output_tokens or 0}
