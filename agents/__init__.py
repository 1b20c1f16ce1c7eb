"""Researchers and model providers. Import as ``ouro.agents``."""

from .base import RESEARCHERS, Researcher, ResearcherConfig
from . import llm, statistical  # noqa: F401  (register "llm" and "statistical")

__all__ = ["RESEARCHERS", "Researcher", "ResearcherConfig"]
