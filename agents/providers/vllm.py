"""A local ``vllm serve MODEL`` server, through its OpenAI-compatible API.

vLLM cannot be installed on the CPU machines, so ouro talks to its server. Structured
output uses vLLM's guided decoding: ``structured_outputs: {"json": schema}`` since vLLM
0.12 (which removed the older top-level ``guided_json``); both, and the standard
``response_format``, are selectable with ``structured_mode``. A LoRA adapter loaded in
the server (``--lora-modules NAME=PATH`` or ``/v1/load_lora_adapter``) is selected by
sending its name as the model.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from .base import json_schema_of
from .openai import OpenAIConfig, OpenAIProvider


class VLLMConfig(OpenAIConfig):
    """A vLLM server. ``model`` is the served base model; ``adapter``, when set, is the
    name of a LoRA adapter the server has loaded, and requests go to it."""

    provider: Literal["vllm"] = "vllm"  # type: ignore[assignment]
    base_url: str | None = "http://127.0.0.1:8000/v1"
    api_key_env: str = "VLLM_API_KEY"
    adapter: str | None = None
    structured_mode: Literal["structured_outputs", "guided_json", "response_format"] = (
        "structured_outputs"
    )

    def build(self) -> "VLLMProvider":
        return VLLMProvider(self)


class VLLMProvider(OpenAIProvider):
    name: ClassVar[str] = "vllm"
    config: VLLMConfig

    def _resolve_key(self) -> str:
        """A local server started without ``--api-key`` accepts any key."""
        return os.environ.get(self.config.api_key_env) or "EMPTY"

    @property
    def request_model(self) -> str:
        return self.config.adapter or self.config.model

    def _format(self, schema: type[BaseModel]) -> dict[str, Any]:
        mode = self.config.structured_mode
        if mode == "response_format":
            return super()._format(schema)
        _, json_schema = json_schema_of(schema)
        if mode == "guided_json":
            return {"guided_json": json_schema}
        return {"structured_outputs": {"json": json_schema}}

    async def list_models(self) -> list[str]:
        """Ids the server serves (base model and loaded adapters), via ``GET /v1/models``.

        Raises the SDK's error when the server is unreachable: this is a readiness check,
        meant to fail loudly before an experiment starts.
        """
        page = await self._client().sdk_client.models.list()
        return [model.id for model in page.data]
