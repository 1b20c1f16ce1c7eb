"""Model providers: one async interface (``structured``, ``chat``) over OpenAI,
Anthropic and vLLM servers, with one shared retry loop and cost accounting.

A YAML block such as ``{provider: vllm, model: Qwen/Qwen2.5-7B-Instruct}`` becomes a
provider with ``build_provider(block)``; the ``provider`` key picks the config class.
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping, Union

from pydantic import Field, TypeAdapter

from .anthropic import AnthropicConfig, AnthropicProvider
from .base import (
    CallResult,
    Message,
    Prices,
    Provider,
    ProviderConfig,
    ProviderConfigError,
    RawReply,
)
from .openai import OpenAIConfig, OpenAIProvider
from .vllm import VLLMConfig, VLLMProvider

PROVIDERS: dict[str, type[ProviderConfig]] = {
    "openai": OpenAIConfig,
    "vllm": VLLMConfig,
    "anthropic": AnthropicConfig,
}
"""Provider name (the ``provider`` key in YAML) to its config class."""

AnyProviderConfig = Annotated[
    Union[OpenAIConfig, VLLMConfig, AnthropicConfig], Field(discriminator="provider")
]
"""The field type for a provider inside a larger config: pydantic picks the class."""

_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyProviderConfig)


def provider_config(data: ProviderConfig | Mapping[str, Any]) -> ProviderConfig:
    """Validate a mapping (from YAML) into its provider's config; configs pass through."""
    if isinstance(data, ProviderConfig):
        return data
    return _ADAPTER.validate_python(dict(data))


def build_provider(config: ProviderConfig | Mapping[str, Any]) -> Provider:
    """A ready provider. Raises ``ProviderConfigError`` at once when its key is missing."""
    return provider_config(config).build()


__all__ = [
    "PROVIDERS",
    "AnyProviderConfig",
    "AnthropicConfig",
    "AnthropicProvider",
    "CallResult",
    "Message",
    "OpenAIConfig",
    "OpenAIProvider",
    "Prices",
    "Provider",
    "ProviderConfig",
    "ProviderConfigError",
    "RawReply",
    "VLLMConfig",
    "VLLMProvider",
    "build_provider",
    "provider_config",
]
