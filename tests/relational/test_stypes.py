"""Semantic-type inference: every rule, keys never features, overrides honoured, reasons recorded."""

from __future__ import annotations

import datetime as dt

import polars as pl

from relational.stypes import infer_stype, infer_stypes


def stype(values, name="col"):
    return infer_stype(pl.Series(name, values)).stype


def test_numeric_rules():
    assert stype([1.5, 2.5, None]) == "numerical"
    assert stype(list(range(100))) == "numerical"
    assert stype([0, 1, 1, 0]) == "categorical"
    assert stype(list(range(50)), name="customer_id") == "id"
    assert stype([3, 3, 4, 4, 5], name="statusId") == "categorical"


def test_temporal_and_boolean():
    assert stype([dt.date(2020, 1, 1)]) == "timestamp"
    assert stype(["2020-01-01", "2021-05-06 10:00:00"]) == "timestamp"
    assert stype([True, False]) == "categorical"


def test_string_rules():
    assert stype(["red", "blue", "red", "green"] * 10) == "categorical"
    assert stype([f"user{i}@mail.com" for i in range(100)]) == "id"
    prose = [f"this is a long review number {i} about the product" for i in range(50)]
    assert stype(prose) == "text"
    assert (
        stype([f"{first} {last}" for first, last in zip("abcdefghij", "klmnopqrst", strict=True)]) == "text"
    )
    decision = infer_stype(pl.Series(["Action|Drama", "Drama", "Comedy|Action", "Drama|Comedy"] * 10))
    assert decision.stype == "multicategorical" and decision.separator == "|"


def test_all_null_column_is_flagged_in_reason():
    decision = infer_stype(pl.Series("x", [None, None], dtype=pl.Float64))
    assert decision.stype == "numerical" and "null" in decision.reason


def test_keys_overrides_and_time_columns():
    frame = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "user_id": [1, 1, 2],
            "zip": [10115, 10117, 10115],
            "at": ["2020-01-01", "2020-01-02", "2020-01-03"],
            "score": [1.0, 2.0, 3.0],
        }
    )
    decisions = infer_stypes(frame, ["id"], {"user_id": "users"}, ["at"], {"zip": "categorical"})
    assert {c: d.stype for c, d in decisions.items()} == {
        "id": "id",
        "user_id": "id",
        "zip": "categorical",
        "at": "timestamp",
        "score": "numerical",
    }
    assert decisions["zip"].source == "override"
    assert "foreign key to users" in decisions["user_id"].reason
    assert decisions["score"].source == "inferred" and decisions["score"].reason
