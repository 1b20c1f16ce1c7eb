"""What a model-backed researcher writes a method as.

``dsl``: a JSON object of the environment's method DSL (``env.method_type``), asked for
as structured output, so the server constrains the reply to the schema where it can
(vLLM's guided decoding, OpenAI's ``response_format``, Anthropic's forced tool).

``code``: Python source defining ``estimate_batch(X)`` or ``estimate(x)``, one
``{"name", "source"}`` object per method, unpacked into the environment's code method
(``env.code_method_type``), which only ever runs in the sandbox (``ouro.sandbox``).

A kind is one small object with four jobs: the schema of a reply holding k methods,
unpacking a validated reply into methods, writing a method into a prompt (one JSON
object per line, as the prompts say), and the instruction line that tells the model
what a method is.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from ouro.sandbox import ALLOWED_IMPORTS, check_source


class MethodKind(Protocol):
    name: str

    def reply_schema(self, env: Any, count: int) -> type[BaseModel]: ...

    def unpack(self, env: Any, reply: BaseModel) -> list: ...

    def render(self, env: Any, method: Any) -> str: ...

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

    def render(self, env: Any, method: Any) -> str:
        return json.dumps(method.model_dump(mode="json"), sort_keys=True)

    def instructions(self, env: Any) -> str:
        return (
            "Each method is one JSON object of the method language in the problem statement, written "
            "like the exemplars; keep parameters inside their stated ranges. "
            "Prefer methods you expect to beat the exemplars, and vary your proposals."
        )


MAX_SOURCE_CHARS = 20_000  # as the estimators' CodeMethod: a reply cannot hold a source the method would refuse


def _runnable(source: str) -> str:
    """The sandbox's static check, applied while the reply is validated: a source that
    could never run (a forbidden import, a syntax error, no ``estimate``) is re-asked
    with the sandbox's reason, like any other invalid output, and recorded as invalid
    if it never passes. Failures only a run can show are left to the verifiers."""
    reason = check_source(source)
    if reason is not None:
        raise ValueError(f"the sandbox refuses this source: {reason}")
    return source


class CodeProposal(BaseModel):
    """One method written as Python source."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=80, description="a short label for the method, for people")
    source: Annotated[str, AfterValidator(_runnable)] = Field(
        min_length=1,
        max_length=MAX_SOURCE_CHARS,
        description="Python source defining estimate_batch(X) or estimate(x)",
    )


@functools.lru_cache(maxsize=64)
def _code_reply(count: int) -> type[BaseModel]:
    return create_model(
        f"CodeProposals{count}",
        __base__=_Reply,
        __doc__=_Reply.__doc__,
        proposals=(list[CodeProposal], Field(min_length=count, max_length=count)),
    )


class CodeMethods:
    """Methods as Python source, run only in the sandbox."""

    name = "code"

    def reply_schema(self, env: Any, count: int) -> type[BaseModel]:
        if getattr(env, "code_method_type", None) is None:
            raise TypeError(
                f"environment {getattr(env, 'name', env)!r} has no code_method_type: it cannot take code proposals "
                "(method_kind: code); use method_kind: dsl"
            )
        return _code_reply(count)

    def unpack(self, env: Any, reply: BaseModel) -> list:
        return [
            env.parse_method({"family": "code", "source": p.source, "name": p.name})
            for p in reply.proposals  # type: ignore[attr-defined]
        ]

    def render(self, env: Any, method: Any) -> str:
        """``{"name", "source"}`` on one line: a code method as it was written, a DSL method
        (the seed corpus) as the environment's equivalent source."""
        name = getattr(method, "name", "") or env.method_key(method)
        return json.dumps({"name": name, "source": env.method_source(method)})

    def instructions(self, env: Any) -> str:
        imports = ", ".join(sorted(ALLOWED_IMPORTS))
        return (
            "Each method is one JSON object {\"name\": a short label, \"source\": Python source}, like the "
            "exemplars. The source defines estimate_batch(X), where X is a float64 array of shape (R, n) holding "
            "one sample per row and the result is R numbers, one estimate per row (preferred: vectorize over "
            "rows with numpy), or estimate(x), one sample as a 1-D array to one float. It may import only "
            f"{imports}; names starting with an underscore, files, processes and the network are not "
            "available. It runs in a sandbox with limits on CPU time, memory and wall-clock time; a method "
            "that fails there, or returns anything but finite numbers, is rejected with the reason. The "
            "methods named in the problem statement are examples, not a limit. Prefer methods you expect to "
            "beat the exemplars, and vary your proposals."
        )


METHOD_KINDS: dict[str, MethodKind] = {"dsl": DSLMethods(), "code": CodeMethods()}
