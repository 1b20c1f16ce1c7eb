"""What a model-backed researcher writes a method as.

``dsl``: a JSON object of the environment's method DSL (``env.method_type``), asked for
as structured output, so the server constrains the reply to the schema where it can
(vLLM's guided decoding, OpenAI's ``response_format``, Anthropic's forced tool).

A kind is one small object with four jobs: the schema of a reply holding k methods,
unpacking a validated reply into methods, writing a method into a prompt, and the
instruction line that tells the model what a method is. Another kind (Python source
run in a sandbox, ``code``) registers itself in ``METHOD_KINDS`` the same way.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, create_model


class MethodKind(Protocol):
    name: str

    def reply_schema(self, env: Any, count: int) -> type[BaseModel]: ...

    def unpack(self, env: Any, reply: BaseModel) -> list: ...

    def render(self, method: Any) -> str: ...

    def instructions(self, env: Any) -> str: ...


def _any_of(node: Any) -> Any:
    """``oneOf`` -> ``anyOf``, no OpenAPI ``discriminator``, and tags required: what pydantic
    writes for a tagged union, made digestible to every grammar backend (xgrammar,
    guidance, outlines). The members carry distinct constant tags (``family``), so
    ``anyOf`` means ``oneOf`` here; a tag with a default is still required, or a guided
    decoder may leave it out and the reply cannot be told apart."""
    if isinstance(node, list):
        return [_any_of(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {("anyOf" if k == "oneOf" else k): _any_of(v) for k, v in node.items() if k != "discriminator"}
    consts = [name for name, prop in out.get("properties", {}).items() if isinstance(prop, dict) and "const" in prop]
    if consts:
        out["required"] = consts + [r for r in out.get("required", []) if r not in consts]
    return out


class _Reply(BaseModel):
    """Proposed methods for the problem."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return _any_of(super().model_json_schema(*args, **kwargs))


@functools.lru_cache(maxsize=64)
def _dsl_reply(method_type: Any, count: int) -> type[BaseModel]:
    return create_model(
        f"Proposals{count}",
        __base__=_Reply,
        __doc__=_Reply.__doc__,
        proposals=(list[method_type], Field(min_length=count, max_length=count)),  # type: ignore[valid-type]
    )


class DSLMethods:
    """Methods as JSON objects of the environment's DSL."""

    name = "dsl"

    def reply_schema(self, env: Any, count: int) -> type[BaseModel]:
        method_type = getattr(env, "method_type", None)
        if method_type is None:
            raise TypeError(f"environment {getattr(env, 'name', env)!r} has no method_type: it cannot take DSL proposals")
        return _dsl_reply(method_type, count)

    def unpack(self, env: Any, reply: BaseModel) -> list:
        return [env.parse_method(m) for m in reply.proposals]  # type: ignore[attr-defined]

    def render(self, method: Any) -> str:
        return json.dumps(method.model_dump(mode="json"), sort_keys=True)

    def instructions(self, env: Any) -> str:
        return (
            "Each method is one JSON object of the method language in the problem statement, written "
            "like the exemplars; keep parameters inside their stated ranges. "
            "Prefer methods you expect to beat the exemplars, and vary your proposals."
        )


METHOD_KINDS: dict[str, MethodKind] = {"dsl": DSLMethods()}
