"""Semantic-type inference: how each column will be encoded, decided once at ingest with its reason.

Keys (primary and foreign) are always ``id`` and never features (the spec rejects overrides saying
otherwise); user overrides in graph.yaml win over every other rule; event-time columns are ``timestamp``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import polars as pl

from relational.normalise import to_epoch_seconds

__all__ = ["MAX_CATEGORIES", "StypeDecision", "infer_stype", "infer_stypes"]

MAX_CATEGORIES = 4000  # as Kumo's default: above this a string column is not one-hot-able
_ID_NAME = re.compile(r"(^id$|_id$|[a-z0-9]Id$|ID$|^id_|_key$|_uuid$|^uuid$)")
_SEPARATORS = ("|", ";", ",")
_SAMPLE = 2000


@dataclass(frozen=True)
class StypeDecision:
    """The semantic type of one column, why it was chosen, and whether the user set it."""

    stype: str
    reason: str
    source: str = "inferred"  # inferred | override | key
    separator: str | None = None  # multicategorical only

    def to_dict(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def infer_stypes(
    frame: pl.DataFrame,
    primary_key: list[str],
    foreign_keys: Mapping[str, str],
    time_columns: list[str],
    overrides: Mapping[str, str],
) -> dict[str, StypeDecision]:
    """Decide a semantic type for every column of ``frame``.

    Args:
        foreign_keys: child column -> referenced table, for every column that is part of a foreign key.
        time_columns: columns the event or end time is read from.
    """
    decisions: dict[str, StypeDecision] = {}
    for column in frame.columns:
        if column in primary_key:
            decisions[column] = StypeDecision("id", "primary key: identifies rows, never a feature", "key")
        elif column in foreign_keys:
            decisions[column] = StypeDecision(
                "id", f"foreign key to {foreign_keys[column]}: becomes an edge, never a feature", "key"
            )
        elif column in overrides:
            decisions[column] = StypeDecision(overrides[column], "set in graph.yaml", "override")
        elif column in time_columns:
            decisions[column] = StypeDecision("timestamp", "event time of the table")
        else:
            decisions[column] = infer_stype(frame.get_column(column))
    return decisions


def infer_stype(series: pl.Series) -> StypeDecision:
    """Infer the semantic type of a single column from its dtype, cardinality, shape and name."""
    dtype = series.dtype
    values = series.drop_nulls()
    count = len(values)
    if dtype in (pl.Date, pl.Time) or isinstance(dtype, pl.Datetime):
        return StypeDecision("timestamp", f"{dtype} values")
    if count == 0:
        kind = "numerical" if dtype.is_numeric() else "categorical"
        return StypeDecision(kind, "every value is null: carries no signal")
    distinct = values.n_unique()
    if dtype == pl.Boolean:
        return StypeDecision("categorical", "boolean values")
    if dtype.is_float():
        return StypeDecision("numerical", "floating-point values")
    if dtype.is_integer():
        return _infer_integer(series.name, distinct, count)
    if dtype == pl.String:
        return _infer_string(values, distinct, count)
    if isinstance(dtype, pl.List):
        return StypeDecision("multicategorical", f"list values ({dtype})")
    return StypeDecision("categorical", f"{dtype} values treated as categories")


def _infer_integer(name: str, distinct: int, count: int) -> StypeDecision:
    if _ID_NAME.search(name):
        if distinct == count:
            return StypeDecision("id", f"named like an identifier with {distinct} unique values")
        return StypeDecision(
            "categorical", f"integer code named like an identifier ({distinct} distinct values)"
        )
    if distinct <= 2:
        return StypeDecision("categorical", f"integer flag with {distinct} distinct values")
    return StypeDecision("numerical", f"integer values with {distinct} distinct values (order matters)")


def _infer_string(values: pl.Series, distinct: int, count: int) -> StypeDecision:
    sample = values.head(_SAMPLE)
    if to_epoch_seconds(sample).parse_rate >= 0.95:
        return StypeDecision("timestamp", "text that parses as dates or times")
    words = sample.str.split(" ").list.len().mean() or 0.0
    separator = _list_separator(sample)
    if separator is not None:
        return StypeDecision(
            "multicategorical", f"lists of short tokens separated by {separator!r}", separator=separator
        )
    unique_ratio = distinct / count
    if words >= 5 or (unique_ratio > 0.5 and words >= 2):
        return StypeDecision("text", f"free text: {words:.1f} words per value, {distinct} distinct values")
    if distinct <= MAX_CATEGORIES and unique_ratio <= 0.5:
        return StypeDecision("categorical", f"{distinct} distinct values in {count} rows")
    if unique_ratio > 0.5:
        return StypeDecision(
            "id",
            f"near-unique short strings ({distinct} distinct in {count} rows): identifiers, not features",
        )
    return StypeDecision(
        "categorical", f"high-cardinality categories ({distinct} distinct); rare values share an unknown code"
    )


def _list_separator(sample: pl.Series) -> str | None:
    """The separator of a delimited-list column (``Action|Drama``), if most values look like one."""
    for separator in _SEPARATORS:
        has_separator = sample.str.contains(separator, literal=True)
        if has_separator.mean() < 0.3:
            continue
        tokens = sample.str.split(separator).explode(empty_as_null=True).str.strip_chars()
        tokens = tokens.filter(tokens.str.len_chars() > 0)
        if len(tokens) == 0:
            continue
        words_per_token = tokens.str.split(" ").list.len().mean() or 0.0
        vocabulary = tokens.n_unique()
        if words_per_token <= 3 and vocabulary <= max(50, len(tokens) // 5):
            return separator
    return None
