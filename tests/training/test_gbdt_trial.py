"""`run_gbdt_trial` end to end on a small hand-built database: frozen-regime staleness and its errors."""

from __future__ import annotations

import polars as pl
import pytest

from models.gbdt import GBDTConfig
from models.propositional import ROW_CUTOFF
from relational.keys import NODE_ID
from tests.models.test_propositional import DAY, SMALL, shop_schema, shop_tables
from training.trial import evaluation_span, run_gbdt_trial, with_frozen_views

# Users 10 and 11 order every 20 / 90 days from day 0 to day 1400 (product 7, amount = day).
ORDERS = [
    (user, 0, day, float(day), "paid") for user, every in ((0, 20), (1, 90)) for day in range(0, 1400, every)
]
OBSERVE_UNTIL = 1000 * DAY


def training_table() -> pl.DataFrame:
    """Train anchors at days 400 and 900 for both users, val at 1000/1200 and test at 1000/1300: the
    longest evaluation split runs 300 days past its first anchor."""
    rows = [(uid, day, label, split) for day, split in ((400, "train"), (900, "train"), (1000, "val"),
                                                        (1200, "val"), (1000, "test"), (1300, "test"))
            for uid, label in ((10, 1), (11, 0))]  # fmt: skip
    return pl.DataFrame(
        {"entity": [row[0] for row in rows], "anchor_time": [row[1] * DAY for row in rows],
         "label": [row[2] for row in rows], "split": [row[3] for row in rows]}
    )  # fmt: skip


def run(table: pl.DataFrame, **kwargs):
    tables = shop_tables(ORDERS, [])
    keys = tables["users"].select("uid", NODE_ID)
    config = GBDTConfig(n_estimators=5, min_child_samples=1)
    return run_gbdt_trial(tables, shop_schema(), "users", keys, table, "binary_classification", config,
                          features=SMALL, **kwargs)  # fmt: skip


def test_evaluation_span_is_the_longest_non_training_split() -> None:
    assert evaluation_span(training_table()) == 300 * DAY


def test_staleness_adds_each_training_row_as_earlier_frozen_views() -> None:
    table = training_table()
    fresh = run(table, observe_until=OBSERVE_UNTIL)
    stale = run(table, observe_until=OBSERVE_UNTIL, simulate_staleness=True)
    assert fresh.train_rows == 4
    # Cutoffs 1000 - 365 k days = 635, 270, ...; within (anchor - 300, anchor]: day 900 -> 635, day 400 ->
    # 270 (one stale copy each, per user).
    assert stale.train_rows == 4 + 4
    assert stale.features == fresh.features  # the same columns, only more rows


def test_staleness_without_a_frozen_database_is_refused() -> None:
    with pytest.raises(ValueError, match="observe_until"):
        run(training_table(), simulate_staleness=True)


def test_frozen_views_add_stale_training_rows_and_frozen_validation_rows() -> None:
    table = training_table()
    views = with_frozen_views(table, OBSERVE_UNTIL, simulate_staleness=True, freeze_validation=True)
    assert views.head(table.height).drop(ROW_CUTOFF).equals(table)  # the table's own rows first, untouched
    assert views.head(table.height)[ROW_CUTOFF].null_count() == table.height
    stale = views.slice(table.height).filter(pl.col("split") == "train")
    assert sorted(zip(stale["anchor_time"], stale[ROW_CUTOFF], strict=True)) == sorted(
        [(400 * DAY, 270 * DAY), (900 * DAY, 635 * DAY)] * 2
    )
    frozen = views.filter(pl.col("split") == "val_frozen")
    assert frozen.drop(ROW_CUTOFF, "split").equals(table.filter(pl.col("split") == "val").drop("split"))
    assert frozen[ROW_CUTOFF].to_list() == [1000 * DAY] * frozen.height  # the first validation anchor
    assert with_frozen_views(table, None, False, False).drop(ROW_CUTOFF).equals(table)
