"""Data planes for `bench_predict.py`: the embedded F1 database or a synthetic users/items/events graph.

Each graph goes through the product's own Dagster path (ingest every table, build the graph and feature
stores, publish one query's training table) into a scratch data plane; `train_runs` then trains one small
run of each family with `train_query_model`. A plane that is already complete (``plane.json``) is reused.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kumo_assets.asset_keys import stage_of

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from relational.spec_loader import load_spec  # noqa: E402

__all__ = [
    "F1_SPEC",
    "Plane",
    "f1_rows",
    "open_resources",
    "prepare_plane",
    "synthetic_rows",
    "train_runs",
    "write_synthetic_db",
]

F1_SPEC = ROOT / "kumo_assets" / "examples" / "f1" / "graph.yaml"
DAY = 86_400
SYNTHETIC_START = int(dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp())
SYNTHETIC_DAYS = 182  # events span half a year; anchors are weekly in its last five weeks
SYNTHETIC_QUERY = "activity"


@dataclass
class Plane:
    """A prepared data plane: where it is, the graph, the query, its entity table and the trained runs."""

    root: str
    spec_path: str
    graph: str
    query: str
    entity_table: str
    entity_key: str
    task_type: str
    runs: dict[str, str]  # family -> run key under <graph>/models/<query>/
    seconds: dict[str, float]  # preparation steps -> wall seconds
    configs: dict[str, str] = field(default_factory=dict)  # family -> the ModelRunConfig (JSON) it trained

    def save(self) -> None:
        """Write ``plane.json`` beside the plane folder (what `load` and a later run reuse)."""
        Path(self.root).parent.joinpath("plane.json").write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, root: Path) -> Plane | None:
        """The plane prepared under ``root`` before, if any."""
        path = Path(root, "plane.json")
        return cls(**json.loads(path.read_text())) if path.is_file() else None


def write_synthetic_db(root: Path, users: int, items: int, events: int, seed: int = 0) -> Path:
    """Users (static) <- events (timed) -> items as Parquet, plus graph.yaml and queries.yaml; the spec path.

    Users' activity rates are skewed (gamma), so a user's past events predict next week's. The query
    trains on one cohort in twenty (``WHERE users.cohort = 0``) to keep training light; any user can be
    scored.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pl.DataFrame({
        "user_id": np.arange(users, dtype=np.int64),
        "age": rng.normal(40, 12, users).round(1),
        "country": rng.choice([f"C{i:02d}" for i in range(30)], users),
        "cohort": np.arange(users, dtype=np.int64) % 20,
    }).write_parquet(root / "users.parquet")  # fmt: skip
    pl.DataFrame({
        "item_id": np.arange(items, dtype=np.int64),
        "price": rng.gamma(2.0, 15.0, items).round(2),
        "category": rng.choice([f"K{i:02d}" for i in range(50)], items),
    }).write_parquet(root / "items.parquet")  # fmt: skip
    rate = rng.gamma(0.5, 1.0, users)
    user_of = np.searchsorted(np.cumsum(rate / rate.sum()), rng.random(events), side="right")
    seconds = np.sort(rng.integers(0, SYNTHETIC_DAYS * DAY, events, dtype=np.int64)) + SYNTHETIC_START
    pl.DataFrame({
        "event_id": np.arange(events, dtype=np.int64),
        "user_id": np.minimum(user_of, users - 1).astype(np.int64),
        "item_id": rng.integers(0, items, events, dtype=np.int64),
        "amount": rng.gamma(2.0, 10.0, events).round(2),
        "ts": pl.from_epoch(pl.Series(seconds), "s"),
    }).write_parquet(root / "events.parquet")  # fmt: skip
    spec_path = root / "graph.yaml"
    spec_path.write_text(textwrap.dedent("""\
        name: synthetic
        tables:
          users:
            source: users.parquet
            primary_key: user_id
            stypes: {country: categorical, cohort: categorical}
          items:
            source: items.parquet
            primary_key: item_id
            stypes: {category: categorical}
          events:
            source: events.parquet
            primary_key: event_id
            time_column: ts
            foreign_keys: {user_id: users, item_id: items}
        """))  # fmt: skip
    week = [_iso(synthetic_anchor() - k * 7 * DAY) for k in range(5, 0, -1)]  # the 5 weeks before scoring
    (root / "queries.yaml").write_text(textwrap.dedent(f"""\
        {SYNTHETIC_QUERY}:
          description: Will the user have any event in the next 7 days?
          query: PREDICT COUNT(events.*, 0, 7, days) > 0 FOR EACH users.user_id WHERE users.cohort = 0
          anchors: {{timestamps: {{train: [{week[0]}, {week[1]}], val: [{week[2]}], test: [{week[3]}]}}}}
        """))  # fmt: skip
    return spec_path


def synthetic_anchor() -> int:
    """The synthetic graph's scoring anchor: the day its events end (UTC seconds)."""
    return SYNTHETIC_START + SYNTHETIC_DAYS * DAY


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d")


def open_resources(root: str | Path) -> tuple[Any, Any, Any]:
    """(data plane, graph store, feature store) resources over a scratch plane (stores live inside it)."""
    from stores.data_plane import DataPlane
    from stores.feature_store import FeatureStores
    from stores.graph_store import GraphStores

    return (DataPlane(root=str(root)), GraphStores(root=str(root)),
            FeatureStores(root=str(root), text_encoder="hashing"))  # fmt: skip


def prepare_plane(spec_path: Path, query: str, root: Path, log=print) -> Plane:
    """Ingest, both stores and ``query``'s training table through Dagster into ``root`` (reused when done)."""
    existing = Plane.load(root)
    if existing is not None and existing.spec_path == str(spec_path) and existing.query == query:
        return existing
    from dagster import AssetKey, instance_for_test, materialize

    from kumo_assets.definitions import build_definitions

    root.mkdir(parents=True, exist_ok=True)
    spec = load_spec(spec_path)
    started = time.perf_counter()
    defs = build_definitions([spec_path], str(root / "plane"))
    _, graphs, features = open_resources(root / "plane")  # the hashing text encoder, as the tests use
    resources = {**defs.resources, "graph_store": graphs, "feature_store": features}
    wanted = AssetKey([spec.graph_name, query, "training_table"])
    assets = [a for a in defs.assets if len(a.key.path) == 2 or a.key == wanted
              or stage_of(a.key) in {"graph_store", "feature_store"}]  # fmt: skip
    (root / "dagster").mkdir(exist_ok=True)
    with instance_for_test(temp_dir=str(root / "dagster")) as instance:
        quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        result = materialize(assets, resources=resources, instance=instance, run_config=quiet)
        if not result.success:
            raise RuntimeError(f"materialising {spec.graph_name}'s data assets failed")
    seconds = {"materialise": time.perf_counter() - started}
    log(f"  {spec.graph_name}: tables, stores and training table {query} in {seconds['materialise']:.1f} s")
    plane, _, _ = open_resources(root / "plane")
    meta = plane.get_json(spec.graph_name, "training_tables", f"{query}.json")
    entity = meta["parsed"]["entity"]
    prepared = Plane(str(root / "plane"), str(spec_path), spec.graph_name, query, entity["table"],
                     entity["column"], meta["task_type"], {}, seconds)  # fmt: skip
    prepared.save()
    return prepared


def train_runs(prepared: Plane, configs: dict[str, Any], log=print) -> Plane:
    """One run of each family (``configs``: family -> ModelRunConfig) on the prepared plane; saved."""
    from relational.pql.queries import load_queries
    from training.run import train_query_model

    spec = load_spec(prepared.spec_path)
    query = load_queries(Path(prepared.spec_path).parent / "queries.yaml")[prepared.query]
    plane, graphs, features = open_resources(prepared.root)
    for family, config in configs.items():
        if family in prepared.runs and prepared.configs.get(family) == config.model_dump_json():
            continue
        started = time.perf_counter()
        trained = train_query_model(spec, query, config, plane, graphs, features, log=lambda _: None)
        prepared.runs[family], prepared.configs[family] = trained.run_key, config.model_dump_json()
        prepared.seconds[f"train_{family}"] = time.perf_counter() - started
        log(
            f"  {prepared.graph}: trained {family} run {trained.run_key} in {prepared.seconds[f'train_{family}']:.1f} s"
        )
        prepared.save()
    return prepared


def f1_rows(prepared: Plane, anchors: int, first: str = "2005-01-01", step_days: int = 30) -> pl.DataFrame:
    """Every driver at ``anchors`` anchors ``step_days`` apart from ``first``: (entity, anchor_time) rows."""
    return _every_entity(prepared, [int(dt.datetime.fromisoformat(first).replace(tzinfo=dt.UTC).timestamp())
                                    + k * step_days * DAY for k in range(anchors)])  # fmt: skip


def synthetic_rows(prepared: Plane) -> pl.DataFrame:
    """Every user at the scoring anchor (the day the events end)."""
    return _every_entity(prepared, [synthetic_anchor()])


def _every_entity(prepared: Plane, anchors: list[int]) -> pl.DataFrame:
    plane, _, _ = open_resources(prepared.root)
    keys = plane.get_frame(prepared.graph, "tables", f"{prepared.entity_table}.parquet",
                           columns=[prepared.entity_key])[prepared.entity_key]  # fmt: skip
    return pl.DataFrame({
        "entity": pl.concat([keys] * len(anchors)),
        "anchor_time": np.repeat(np.asarray(anchors, dtype=np.int64), len(keys)),
    })  # fmt: skip
