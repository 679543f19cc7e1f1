"""Building validated tables from raw frames: keys, foreign keys, time, checks, clear errors."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from relational.errors import IngestError
from relational.graph_tables import ingest_in_memory
from relational.keys import NODE_ID
from relational.sources import read_table_source
from relational.spec_loader import load_spec
from relational.table_build import EVENT_TIME, build_table
from tests.support.fake_db import make_tables, write_fake_db


def build_all(spec):
    return ingest_in_memory(spec, strict=False)


def checks_of(built_table):
    return {check.name: check for check in built_table.checks}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_fake_db_builds_with_expected_keys_and_dirt(tmp_path, fmt):
    spec = load_spec(write_fake_db(tmp_path, fmt))
    raw = make_tables()
    built = build_all(spec)

    orders = built["orders"].frame
    assert orders.height == raw["orders"].height - 1  # the row with no time is dropped
    assert built["orders"].meta["time"]["dropped_null_rows"] == 1
    assert orders[EVENT_TIME].is_sorted()
    assert orders[NODE_ID].to_list() == list(range(orders.height))

    # Foreign-key ids point at the right parent rows.
    users = built["users"].frame
    joined = orders.drop_nulls("_kumo_fk__user_id").join(
        users.select("user_id", NODE_ID), left_on="_kumo_fk__user_id", right_on=NODE_ID
    )
    assert (joined["user_id"] == joined["user_id_right"]).all()
    fk_check = checks_of(built["orders"])["foreign_key_user_id"]
    assert not fk_check.passed and not fk_check.blocking
    assert fk_check.metadata["dangling_rows"] == 1 and fk_check.metadata["null_rows"] == 1
    assert "10000" in fk_check.description

    # String keys resolve too; the implied stores table holds the distinct store ids.
    assert orders["_kumo_fk__product_id"].null_count() == 0
    assert sorted(built["stores"].frame["store_id"].to_list()) == ["east", "north", "south"]
    assert orders["_kumo_fk__store_id"].null_count() == 0

    # Self-reference: referrer ids map to the same table's node ids.
    referrers = users.filter(pl.col("referrer_id").is_not_null())
    looked_up = users[NODE_ID].gather(referrers["_kumo_fk__referrer_id"].to_numpy())
    assert (users["user_id"].gather(looked_up.to_numpy()) == referrers["referrer_id"]).all()

    # Inherited time: each review happens one day after its order.
    reviews = built["reviews"].frame.join(
        orders.select(NODE_ID, pl.col(EVENT_TIME).alias("order_time")),
        left_on="_kumo_fk__order_id",
        right_on=NODE_ID,
    )
    assert ((reviews[EVENT_TIME] - reviews["order_time"]) == 86400).all()

    # Normalisation and stypes.
    assert users["country"].null_count() > 0  # the 'NULL' token
    assert users["signup"].dtype == pl.Int64  # dates become epoch seconds
    stypes = built["users"].meta["stypes"]
    assert stypes["user_id"]["stype"] == "id" and stypes["country"]["source"] == "override"
    assert stypes["bio"]["stype"] == "text" and stypes["age"]["stype"] == "numerical"
    assert built["products"].meta["stypes"]["tags"]["stype"] == "multicategorical"
    column_check = checks_of(built["users"])["column_types"]
    assert not column_check.passed and "constant" in column_check.description


def test_duplicate_primary_key_is_a_blocking_failure(tmp_path):
    tables = make_tables()
    tables["users"] = pl.concat([tables["users"], tables["users"].head(2)])
    spec = load_spec(write_fake_db(tmp_path, tables=tables))
    built = build_table(spec, "users", read_table_source(spec, "users"), {})
    check = checks_of(built)["primary_key"]
    assert not check.passed and check.blocking and check.metadata["duplicate_rows"] == 4
    with pytest.raises(IngestError, match=r"primary key \['user_id'\] must be unique.*\{'user_id': 1\}"):
        built.raise_for_blocking()


def test_null_primary_key_is_a_blocking_failure(tmp_path):
    tables = make_tables()
    tables["products"] = tables["products"].with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("product_id")).alias("product_id")
    )
    spec = load_spec(write_fake_db(tmp_path, tables=tables))
    built = build_table(spec, "products", read_table_source(spec, "products"), {})
    assert checks_of(built)["primary_key"].metadata["null_rows"] == 1
    assert built.blocking_failures


def test_unparseable_event_time_is_a_blocking_failure(tmp_path):
    tables = make_tables()
    tables["orders"] = tables["orders"].with_columns(
        pl.when(pl.int_range(pl.len()) == 4)
        .then(pl.lit("last tuesday"))
        .otherwise(pl.col("created_at"))
        .alias("created_at")
    )
    built = build_all(load_spec(write_fake_db(tmp_path, tables=tables)))
    check = checks_of(built["orders"])["event_time"]
    assert not check.passed and check.blocking
    assert "data row 5: 'last tuesday'" in check.description
    assert check.description.startswith("table 'orders': `time_column` 'created_at': 1 of ")
    assert "Accepted: text as YYYY-MM-DD" in check.description


def test_type_clash_between_foreign_and_primary_key(tmp_path):
    tables = make_tables()
    tables["orders"] = tables["orders"].with_columns(pl.col("user_id").cast(pl.String) + "x")
    with pytest.raises(
        IngestError, match=r"'user_id' is String but it points at users.user_id, which is Int64"
    ):
        build_all(load_spec(write_fake_db(tmp_path, tables=tables)))


def test_integral_float_foreign_key_matches_integer_key(tmp_path):
    tables = make_tables()
    tables["reviews"] = tables["reviews"].with_columns(pl.col("order_id").cast(pl.Float64))
    built = build_all(load_spec(write_fake_db(tmp_path, tables=tables)))
    assert built["reviews"].frame["_kumo_fk__order_id"].null_count() == 0


@pytest.mark.parametrize(
    "renamed, key",
    [("created_at", "time_column"), ("user_id", "foreign_keys.user_id"), ("order_id", "primary_key")],
)
def test_missing_column_names_table_key_and_suggests(tmp_path, renamed, key):
    tables = make_tables()
    tables["orders"] = tables["orders"].rename({renamed: renamed + "_x"})
    with pytest.raises(IngestError) as info:
        build_all(load_spec(write_fake_db(tmp_path, tables=tables)))
    message = str(info.value)
    assert f"table 'orders': `{key}` names column '{renamed}'" in message
    assert f"did you mean '{renamed}_x'" in message


def test_empty_table_is_an_error(tmp_path):
    tables = make_tables()
    tables["products"] = tables["products"].head(0)
    spec = load_spec(write_fake_db(tmp_path, tables=tables))
    with pytest.raises(IngestError, match=r"'products'.*has no rows"):
        build_table(spec, "products", read_table_source(spec, "products"), {})


def test_composite_foreign_key_and_timezone(tmp_path):
    weather = pl.DataFrame(
        {"origin": ["EWR", "JFK", "EWR"], "hour": ["2013-01-01 05:00", "2013-01-01 05:00", "2013-01-01 06:00"],
         "temp": [1.0, 2.0, 3.0]}
    )  # fmt: skip
    flights = pl.DataFrame(
        {
            "origin": ["JFK", "EWR", "EWR"],
            "hour": ["2013-01-01 05:00", "2013-01-01 06:00", "2013-01-01 07:00"],
        }
    )
    spec_text = """\
tables:
  weather: {{source: weather.{ext}, primary_key: [origin, hour], time_column: hour, timezone: America/New_York}}
  flights:
    source: flights.{ext}
    time_column: hour
    timezone: America/New_York
    foreign_keys: {{weather_hour: {{table: weather, columns: [origin, hour]}}}}
"""
    spec = load_spec(write_fake_db(tmp_path, tables={"weather": weather, "flights": flights}, spec=spec_text))
    built = build_all(spec)
    assert built["weather"].frame[EVENT_TIME][0] == 1357034400  # 05:00 EST = 10:00 UTC
    ids = built["flights"].frame["_kumo_fk__weather_hour"].to_list()
    assert ids == [built["weather"].frame.filter(pl.col("origin") == "JFK")[NODE_ID][0], 2, None]


def test_decimal_columns_ingest_as_the_numbers_they_hold(tmp_path):
    """Parquet DECIMAL, what databases export NUMERIC/NUMBER columns as: a whole-number one (ids, counts) is
    read as Int64 and one with a scale as Float64, so keys resolve and amounts are numerical features, as in
    the same tables without decimals (before, an amount became a high-cardinality category)."""
    tables = make_tables()
    plain = build_all(load_spec(write_fake_db(tmp_path / "plain", "parquet", tables)))
    whole, scaled = pl.Decimal(12, 0), pl.Decimal(10, 2)
    decimal = {
        **tables,
        "users": tables["users"].with_columns(pl.col("user_id", "referrer_id").cast(whole)),
        "orders": tables["orders"].with_columns(pl.col("user_id").cast(whole)),
        "products": tables["products"].with_columns(pl.col("price").cast(scaled)),
    }
    built = build_all(load_spec(write_fake_db(tmp_path / "decimal", "parquet", decimal)))
    for name, table in plain.items():
        assert_frame_equal(built[name].frame, table.frame, check_exact=False)
        assert [check.passed for check in built[name].checks] == [check.passed for check in table.checks]
    price = built["products"].meta["stypes"]["price"]
    assert price["stype"] == "numerical" and "Decimal(10, 2) read as Float64" in price["reason"]
    assert built["users"].meta["stypes"]["user_id"]["stype"] == "id"
