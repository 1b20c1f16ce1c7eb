"""Researchers (and, later, model providers). Import as ``ouro.agents``."""

from .base import RESEARCHERS, Researcher, ResearcherConfig
from . import statistical  # noqa: F401  (registers "statistical")
from . import lora  # noqa: F401  (registers "local-lm"; imports no torch)

__all__ = ["RESEARCHERS", "Researcher", "ResearcherConfig"]
