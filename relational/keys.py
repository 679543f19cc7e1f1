"""Primary keys to node ids, foreign keys to the parent's node ids, with the checks both need."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from relational.errors import IngestError, hidden_note
from relational.spec import ForeignKey

__all__ = [
    "NODE_ID",
    "ForeignKeyReport",
    "PrimaryKeyReport",
    "check_primary_key",
    "resolve_foreign_key",
]

from relational.schema import NODE_ID

_EXAMPLES = 5


@dataclass(frozen=True)
class PrimaryKeyReport:
    """Null and duplicate primary keys found in a table."""

    columns: list[str]
    null_rows: int
    duplicate_rows: int
    duplicate_examples: list[dict]

    @property
    def passed(self) -> bool:
        return self.null_rows == 0 and self.duplicate_rows == 0

    def describe(self, table: str, show_values: bool = True) -> str:
        """The check's verdict; ``show_values=False`` leaves out the repeated keys (a source outside the spec's folder)."""
        problems = []
        if self.null_rows:
            problems.append(f"{self.null_rows} row(s) have a null key")
        if self.duplicate_rows:
            examples = f", e.g. {self.duplicate_examples}" if show_values else f" ({hidden_note('the keys')})"
            problems.append(f"{self.duplicate_rows} row(s) repeat a key{examples}")
        if not problems:
            return f"primary key {self.columns} of {table!r} is unique and non-null"
        return (
            f"table {table!r}: primary key {self.columns} must be unique and non-null, but "
            + "; ".join(problems)
            + ". Fix the source, or choose key column(s) that identify each row."
        )


@dataclass(frozen=True)
class ForeignKeyReport:
    """How many child rows point nowhere: null keys (no edge by design) and dangling keys (missing parent)."""

    name: str
    columns: list[str]
    table: str
    rows: int
    null_rows: int
    dangling_rows: int
    dangling_examples: list = field(default_factory=list)

    @property
    def dangling_rate(self) -> float:
        non_null = self.rows - self.null_rows
        return 0.0 if non_null == 0 else self.dangling_rows / non_null

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "columns": self.columns,
            "table": self.table,
            "null_rows": self.null_rows,
            "dangling_rows": self.dangling_rows,
            "dangling_rate": round(self.dangling_rate, 6),
            "dangling_examples": self.dangling_examples,
        }


def check_primary_key(frame: pl.DataFrame, columns: list[str]) -> PrimaryKeyReport:
    """Count rows with a null key column and rows whose key tuple appears more than once."""
    null_rows = frame.select(pl.any_horizontal(pl.col(columns).is_null()).sum()).item()
    duplicated = frame.select(pl.struct(columns).is_duplicated().alias("dup")).to_series()
    duplicate_rows = int(duplicated.sum())
    examples: list[dict] = []
    if duplicate_rows:
        examples = (
            frame.filter(duplicated).select(columns).unique(maintain_order=True).head(_EXAMPLES).to_dicts()
        )
    return PrimaryKeyReport(columns, int(null_rows), duplicate_rows, examples)


def resolve_foreign_key(
    child: pl.DataFrame,
    fk: ForeignKey,
    parent_keys: pl.DataFrame,
    parent_key_columns: list[str],
    child_table: str,
) -> tuple[pl.Series, ForeignKeyReport]:
    """Look up each child row's parent node id (null when the key is null or dangling).

    Args:
        parent_keys: the parent's key columns plus its ``_kumo_id`` column.
    Raises:
        IngestError: a child key column's type cannot hold the parent key's values.
    """
    right = parent_keys.select([*parent_key_columns, NODE_ID])
    left_columns = []
    for child_column, parent_column in zip(fk.columns, parent_key_columns, strict=True):
        target = right.schema[parent_column]
        left_columns.append(_cast_key(child, child_column, target, fk, parent_column, child_table))
    join_keys = [f"_k{index}" for index in range(len(left_columns))]
    left = pl.DataFrame([series.alias(name) for series, name in zip(left_columns, join_keys, strict=True)])
    right = right.rename(dict(zip(parent_key_columns, join_keys, strict=True)))
    joined = left.join(right, on=join_keys, how="left", maintain_order="left", nulls_equal=False)
    ids = joined.get_column(NODE_ID).alias(fk.id_column)
    has_null = left.select(pl.any_horizontal(pl.all().is_null())).to_series()
    dangling = ~has_null & ids.is_null()
    examples = left.filter(dangling).unique(maintain_order=True).head(_EXAMPLES).rows()
    report = ForeignKeyReport(
        name=fk.name,
        columns=list(fk.columns),
        table=fk.table,
        rows=child.height,
        null_rows=int(has_null.sum()),
        dangling_rows=int(dangling.sum()),
        dangling_examples=[row[0] if len(row) == 1 else list(row) for row in examples],
    )
    return ids, report


def _cast_key(
    child: pl.DataFrame, column: str, target: pl.DataType, fk: ForeignKey, parent_column: str, table: str
) -> pl.Series:
    series = child.get_column(column)
    source = series.dtype
    if source == target or source == pl.Null:
        return series.cast(target)
    if source.is_integer() and target.is_integer():
        return series.cast(target, strict=False)  # out-of-range values cannot match: they count as dangling
    if source.is_float() and target.is_integer():
        values = series.drop_nulls()
        if values.len() == 0 or bool((values % 1 == 0).all()):
            return series.cast(pl.Int64).cast(target)
    if source == pl.String and target == pl.String:
        return series
    if source.is_integer() and target == pl.String:
        return series.cast(pl.String)  # a text key (e.g. declared `id`, or beyond 64 bits) matches by digits
    raise IngestError(
        f"table {table!r}: foreign key {fk.name!r} column {column!r} is {source} but it points at "
        f"{fk.table}.{parent_column}, which is {target}: the types clash. Store both columns with the same "
        f"type in the sources (e.g. both integers or both strings), or declare `stypes: {{{column}: id}}` "
        "here and on the key it points at, which reads CSV columns as text."
    )
