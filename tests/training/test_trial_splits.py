"""Training-table rows -> fetcher splits: key mapping, the frozen regime and simulated staleness only hide data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.trial import make_splits

DAY = 86_400


def training_table(anchors: dict[str, list[int]], entities: int = 5) -> pl.DataFrame:
    rows = [
        (f"k{e}", a * DAY, float(e), split)
        for split, days in anchors.items()
        for a in days
        for e in range(entities)
    ]
    return pl.DataFrame(rows, schema=["entity", "anchor_time", "label", "split"], orient="row")


KEYS = pl.DataFrame({"key": [f"k{e}" for e in reversed(range(5))]})  # node i holds key k(4 - i)


@given(
    train=st.lists(st.integers(0, 400), min_size=1, max_size=8),
    val=st.lists(st.integers(401, 600), min_size=1, max_size=5),
    test=st.lists(st.integers(601, 900), min_size=1, max_size=5),
    freeze=st.one_of(st.none(), st.integers(550, 700)),
    stale=st.booleans(),
)
def test_seeds_never_observe_after_their_anchor_nor_after_the_freeze(train, val, test, freeze, stale):
    table = training_table({"train": train, "val": val, "test": test})
    splits = make_splits(table, KEYS, "users", "t", observe_until=None if freeze is None else freeze * DAY,
                         simulate_staleness=stale)  # fmt: skip
    for name, split in splits.items():
        anchors = table.filter(pl.col("split") == name)["anchor_time"].to_numpy()
        assert np.all(split.seed_times <= anchors)
        if freeze is not None:
            assert np.all(split.seed_times <= freeze * DAY)
        if stale and name == "val":
            assert np.all(split.seed_times <= min(val) * DAY)
        if not stale and freeze is None:
            assert np.array_equal(split.seed_times, anchors)
        assert np.array_equal(split.predicted_at(), anchors)  # the prediction time survives every view
    train_anchors = table.filter(pl.col("split") == "train")["anchor_time"].to_numpy()
    span = max(max(val) - min(val), max(test) - min(test)) * DAY
    assert np.all(train_anchors - splits["train"].seed_times <= span)


def test_staleness_shifts_most_training_rows_and_keys_map_to_node_ids():
    table = training_table({"train": list(range(0, 400, 4)), "val": [500, 530, 560], "test": [700, 900]})
    splits = make_splits(table, KEYS, "users", "t", observe_until=700 * DAY, simulate_staleness=True, seed=1)
    shifted = splits["train"].seed_times < table.filter(pl.col("split") == "train")["anchor_time"].to_numpy()
    assert 0.6 < shifted.mean() < 0.8
    assert splits["test"].seed_times.tolist() == [700 * DAY] * 10  # the frozen view for every test anchor
    assert splits["val"].seed_times.tolist() == [500 * DAY] * 15
    assert splits["val"].seeds[:5].tolist() == [4, 3, 2, 1, 0]  # k0 is node 4
    other = make_splits(table, KEYS, "users", "t", observe_until=700 * DAY, simulate_staleness=True, seed=2)
    assert other["train"].name != splits["train"].name  # batches cached per view, never mixed up


def test_unknown_entity_keys_are_an_error_naming_one():
    table = training_table({"train": [1], "val": [2], "test": [3]}).with_columns(pl.lit("zz").alias("entity"))
    with pytest.raises(ValueError, match=r"not in the graph store.*'zz'"):
        make_splits(table, KEYS, "users", "t")


def test_the_model_is_told_how_stale_its_view_is():
    """A frozen test row and a fresh one with the same seed time differ only in their anchor: the anchor
    encoder must tell them apart, and must not when the view is fresh."""
    import torch

    from models.encoders import AbsoluteTimeEncoder

    torch.manual_seed(0)
    encoder = AbsoluteTimeEncoder(8)
    seen = torch.tensor([700 * DAY, 700 * DAY])
    frozen = encoder(torch.tensor([700 * DAY, 1065 * DAY]), seen)  # the second predicts a year after its view
    assert torch.allclose(frozen[0], encoder(seen[:1], seen[:1])[0])
    one_year_later_fresh = encoder(torch.tensor([1065 * DAY]), torch.tensor([1065 * DAY]))[0]
    assert not torch.allclose(frozen[1], one_year_later_fresh)  # same anchor, staler view: another input
