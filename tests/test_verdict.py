"""The arm verdict rules, exactly as the README states them."""

import math

import pytest

from ouro.verdict import arm_verdict

NAN = math.nan


@pytest.mark.parametrize(
    "ci, div_start, div_end, expected",
    [
        ((0.1, 0.5), 1.7, 0.1, "improved"),  # quality first: improved even though diversity collapsed
        ((-0.5, -0.1), 1.7, 1.7, "degraded"),
        ((-0.2, 0.3), 1.7, 0.85, "collapsed"),  # fell by exactly half
        ((-0.2, 0.3), 1.7, 0.86, "stable"),
        ((0.0, 0.3), 1.7, 1.6, "stable"),  # a CI touching 0 is not above 0
        ((NAN, NAN), 1.7, 0.2, "collapsed"),  # one seed: no CI, only diversity can speak
        ((NAN, NAN), 0.0, 0.0, "stable"),
    ],
)
def test_rules(ci, div_start, div_end, expected):
    assert arm_verdict(ci, div_start, div_end) == expected
