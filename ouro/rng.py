"""Random streams keyed by (seed, generation, purpose).

Every random draw in a run comes from a generator derived from these three numbers and
nothing else. So a seed's trajectory does not depend on how many seeds, arms or worker
processes run beside it; arms with the same seed share their real data and their Monte
Carlo data sets (paired comparisons); and a generation re-run after a crash draws
exactly what it drew the first time.
"""

from __future__ import annotations

import zlib

import numpy as np


def _purpose_id(purpose: str) -> int:
    return zlib.crc32(purpose.encode())


def stream(seed: int, generation: int, purpose: str) -> np.random.Generator:
    """A generator for one seed, one generation, one purpose ("propose", "verify", ...)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(generation) + 1, _purpose_id(purpose)]))
