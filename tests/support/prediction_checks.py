"""What a materialised predictions or embeddings partition must hold, checked against independent facts."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
from dagster import AssetCheckKey, AssetKey, DagsterInstance, materialize

from kumo_assets.asset_keys import stage_of
from kumo_assets.definitions import build_definitions
from tests.conftest import F1_SPEC

F1_COLUMNS = {
    "driver_dnf": ["probability", "score", "predicted_class"],
    "driver_top3": ["probability", "score", "predicted_class"],
    "driver_position": ["value"],
}
COMMON = ["entity", "anchor_time"]
TRAILING = ["model_version", "data_version", "data_age_days"]


def check_f1_predictions(home: Path, days: list[str]) -> None:
    """The first day was materialised by the CLI (as `make demo` does); the others are materialised here,
    in process, on the same instance. Every partition: its anchor, every driver once, the task's columns."""
    defs = build_definitions([F1_SPEC], str(home / "data"))
    serving = [a for a in defs.assets if stage_of(a.key) in {"predictions", "embeddings"}]
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        for day in days[1:]:
            assert materialize(
                serving, resources=defs.resources, instance=instance, partition_key=day
            ).success
        for name in F1_COLUMNS:
            key = AssetKey(["f1", name, "predictions"])
            assert instance.get_materialized_partitions(key) == set(days)
            for check in ("score_drift", "input_drift", "unscored_share", "model_age"):
                history = instance.event_log_storage.get_asset_check_execution_history(
                    AssetCheckKey(key, check), 20
                )
                evaluated = {
                    record.run_id for record in history if record.status.value in ("SUCCEEDED", "FAILED")
                }
                assert len(evaluated) == len(days), (name, check)  # one evaluation per partition's run
    drivers = set(pl.read_parquet(F1_SPEC.parent / "drivers.parquet")["driverId"].to_list())
    plane = home / "data" / "f1"
    for day in days:
        anchor = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
        for name, columns in F1_COLUMNS.items():
            frame = pl.read_parquet(plane / "predictions" / name / f"{day}.parquet")
            assert frame.columns == [*COMMON, *columns, *TRAILING]
            assert frame["anchor_time"].unique().to_list() == [anchor]
            assert frame["entity"].n_unique() == frame.height  # one row per entity
            assert set(frame["entity"].to_list()) == drivers  # FOR EACH drivers, no WHERE: every driver
            assert frame["model_version"].n_unique() == 1 and frame["model_version"][0].startswith("gnn:")
            assert (frame["data_age_days"] >= 0).all()
            health = json.loads((plane / "predictions" / name / "health" / f"{day}.json").read_text())
            assert health["audit"]["entity_selection"]["passed"] is True
            assert health["audit"]["sampled_neighbours"]["sampled_nodes_checked"] > frame.height
            assert health["unscored_share"] == 0.0 and health["rows"] == frame.height
            assert set(health["input_psi"]) == {"drivers.dob"}  # a GNN: the entity's numerical columns
            if "probability" in columns:
                assert frame["probability"].is_between(0, 1).all()
                assert set(frame["predicted_class"].unique().to_list()) <= {0, 1}
            embeddings = pl.read_parquet(plane / "embeddings" / name / f"{day}.parquet")
            assert embeddings["entity"].to_list() == frame["entity"].to_list()
            assert isinstance(embeddings.schema["embedding"], pl.Array)
            assert embeddings.schema["embedding"].inner == pl.Float32
    early, late = (
        pl.read_parquet(plane / "predictions" / "driver_position" / f"{day}.parquet") for day in days[:2]
    )
    assert not early["value"].equals(late["value"])  # another anchor, another view of the data
