"""A tiny temporal graph whose label is a known function of neighbours' features, on the real stores.

users (no features) <- events (time, amount, kind). A user's label at an anchor is 1 when the mean amount
of its events at or before the anchor is positive. Events after the anchor carry the opposite sign, so a
model that saw the future would learn the wrong rule. Only message passing can solve it: users have no
features of their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from stores.feature_store import NodeTable, build_feature_store, open_feature_store
from stores.fetcher import TrainingSplit
from stores.graph_store import EdgeList, build_graph_store, open_graph_store
from training.trial import SPLITS

ANCHOR = 1_000_000


def signal_graph(root: Path, users: int = 160, seed: int = 0):
    """(graph, features, splits) with train/val/test users disjoint and every label decided by the past."""
    rng = np.random.default_rng(seed)
    sign = rng.choice([-1.0, 1.0], size=users)
    per_user = rng.integers(3, 7, size=users)
    owner = np.repeat(np.arange(users), per_user)
    past = rng.random(len(owner)) < 0.75
    times = np.where(
        past, rng.integers(0, ANCHOR, len(owner)), rng.integers(ANCHOR + 1, 2 * ANCHOR, len(owner))
    )
    amount = np.where(past, sign[owner], -sign[owner]) * rng.gamma(2.0, 1.0, len(owner))
    order = np.argsort(times, kind="stable")
    owner, times, amount = owner[order], times[order], amount[order]
    build_graph_store(
        root / "graph", {"users": users, "events": len(owner)}, {"events": times.astype(np.int64)},
        [EdgeList("events", "user", "users", np.arange(len(owner), dtype=np.int64), owner.astype(np.int64))],
    )  # fmt: skip
    tables = {
        "users": NodeTable(pl.DataFrame({"_": np.zeros(users)}), {}),
        "events": NodeTable(
            pl.DataFrame({"amount": amount, "kind": rng.choice(["a", "b", "c"], len(owner))}),
            {"amount": {"stype": "numerical"}, "kind": {"stype": "categorical"}},
        ),
    }
    build_feature_store(root / "features", tables)
    past_mean = pl.DataFrame({"user": owner, "amount": amount, "time": times}).filter(
        pl.col("time") <= ANCHOR
    )
    means = past_mean.group_by("user").agg(pl.col("amount").mean()).sort("user")
    labels = np.zeros(users, np.int64)
    labels[means["user"].to_numpy()] = (means["amount"].to_numpy() > 0).astype(np.int64)
    has_past = np.zeros(users, bool)
    has_past[means["user"].to_numpy()] = True
    ids = rng.permutation(np.flatnonzero(has_past))
    parts = np.array_split(ids, [int(0.6 * len(ids)), int(0.8 * len(ids))])
    splits = {
        name: TrainingSplit(f"signal/{name}", "users", part, np.full(len(part), ANCHOR), labels[part])
        for name, part in zip(SPLITS, parts, strict=True)
    }
    return open_graph_store(root / "graph"), open_feature_store(root / "features"), splits
