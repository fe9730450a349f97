"""Quantiles of Prometheus histograms, estimated as Prometheus' ``histogram_quantile`` does:
one estimator for the monitor's summaries and the load tests' reports. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q``-quantile of cumulative ``buckets`` as Prometheus' ``histogram_quantile``
    estimates it: interpolated linearly inside the bucket where the rank falls, from 0 for the
    first bucket; the highest finite bound for a rank in the +Inf bucket; None without
    observations or finite buckets. A count below the previous bound's is raised to it.
    Raises ValueError when ``q`` is outside [0, 1] or the last bound is not +Inf."""
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile is between 0 and 1, got {q!r}")
    ordered = sorted(buckets)
    if not ordered or ordered[-1][0] != math.inf:
        raise ValueError("the last bucket of a histogram must be +Inf")
    cumulative = list(accumulate((count for _, count in ordered), max))
    total = cumulative[-1]
    if total <= 0 or len(ordered) < 2:
        return None
    rank = q * total
    # The first bucket holding an observation at or past the rank: for q = 0 that is the first
    # non-empty bucket, so the estimate never falls in a bucket nothing was observed in.
    index = next(i for i, count in enumerate(cumulative) if count >= rank and count > 0)
    if index == len(ordered) - 1:
        return ordered[-2][0]
    upper = ordered[index][0]
    if index == 0 and upper <= 0:
        return upper
    lower, below = (ordered[index - 1][0], cumulative[index - 1]) if index else (0.0, 0.0)
    estimate = lower + (upper - lower) * (rank - below) / (cumulative[index] - below)
    # Rounding may step just past a bound, which would break monotonicity across buckets.
    return min(max(estimate, lower), upper)
