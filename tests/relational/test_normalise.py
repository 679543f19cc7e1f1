"""Normalisation: null tokens, and every kind of time to UTC int64 seconds."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from relational.normalise import (
    clock_to_seconds,
    date_and_clock_to_epoch_seconds,
    decimals_to_numbers,
    normalise_nulls,
    to_epoch_seconds,
)

UTC = dt.UTC
EPOCH_2020 = 1577836800


def test_null_tokens_and_nan_become_null():
    frame = pl.DataFrame(
        {"s": ["a", "\\N", " NULL ", "", "b"], "f": [1.0, math.nan, 2.0, None, 3.0], "i": [1] * 5}
    )
    out = normalise_nulls(frame, ["", "\\N", "NULL"])
    assert out["s"].to_list() == ["a", None, None, None, "b"]
    assert out["f"].to_list() == [1.0, None, 2.0, None, 3.0]
    assert out["i"].to_list() == [1] * 5


def test_dates_naive_and_zoned_datetimes():
    assert to_epoch_seconds(pl.Series([dt.date(2020, 1, 1)])).seconds.to_list() == [EPOCH_2020]
    naive = pl.Series([dt.datetime(2020, 1, 1, 5)])
    assert to_epoch_seconds(naive).seconds.to_list() == [EPOCH_2020 + 5 * 3600]
    # Naive wall-clock time in New York (EST, UTC-5) is 10:00 UTC.
    assert to_epoch_seconds(naive, "America/New_York").seconds.to_list() == [EPOCH_2020 + 10 * 3600]
    zoned = pl.Series([dt.datetime(2020, 1, 1, 5)]).dt.replace_time_zone("Europe/Berlin")
    assert to_epoch_seconds(zoned).seconds.to_list() == [EPOCH_2020 + 4 * 3600]


def test_strings_in_several_iso_shapes():
    values = [
        "2020-01-01",
        "2020-01-01 01:00",
        "2020-01-01T01:00:00.5",
        "2020-01-01T03:00:00+02:00",
        "2020-01-01T01:00:00Z",
    ]
    parsed = to_epoch_seconds(pl.Series(values))
    assert parsed.seconds.to_list() == [
        EPOCH_2020,
        EPOCH_2020 + 3600,
        EPOCH_2020 + 3600,
        EPOCH_2020 + 3600,
        EPOCH_2020 + 3600,
    ]
    assert parsed.failed == 0 and parsed.parse_rate == 1.0


def test_unparseable_strings_are_counted_with_row_and_value():
    parsed = to_epoch_seconds(pl.Series(["2020-01-01", "yesterday", None, "31/12/2020"]))
    assert parsed.non_null == 3 and parsed.failed == 2
    assert parsed.failed_examples == [(1, "yesterday"), (3, "31/12/2020")]
    assert parsed.seconds.to_list() == [EPOCH_2020, None, None, None]


def test_integer_epochs_by_magnitude():
    assert to_epoch_seconds(pl.Series([EPOCH_2020])).seconds.to_list() == [EPOCH_2020]
    assert to_epoch_seconds(pl.Series([EPOCH_2020 * 1000])).seconds.to_list() == [EPOCH_2020]
    assert to_epoch_seconds(pl.Series([EPOCH_2020 * 10**9])).seconds.to_list() == [EPOCH_2020]


def test_non_time_dtype_fails_every_value():
    parsed = to_epoch_seconds(pl.Series([True, False]))
    assert parsed.failed == 2


def test_date_plus_clock_with_null_and_bad_clock():
    date = pl.Series("date", [dt.date(2020, 1, 1)] * 3)
    clock = pl.Series("time", ["13:30:00", None, "25:00:00"])
    parsed = date_and_clock_to_epoch_seconds(date, clock)
    assert parsed.seconds.to_list() == [EPOCH_2020 + 13 * 3600 + 1800, EPOCH_2020, None]
    assert parsed.failed_examples == [(2, "25:00:00")]


def test_clock_forms():
    assert clock_to_seconds(pl.Series(["06:05", "6:05:07", "06:05:07.250", "noon", None])).to_list() == [
        21900, 21907, 21907, None, None,
    ]  # fmt: skip


moments = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)).map(
    lambda value: value.replace(microsecond=0)
)


@settings(deadline=None)
@given(moments, st.sampled_from(["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"]))
def test_iso_text_round_trips_to_epoch(moment, fmt):
    expected = int(moment.replace(tzinfo=UTC).timestamp())
    parsed = to_epoch_seconds(pl.Series([moment.strftime(fmt)]))
    assert parsed.seconds.to_list() == [expected]


@settings(deadline=None)
@given(moments, st.integers(min_value=-14, max_value=14))
def test_zoned_text_equals_the_same_instant(moment, hours):
    zone = dt.timezone(dt.timedelta(hours=hours))
    text = moment.replace(tzinfo=zone).isoformat()
    assert to_epoch_seconds(pl.Series([text])).seconds.to_list() == [
        int(moment.replace(tzinfo=zone).timestamp())
    ]


def test_decimals_become_int64_float64_or_text_when_beyond_int64():
    frame = pl.DataFrame({
        "count": pl.Series([3, None, 7]).cast(pl.Decimal(10, 0)),
        "amount": pl.Series(["12.50", "0.01", None]).str.to_decimal(scale=2),
        "big_id": pl.Series(["1", "123456789012345678901234", None]).str.to_decimal(scale=0),
        "name": ["a", "b", "c"],
    })  # fmt: skip
    out, notes = decimals_to_numbers(frame)
    assert out.schema == pl.Schema(
        {"count": pl.Int64, "amount": pl.Float64, "big_id": pl.String, "name": pl.String}
    )
    assert out["count"].to_list() == [3, None, 7] and out["amount"].to_list() == [12.5, 0.01, None]
    assert out["big_id"].to_list() == ["1", "123456789012345678901234", None]
    assert notes == {"count": "Decimal(10, 0) read as Int64", "amount": "Decimal(38, 2) read as Float64",
                     "big_id": "Decimal(38, 0) read as String"}  # fmt: skip
