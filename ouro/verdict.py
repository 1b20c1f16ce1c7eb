"""The arm verdict rules, in one place (the README states them word for word).

* ``improved``:  the 95% CI (across seeds) of end - start quality lies above 0;
* ``degraded``:  that CI lies below 0;
* ``collapsed``: neither, and the diversity (entropy) fell by at least half, end mean
  over start mean;
* ``stable``:    otherwise.

Quality change comes first: an arm that improved while its diversity fell improved.
"""

from __future__ import annotations

import math

VERDICTS = ("improved", "degraded", "collapsed", "stable")
COLLAPSE_FACTOR = 0.5


def arm_verdict(delta_ci: tuple[float, float], diversity_start: float, diversity_end: float) -> str:
    low, high = delta_ci
    if not math.isnan(low) and low > 0:
        return "improved"
    if not math.isnan(high) and high < 0:
        return "degraded"
    if diversity_start > 0 and diversity_end <= COLLAPSE_FACTOR * diversity_start:
        return "collapsed"
    return "stable"
