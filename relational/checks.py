"""Outcomes of the ingest checks, computed without Dagster; the asset turns them into asset checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from relational.keys import ForeignKeyReport, PrimaryKeyReport
from relational.normalise import TimeParse
from relational.stypes import StypeDecision

__all__ = [
    "CheckOutcome",
    "column_types_check",
    "foreign_key_check",
    "ingest_check_names",
    "primary_key_check",
    "time_check",
]


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict; blocking failures stop the table from being written."""

    name: str
    passed: bool
    blocking: bool
    description: str
    metadata: dict = field(default_factory=dict)


def ingest_check_names(has_primary_key: bool, has_time: bool, foreign_keys: list[str]) -> list[str]:
    """Names of the checks a table gets, known from the spec alone (Dagster declares them up front)."""
    names = ["primary_key"] if has_primary_key else []
    names += ["event_time"] if has_time else []
    names += [f"foreign_key_{name}" for name in foreign_keys]
    return [*names, "column_types"]


def primary_key_check(table: str, report: PrimaryKeyReport) -> CheckOutcome:
    return CheckOutcome(
        "primary_key",
        report.passed,
        blocking=True,
        description=report.describe(table),
        metadata={
            "null_rows": report.null_rows,
            "duplicate_rows": report.duplicate_rows,
            "duplicate_examples": str(report.duplicate_examples),
        },
    )


def time_check(table: str, time_meta: dict, parse: TimeParse) -> CheckOutcome:
    """Every non-null event time must parse; rows with a null time are dropped and counted."""
    passed = parse.failed == 0
    if passed:
        description = (
            f"event time of {table!r} ({parse.how}) parsed for every row; "
            f"{time_meta['dropped_null_rows']} row(s) with no time were dropped"
        )
    else:
        rows = ", ".join(f"data row {row + 1}: {value!r}" for row, value in parse.failed_examples)
        description = (
            f"table {table!r}: {parse.failed} of {parse.non_null} event time value(s) cannot be parsed "
            f"({parse.how}), e.g. {rows}. Use ISO 8601 (2024-05-01 or 2024-05-01T13:45:00Z), a date "
            "column, or integer epoch seconds; set `timezone` for naive times that are not UTC."
        )
    return CheckOutcome(
        "event_time",
        passed,
        blocking=True,
        description=description,
        metadata={key: value for key, value in time_meta.items() if value is not None},
    )


def foreign_key_check(table: str, report: ForeignKeyReport) -> CheckOutcome:
    """Dangling keys give no edge; they are tolerated (known dirt in real data) but flagged."""
    passed = report.dangling_rows == 0
    target = f"{report.table} via {report.columns}"
    if passed:
        description = f"every non-null {table}.{report.name} finds its {report.table} row"
    else:
        description = (
            f"{report.dangling_rows} row(s) of {table!r} ({report.dangling_rate:.2%} of non-null keys) point at "
            f"no row of {target}, e.g. {report.dangling_examples}; those rows get no edge. Add the missing "
            "parent rows, or mark the parent `implied: true` to create them from the keys."
        )
    return CheckOutcome(
        f"foreign_key_{report.name}",
        passed,
        blocking=False,
        description=description,
        metadata=report.to_dict() | {"dangling_examples": str(report.dangling_examples)},
    )


def column_types_check(table: str, frame: pl.DataFrame, stypes: Mapping[str, StypeDecision]) -> CheckOutcome:
    """Summarise stypes; warn about feature columns that carry no signal (all null or one value)."""
    counts: dict[str, int] = {}
    silent = []
    for column, decision in stypes.items():
        counts[decision.stype] = counts.get(decision.stype, 0) + 1
        if decision.stype != "id" and frame.get_column(column).drop_nulls().n_unique() <= 1:
            silent.append(column)
    summary = ", ".join(f"{count} {stype}" for stype, count in sorted(counts.items()))
    if silent:
        description = (
            f"table {table!r}: column(s) {silent} hold at most one distinct value and carry no signal; "
            "drop them with `drop_columns`"
        )
    else:
        description = f"{table!r}: {summary}"
    return CheckOutcome(
        "column_types",
        not silent,
        blocking=False,
        description=description,
        metadata={**counts, "silent": str(silent)},
    )
