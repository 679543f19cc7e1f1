"""Hypothesis strategies shared by the sampler's property tests: graph sizes, fanouts and seed batches."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

# rng seed, users, items, events, whether users carry times: the arguments of a random graph builder
GRAPH_SIZES = (
    st.integers(0, 2**32 - 1),
    st.integers(1, 6),
    st.integers(1, 5),
    st.integers(1, 40),
    st.booleans(),
)
fanouts = st.lists(st.sampled_from([-1, 0, 1, 2, 3, 5]), min_size=1, max_size=3)


@st.composite
def seed_batches(draw, users: int) -> tuple[np.ndarray, np.ndarray]:
    """1-8 user seeds with times around the graphs' 0..50 time range."""
    count = draw(st.integers(1, 8))
    seeds = draw(st.lists(st.integers(0, users - 1), min_size=count, max_size=count))
    times = draw(st.lists(st.integers(-5, 55), min_size=count, max_size=count))
    return np.array(seeds), np.array(times)
