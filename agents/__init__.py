"""Researchers (and, later, model providers). Import as ``ouro.agents``."""

from .base import RESEARCHERS, Researcher, ResearcherConfig
from . import statistical  # noqa: F401  (registers "statistical")

__all__ = ["RESEARCHERS", "Researcher", "ResearcherConfig"]
