"""What the host and a method's process exchange: shared by both sides.

A job reaches the process as one JSON line (its source, the data's shape, its
``SandboxLimits`` and entry points); the answer comes back in the fixed binary format of
``_ANSWER``, its texts capped at ``_MAX_REASON`` and ``_KEEP_OUTPUT`` characters. The
server loads this module by path (``host._BOOTSTRAP``): it imports only the standard
library.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Sequence

_KEEP_OUTPUT = 2_000            # characters of printed output kept in a result
_MAX_REASON = 500               # characters of a rejection reason

# A method's answer, as its process writes it to the host: this header (magic, number of
# values or -1 when there are none, bytes of the error text, bytes of the printed
# output), then the error and the output (UTF-8), then the values (little-endian
# float64). Fixed-size binary, so that the host parses nothing the process could shape
# into anything but lengths, text and numbers.
_ANSWER = struct.Struct("<4sqII")
_ANSWER_MAGIC = b"OURO"


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one method's evaluation (all replications of it).

    cpu_seconds: CPU time (RLIMIT_CPU, which counts whole seconds: the limit is
        rounded to the nearest second, at least one).
    wall_seconds: wall-clock time from process start to result, enforced by killing.
    memory_mb: address space the method may add on top of the loaded interpreter,
        numpy and the data (RLIMIT_AS = baseline + memory_mb).
    max_output: characters the method may print; more is a rejection.
    """

    cpu_seconds: float = 10.0
    wall_seconds: float = 15.0
    memory_mb: int = 1024
    max_output: int = 65_536

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "wall_seconds", "memory_mb", "max_output"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SandboxLimits.{name} must be positive")


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
