"""The F1 queries in queries.yaml produce RelBench's rel-f1 task tables, row for row."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest
from relbench.tasks.f1 import DriverDNFTask, DriverPositionTask, DriverTop3Task

from relational.pql.queries import load_queries
from relational.pql.training_table import build_training_table
from tests.conftest import F1_SPEC
from tests.support.pql_helpers import in_memory_graph
from tests.support.relbench_f1 import LocalF1Dataset, relbench_table

pytestmark = pytest.mark.integration
TASKS = {"driver_dnf": DriverDNFTask, "driver_top3": DriverTop3Task, "driver_position": DriverPositionTask}


@pytest.fixture(scope="module")
def f1():
    return in_memory_graph(F1_SPEC)


@pytest.fixture(scope="module")
def relbench_dataset():
    return LocalF1Dataset(F1_SPEC.parent)


@pytest.mark.parametrize("name", list(TASKS))
def test_f1_query_equals_relbench_task(name, f1, relbench_dataset):
    schema, tables = f1
    query = load_queries(F1_SPEC.parent / "queries.yaml")[name]
    ours = build_training_table(query.text, schema, tables, query.anchors).table
    task = TASKS[name](relbench_dataset)
    driver_ids = pd.read_parquet(F1_SPEC.parent / "drivers.parquet")["driverId"].tolist()
    for split in ("train", "val", "test"):
        reference = relbench_table(task, split, driver_ids)
        expected = pl.DataFrame(
            {
                "entity": reference["driverId"].to_numpy(),
                "anchor_time": reference["date"].to_numpy(),
                "label": reference[task.target_col].to_numpy(),
            }
        ).sort("anchor_time", "entity")
        got = ours.filter(pl.col("split") == split).drop("split").sort("anchor_time", "entity")
        assert got.height == expected.height, (name, split)
        assert got["entity"].to_list() == expected["entity"].to_list()
        assert got["anchor_time"].to_list() == expected["anchor_time"].to_list()
        assert got["label"].cast(pl.Float64).to_list() == expected["label"].cast(pl.Float64).to_list()
