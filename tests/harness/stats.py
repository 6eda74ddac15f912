"""The one percentile every published figure uses (benchmarks, fault injection, the demo).

Linear interpolation between the two nearest ranks, NumPy's default (``method="linear"``, type 7 of
Hyndman and Fan): the ``p``-th percentile of sorted values ``v[0..n-1]`` sits at rank ``h = (n - 1) *
p / 100`` and is ``v[floor(h)] + (h - floor(h)) * (v[floor(h) + 1] - v[floor(h)])``. So p0 is the
minimum, p100 the maximum, p50 the median (``statistics.median``), and a percentile moves smoothly
as samples are added rather than jumping from one observed value to the next.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0 to 100) of ``values``; a ValueError for no values or ``p`` out of range."""
    if not 0 <= p <= 100:
        raise ValueError(f"a percentile is between 0 and 100, not {p}")
    if not values:
        raise ValueError("a percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])
