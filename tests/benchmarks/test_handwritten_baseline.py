"""benchmarks/handwritten_baseline.py: its features read nothing after the anchor and match a brute-force
reference on small random tables (window edges included), and its refit keeps exactly the chosen rounds."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from benchmarks import handwritten_baseline as hb
from models.metrics import compute_metrics

DAY = 86_400
BASE = 1_700_000_123  # not on a day boundary, so windows are not accidentally day-aligned


PLAN = hb.FeaturePlan(
    entity_table="things",
    entity_key="id",
    static=("colour",),
    events=(hb.EventSource("events", "owner", numeric=("amount",), distinct=("item",), visit="visit"),),
    windows_days=(1, 3),
    trend_days=1,
)
# Offsets from an anchor that sit on or next to the edges of the windows of PLAN (1 and 3 days, and the
# trend's previous day), so the drawn events hit the boundaries often.
EDGES = [0, 1, -1, -DAY, -DAY + 1, -DAY - 1, -2 * DAY, -2 * DAY + 1, -3 * DAY, -3 * DAY + 1, -3 * DAY - 1]


@st.composite
def scenarios(draw) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """Small random event tables and training rows: 4 entities (one may have no events), 1-3 anchors."""
    anchors = [BASE + a for a in draw(st.lists(st.integers(0, 4 * DAY), min_size=1, max_size=3, unique=True))]
    rows = draw(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(anchors)), min_size=1, max_size=8))
    time = st.one_of(
        st.integers(BASE - 5 * DAY, BASE + 6 * DAY),
        st.tuples(st.sampled_from(anchors), st.sampled_from(EDGES)).map(sum),
    )
    anywhere = st.tuples(st.one_of(st.none(), st.integers(0, 3)), time)
    on_an_edge = st.sampled_from(rows).flatmap(  # a row's own entity, on or next to one of its windows' edges
        lambda row: st.tuples(st.just(row[0]), st.sampled_from(EDGES).map(lambda edge: row[1] + edge))
    )
    event = st.tuples(
        st.one_of(anywhere, on_an_edge),
        st.one_of(st.none(), st.integers(-50, 50).map(float)),
        st.one_of(st.none(), st.sampled_from("abc")),
        st.integers(0, 4),
    ).map(lambda drawn: (*drawn[0], *drawn[1:]))
    events = draw(st.lists(event, max_size=25))
    things = draw(st.lists(st.tuples(st.sampled_from(["red", "blue", None]), time), min_size=4, max_size=4))
    return _tables(events, things), _rows(rows)


def _tables(events: list[tuple], things: list[tuple]) -> dict[str, pl.DataFrame]:
    return {
        "events": pl.DataFrame(
            events,
            schema={
                "owner": pl.Int64,
                "_kumo_time": pl.Int64,
                "amount": pl.Float64,
                "item": pl.String,
                "visit": pl.Int64,
            },
            orient="row",
        ),
        "things": pl.DataFrame(
            [(index, colour, time) for index, (colour, time) in enumerate(things)],
            schema={"id": pl.Int64, "colour": pl.String, "_kumo_time": pl.Int64},
            orient="row",
        ),
    }


def _rows(rows: list[tuple[int, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"entity": pl.Int64, "anchor_time": pl.Int64}, orient="row")


@given(scenarios(), st.data())
def test_features_ignore_every_row_after_the_anchor(scenario, data):
    tables, rows = scenario
    cutoff = data.draw(st.sampled_from(rows["anchor_time"].unique().to_list()))
    events = tables["events"]
    later = events.filter(pl.col("_kumo_time") > cutoff)
    kept = data.draw(st.lists(st.booleans(), min_size=later.height, max_size=later.height))
    changed = later.filter(pl.Series(kept, dtype=pl.Boolean)).with_columns(
        (pl.col("amount").fill_null(0) * 7 + 1).alias("amount"),
        pl.lit("z").alias("item"),
        ((pl.col("owner").fill_null(0) + 1) % 4).alias("owner"),
    )
    added = pl.DataFrame(
        [
            (owner, cutoff + 1 + offset, 99.0, "new", 9)
            for owner, offset in data.draw(
                st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3 * DAY)), max_size=5)
            )
        ],
        schema=events.schema,
        orient="row",
    )
    things = tables["things"].with_columns(
        pl.when(pl.col("_kumo_time") > cutoff).then(pl.lit("green")).otherwise("colour").alias("colour")
    )
    altered = {
        "events": pl.concat([events.filter(pl.col("_kumo_time") <= cutoff), changed, added]),
        "things": things,
    }
    before = hb.build_features(tables, rows, PLAN)
    after = hb.build_features(altered, rows, PLAN)
    assert before.height == after.height == rows.height
    visible = (rows["anchor_time"] <= cutoff).to_numpy()
    # equal up to float rounding: sums over the same events in another order may differ in the last bit
    assert_frame_equal(
        before.filter(visible), after.filter(visible), check_exact=False, rel_tol=1e-12, abs_tol=0
    )


@given(scenarios())
def test_features_match_a_brute_force_reference(scenario):
    tables, rows = scenario
    features = hb.build_features(tables, rows, PLAN)
    assert features.height == rows.height
    events = tables["events"].drop_nulls(["owner"]).to_dicts()
    things = {row["id"]: row for row in tables["things"].to_dicts()}
    for index, (entity, anchor) in enumerate(rows.iter_rows()):
        got = features.row(index, named=True)
        seen = [event for event in events if event["owner"] == entity and event["_kumo_time"] <= anchor]
        for days in (1, 3):
            inside = [event for event in seen if event["_kumo_time"] > anchor - days * DAY]
            amounts = [event["amount"] for event in inside if event["amount"] is not None]
            assert got[f"events__count_{days}d"] == len(inside)
            assert got[f"events__sum_amount_{days}d"] == pytest.approx(sum(amounts))
            assert got[f"events__max_amount_{days}d"] == (max(amounts) if amounts else None)
            items = {event["item"] for event in inside if event["item"] is not None}
            assert got[f"events__distinct_item_{days}d"] == len(items)
        previous = [event for event in seen if anchor - 2 * DAY < event["_kumo_time"] <= anchor - DAY]
        assert got["events__count_prev_1d"] == len(previous)
        assert got["events__change_count_1d"] == got["events__count_1d"] - len(previous)
        assert got["events__count_all"] == len(seen)
        last = max((event["_kumo_time"] for event in seen), default=None)
        expected = None if last is None else (anchor - last) / DAY
        assert got["events__days_since_last"] == (pytest.approx(expected) if seen else None)
        thing = things.get(entity)
        colour = thing["colour"] if thing and thing["_kumo_time"] <= anchor else None
        assert got["things__colour"] == colour


def test_window_edges_and_row_order():
    """An event at the anchor counts, one a second later does not; a w-day window is (anchor - w, anchor]."""
    anchor = BASE + 10 * DAY
    offsets = {0: 1.0, 1: 100.0, -DAY: 10.0, -DAY + 1: 1000.0, -3 * DAY: 10_000.0}
    events = [(0, anchor + offset, amount, "a", 0) for offset, amount in offsets.items()]
    tables = _tables(events, [("red", anchor + 1), ("blue", anchor), ("red", 0), ("red", 0)])
    rows = _rows([(1, anchor), (0, anchor), (0, anchor - 1)])
    got = hb.build_features(tables, rows, PLAN).to_dicts()
    assert [row["events__count_1d"] for row in got] == [0, 2, 2]  # at anchor - 1: the events at -DAY, -DAY+1
    assert got[1]["events__sum_amount_1d"] == 1001.0
    assert got[1]["events__sum_amount_3d"] == 1011.0 and got[1]["events__count_all"] == 4
    assert got[1]["events__days_since_last"] == 0.0 and got[2]["events__days_since_last"] == pytest.approx(
        (DAY - 2) / DAY
    )
    assert got[0]["events__count_all"] == 0 and got[0]["events__days_since_last"] is None
    assert [row["things__colour"] for row in got] == ["blue", None, None]  # "things" 0 appears at anchor + 1


def _synthetic(task_type: str, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """800 rows, two informative features among four, a string category; splits 500 / 150 / 150."""
    generator = np.random.default_rng(seed)
    x = generator.normal(size=(800, 4))
    signal = x[:, 0] + 0.5 * x[:, 1] + generator.normal(scale=1.0, size=800)
    label = (signal > 0).astype(np.int64) if task_type == "binary_classification" else signal
    features = pl.DataFrame({f"x{i}": x[:, i] for i in range(4)}).with_columns(
        pl.Series("kind", generator.choice(["a", "b", None], size=800))
    )
    split = ["train"] * 500 + ["val"] * 150 + ["test"] * 150
    order = generator.permutation(800)  # splits interleaved, as they are not in a real training table
    rows = pl.DataFrame({"label": label, "split": split})[order]
    return features[order], rows


@pytest.mark.parametrize("task_type", ["binary_classification", "regression"])
def test_refit_keeps_exactly_the_rounds_chosen_on_validation(task_type):
    features, rows = _synthetic(task_type)
    result = hb.fit_and_score(
        features, rows, task_type, seed=3, max_rounds=400, early_stopping_rounds=30, threads=1
    )
    rounds = result["rounds"]
    assert 1 <= rounds < 400  # early stopping chose it
    assert result["refit_model"].num_trees() == rounds
    matrix, _, categorical = hb.feature_matrix(features)
    assert categorical == ["kind"]
    val, test = result["val_rows"], result["test_rows"]
    assert sorted(rows["split"][val].unique()) == ["val"] and sorted(rows["split"][test].unique()) == ["test"]
    np.testing.assert_allclose(
        result["val_predictions"], result["model"].predict(matrix[val], num_iteration=rounds)
    )
    np.testing.assert_allclose(result["test_predictions"], result["refit_model"].predict(matrix[test]))
    assert not np.allclose(
        result["refit_model"].predict(matrix[val]), result["val_predictions"]
    )  # val unseen
    labels, predictions = hb.split_arrays(rows, result, "val")
    metric = "auroc" if task_type == "binary_classification" else "r2"
    assert compute_metrics(task_type, labels, predictions)[metric] > 0.4  # it learned the signal
    aligned = hb.aligned_predictions(rows, result)
    assert np.isnan(aligned[rows["split"].to_numpy() == "train"]).all()
    np.testing.assert_array_equal(aligned[test], result["test_predictions"])
