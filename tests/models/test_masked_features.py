"""Masked input columns in propositional features: a static target's column yields no GBDT feature.

A training table for a static target (``PREDICT users.age FOR EACH users.user_id``) lists the target's
column in ``masked_input_columns``; `build_relational_features(masked=...)` must then build nothing from it:
not the column itself, nor any aggregate of it seen from a child, a parent or a grandchild. Checked by name
and by perturbation: with the mask, new values in the masked column change no feature; without it they do.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from models.propositional import build_relational_features
from tests.models.test_propositional import ORDERS, RETURNS, SMALL, entities, shop_schema, shop_tables

# (entity table, masked columns): the entity's own columns, a child's columns (windowed aggregates and
# category shares), the child's other parent (enriched child rows and the latest order's product), and a
# parent two hops up.
CASES = [
    ("users", {"users": ["age", "country"]}),
    ("users", {"orders": ["amount", "status"]}),
    ("users", {"products": ["price"]}),
    ("returns", {"users": ["age"]}),
]


def design(tables: dict, entity_table: str, masked=None) -> pl.DataFrame:
    return build_relational_features(tables, shop_schema(), entity_table, entities([0, 1, 2], [45, 61, 61]),
                                     SMALL, masked=masked)  # fmt: skip


def perturbed(tables: dict, masked: dict[str, list[str]], seed: int = 0) -> dict:
    """The tables with new values in every masked column (numbers redrawn, categories renamed and reshuffled)."""
    rng = np.random.default_rng(seed)
    changed = dict(tables)
    for table, columns in masked.items():
        frame = changed[table]
        for column in columns:
            if frame.schema[column] == pl.String:
                values = pl.Series(column, rng.choice(["x", "y", "z"], frame.height))
            else:
                values = pl.Series(column, rng.normal(1_000.0, 300.0, frame.height))
            frame = frame.with_columns(values)
        changed[table] = frame
    return changed


def reading(columns: list[str], masked: dict[str, list[str]]) -> list[str]:
    names = [f"{table}.{column}" for table, values in masked.items() for column in values]
    return [column for column in columns if any(name in column for name in names)]


@pytest.mark.parametrize(("entity_table", "masked"), CASES)
def test_a_masked_column_yields_no_feature_while_unmasked_it_does(entity_table, masked):
    tables = shop_tables(ORDERS, RETURNS)
    plain, hidden = design(tables, entity_table), design(tables, entity_table, masked)
    assert reading(plain.columns, masked), (
        "without the mask the column is a feature (else this proves nothing)"
    )
    assert reading(hidden.columns, masked) == []
    # the mask only removes: every other feature is the one built without it
    assert set(hidden.columns) < set(plain.columns)
    assert hidden.equals(plain.select(hidden.columns))


@pytest.mark.parametrize(("entity_table", "masked"), CASES)
def test_masked_features_do_not_depend_on_the_masked_columns_values(entity_table, masked):
    tables = shop_tables(ORDERS, RETURNS)
    changed = perturbed(tables, masked)
    assert not design(changed, entity_table).equals(design(tables, entity_table))  # the perturbation shows
    assert design(changed, entity_table, masked).equals(design(tables, entity_table, masked))


def test_a_mask_naming_an_unknown_table_or_column_is_refused():
    """A mask that matched nothing would leave the target among the features: it is an error."""
    tables = shop_tables(ORDERS, RETURNS)
    with pytest.raises(ValueError, match="unknown table 'customers'"):
        design(tables, "users", {"customers": ["age"]})
    with pytest.raises(ValueError, match=r"\['height'\] are not columns of 'users'"):
        design(tables, "users", {"users": ["height"]})
