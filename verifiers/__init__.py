"""Verifiers. Each module registers its config class in ``VERIFIERS``. Import as ``ouro.verifiers``."""

from .base import VERIFIERS, JudgeContext, Verifier, VerifierConfig, verifier_config_union
from . import audit, cascade, human, model, montecarlo, noisy, none, oracle  # noqa: F401  (register their kinds)

verifier_config_union()  # resolve the configs that nest verifiers (cascade, audit, human evidence)

__all__ = ["VERIFIERS", "JudgeContext", "Verifier", "VerifierConfig", "verifier_config_union"]
