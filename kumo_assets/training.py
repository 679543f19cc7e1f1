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
    training_table_key,
)
from kumo_assets.execution import CPU_BOUND
from kumo_assets.ingest import format_time, markdown_table
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStores
from stores.graph_store import GraphStores
from training.run import ModelRunConfig, TrainedModel, epoch_seconds, train_query_model

__all__ = ["ModelRunAssetConfig", "build_model_assets", "interval_table", "model_asset", "model_metadata"]

# The same fields, defaults and descriptions as the plain `ModelRunConfig`, as a Dagster run config.
ModelRunAssetConfig = create_model(
    "ModelRunConfig",
    __base__=dg.Config,
    __doc__=ModelRunConfig.__doc__,
    **{name: (field.annotation, field) for name, field in ModelRunConfig.model_fields.items()},
)


def build_model_assets(spec: GraphSpec, queries: dict[str, NamedQuery]) -> list[dg.AssetsDefinition]:
    return [_model_asset(spec, query) for query in queries.values()]


def model_asset(spec: GraphSpec, key: dg.AssetKey, deps: list[dg.AssetKey], description: str) -> Callable:
    """The decorator of a per-query model asset: CPU-bound, in the graph's models group, PyTorch or LightGBM."""
    return dg.asset(op_tags=CPU_BOUND, key=key, deps=deps, group_name=f"{spec.graph_name}_models",
                 description=description, kinds={"pytorch", "lightgbm"})  # fmt: skip


def _model_asset(spec: GraphSpec, query: NamedQuery) -> dg.AssetsDefinition:
    # the tables are upstream through the stores (a GBDT also reads them): the lineage shows the pipeline
    inputs = [training_table_key(spec, query.name), graph_store_key(spec), feature_store_key(spec)]

    @model_asset(spec, model_key(spec, query.name), inputs,
                 f"One trained model (GNN or GBDT, chosen in the run config) for `{query.text}`")  # fmt: skip
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
    names = sorted({name for split in trained.metrics.values() for name in split})
    rows = [[split, *[f"{values.get(name, float('nan')):.4f}" for name in names]]
            for split, values in trained.metrics.items()]  # fmt: skip
    return {
        "family": dg.MetadataValue.text(trained.family),
        "task_type": dg.MetadataValue.text(trained.task_type),
        "metrics": dg.MetadataValue.md(markdown_table(["split", *names], rows)),
        "uncertainty": dg.MetadataValue.md(interval_table(trained.intervals)),
        "config": dg.MetadataValue.json(config.model_dump()),
        "run_key": dg.MetadataValue.text(trained.run_key),
        "resumed_from_epoch": dg.MetadataValue.text(
            str(trained.resumed_from) if trained.resumed_from is not None else "none"
        ),
        "observe_until": dg.MetadataValue.text(format_time(epoch_seconds(config.observe_until), "none")),
        "dagster/uri": dg.MetadataValue.path(trained.uri),
        "train_seconds": dg.MetadataValue.float(round(trained.seconds, 2)),
    }


def interval_table(intervals: dict[str, dict]) -> str:
    """Markdown: per split, the tune metric, its 95% interval and how many entities it resampled."""
    rows = [[split, item["metric"], f"{item['estimate']:.4f}", f"{item['low']:.4f} .. {item['high']:.4f}",
             str(item["groups"])] for split, item in intervals.items()]  # fmt: skip
    return markdown_table(["split", "metric", "value", "95% interval (entities resampled)", "entities"], rows)
