"""Checks made when a run starts, before any work: what would otherwise fail in a worker.

* A component that needs an optional extra (``unavailable()`` says why it cannot run,
  e.g. the local-lm researcher without torch) is refused in one line, exit 2.
* Every model provider in the config is built once, here: a missing API key is a
  one-line error naming the variable (exit 2), not a traceback from a worker process
  an hour later.
* ``judge: self`` needs a researcher with likelihoods: an LLM researcher grading
  itself is ``judge: llm`` with the researcher's own model.
* An LLM judge with the researcher's provider and model is a researcher grading itself.
  That is a legitimate arm, but it must be deliberate: it is reported as a warning.
"""

from __future__ import annotations

from typing import Any, Iterator

from pydantic import BaseModel

from ouro.agents.providers import ProviderConfig, ProviderConfigError, shared_provider
from ouro.config import ConfigError


def _providers(node: Any, path: str) -> Iterator[tuple[str, ProviderConfig]]:
    """Every provider config inside a component config, with its dotted path."""
    if isinstance(node, ProviderConfig):
        yield path, node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _providers(getattr(node, name), f"{path}.{name}")
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _providers(item, f"{path}[{i}]")


def _same_model(a: ProviderConfig, b: ProviderConfig) -> bool:
    return (a.provider, a.model) == (b.provider, b.model)


def preflight(config: Any) -> list[str]:
    """Raise ``ConfigError`` for what cannot work; return warnings for what is suspicious."""
    components = [("researcher", config.researcher)] + [(f"arms[{i}].verifier", a.verifier) for i, a in enumerate(config.arms)]
    for path, component in components:
        reason = getattr(component, "unavailable", lambda: None)()
        if reason:
            raise ConfigError(f"{path}: {reason}")
    found = list(_providers(config.researcher, "researcher"))
    for i, arm in enumerate(config.arms):
        found += list(_providers(arm.verifier, f"arms[{i}].verifier"))
    for path, provider in found:
        try:
            shared_provider(provider)
        except ProviderConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    warnings = []
    researcher_model = getattr(config.researcher, "model", None)
    for arm in config.arms:
        verifier = arm.verifier
        if getattr(verifier, "kind", None) == "model" and getattr(verifier, "judge", None) == "self" and researcher_model is not None:
            raise ConfigError(
                f"arms.{arm.name}.verifier: judge 'self' ranks by the researcher's likelihood, which a "
                f"'{config.researcher.kind}' researcher does not have; for a model grading its own proposals "
                "use judge: llm with the researcher's model"
            )
        judge_model = getattr(verifier, "model", None)
        if isinstance(judge_model, ProviderConfig) and isinstance(researcher_model, ProviderConfig):
            if _same_model(judge_model, researcher_model):
                warnings.append(
                    f"arm '{arm.name}': the judge is the researcher's own model ({judge_model.provider} "
                    f"{judge_model.model}): the researcher is grading itself. A legitimate arm if deliberate; "
                    "otherwise give the judge another model."
                )
    return warnings
