"""Propositional features: exact values on a hand-built graph, a brute-force reference, and leakage.

Leakage is checked by property: on random graphs, features never change when rows after the as-of time
are dropped or scrambled, and a builder that reads one future row must make the audit fail.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.propositional import (
    audit_feature_leakage,
    build_relational_features,
    stale_view_rows,
    vocabulary_limit,
)
from models.propositional_config import PropositionalConfig
from relational.keys import NODE_ID
from relational.pql.errors import LeakageError
from relational.schema import GraphSchema, TableSchema
from relational.spec import ForeignKey
from relational.table_build import EVENT_TIME

DAY = 86_400
USER = ForeignKey("user_id", ("user_id",), "users")
PRODUCT = ForeignKey("product_id", ("product_id",), "products")
ORDER = ForeignKey("order_id", ("order_id",), "orders")


def shop_schema() -> GraphSchema:
    """users <- orders -> products; orders <- returns. Orders and returns have event times."""
    return GraphSchema(
        {
            "users": TableSchema(
                "users", {"uid": "id", "age": "numerical", "country": "categorical"}, ["uid"], False
            ),
            "products": TableSchema("products", {"pid": "id", "price": "numerical"}, ["pid"], False),
            "orders": TableSchema(
                "orders",
                {"oid": "id", "amount": "numerical", "status": "categorical"},
                ["oid"],
                True,
                [USER, PRODUCT],
            ),
            "returns": TableSchema("returns", {"rid": "id", "refund": "numerical"}, ["rid"], True, [ORDER]),
        }
    )


def shop_tables(
    orders: list[tuple[int, int, int, float, str]], returns: list[tuple[int, int, float]]
) -> dict:
    """orders: (user, product, day, amount, status); returns: (order row, day, refund). Sorted by time."""
    orders = sorted(orders, key=lambda row: row[2])
    returns = sorted(returns, key=lambda row: row[1])
    return {
        "users": pl.DataFrame(
            {
                "uid": [10, 11, 12],
                "age": [30.0, 40.0, None],
                "country": ["fr", "de", "fr"],
                NODE_ID: [0, 1, 2],
            }
        ),
        "products": pl.DataFrame({"pid": [7, 8], "price": [5.0, 50.0], NODE_ID: [0, 1]}),
        "orders": _events(
            orders,
            "oid",
            2,
            amount=(3, pl.Float64),
            status=(4, pl.String),
            _kumo_fk__user_id=(0, pl.Int64),
            _kumo_fk__product_id=(1, pl.Int64),
        ),
        "returns": _events(returns, "rid", 1, refund=(2, pl.Float64), _kumo_fk__order_id=(0, pl.Int64)),
    }


def _events(rows: list[tuple], id_column: str, day: int, **columns: tuple[int, pl.DataType]) -> pl.DataFrame:
    """An event table from tuples: a row id, ``columns`` (name=(tuple index, dtype)), event time, node id."""
    data = {
        id_column: list(range(len(rows))),
        **{name: [row[i] for row in rows] for name, (i, _) in columns.items()},
    }
    schema = {id_column: pl.Int64, **{name: dtype for name, (_, dtype) in columns.items()}}
    return pl.DataFrame(
        {**data, EVENT_TIME: [row[day] * DAY for row in rows], NODE_ID: list(range(len(rows)))},
        schema={**schema, EVENT_TIME: pl.Int64, NODE_ID: pl.Int64},
    )


SMALL = PropositionalConfig(windows_days=(30, None), last_events=(2,), top_categories=2)
ORDERS = [
    (0, 0, 1, 10.0, "paid"),
    (0, 1, 5, 20.0, "paid"),
    (0, 0, 20, 30.0, "void"),
    (0, 1, 40, 40.0, "paid"),
    (1, 1, 3, 100.0, "paid"),
    (1, 1, 31, 200.0, "void"),  # exactly 30 days before user 1's anchor at day 61: outside the window
]
# (order node id, day, refund); order ids follow the day order: 0 = day 1, 2 = day 5, 3 = day 20 (all user 0).
RETURNS = [(0, 2, 4.0), (2, 25, 6.0), (3, 41, 9.0)]


def entities(ids: list[int], days: list[int]) -> pl.DataFrame:
    return pl.DataFrame({NODE_ID: ids, "anchor_time": [day * DAY for day in days]})


def features_at(ids, days, config=SMALL, cutoff_day=None, orders=ORDERS, returns=RETURNS) -> dict:
    cutoff = None if cutoff_day is None else cutoff_day * DAY
    frame = build_relational_features(
        shop_tables(orders, returns), shop_schema(), "users", entities(ids, days), config, cutoff
    )
    return frame.to_dict(as_series=False)


def test_window_aggregates_have_exact_values() -> None:
    f = features_at([0, 1, 2], [30, 61, 30])
    # user 0 at day 30 sees orders on days 1, 5, 20 (amounts 10, 20, 30); day 40 is in the future.
    assert f["orders.count.30d"][0] == 3 and f["orders.count.all"][0] == 3
    assert f["orders.amount.mean.30d"][0] == pytest.approx(20.0)
    assert f["orders.amount.sum.all"][0] == pytest.approx(60.0)
    assert f["orders.amount.min.30d"][0] == 10.0 and f["orders.amount.max.30d"][0] == 30.0
    assert f["orders.amount.std.all"][0] == pytest.approx(np.std([10, 20, 30]))
    assert f["orders.amount.last"][0] == 30.0
    assert f["orders.amount.mean.last2"][0] == pytest.approx(25.0)
    assert f["orders.status=paid.share.all"][0] == pytest.approx(2 / 3)
    assert f["orders.days_since_last"][0] == pytest.approx(10.0)
    assert f["orders.days_since_first"][0] == pytest.approx(29.0)
    # user 1 at day 61: the order of day 31 is exactly 30 days back, so only "all" includes it.
    assert f["orders.count.30d"][1] == 0 and f["orders.count.all"][1] == 2
    assert math.isnan(f["orders.amount.mean.30d"][1]) and f["orders.amount.sum.30d"][1] == 0.0
    # user 2 has no orders at all.
    assert f["orders.count.all"][2] == 0 and math.isnan(f["orders.amount.last"][2])
    assert math.isnan(f["orders.days_since_last"][2])
    # own and parent columns; the entity's static categorical as code and frequency.
    assert f["users.age"][:2] == [30.0, 40.0] and math.isnan(f["users.age"][2])
    assert f["users.country.freq"][0] == pytest.approx(2 / 3)
    assert "anchor_gap_days" not in f


def test_two_hop_features_have_exact_values() -> None:
    f = features_at([0], [30])
    # enriched: the products of the visible orders (0, 1, 0) -> prices 5, 50, 5.
    assert f["orders.product_id->products.price.mean.all"][0] == pytest.approx(20.0)
    # grandchildren: returns of the user's orders at or before day 30: refunds 4 (day 2) and 6 (day 25).
    assert f["orders>returns.refund.sum.all"][0] == pytest.approx(10.0)
    assert f["orders>returns.count.all"][0] == 2
    # via the product of the latest visible order (product 0 on day 20): all its orders so far (days 1, 20).
    assert f["orders.product_id@last.orders.count.all"][0] == 2
    assert f["orders.product_id@last.products.price"][0] == 5.0


def test_frozen_database_caps_the_as_of_time() -> None:
    f = features_at([0, 0], [30, 4], cutoff_day=10)
    # anchor day 30, database ends at day 10: orders of days 1 and 5 only, windows measured from day 10.
    assert f["orders.count.all"][0] == 2 and f["orders.amount.last"][0] == 20.0
    assert f["anchor_gap_days"] == [20.0, 0.0]
    assert f["orders.days_since_last"][0] == pytest.approx(5.0)
    assert f["orders.count.all"][1] == 1  # anchor before the cutoff: its own as-of time


def test_per_row_cutoff_column_matches_the_scalar_cutoff() -> None:
    tables, schema = shop_tables(ORDERS, RETURNS), shop_schema()
    rows = entities([0, 1, 0], [30, 61, 50])
    by_column = build_relational_features(
        tables, schema, "users", rows.with_columns(pl.lit(12 * DAY).alias("data_cutoff")), SMALL
    )
    by_scalar = build_relational_features(tables, schema, "users", rows, SMALL, data_cutoff=12 * DAY)
    assert by_column.equals(by_scalar)


def test_stale_view_rows_replay_earlier_cutoffs() -> None:
    rows = entities([0, 1], [700, 300]).with_columns(pl.Series("label", [1, 0]))
    stale = stale_view_rows(rows, reference_cutoff=1000 * DAY, horizon_days=500, step_days=365)
    cutoffs = {(r[NODE_ID], r["data_cutoff"]) for r in stale.iter_rows(named=True)}
    days = {(user, None if cutoff is None else cutoff // DAY) for user, cutoff in cutoffs}
    assert days == {(0, None), (0, 635), (0, 270), (1, None), (1, 270), (1, -95)}
    assert stale.get_column("label").sum() == 3  # labels travel with their rows
    tables, schema = shop_tables(ORDERS, RETURNS), shop_schema()
    features = build_relational_features(tables, schema, "users", stale, SMALL)
    one = stale.with_row_index().filter((pl.col(NODE_ID) == 0) & (pl.col("data_cutoff") == 270 * DAY))
    alone = build_relational_features(tables, schema, "users", one.drop("data_cutoff"), SMALL, 270 * DAY)
    assert features.slice(int(one["index"][0]), 1).equals(alone)
    assert alone["anchor_gap_days"].to_list() == [430.0]


def test_output_shape_order_and_types() -> None:
    rows = entities([2, 0, 1, 0, 0], [30, 61, 30, 30, 61])
    frame = build_relational_features(shop_tables(ORDERS, RETURNS), shop_schema(), "users", rows, SMALL)
    assert frame.height == 5
    assert all(dtype.is_numeric() for dtype in frame.dtypes)
    assert frame.get_column("orders.count.all").to_list() == [0, 4, 1, 3, 4]
    assert frame.slice(1, 1).equals(frame.slice(4, 1))  # a repeated (entity, anchor) repeats its features


def test_static_child_tables_are_always_visible() -> None:
    schema = shop_schema()
    tables = shop_tables(ORDERS, RETURNS)
    static_orders = tables["orders"].drop(EVENT_TIME)
    schema.tables["orders"] = TableSchema(
        "orders", schema.tables["orders"].stypes, ["oid"], False, [USER, PRODUCT]
    )
    frame = build_relational_features(
        {**tables, "orders": static_orders}, schema, "users", entities([0], [2]), SMALL
    )
    assert frame.get_column("orders.count.all").to_list() == [4]


# ---- brute-force reference on random data ------------------------------------------------------------
order_rows = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.integers(0, 1),
        st.integers(0, 120),
        st.one_of(st.none(), st.floats(-1e3, 1e3, allow_nan=False)),
        st.sampled_from(["a", "b", "c"]),
    ),
    max_size=40,
)
return_rows = st.lists(st.tuples(st.integers(0, 39), st.integers(0, 130), st.floats(0, 100)), max_size=20)
anchor_rows = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 130)), min_size=1, max_size=12)


def _valid_returns(orders: list, returns: list) -> list:
    return [row for row in returns if row[0] < len(orders)]


@settings(max_examples=25)
@given(order_rows, anchor_rows, st.one_of(st.none(), st.integers(0, 130)))
def test_window_aggregates_match_a_brute_force_reference(orders, anchors, cutoff_day) -> None:
    f = features_at([a for a, _ in anchors], [d for _, d in anchors], cutoff_day=cutoff_day, orders=orders)
    ordered = sorted(orders, key=lambda row: row[2])  # the builder sees rows in time order, ties stable
    for index, (user, day) in enumerate(anchors):
        as_of = day if cutoff_day is None else min(day, cutoff_day)
        for label, low in (("30d", as_of - 30), ("all", -math.inf)):
            rows = [row for row in ordered if row[0] == user and low < row[2] <= as_of]
            amounts = [row[3] for row in rows if row[3] is not None]
            assert f[f"orders.count.{label}"][index] == len(rows)
            expected_mean = np.mean(amounts) if amounts else np.nan
            assert np.isclose(
                f[f"orders.amount.mean.{label}"][index], expected_mean, rtol=1e-5, equal_nan=True
            )
            expected_max = max(amounts) if amounts else np.nan
            assert np.isclose(f[f"orders.amount.max.{label}"][index], expected_max, rtol=1e-6, equal_nan=True)
            expected_std = np.std(amounts) if amounts else np.nan
            assert np.isclose(
                f[f"orders.amount.std.{label}"][index], expected_std, rtol=1e-3, atol=1e-2, equal_nan=True
            )
        visible = [row for row in ordered if row[0] == user and row[2] <= as_of]
        last = visible[-1][3] if visible and visible[-1][3] is not None else np.nan
        assert np.isclose(f["orders.amount.last"][index], last, rtol=1e-6, equal_nan=True)


# ---- leakage -----------------------------------------------------------------------------------------
@settings(max_examples=15)
@given(order_rows, return_rows, anchor_rows, st.one_of(st.none(), st.integers(0, 130)))
def test_features_never_read_rows_after_the_as_of_time(orders, returns, anchors, cutoff_day) -> None:
    tables = shop_tables(orders, _valid_returns(orders, returns))
    rows = entities([a for a, _ in anchors], [d for _, d in anchors])
    cutoff = None if cutoff_day is None else cutoff_day * DAY
    report = audit_feature_leakage(
        tables, shop_schema(), "users", rows, data_cutoff=cutoff, max_groups=3, config=SMALL
    )
    assert report["passed"]


@settings(max_examples=15)
@given(order_rows, anchor_rows)
def test_dropping_future_rows_changes_nothing(orders, anchors) -> None:
    tables, schema = shop_tables(orders, []), shop_schema()
    rows = entities([a for a, _ in anchors], [d for _, d in anchors])
    latest = max(d for _, d in anchors) * DAY
    everything = build_relational_features(tables, schema, "users", rows, SMALL)
    cut = {name: frame.filter(pl.col(EVENT_TIME) <= latest) if EVENT_TIME in frame.columns else frame
           for name, frame in tables.items()}  # fmt: skip
    assert everything.equals(build_relational_features(cut, schema, "users", rows, SMALL))


def one_day_late(tables, schema, entity_table, rows, **kwargs):
    """A leaky builder: it looks one day past each anchor."""
    shifted = rows.with_columns(pl.col("anchor_time") + DAY)
    return build_relational_features(tables, schema, entity_table, shifted, **kwargs)


def peeks_at_next_order(tables, schema, entity_table, rows, **kwargs):
    """A leaky builder: one extra feature, the amount of the user's first order after the anchor."""
    features = build_relational_features(tables, schema, entity_table, rows, **kwargs)
    orders = tables["orders"].sort(EVENT_TIME)
    upcoming = [
        orders.filter((pl.col("_kumo_fk__user_id") == user) & (pl.col(EVENT_TIME) > anchor))
        .get_column("amount")
        .head(1)
        .to_list()
        for user, anchor in rows.select(NODE_ID, "anchor_time").iter_rows()
    ]
    return features.with_columns(
        pl.Series("next_amount", [v[0] if v else None for v in upcoming], pl.Float32)
    )


@pytest.mark.parametrize("leaky", [one_day_late, peeks_at_next_order])
def test_a_feature_computed_from_a_future_row_fails_the_audit(leaky) -> None:
    orders = [*ORDERS, (0, 0, 30, 77.0, "paid"), (1, 0, 31, 5.0, "paid")]  # rows right after the anchors
    rows = entities([0, 1], [29, 30])
    with pytest.raises(LeakageError, match="read rows after their as-of time") as caught:
        audit_feature_leakage(
            shop_tables(orders, RETURNS), shop_schema(), "users", rows, build=leaky, config=SMALL
        )
    expected = "orders.count.all" if leaky is one_day_late else "next_amount"
    assert expected in caught.value.columns


@settings(max_examples=10)
@given(order_rows, st.lists(st.tuples(st.integers(0, 2), st.integers(0, 130)), min_size=1, max_size=5))
def test_the_audit_catches_a_one_day_leak_whenever_it_matters(orders, anchors) -> None:
    tables = shop_tables(orders, [])
    rows = entities([a for a, _ in anchors], [d for _, d in anchors])
    honest = build_relational_features(tables, shop_schema(), "users", rows, SMALL)
    leaked = one_day_late(tables, shop_schema(), "users", rows, config=SMALL)
    counts_differ = not honest.get_column("orders.count.all").equals(leaked.get_column("orders.count.all"))
    try:
        audit_feature_leakage(
            tables, shop_schema(), "users", rows, build=one_day_late, max_groups=50, config=SMALL
        )
    except LeakageError:
        return
    assert not counts_differ, "a builder that reads one day ahead passed the audit"


@pytest.mark.parametrize(
    "settings_", [{"aggregations": ("median",)}, {"windows_days": (0,)}, {"max_hops": 0}]
)
def test_invalid_configs_are_rejected(settings_: dict) -> None:
    with pytest.raises(ValueError):
        PropositionalConfig(**settings_)


def test_audit_rejects_unknown_entity_table() -> None:
    with pytest.raises(ValueError, match="unknown entity table"):
        build_relational_features(shop_tables(ORDERS, RETURNS), shop_schema(), "nope", entities([0], [1]))


def test_rows_built_apart_with_the_training_vocabulary_limit_equal_rows_built_together() -> None:
    """Category columns depend on the latest as-of of a call; scoring passes the training call's limit
    (`vocabulary_limit`) so that any subset of rows, built alone, gets exactly the columns and values the
    model was trained on (without it, the early rows alone would choose other top categories)."""
    tables = shop_tables([*ORDERS, (1, 0, 50, 5.0, "late"), (2, 0, 55, 5.0, "late"), (1, 1, 58, 5.0, "late")],
                         RETURNS)  # fmt: skip
    together = entities([0, 1, 2, 0, 1], [21, 21, 21, 61, 61])
    limit = vocabulary_limit(together)
    reference = build_relational_features(tables, shop_schema(), "users", together, SMALL)
    early = together.head(3)
    apart = build_relational_features(tables, shop_schema(), "users", early, SMALL, vocabulary_limit=limit)
    assert apart.equals(reference.head(3))
    unaligned = build_relational_features(tables, shop_schema(), "users", early, SMALL)
    assert unaligned.columns != reference.columns


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-3, 6), st.integers(-(10**12), 10**12)), max_size=40),
    st.lists(st.tuples(st.integers(-5, 8), st.integers(-(2**63), 2**63 - 1)), max_size=20),
    st.booleans(),
)
def test_rows_before_counts_the_rows_that_sort_before_each_query(rows, queries, inclusive) -> None:
    """The binary search behind every window: rows sorted by (entity, time); a query (entity, time) counts
    the rows of a smaller entity, or of its own with an earlier time (or equal, when inclusive)."""
    from models.propositional_windows import _rows_before

    rows = sorted(rows)
    entity = np.array([e for e, _ in rows], dtype=np.int64)
    time = np.array([t for _, t in rows], dtype=np.int64)
    q_entity = np.array([e for e, _ in queries], dtype=np.int64)
    q_time = np.array([t for _, t in queries], dtype=np.int64)
    expected = [
        sum(e < qe or (e == qe and (t <= qt if inclusive else t < qt)) for e, t in rows) for qe, qt in queries
    ]
    assert _rows_before(entity, time, q_entity, q_time, inclusive).tolist() == expected
