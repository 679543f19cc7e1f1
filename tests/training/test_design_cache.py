"""GBDT features shared through the node cache: a second trial reads what the first built, with the same
result, and anything the features depend on changes the key."""

from __future__ import annotations

import polars as pl

from models.gbdt import GBDTConfig
from models.propositional_config import PropositionalConfig
from relational.keys import NODE_ID
from stores.batch_cache import BatchCache
from tests.models.test_propositional import SMALL, shop_schema, shop_tables
from tests.training.test_gbdt_trial import OBSERVE_UNTIL, ORDERS, training_table
from training.design_cache import DESIGN_LOCK_SECONDS, design_cache, design_key
from training.trial import run_gbdt_trial


def trial(cache: BatchCache | None, trees: int, version: str = "orders=abc|users=def"):
    tables = shop_tables(ORDERS, [])
    keys = tables["users"].select("uid", NODE_ID)
    return run_gbdt_trial(tables, shop_schema(), "users", keys, training_table(), "binary_classification",
                          GBDTConfig(n_estimators=trees, min_child_samples=1), OBSERVE_UNTIL, features=SMALL,
                          cache=cache, tables_version=version)  # fmt: skip


def test_a_second_trial_reads_the_first_trials_features_and_scores_the_same(tmp_path):
    cache = design_cache(BatchCache(tmp_path / "cache"))
    assert cache.lock_timeout == DESIGN_LOCK_SECONDS
    first = trial(cache, trees=5)
    assert (cache.stats.misses, cache.stats.hits) == (1, 0)
    second = trial(cache, trees=7)  # another GBDT trial of the study: other trees, the same rows
    assert (cache.stats.misses, cache.stats.hits) == (1, 1)
    uncached = trial(None, trees=7)
    assert second.metrics == uncached.metrics and second.features == uncached.features == first.features
    for split in ("val", "test"):
        assert (second.scored[split].outputs == uncached.scored[split].outputs).all()
    trial(cache, trees=5, version="orders=changed|users=def")  # a table changed: built again
    assert (cache.stats.misses, cache.stats.hits) == (2, 1)


def test_the_key_follows_everything_the_features_depend_on():
    rows = pl.DataFrame({NODE_ID: [0, 1], "anchor_time": [10, 20]})
    base = ("v1", "users", rows, SMALL, 100, {"users": ["country"]})
    key = design_key(*base)
    assert key == design_key("v1", "users", rows.clone(), SMALL, 100, {"users": ["country"]})
    changed = [
        ("v2", *base[1:]),
        ("v1", "orders", *base[2:]),
        (*base[:2], rows.with_columns(pl.col("anchor_time") + 1), *base[3:]),
        (*base[:3], PropositionalConfig(), *base[4:]),
        (*base[:4], None, base[5]),
        (*base[:5], None),
        (*base, 50),  # the category vocabulary read up to another time
    ]
    assert len({design_key(*parts) for parts in changed} | {key}) == len(changed) + 1
