"""Log-scale histograms of durations: what hourly KPI rollups keep instead of every value.

A duration ``v`` (seconds) falls in bucket ``k = floor(log(v) / log(GAMMA))``, which holds
``[GAMMA**k, GAMMA**(k+1))``; durations under ``MIN_SECONDS`` (zero, or a clock that went
backwards) fall in bucket ``ZERO`` and read back as 0. Histograms of any number of hours add up
bucket by bucket, and a percentile read from the sum is within ``RELATIVE_ERROR`` of the exact
``percentile_cont`` of the values (each bucket reads back as the value that is that close to
both of its ends), the approach of DDSketch. Stored as JSON objects: ``{"-346": 3, "z": 1}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

GAMMA = 1.02
RELATIVE_ERROR = (GAMMA - 1) / (GAMMA + 1)  # about 0.0099
MIN_SECONDS = 1e-6
ZERO = "z"
_LOG_GAMMA = math.log(GAMMA)

Histogram = dict[str, int]


def bucket_of(seconds: float | None) -> str | None:
    """The bucket key of a duration; None for a missing value (it is not counted)."""
    if seconds is None:
        return None
    if seconds < MIN_SECONDS:
        return ZERO
    return str(math.floor(math.log(seconds) / _LOG_GAMMA))


def add(histogram: Histogram, seconds: float | None) -> None:
    key = bucket_of(seconds)
    if key is not None:
        histogram[key] = histogram.get(key, 0) + 1


def merge(histograms: Iterable[Mapping[str, int]]) -> Histogram:
    total: Histogram = {}
    get = total.get
    for histogram in histograms:
        for key, count in histogram.items():
            total[key] = get(key, 0) + count
    return total


def count(histogram: Mapping[str, int]) -> int:
    return sum(histogram.values())


def _value(key: str) -> float:
    if key == ZERO:
        return 0.0
    k = int(key)
    return 2 * GAMMA ** (k + 1) / (GAMMA + 1)


def percentiles(histogram: Mapping[str, int], ps: Sequence[float]) -> list[float | None]:
    """``percentile_cont(p)`` for each p, read from the histogram (None when it is empty): the
    value at rank ``p * (n - 1)``, interpolated between the two nearest ranks as PostgreSQL does."""
    ordered = sorted(((_value(key), n) for key, n in histogram.items() if n > 0))
    total = sum(n for _, n in ordered)
    if not total:
        return [None for _ in ps]

    def at(rank: int) -> float:
        seen = 0
        for value, n in ordered:
            seen += n
            if rank < seen:
                return value
        return ordered[-1][0]

    found: list[float | None] = []
    for p in ps:
        rank = p * (total - 1)
        low, high = math.floor(rank), math.ceil(rank)
        lower = at(low)
        found.append(lower + (rank - low) * (at(high) - lower))
    return found
