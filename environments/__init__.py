"""Problems. Each module registers its config class in ``ENVIRONMENTS``."""

from .base import ENVIRONMENTS, Environment, EnvironmentConfig, Evidence
from . import estimators  # noqa: F401  (registers "estimators")
from . import categorical, gaussian, regression  # noqa: F401  (closed-form environments)

__all__ = ["ENVIRONMENTS", "Environment", "EnvironmentConfig", "Evidence"]
