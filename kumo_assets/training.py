"""Model assets: train one configuration of either family (GNN or GBDT) for a query, from the UI or CLI.

The asset is thin: it calls `training.run.train_query_model` (plain, tested without Dagster) and reports
metrics. Its run config is `training.run.ModelRunConfig`, offered to the launchpad as a Dagster `Config`.
"""

from collections.abc import Callable

import dagster as dg
from pydantic import create_model

from kumo_assets.asset_keys import (
    feature_store_key,
    graph_store_key,
    model_key,
    query_group,
    training_table_key,
)
from kumo_assets.execution import CPU_BOUND
from kumo_assets.ingest import format_time
from kumo_assets.ui_tables import ui_table
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStores
from stores.graph_store import GraphStores
from training.run import ModelRunConfig, TrainedModel, epoch_seconds, train_query_model

__all__ = [
    "ModelRunAssetConfig",
    "build_model_assets",
    "family_config",
    "metrics_table",
    "model_asset",
    "model_metadata",
]

# The same fields, defaults and descriptions as the plain `ModelRunConfig`, as a Dagster run config.
ModelRunAssetConfig = create_model(
    "ModelRunConfig",
    __base__=dg.Config,
    __doc__=ModelRunConfig.__doc__,
    **{name: (field.annotation, field) for name, field in ModelRunConfig.model_fields.items()},
)


def build_model_assets(spec: GraphSpec, queries: dict[str, NamedQuery]) -> list[dg.AssetsDefinition]:
    return [_model_asset(spec, query) for query in queries.values()]


def model_asset(spec: GraphSpec, query: str, key: dg.AssetKey, deps: list[dg.AssetKey], description: str,
                checks: list[dg.AssetCheckSpec] | None = None) -> Callable:  # fmt: skip
    """The decorator of a per-query model asset: CPU-bound, in the query's group, PyTorch or LightGBM."""
    return dg.asset(op_tags=CPU_BOUND, key=key, deps=deps, group_name=query_group(spec, query),
                    description=description, kinds={"pytorch", "lightgbm"}, check_specs=checks)  # fmt: skip


def _model_asset(spec: GraphSpec, query: NamedQuery) -> dg.AssetsDefinition:
    # the tables are upstream through the stores (a GBDT also reads them): the lineage shows the pipeline
    inputs = [training_table_key(spec, query.name), graph_store_key(spec), feature_store_key(spec)]

    @model_asset(spec, query.name, model_key(spec, query.name), inputs,
                 f"One hand-set model (GNN or GBDT, set in the run config) for `{query.text}`")  # fmt: skip
    def _model(context: dg.AssetExecutionContext, config: ModelRunAssetConfig,
               data_plane: dg.ResourceParam[DataPlane], graph_store: dg.ResourceParam[GraphStores],
               feature_store: dg.ResourceParam[FeatureStores]) -> dg.MaterializeResult:  # fmt: skip
        trained = train_query_model(
            spec,
            query,
            ModelRunConfig(**config.model_dump()),
            data_plane,
            graph_store,
            feature_store,
            context.log.info,
        )
        return dg.MaterializeResult(metadata=model_metadata(trained, config))

    return _model


def model_metadata(trained: TrainedModel, config: ModelRunConfig) -> dict:
    """A trained model's page: its metrics per split (the tune metric with its interval), then its settings."""
    return {
        "metrics": metrics_table(trained),
        "family": dg.MetadataValue.text(trained.family),
        "task_type": dg.MetadataValue.text(trained.task_type),
        "train_seconds": dg.MetadataValue.float(round(trained.seconds, 2)),
        "resumed_from_epoch": dg.MetadataValue.text(
            str(trained.resumed_from) if trained.resumed_from is not None else "none"
        ),
        "observe_until": dg.MetadataValue.text(format_time(epoch_seconds(config.observe_until), "none")),
        "run_key": dg.MetadataValue.text(trained.run_key),
        "config": dg.MetadataValue.json(family_config(config.model_dump())),
        "dagster/uri": dg.MetadataValue.path(trained.uri),
    }


def metrics_table(trained: TrainedModel) -> dg.MetadataValue:
    """Per split: every metric, and the tune metric's 95% interval over resampled entities."""
    names = sorted({name for split in trained.metrics.values() for name in split})
    rows = []
    for split, values in trained.metrics.items():
        interval = trained.intervals.get(split) or {}
        rows.append([split, *[values.get(name) for name in names], interval.get("low"), interval.get("high"),
                     interval.get("groups")])  # fmt: skip
    tuned = next(iter(trained.intervals.values()), {}).get("metric", "tune metric")
    columns = [("split", "string"), *[(name, "float") for name in names], (f"{tuned} 95% low", "float"),
               (f"{tuned} 95% high", "float"), ("entities", "int")]  # fmt: skip
    return ui_table(columns, rows)


def family_config(config: dict) -> dict:
    """A run config without the other family's settings (a GNN's page never lists GBDT settings)."""
    gbdt = config.get("family") == "gbdt"
    gnn_only = {"conv", "channels", "layers", "aggr", "dropout", "absolute_time", "lr", "weight_decay", "epochs",
                "batch_size", "fanouts", "sampling_strategy", "max_steps_per_epoch", "precision"}  # fmt: skip
    return {name: value for name, value in config.items()
            if (name not in gnn_only if gbdt else not name.startswith("gbdt_"))}  # fmt: skip
