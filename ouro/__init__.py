"""ouro: when a model learns from its own outputs, does it collapse or improve?

The answer depends on who verifies those outputs. See ARCHITECTURE in the README.
"""

__version__ = "0.1.0"
