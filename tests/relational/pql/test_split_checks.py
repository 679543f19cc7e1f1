"""Anchors outside the data and splits that come out empty are refused with the place and the fix, and
nothing is written: before, such a training table was written with zero rows (or all-zero labels) and the
command exited 0."""

from __future__ import annotations

import pytest

from cli.main import main
from relational.errors import KumoError
from relational.pql.anchors import AnchorPlan
from relational.pql.split_checks import EmptySplitError
from relational.pql.training_table import build_training_table
from tests.support.fake_db import make_tables, write_fake_db
from tests.support.pql_helpers import in_memory_graph

COUNT = "PREDICT COUNT(orders.*, 0, 30, days) FOR EACH users.user_id"
REGULAR = COUNT + " WHERE COUNT(orders.*, -INF, 0, days) > 3"


@pytest.fixture(scope="module")
def shop_spec(tmp_path_factory):
    return write_fake_db(tmp_path_factory.mktemp("shop"))  # orders from 2024-01-01 for 180 days


@pytest.fixture(scope="module")
def shop(shop_spec):
    return in_memory_graph(shop_spec)


def build(shop, query, plan):
    schema, tables = shop
    return build_training_table(query, schema, tables, plan)


def test_val_before_the_data_is_refused_and_the_cli_writes_nothing(shop_spec, tmp_path, capsys):
    out = tmp_path / "table.parquet"
    code = main(["query", "table", COUNT, "--spec", str(shop_spec), "--val", "2023-06-01", "--test", "2024-03-01",
                 "--out", str(out)])  # fmt: skip
    message = capsys.readouterr().err
    assert code != 0 and not out.exists()
    assert "val 2023-06-01 is at or before the first event in the data (2024-01-01" in message
    assert "Fix: choose val and test inside the data's span" in message


def test_a_test_window_past_the_last_event_names_the_latest_valid_test(shop):
    with pytest.raises(
        KumoError, match=r"test 2024-06-20 \+ the target window ends after the last event"
    ) as info:
        build(shop, COUNT, AnchorPlan.from_config({"val": "2024-04-01", "test": "2024-06-20"}))
    assert "Fix: move test to at most 2024-05-3" in str(info.value)


@pytest.mark.parametrize(
    ("timestamps", "message"),
    [
        ({"train": ["2023-01-01"], "val": ["2024-04-01"], "test": ["2024-05-01"]},
         "train anchor 2023-01-01 is before the first event in the data (2024-01-01"),
        ({"train": ["2024-02-01"], "val": ["2024-04-01"], "test": ["2024-06-15"]},
         "test anchor 2024-06-15 + the target window (0, 30] days ends after the last event in the data"),
    ],
)  # fmt: skip
def test_explicit_anchors_outside_the_data_are_refused(shop, timestamps, message):
    with pytest.raises(KumoError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        build(shop, COUNT, AnchorPlan.from_config({"timestamps": timestamps}))


def test_a_split_where_no_entity_qualifies_is_refused(shop):
    """On 2024-01-02 no user has more than 3 orders yet: the WHERE leaves the train split empty."""
    plan = AnchorPlan.from_config(
        {"timestamps": {"train": ["2024-01-02"], "val": ["2024-04-01"], "test": ["2024-05-01"]}}
    )
    with pytest.raises(EmptySplitError) as info:
        build(shop, REGULAR, plan)
    message = str(info.value)
    assert "empty split (train: 1 anchor (2024-01-02), 0 rows)" in message
    assert "the data's events span 2024-01-01" in message and "(0, 30] days" in message
    assert "val" not in message.split("empty split")[1].split(";")[0]  # only the empty split is named
    assert len(build(shop, COUNT, plan).table) > 0  # without the WHERE every split has rows


def test_splits_the_user_left_out_of_explicit_anchors_stay_allowed(shop):
    plan = AnchorPlan.from_config({"timestamps": {"train": ["2024-02-01", "2024-03-01"]}})
    table = build(shop, COUNT, plan).table
    assert set(table.get_column("split")) == {"train"}


def test_a_static_target_with_too_few_known_values_is_refused(tmp_path):
    tables = make_tables(n_users=3)
    spec = write_fake_db(tmp_path / "tiny", tables=tables)
    with pytest.raises(
        EmptySplitError,
        match=r"split\(s\) of this static target came out empty: only 2 rows of users have a known age",
    ):
        build(in_memory_graph(spec), "PREDICT users.age FOR EACH users.user_id", AnchorPlan())
