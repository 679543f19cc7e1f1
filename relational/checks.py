"""Outcomes of the ingest checks, computed without Dagster; the asset turns them into asset checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from relational.errors import hidden_note
from relational.keys import ForeignKeyReport, PrimaryKeyReport
from relational.normalise import ACCEPTED_TIME_FORMATS, TimeParse
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


def primary_key_check(table: str, report: PrimaryKeyReport, show_values: bool = True) -> CheckOutcome:
    """Keys must be unique and non-null (blocking); ``show_values=False`` hides the repeated keys."""
    return CheckOutcome(
        "primary_key",
        report.passed,
        blocking=True,
        description=report.describe(table, show_values),
        metadata={
            "null_rows": report.null_rows,
            "duplicate_rows": report.duplicate_rows,
            "duplicate_examples": str(report.duplicate_examples) if show_values else "not shown",
        },
    )


def time_check(
    table: str, time_meta: dict, parse: TimeParse, column: str | None = None, show_values: bool = True
) -> CheckOutcome:
    """Every non-null event time must parse; rows with a null time are dropped and counted.

    Args:
        column: where the time is read, as graph.yaml names it (e.g. ``'created_at'``), for the message.
        show_values: quote unparsed values (False for a source outside the spec's folder).
    """
    passed = parse.failed == 0
    if passed:
        description = (
            f"event time of {table!r} ({parse.how}) parsed for every row; "
            f"{time_meta['dropped_null_rows']} row(s) with no time were dropped"
        )
    else:
        if show_values:
            rows = ", e.g. " + ", ".join(
                f"data row {row + 1}: {value!r}" for row, value in parse.failed_examples
            )
        else:
            rows = ", at data row(s) " + ", ".join(str(row + 1) for row, _ in parse.failed_examples)
            rows += f" ({hidden_note('the values')})"
        where = f"`time_column` {column}" if column else "the event time"
        description = (
            f"table {table!r}: {where}: {parse.failed} of {parse.non_null} value(s) cannot be parsed as "
            f"times ({parse.how}){rows}. Accepted: {ACCEPTED_TIME_FORMATS}. Fix those values, or set "
            "`timezone` for naive times that are not UTC."
        )
    return CheckOutcome(
        "event_time",
        passed,
        blocking=True,
        description=description,
        metadata={key: value for key, value in time_meta.items() if value is not None},
    )


def foreign_key_check(table: str, report: ForeignKeyReport, show_values: bool = True) -> CheckOutcome:
    """Dangling keys give no edge; they are tolerated (known dirt in real data) but flagged."""
    passed = report.dangling_rows == 0
    target = f"{report.table} via {report.columns}"
    examples = f", e.g. {report.dangling_examples}" if show_values else f" ({hidden_note('the keys')})"
    if passed:
        description = f"every non-null {table}.{report.name} finds its {report.table} row"
    else:
        description = (
            f"{report.dangling_rows} row(s) of {table!r} ({report.dangling_rate:.2%} of non-null keys) point at "
            f"no row of {target}{examples}; those rows get no edge. Add the missing "
            "parent rows, or mark the parent `implied: true` to create them from the keys."
        )
    shown = str(report.dangling_examples) if show_values else "not shown"
    return CheckOutcome(
        f"foreign_key_{report.name}",
        passed,
        blocking=False,
        description=description,
        metadata=report.to_dict() | {"dangling_examples": shown},
    )


def column_types_check(
    table: str, frame: pl.DataFrame, stypes: Mapping[str, StypeDecision], show_names: bool = True
) -> CheckOutcome:
    """Summarise stypes; warn about feature columns that carry no signal (all null or one value).

    Args:
        show_names: name the silent columns (False for a source outside the spec's folder: count them).
    """
    counts: dict[str, int] = {}
    silent = []
    for column, decision in stypes.items():
        counts[decision.stype] = counts.get(decision.stype, 0) + 1
        if decision.stype != "id" and frame.get_column(column).drop_nulls().n_unique() <= 1:
            silent.append(column)
    summary = ", ".join(f"{count} {stype}" for stype, count in sorted(counts.items()))
    named = silent if show_names else f"{len(silent)} ({hidden_note('their names')})"
    if silent:
        description = (
            f"table {table!r}: column(s) {named} hold at most one distinct value and carry no signal; "
            "drop them with `drop_columns`"
        )
    else:
        description = f"{table!r}: {summary}"
    return CheckOutcome(
        "column_types",
        not silent,
        blocking=False,
        description=description,
        metadata={**counts, "silent": str(named)},
    )
