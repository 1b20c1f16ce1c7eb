"""Verifiers. Each module registers its config class in ``VERIFIERS``. Import as ``ouro.verifiers``."""

from .base import VERIFIERS, JudgeContext, Verifier, VerifierConfig
from . import model, montecarlo, noisy, none, oracle  # noqa: F401  (register their kinds)

__all__ = ["VERIFIERS", "JudgeContext", "Verifier", "VerifierConfig"]
