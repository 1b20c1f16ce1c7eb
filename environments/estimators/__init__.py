"""The estimators environment: researchers propose estimators, quality is efficiency."""

from .environment import SEED_CORPUS, EstimatorsConfig, EstimatorsEnvironment
from .methods import FAMILIES, evaluate, method_key, parse_method

__all__ = ["EstimatorsConfig", "EstimatorsEnvironment", "FAMILIES", "SEED_CORPUS", "evaluate", "method_key", "parse_method"]
