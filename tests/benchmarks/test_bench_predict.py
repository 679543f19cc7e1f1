"""benchmarks/bench_predict.py on a tiny synthetic graph: every step runs and the table has its lines (the
benchmark's numbers come from running it at full size; this keeps the script from rotting)."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench_predict() -> ModuleType:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench_predict
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return bench_predict


TINY = ["--graph", "synthetic", "--entities", "1000", "--items", "40", "--events", "12000", "--gnn-steps", "3",
        "--trees", "20", "--channels", "8"]  # fmt: skip


@pytest.fixture(scope="module", name="tiny")
def tiny_fixture(tmp_path_factory):
    """A tiny synthetic plane through Dagster with one trained run per family, and its rows."""
    bench = _bench_predict()
    scratch = tmp_path_factory.mktemp("bench-predict")
    prepared, rows = bench.prepare_graph("synthetic", scratch, bench.parse_args(TINY), log=lambda _: None)
    return bench, scratch, prepared, rows


def test_every_family_gets_a_table_line_with_a_positive_ratio_and_equal_scores(tiny):
    bench, scratch, prepared, rows = tiny
    assert rows.height == 1000 and rows["anchor_time"].n_unique() == 1
    passes = []
    measured = bench.bench_graph(
        prepared, rows, scratch, threads=1, isolate=False, log=passes.append, repeats=2
    )
    assert len(passes) == 8 and all("1,000 rows in" in text for text in passes)  # 2 families x 2 paths x 2
    assert [(line.graph, line.family) for line in measured] == [("synthetic", "gnn"), ("synthetic", "gbdt")]
    for line in measured:
        assert line.serving.error is None and line.training.error is None
        assert line.serving.rows == line.training.rows == 1000
        assert np.isfinite(line.ratio) and line.ratio > 0
        assert line.serving.peak_rss_gib >= line.serving.base_rss_gib > 0
        assert line.stores_bytes > 0
        assert line.agreement.startswith("equal"), line.agreement
    table = bench.format_table(measured)
    assert len(table) == 4 and table[0].startswith("graph") and table[3].startswith("stores: ")
    assert [row.split()[:3] for row in table[1:3]] == [
        ["synthetic", "gnn", "1,000"],
        ["synthetic", "gbdt", "1,000"],
    ]
    worst = min(line.ratio for line in measured)
    assert bench.worst_ratio(measured).startswith(f"worst ratio serving / training eval: {worst:.2f}x")


def test_a_path_that_cannot_run_is_reported_in_the_table_not_raised(tiny):
    bench, scratch, prepared, rows = tiny
    plane = {**asdict(prepared), "runs": {**prepared.runs, "gbdt": "no-such-run"}}
    job = {"plane": plane, "family": "gbdt", "path": "training", "rows": str(scratch / "synthetic-rows.parquet"),
           "threads": 1, "scores": str(scratch / "missing.npy")}  # fmt: skip
    rows.write_parquet(job["rows"])
    failed = bench.measure_path(job, isolate=False)
    assert failed.error is not None and "no-such-run" in failed.error and not np.isfinite(failed.rate)
    serving = bench.measure_path({**job, "path": "serving"}, isolate=False)
    assert serving.path == "serving" and serving.error is not None
    line = bench.Measured("synthetic", "gbdt", rows.height, serving, failed, 1)
    assert bench.score_agreement(serving, failed) == "not compared"
    table = bench.format_table([line])
    assert len(table) == 4 and "n/a" in table[1]
    assert [row.split(" could not run: ")[0] for row in table[2:]] == [
        "synthetic gbdt serving",
        "synthetic gbdt training",
    ]
    assert table[-1].split(" could not run: ")[1].startswith("ServingError: model run no-such-run")
    assert bench.worst_ratio([line]).endswith("n/a (no line had both paths)")


def test_a_worker_in_its_own_process_scores_the_rows_as_one_in_this_process_does(tiny):
    bench, scratch, prepared, rows = tiny
    rows.write_parquet(scratch / "isolated-rows.parquet")
    jobs = [{"plane": asdict(prepared), "family": "gbdt", "path": "serving", "rows": str(scratch / "isolated-rows.parquet"),
             "threads": 1, "scores": str(scratch / f"isolated-{isolate}.npy")} for isolate in (True, False)]  # fmt: skip
    isolated, here = bench.measure_path(jobs[0], isolate=True), bench.measure_path(jobs[1], isolate=False)
    assert isolated.error is None, isolated.error
    assert isolated.rows == 1000 and isolated.rate > 0
    assert isolated.peak_rss_gib >= isolated.base_rss_gib >= isolated.import_rss_gib > 0
    assert bench.score_agreement(isolated, here).startswith("equal")
