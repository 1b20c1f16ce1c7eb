"""Researchers and model providers. Import as ``ouro.agents``."""

from .base import RESEARCHERS, Researcher, ResearcherConfig
from . import llm, lora, statistical  # noqa: F401  (register "llm", "local-lm" (imports no torch) and "statistical")

__all__ = ["RESEARCHERS", "Researcher", "ResearcherConfig"]
