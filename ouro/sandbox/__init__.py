"""The sandbox for model-written methods; the code is in ``ouro.sandbox.host`` (formerly
ouro/sandbox.py) until it is split into modules with one job each."""

from .host import (ALLOWED_IMPORTS, DENIED_ATTRIBUTES, ENTRY_POINTS, FORBIDDEN_BUILTINS, MAX_SOURCE_CHARS,
                   ModuleView, Sandbox, SandboxError, SandboxLimits, SandboxResult, check_source, default_sandbox,
                   run_methods, shutdown)

__all__ = [
    "ALLOWED_IMPORTS",
    "DENIED_ATTRIBUTES",
    "ENTRY_POINTS",
    "FORBIDDEN_BUILTINS",
    "MAX_SOURCE_CHARS",
    "ModuleView",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "check_source",
    "default_sandbox",
    "run_methods",
    "shutdown",
]
