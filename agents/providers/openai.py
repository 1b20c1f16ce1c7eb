"""OpenAI chat completions, through the official ``openai.AsyncOpenAI`` client.

Also the base of the vLLM provider: any OpenAI-compatible server works with
``base_url``. Structured output uses ``response_format`` with a JSON schema.

The SDK is imported when a provider is built, not with this module: configs are
validated in every run, and importing the SDK costs about a second of CPU that a run
without model agents (and each of its worker processes) should not pay.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel

from ._http import pooled_client
if TYPE_CHECKING:
    import openai

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


class OpenAIConfig(ProviderConfig):
    """An OpenAI (or OpenAI-compatible) endpoint. The key is read from the environment
    variable named by ``api_key_env``, never from the config file."""

    provider: Literal["openai"] = "openai"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    strict: bool = False
    """OpenAI strict schema mode; it needs every field required and no extra keys."""

    def build(self) -> "OpenAIProvider":
        return OpenAIProvider(self)


class OpenAIProvider(Provider):
    name: ClassVar[str] = "openai"
    config: OpenAIConfig

    def __init__(self, config: OpenAIConfig) -> None:
        super().__init__(config)
        self._api_key = self._resolve_key()
        import openai
        from openai.types.chat import ChatCompletion

        self.api_errors = (openai.APIError,)
        self._completion = ChatCompletion

    def _resolve_key(self) -> str:
        key = os.environ.get(self.config.api_key_env, "")
        if not key:
            raise ProviderConfigError(
                f"{self.name} provider for model {self.config.model!r} needs an API key: "
                f"set the environment variable {self.config.api_key_env}"
            )
        return key

    def _make_client(self) -> "openai.AsyncOpenAI":
        import openai

        return openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.config.base_url,
            timeout=self.config.timeout_s,
            max_retries=0,
            http_client=_http_client(self.config.concurrency, self.config.timeout_s),
        )

    def _format(self, schema: type[BaseModel]) -> dict[str, Any]:
        """Body fields that ask for JSON matching ``schema``."""
        name, json_schema = json_schema_of(schema)
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": json_schema, "strict": self.config.strict},
            }
        }

    async def _call(self, messages: list[Message], schema: type[BaseModel] | None) -> RawReply:
        """One chat completion.

        Sent with the client's documented ``post`` rather than ``chat.completions.create``:
        ``create`` walks every request (the JSON schema included) through the SDK's
        parameter transform, about 1 ms of CPU a call here, for plain dicts it would not
        change. That is a third of the client's cost at vLLM-style concurrency; auth,
        timeouts, error mapping and response parsing are still the SDK's.
        """
        body: dict[str, Any] = {
            "model": self.request_model,
            "messages": messages,
            "max_tokens": self.config.max_tokens,
        }
        if self.config.temperature is not None:
            body["temperature"] = self.config.temperature
        if schema is not None:
            body.update(self._format(schema))
        response = await self._client().post("/chat/completions", body=body, cast_to=self._completion)
        if not response.choices:
            raise MalformedResponse("reply without choices")
        message = response.choices[0].message
        text = message.content if message.content is not None else (message.refusal or "")
        usage = response.usage
        return RawReply(
            text=text,
            tokens_in=usage.prompt_tokens if usage else 0,
            tokens_out=usage.completion_tokens if usage else 0,
        )

    def classify(self, exc: BaseException) -> Failure:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return classify_status(exc.status_code)
        if isinstance(exc, openai.APIConnectionError):  # timeouts included
            return "transient"
        return "fatal"


def _http_client(concurrency: int, timeout_s: float) -> Any:
    """openai>=3 is built on httpx2, older releases on httpx."""
    import openai

    if hasattr(openai, "DefaultAsyncHttpx2Client"):
        return pooled_client(openai.DefaultAsyncHttpx2Client, "httpx2", concurrency, timeout_s)
    return pooled_client(openai.DefaultAsyncHttpxClient, "httpx", concurrency, timeout_s)
