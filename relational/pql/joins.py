"""Following foreign keys up, child to parent: window aggregations take each row of a table up to the entity
it belongs to, and parent columns take each entity up to the one row of a table it links to."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

import polars as pl

from relational.keys import NODE_ID
from relational.pql.bound import ParentColumn
from relational.spec import ForeignKey
from relational.table_build import EVENT_TIME

__all__ = ["follow_keys", "parent_values"]


def follow_keys(
    frame: pl.DataFrame, tables: Mapping[str, pl.DataFrame], path: tuple[ForeignKey, ...], alias: str
) -> pl.DataFrame:
    """``frame`` (rows of the table ``path`` starts from) plus ``alias``: the node id its chain of keys reaches,
    null when a key on the way is null or dangles."""
    current = frame.with_columns(pl.col(path[0].id_column).alias(alias))
    for previous, fk in itertools.pairwise(path):
        lookup = tables[previous.table].select(
            pl.col(NODE_ID).alias(alias), pl.col(fk.id_column).alias("_next")
        )
        current = current.join(lookup, on=alias, how="left", maintain_order="left")
        current = current.drop(alias).rename({"_next": alias})
    return current


def parent_values(
    entity: pl.DataFrame, tables: Mapping[str, pl.DataFrame], parents: Iterable[ParentColumn]
) -> pl.DataFrame:
    """Per entity node id: each parent column's value (column ``parent.key``, null when a key on the route is
    null or dangles) and the latest time of the rows on its route (``<key>__time``, null when none has one)."""
    result = entity.select(NODE_ID)
    for parent in parents:
        current = entity.select(NODE_ID, pl.col(parent.path[0].id_column).alias("_hop"))
        timed = False
        for index, fk in enumerate(parent.path):
            owner = tables[fk.table]
            last = index == len(parent.path) - 1
            reached = pl.col(parent.column) if last else pl.col(parent.path[index + 1].id_column)
            columns = [pl.col(NODE_ID).alias("_hop"), reached.alias("_next")]
            if EVENT_TIME in owner.columns:
                columns.append(pl.col(EVENT_TIME).alias("_row_time"))
            current = current.join(owner.select(columns), on="_hop", how="left", maintain_order="left")
            if EVENT_TIME in owner.columns:
                latest = pl.max_horizontal("_time", "_row_time") if timed else pl.col("_row_time")
                current = current.with_columns(latest.alias("_time")).drop("_row_time")
                timed = True
            current = current.drop("_hop").rename({"_next": "_hop"})
        time = pl.col("_time") if timed else pl.lit(None, pl.Int64)
        current = current.select(NODE_ID, pl.col("_hop").alias(parent.key), time.alias(f"{parent.key}__time"))
        result = result.join(current, on=NODE_ID, how="left", maintain_order="left")
    return result
