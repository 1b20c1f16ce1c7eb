"""``ouro.rng.per_seed`` must draw exactly what ``ouro.rng.stream`` draws, seed by seed."""

from __future__ import annotations

import numpy as np
import pytest

from ouro.rng import per_seed, stream


def _draws(rng: np.random.Generator) -> tuple:
    return rng.standard_normal(7), rng.random(3), rng.integers(0, 10, 5), rng.integers(0, 2**40, 2)


@pytest.mark.parametrize(
    "seeds",
    [
        [0, 1, 2, 17, 99_999, 2**32 - 1],  # the vectorized path
        np.arange(50),
        [3, 2**32, 2**40 + 3, 2**70],  # entropy words beyond 32 bits: the plain path
    ],
)
def test_per_seed_is_bit_identical_to_stream(seeds):
    for generation, purpose in [(0, "real"), (5, "propose"), (999_999, "verify")]:
        fast = per_seed(seeds, generation, purpose, _draws)
        slow = [_draws(stream(int(s), generation, purpose)) for s in seeds]
        for a, b in zip(fast, slow, strict=True):
            for x, y in zip(a, b):
                assert np.array_equal(x, y)


def test_per_seed_of_no_seeds():
    assert per_seed([], 3, "propose", _draws) == []
