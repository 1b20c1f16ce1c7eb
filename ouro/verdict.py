"""The arm verdict rules, in one place (the README states them word for word).

* ``improved``:  the 95% CI (across seeds) of end - start quality lies above 0;
* ``degraded``:  that CI lies below 0;
* ``collapsed``: neither, and the diversity (entropy) fell by at least half, end mean
  over start mean;
* ``stable``:    otherwise.

Quality change comes first: an arm that improved while its diversity fell improved.

No verdict (``None``) when the data to decide are missing: no seed has a quality at
both the start and the end (e.g. no valid proposals at generation 0), or the quality
decides nothing and the diversity at the start or the end is missing. A generation
without valid proposals has NaN diversity, never 0, so that no ``collapsed`` or
``stable`` rests on a made-up number.
"""

from __future__ import annotations

import math

VERDICTS = ("improved", "degraded", "collapsed", "stable")
COLLAPSE_FACTOR = 0.5


def arm_verdict(
    delta: float, delta_ci: tuple[float, float], diversity_start: float, diversity_end: float
) -> str | None:
    """``delta`` is the mean end - start quality over the seeds that have both (NaN when
    none has), ``delta_ci`` its interval (NaN with fewer than two such seeds), the
    diversities are means over the seeds that have them (NaN when none has)."""
    if math.isnan(delta):
        return None
    low, high = delta_ci
    if not math.isnan(low) and low > 0:
        return "improved"
    if not math.isnan(high) and high < 0:
        return "degraded"
    if math.isnan(diversity_start) or math.isnan(diversity_end):
        return None
    if diversity_start > 0 and diversity_end <= COLLAPSE_FACTOR * diversity_start:
        return "collapsed"
    return "stable"
