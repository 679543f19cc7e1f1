"""Static targets: a column of the entity, or of a table it links to many-to-one, as the label of each entity.

One row per entity whose value is known (an entity whose key to that table is null or dangles has none);
WHERE may filter with the entity's and its parents' columns; rows split 80/10/10 by the entity's time when
it has one, else by a hash of its key. No anchors: the row's time is the entity's own, or the database's
last event for an entity without a time (models need a time to see the graph at).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from relational.keys import NODE_ID
from relational.pql.bound import BoundQuery
from relational.pql.expressions import ENTITY_PREFIX, condition_expression
from relational.pql.joins import parent_values
from relational.table_build import EVENT_TIME

__all__ = ["static_table"]


def static_table(bound: BoundQuery, tables: Mapping[str, pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(table: entity, anchor_time, label, split; provenance: anchor_time, split, _entity_time)."""
    entity = tables[bound.entity_table]
    has_time = EVENT_TIME in entity.columns
    columns = [column for column in entity.columns if not column.startswith("_kumo_")]
    frame = entity.select(
        NODE_ID,
        *[pl.col(column).alias(ENTITY_PREFIX + column) for column in columns],
        *([EVENT_TIME] if has_time else []),
    )
    if bound.parents:
        frame = frame.join(parent_values(entity, tables, bound.parents.values()), on=NODE_ID, how="left",
                           maintain_order="left")  # fmt: skip
    value = condition_expression(bound.target)
    frame = frame.filter(value.is_not_null())
    key = pl.col(ENTITY_PREFIX + bound.entity_column)
    if bound.entity_ids is not None:
        frame = frame.filter(key.is_in(list(bound.entity_ids)))
    if bound.where is not None:
        frame = frame.filter(condition_expression(bound.where).fill_null(False))
    rank = pl.col(EVENT_TIME).rank("ordinal") if has_time else key.hash(7).rank("ordinal")
    fraction = (rank - 1) / pl.len()
    split = (
        pl.when(fraction < 0.8)
        .then(pl.lit("train"))
        .when(fraction < 0.9)
        .then(pl.lit("val"))
        .otherwise(pl.lit("test"))
    )
    anchor = pl.col(EVENT_TIME) if has_time else pl.lit(_last_event(tables), pl.Int64)
    label = value
    if bound.positive_class is not None:  # two classes: 1 for the positive one
        label = (value == pl.lit(bound.positive_class)).cast(pl.Int64)
    elif bound.label_separator is not None and frame.schema[_name(bound)] == pl.String:  # "a|b" -> ["a", "b"]
        tokens = label.str.split(bound.label_separator).list.eval(pl.element().str.strip_chars())
        label = tokens.list.eval(pl.element().filter(pl.element() != ""))
    table = frame.select(
        key.alias("entity"), anchor.alias("anchor_time"), label.alias("label"), split.alias("split")
    )
    entity_time = pl.col("anchor_time") if has_time else pl.lit(None, pl.Int64)
    provenance = table.select("anchor_time", "split", entity_time.alias("_entity_time"))
    return table, provenance


def _last_event(tables: Mapping[str, pl.DataFrame]) -> int:
    """The time an entity without a time of its own is seen at: the database's last event (everything is
    visible, as when predicting now); 0 when no table has times (then every row is static and visible)."""
    latest = [frame.get_column(EVENT_TIME).max() for frame in tables.values() if EVENT_TIME in frame.columns]
    return max((int(value) for value in latest if value is not None), default=0)


def _name(bound: BoundQuery) -> str:
    target = bound.target
    return target.key if hasattr(target, "key") else ENTITY_PREFIX + target.column
