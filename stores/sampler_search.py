"""Where a node's visible neighbours lie: binary searches of a time-sorted neighbourhood, on its source
times or, since node ids follow time order, on the ids alone. Part of the sampler's compiled core."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["NO_WINDOW", "count_at_most", "count_below", "visible_by_id", "visible_range"]

NO_WINDOW = np.iinfo(np.int64).min


@numba.njit(cache=True, inline="always")
def visible_range(indices, times, time_base, start, end, upper, lower, has_time):
    """[lo, hi) of a time-sorted neighbourhood whose source times lie in [lower, upper]."""
    if not has_time:
        return start, end
    lo, hi = start, end
    while lo < hi:  # first position with time > upper
        mid = (lo + hi) // 2
        if times[time_base + indices[mid]] <= upper:
            lo = mid + 1
        else:
            hi = mid
    stop = lo
    lo = start
    if lower != NO_WINDOW:
        hi = stop
        while lo < hi:  # first position with time >= lower
            mid = (lo + hi) // 2
            if times[time_base + indices[mid]] < lower:
                lo = mid + 1
            else:
                hi = mid
    return lo, stop


@numba.njit(cache=True, inline="always")
def count_at_most(times, start, count, value):
    """How many of the sorted ``times[start : start + count]`` are <= ``value`` (branch-free halving)."""
    if count == 0:
        return 0
    base, length = start, count
    while length > 1:
        half = length >> 1
        base += half * np.int64(times[base + half - 1] <= value)
        length -= half
    return base - start + np.int64(times[base] <= value)


@numba.njit(cache=True, inline="always")
def count_below(times, start, count, value):
    """How many of the sorted integer ``times[start : start + count]`` are < ``value``."""
    if value == NO_WINDOW:  # the smallest int64: nothing is below it (and value - 1 would wrap)
        return 0
    return count_at_most(times, start, count, value - 1)


@numba.njit(cache=True, inline="always")
def visible_by_id(indices, times, time_base, start, end, upper, lower, cut_upper, cut_lower):
    """[lo, hi) of a time-sorted neighbourhood whose source times lie in [lower, upper], found on the ids.

    Node ids follow time order, so time <= upper iff id < cut_upper (how many nodes of the type have
    time <= upper), and a neighbourhood sorted by time is sorted by id: the search reads no times. Its
    bounds are then checked on the times themselves (two reads); should they disagree (ids out of time
    order), the neighbourhood is searched on its times instead.
    """
    stop = start + count_below(indices, start, end - start, cut_upper)
    if (stop > start and times[time_base + indices[stop - 1]] > upper) or (
        stop < end and times[time_base + indices[stop]] <= upper
    ):
        return visible_range(indices, times, time_base, start, end, upper, lower, True)
    lo = start
    if lower != NO_WINDOW:
        lo = start + count_below(indices, start, stop - start, cut_lower)
        if (lo > start and times[time_base + indices[lo - 1]] >= lower) or (
            lo < stop and times[time_base + indices[lo]] < lower
        ):
            return visible_range(indices, times, time_base, start, end, upper, lower, True)
    return lo, stop
