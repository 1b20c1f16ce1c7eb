"""Registries map a ``kind`` in a YAML config to the pydantic model that validates it.

Each component config class carries ``kind: Literal[...]`` and a ``build`` method, so
adding an environment, researcher or verifier is one module with one decorated class;
nothing else in the code base changes.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T", bound=type[BaseModel])


class ComponentConfig(BaseModel):
    """Base of every component config: unknown keys are errors, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Registry(Generic[T]):
    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, type[BaseModel]] = {}

    def register(self, cls: T) -> T:
        kind = cls.model_fields["kind"].default
        if not isinstance(kind, str):
            raise TypeError(f"{cls.__name__} needs a default string for its 'kind' field")
        if kind in self._entries and self._entries[kind].__qualname__ != cls.__qualname__:
            raise ValueError(f"{self.what} kind {kind!r} is registered twice")
        self._entries[kind] = cls
        return cls

    def __contains__(self, kind: str) -> bool:
        return kind in self._entries

    def __getitem__(self, kind: str) -> type[BaseModel]:
        return self._entries[kind]

    def kinds(self) -> list[str]:
        return sorted(self._entries)

    def models(self) -> tuple[type[BaseModel], ...]:
        return tuple(self._entries[k] for k in self.kinds())
