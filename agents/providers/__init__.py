"""Model providers: one async interface (``structured``, ``chat``) over OpenAI,
Anthropic and vLLM servers and an offline scripted model, with one shared retry loop
and cost accounting.

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
from .scripted import ScriptedConfig, ScriptedProvider
from .vllm import VLLMConfig, VLLMProvider

PROVIDERS: dict[str, type[ProviderConfig]] = {
    "openai": OpenAIConfig,
    "vllm": VLLMConfig,
    "anthropic": AnthropicConfig,
    "scripted": ScriptedConfig,
}
"""Provider name (the ``provider`` key in YAML) to its config class."""

AnyProviderConfig = Annotated[
    Union[OpenAIConfig, VLLMConfig, AnthropicConfig, ScriptedConfig], Field(discriminator="provider")
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


_SHARED: dict[ProviderConfig, Provider] = {}


def shared_provider(config: ProviderConfig | Mapping[str, Any]) -> Provider:
    """One provider per distinct config in a process.

    Every seed's researcher (and a judge configured identically) then share one
    concurrency limit and one connection pool per event loop, so ``concurrency`` means
    what it says: requests in flight to that endpoint, not per seed.
    """
    cfg = provider_config(config)
    provider = _SHARED.get(cfg)
    if provider is None:
        provider = _SHARED[cfg] = cfg.build()
    return provider


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
    "ScriptedConfig",
    "ScriptedProvider",
    "VLLMConfig",
    "VLLMProvider",
    "build_provider",
    "provider_config",
    "shared_provider",
]
