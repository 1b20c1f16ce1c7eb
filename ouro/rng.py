"""Random streams keyed by (seed, generation, purpose).

Every random draw in a run comes from a generator derived from these three numbers and
nothing else. So a seed's trajectory does not depend on how many seeds, arms or worker
processes run beside it; arms with the same seed share their real data and their Monte
Carlo data sets (paired comparisons); and a generation re-run after a crash draws
exactly what it drew the first time.
"""

from __future__ import annotations

import zlib
from typing import Callable, TypeVar

import numpy as np

T = TypeVar("T")


def _purpose_id(purpose: str) -> int:
    return zlib.crc32(purpose.encode())


def stream(seed: int, generation: int, purpose: str) -> np.random.Generator:
    """A generator for one seed, one generation, one purpose ("propose", "verify", ...)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(generation) + 1, _purpose_id(purpose)]))


# ---------------------------------------------------------------- many seeds at once
# The streams of many seeds for one (generation, purpose) are what a vectorized cohort
# draws from every generation. Building a Generator per seed costs ~30 us, which for
# 1,000 seeds x 1,000 generations is most of a run; ``per_seed`` gives bit-identical
# draws several times faster: SeedSequence's hash is computed for all seeds at once in
# numpy, and one PCG64 is re-seated for each seed (tests check equality with ``stream``).

_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R, _XSHIFT, _M32 = 0xCA01F9DD, 0x4973F715, 16, 0xFFFFFFFF
_PCG_MULT, _M128 = 0x2360ED051FC65DA44385DF649FCCF645, (1 << 128) - 1


def _seed_words(entropy: np.ndarray) -> np.ndarray:
    """``SeedSequence(list(row)).generate_state(4, uint64)`` for each row of 32-bit words."""
    rows, width = entropy.shape
    hash_a = [_INIT_A]

    def hashmix(value: np.ndarray) -> np.ndarray:
        value = value ^ np.uint32(hash_a[0])
        hash_a[0] = (hash_a[0] * _MULT_A) & _M32
        value = value * np.uint32(hash_a[0])
        return value ^ (value >> np.uint32(_XSHIFT))

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r = np.uint32(_MIX_L) * x - np.uint32(_MIX_R) * y
        return r ^ (r >> np.uint32(_XSHIFT))

    with np.errstate(over="ignore"):
        e = entropy.astype(np.uint32)
        pool = [hashmix(e[:, i] if i < width else np.zeros(rows, np.uint32)) for i in range(4)]
        for src in range(4):
            for dst in range(4):
                if src != dst:
                    pool[dst] = mix(pool[dst], hashmix(pool[src]))
        for src in range(4, width):
            for dst in range(4):
                pool[dst] = mix(pool[dst], hashmix(e[:, src]))
        out = np.empty((rows, 8), np.uint32)
        hash_b = _INIT_B
        for i in range(8):
            v = pool[i % 4] ^ np.uint32(hash_b)
            hash_b = (hash_b * _MULT_B) & _M32
            v = v * np.uint32(hash_b)
            out[:, i] = v ^ (v >> np.uint32(_XSHIFT))
    return out.view(np.uint64)


def _pcg64_state(words: list[int]) -> dict:
    """The state ``PCG64(seed_sequence)`` starts in, from the sequence's four words."""
    init_state = (words[0] << 64) | words[1]
    inc = ((((words[2] << 64) | words[3]) << 1) | 1) & _M128
    state = (((inc + init_state) & _M128) * _PCG_MULT + inc) & _M128
    return {"bit_generator": "PCG64", "state": {"state": state, "inc": inc}, "has_uint32": 0, "uinteger": 0}


def per_seed(seeds, generation: int, purpose: str, draw: Callable[[np.random.Generator], T]) -> list[T]:
    """``[draw(stream(s, generation, purpose)) for s in seeds]``, several times faster.

    ``draw`` gets one generator re-seated for each seed in turn: it must use it and
    return, never keep it.
    """
    try:
        arr = np.asarray(seeds, dtype=np.int64)
    except OverflowError:
        arr = None
    if arr is None or not arr.size or arr.min() < 0 or arr.max() > _M32 or generation + 1 > _M32:
        # no seeds, or entropy words beyond 32 bits: the plain way
        return [draw(stream(int(s), generation, purpose)) for s in seeds]
    words = [generation + 1, _purpose_id(purpose)]
    entropy = np.column_stack([arr.astype(np.uint64)] + [np.full(arr.size, w, np.uint64) for w in words])
    states = _seed_words(entropy)
    bit_generator = np.random.PCG64(0)
    rng = np.random.Generator(bit_generator)
    out = []
    for row in states.tolist():
        bit_generator.state = _pcg64_state(row)
        out.append(draw(rng))
    return out
