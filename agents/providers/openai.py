"""OpenAI chat completions, through the official ``openai.AsyncOpenAI`` client.

Also the base of the vLLM provider: any OpenAI-compatible server works with
``base_url``. Structured output uses ``response_format`` with a JSON schema.

The SDK is imported when a provider is built, not with this module: configs are
validated in every run, and importing the SDK costs about a second of CPU that a run
without model agents (and each of its worker processes) should not pay.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

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


class OpenAIConfig(ProviderConfig):
    """An OpenAI (or OpenAI-compatible) endpoint. The key is read from the environment
    variable named by ``api_key_env``, never from the config file."""

    provider: Literal["openai"] = "openai"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    strict: bool = False
    """OpenAI strict schema mode; it needs every field required and no extra keys."""
    transport: Transport = "auto"
    """The SDK's HTTP transport: aiohttp when installed ("auto"), or httpx."""

    _base_url = field_validator("base_url")(check_base_url)

    def build(self) -> "OpenAIProvider":
        return OpenAIProvider(self)


class OpenAIProvider(Provider):
    name: ClassVar[str] = "openai"
    config: OpenAIConfig

    def __init__(self, config: OpenAIConfig) -> None:
        super().__init__(config)
        self._api_key = self._resolve_key()
        import openai

        check_transport(openai, config.transport)
        self.api_errors = (openai.APIError,)

    def _resolve_key(self) -> str:
        key = os.environ.get(self.config.api_key_env, "")
        if not key:
            raise ProviderConfigError(
                f"{self.name} provider for model {self.config.model!r} needs an API key: "
                f"set the environment variable {self.config.api_key_env}"
            )
        return key

    def _make_client(self) -> Endpoint:
        """The chat completions endpoint of a fresh ``openai.AsyncOpenAI`` client."""
        import openai

        client = openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.config.base_url,
            timeout=self.config.timeout_s,
            max_retries=0,
            http_client=sdk_http_client(openai, self.config.transport, self.config.concurrency, self.config.timeout_s),
        )
        return Endpoint(openai, client, "/chat/completions")

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

        Posted through the SDK client as a raw request (:class:`~._http.Endpoint`) rather
        than with ``chat.completions.create``: ``create`` walks every request (the JSON
        schema included) through the SDK's parameter transform, and builds the full
        ``ChatCompletion`` object from the reply, about 1.5 ms of CPU a call here together,
        for plain dicts it would not change and fields we do not read. Auth, timeouts and
        the mapping of HTTP errors to the SDK's exceptions are still the SDK's; the reply
        is read with :class:`_Completion`.
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
        response = await self._client().post(body)
        return _reply(response.content)

    def classify(self, exc: BaseException) -> Failure:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return classify_status(exc.status_code)
        if isinstance(exc, openai.APIConnectionError):  # timeouts included
            return "transient"
        return "fatal"


class _Message(BaseModel):
    content: str | None = None
    refusal: str | None = None


class _Choice(BaseModel):
    message: _Message


class _Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Completion(BaseModel):
    """The fields of a chat completion that a call uses; the rest is ignored."""

    model_config = ConfigDict(extra="ignore")

    choices: list[_Choice]
    usage: _Usage | None = None


def _reply(content: bytes) -> RawReply:
    """The reply text and token counts of a 2xx body; a body that is not a completion
    (a proxy's error page, no choices) is a :class:`MalformedResponse`."""
    try:
        completion = _Completion.model_validate_json(content)
    except ValidationError as exc:
        raise MalformedResponse(f"not a chat completion: {content[:200]!r}") from exc
    if not completion.choices:
        raise MalformedResponse("reply without choices")
    message = completion.choices[0].message
    text = message.content if message.content is not None else (message.refusal or "")
    usage = completion.usage
    return RawReply(
        text=text,
        tokens_in=usage.prompt_tokens if usage else 0,
        tokens_out=usage.completion_tokens if usage else 0,
    )
