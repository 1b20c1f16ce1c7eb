"""How a model-backed researcher learns from the curated pool.

``context``: learning in context. The pool becomes the archive that prompts draw their
exemplars from, so the regimes (replace, accumulate, mix) act on what the model sees.
An empty pool teaches nothing: the archive stays, as the statistical researcher's
model stays.

A learner may also change which model answers (``provider_config``): a weight-updating
learner (LoRA) trains an adapter on the pool and points the provider at it, while
keeping an archive for its prompts. It registers in ``LEARNERS`` and adds its name to
the researcher config's ``learner`` field.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol


class Learner(Protocol):
    def learn(self, pool: list) -> None: ...

    @property
    def archive(self) -> list: ...

    def provider_config(self, base: Any) -> Any: ...

    def state(self) -> dict: ...

    def load_state(self, state: dict, parse: Callable[[Any], Any]) -> None: ...


class ContextLearner:
    """The pool is the archive; the model itself never changes."""

    name = "context"

    def __init__(self) -> None:
        self._archive: list = []

    @property
    def archive(self) -> list:
        return self._archive

    def learn(self, pool: list) -> None:
        if pool:
            self._archive = list(pool)

    def provider_config(self, base: Any) -> Any:
        return base

    def state(self) -> dict:
        return {"archive": [m.model_dump(mode="json") for m in self._archive]}

    def load_state(self, state: dict, parse: Callable[[Any], Any]) -> None:
        self._archive = [parse(m) for m in state.get("archive", [])]


LEARNERS: dict[str, Callable[..., Learner]] = {"context": ContextLearner}
