"""The ``best_model`` asset per query: refit the study's winner on train + val, score it on test, store it.

The GNN refit trains for as many epochs as the winning trial's best epoch (+1) without early stopping, so
no epoch count is chosen on data it trains on; the GBDT refit keeps the validation rows for early stopping.
When the study found on validation that blending the best trial of each family beats the winner alone
(``family_blend``), the other family's best trial is refit too and the test is scored on the blend.
"""

from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
)

from kumo_assets.asset_keys import best_model_key, hpo_study_key
from kumo_assets.ingest import markdown_table
from kumo_assets.training import interval_table, model_asset, model_metadata
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from serving.pointer import serve_what_was_chosen, write_pointer
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStores
from stores.graph_store import GraphStores
from training.refit import refit_blend, refit_winner

__all__ = ["BestModelConfig", "build_best_model_assets"]


class BestModelConfig(Config):
    blend: bool = True  # blend the best model of each family when the study's validation preferred the blend


def blend_metadata(blend: dict[str, Any]) -> dict[str, MetadataValue]:
    """The members' and the blend's test value of the tune metric, and the blend's interval."""
    metric = blend["metric"]
    rows = [[family, f"{member['test'][metric]:.4f}"] for family, member in blend["members"].items()]
    rows.append(["blend", f"{blend['test'][metric]:.4f}"])
    return {
        "blend": MetadataValue.md(markdown_table(["model", f"test {metric}"], rows)),
        "blend_uncertainty": MetadataValue.md(interval_table(blend["intervals"])),
    }


def build_best_model_assets(spec: GraphSpec, queries: dict[str, NamedQuery]) -> list[AssetsDefinition]:
    return [_best_model_asset(spec, query) for query in queries.values()]


def _best_model_asset(spec: GraphSpec, query: NamedQuery) -> AssetsDefinition:
    @model_asset(spec, best_model_key(spec, query.name), [hpo_study_key(spec, query.name)],
                 f"The study's best configuration refit on train + val, scored on test, for `{query.text}`")  # fmt: skip
    def _best_model(context: AssetExecutionContext, config: BestModelConfig, data_plane: ResourceParam[DataPlane],
                    graph_store: ResourceParam[GraphStores], feature_store: ResourceParam[FeatureStores],
                    ) -> MaterializeResult:  # fmt: skip
        trained, run_config, summary = refit_winner(spec, query, data_plane, graph_store, feature_store,
                                                    context.log.info)  # fmt: skip
        metadata = model_metadata(trained, run_config)
        blend = (refit_blend(spec, query, summary, trained, data_plane, graph_store, feature_store, context.log.info)
                 if config.blend else None)  # fmt: skip
        served = serve_what_was_chosen(spec, query, data_plane, summary, trained, blend, graph_store, feature_store,
                                       context.log.info)  # fmt: skip
        write_pointer(spec, query, data_plane, summary, trained, run_config, blend, served)
        metadata["served"] = MetadataValue.text(
            " + ".join(f"{m['family']} {m['run_key']}" for m in served["members"])
            + (f" (threshold {served['threshold']['value']:.4f}, {served['threshold']['rule']})" if served["threshold"] else "")
        )  # fmt: skip
        if blend is not None:
            metadata.update(blend_metadata(blend))
        metadata["study"] = MetadataValue.text(summary["study_name"])
        metadata["winning_trial"] = MetadataValue.int(int(summary["best"]["number"]))
        metadata["study_val_" + summary["metric"]] = MetadataValue.float(float(summary["best"]["value"]))
        return MaterializeResult(metadata=metadata)

    return _best_model
