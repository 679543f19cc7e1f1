"""Synthetic power-law users/items/events graphs and seed sets for the sampler benchmark and its tests.

The graph: users and items are created over ``years`` years (creation times uniform, ids in creation order,
the first item exists from the start); each user has a Pareto activity and each item a Pareto popularity.
An event belongs to one user and one item:

- its user is drawn with probability proportional to activity x the user's lifetime (activity is a rate),
- its time uniformly over the user's lifetime [user created, end],
- its item among the items that exist at that time, with probability proportional to popularity,

so an event never precedes its user's or its item's creation. Event ids follow time order (as ingest
writes them). Two time views of the same edges:

- ``events``: only events are timed (users and items are static node types);
- ``all``: users and items also carry their creation times (the sampler then checks them too).

Seeds are (user, time) pairs:

- ``uniform``: the time of a uniformly drawn event (so seed times follow the event-time density), and a
  user drawn uniformly among the users created by then;
- ``activity``: a uniformly drawn event's user and time (users weighted by their event counts, each seed
  at the moment of one of its user's events: the "predict at each action" workload).

Both views share the same seeds, so their rates compare directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from stores.graph_store import EdgeList, build_graph_store

__all__ = [
    "SEED_KINDS",
    "TIME_VIEWS",
    "PowerLawGraph",
    "build_power_law_store",
    "power_law_graph",
    "power_law_seeds",
]

TIME_VIEWS = ("events", "all")
SEED_KINDS = ("uniform", "activity")
START = 1_600_000_000
YEAR = 365 * 86400


@dataclass(frozen=True)
class PowerLawGraph:
    users: int
    items: int
    user_created: np.ndarray  # int64 seconds, sorted (user ids in creation order)
    item_created: np.ndarray  # int64 seconds, sorted (item ids in creation order)
    event_time: np.ndarray  # int64 seconds, sorted (event ids in time order)
    event_user: np.ndarray
    event_item: np.ndarray

    @property
    def events(self) -> int:
        return len(self.event_time)

    def node_times(self, view: str) -> dict[str, np.ndarray]:
        if view not in TIME_VIEWS:
            raise ValueError(f"time view must be one of {TIME_VIEWS}, got {view!r}")
        times = {"events": self.event_time}
        if view == "all":
            times |= {"users": self.user_created, "items": self.item_created}
        return times


def power_law_graph(
    users: int,
    items: int,
    events: int,
    seed: int = 0,
    years: float = 3.0,
    activity_shape: float = 1.5,
    popularity_shape: float = 1.2,
) -> PowerLawGraph:
    """Users, items and events as described in the module docstring (Pareto weights: shape, x_m = 1)."""
    rng = np.random.default_rng(seed)
    end = START + int(years * YEAR)
    user_created = np.sort(rng.integers(START, end, users, dtype=np.int64))
    item_created = np.sort(rng.integers(START, end, items, dtype=np.int64))
    item_created[0] = START  # some item exists whenever a user does
    activity = rng.pareto(activity_shape, users) + 1.0
    popularity = rng.pareto(popularity_shape, items) + 1.0

    user_rate = activity * (end - user_created).astype(np.float64)
    event_user = np.repeat(
        np.arange(users, dtype=np.int64), rng.multinomial(events, user_rate / user_rate.sum())
    )
    born = user_created[event_user]
    event_time = born + (rng.random(events) * (end - born + 1)).astype(np.int64)
    event_time = np.minimum(event_time, end)
    # The item: by popularity among the items created by the event's time (a prefix of the item ids).
    event_item = _pick_items(np.cumsum(popularity), item_created, event_time, rng.random(events))

    order = np.argsort(event_time, kind="stable")
    return PowerLawGraph(
        users=users,
        items=items,
        user_created=user_created,
        item_created=item_created,
        event_time=event_time[order],
        event_user=event_user[order].astype(np.int64),
        event_item=event_item[order].astype(np.int64),
    )


@numba.njit(cache=True)
def _pick_items(cumulative, created, event_time, uniform):
    """Per event: an item created by the event's time (item 0 exists from the start), by popularity."""
    picked = np.empty(event_time.shape[0], np.int64)
    for event in range(event_time.shape[0]):
        existing = np.searchsorted(created, event_time[event], side="right")
        draw = uniform[event] * cumulative[existing - 1]
        picked[event] = min(np.searchsorted(cumulative, draw, side="right"), existing - 1)
    return picked


def build_power_law_store(root: Path, graph: PowerLawGraph, view: str) -> tuple[dict, float]:
    """Write ``graph`` under ``root`` in one time view; returns (manifest, build seconds)."""
    events = np.arange(graph.events, dtype=np.int64)
    edges = [
        EdgeList("events", "user", "users", events, graph.event_user),
        EdgeList("events", "item", "items", events, graph.event_item),
    ]
    started = time.perf_counter()
    _, manifest = build_graph_store(
        root,
        {"users": graph.users, "items": graph.items, "events": graph.events},
        graph.node_times(view),
        edges,
    )
    return manifest, time.perf_counter() - started


def power_law_seeds(
    graph: PowerLawGraph, kind: str, batches: int, batch_size: int, seed: int = 1
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``batches`` batches of (user ids, seed times), drawn as the module docstring describes."""
    if kind not in SEED_KINDS:
        raise ValueError(f"seed kind must be one of {SEED_KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    count = batches * batch_size
    chosen = rng.integers(0, graph.events, count)
    times = graph.event_time[chosen]
    if kind == "activity":
        users = graph.event_user[chosen]
    else:
        created_by = np.searchsorted(graph.user_created, times, side="right")  # >= 1: the event's user
        users = (rng.random(count) * created_by).astype(np.int64)
    users = users.astype(np.int64)
    return (
        [users[b * batch_size : (b + 1) * batch_size] for b in range(batches)],
        [times[b * batch_size : (b + 1) * batch_size] for b in range(batches)],
    )
