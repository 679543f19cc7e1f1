"""The ``best_model`` asset per query: refit the study's choice on train + val, score it once on test, store it.

The GNN refit trains for as many epochs as the winning trial's best epoch (+1), the GBDT refit for as many
boosting rounds as its selection run kept; neither early-stops, so nothing is chosen on rows it trains on.
When the study found on validation that blending the best trial of each family beats the winner alone
(``family_blend``), the other family's best trial is refit too and the test is scored on the blend.
The page shows the validation leaderboard with trivial baselines, the one holdout number beside its protocol,
what is served and why, whether published numbers compare, and pictures (`kumo_assets.best_model_report`).
"""

from typing import Any, Literal

import dagster as dg

from kumo_assets.asset_keys import best_model_key, hpo_study_key
from kumo_assets.best_model_report import (
    BEATS_BASELINE,
    baseline_check,
    leaderboard_table,
    published_verdict,
    served_text,
    validation_pictures,
)
from kumo_assets.training import family_config, model_asset
from kumo_assets.ui_tables import readable
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from serving.pointer import serve_what_was_chosen, write_pointer
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStores
from stores.graph_store import GraphStores
from training.baselines import trivial_baselines
from training.leaderboard import holdout_protocol, leaderboard_rows, published_numbers, write_leaderboard
from training.refit import refit_blend, refit_winner
from training.run import TrainedModel

__all__ = ["BestModelConfig", "build_best_model_assets"]


class BestModelConfig(dg.Config):
    blend: bool = True  # blend the best model of each family when the study's validation preferred the blend
    # the final model: "refit" on train + val for what selection chose, or "train_rows" (retrained as its trial
    # was, on the training rows only: RelBench's protocol, for comparing with published numbers)
    protocol: Literal["refit", "train_rows"] = "refit"


def build_best_model_assets(spec: GraphSpec, queries: dict[str, NamedQuery]) -> list[dg.AssetsDefinition]:
    return [_best_model_asset(spec, query) for query in queries.values()]


def served_holdout(
    trained: TrainedModel, blend: dict[str, Any] | None, summary: dict[str, Any], protocol: str = "refit"
) -> dict[str, Any]:
    """The one holdout number: the blend's when the blend is served, else the refit winner's (the tune
    metric on test, with its interval over resampled entities)."""
    if blend is not None:
        model, interval = (
            "blend of " + " + ".join(f.upper() for f in blend["members"]),
            blend["intervals"]["test"],
        )
    else:
        model, interval = (
            f"{trained.family.upper()} trial {summary['best']['number']} "
            + ("refit" if protocol == "refit" else "retrained on the training rows"),
            trained.intervals["test"],
        )
    return {"model": model, "value": interval["estimate"], "interval": interval}


def _best_model_asset(spec: GraphSpec, query: NamedQuery) -> dg.AssetsDefinition:
    key = best_model_key(spec, query.name)
    checks = [dg.AssetCheckSpec(BEATS_BASELINE, asset=key, description="The chosen model's validation metric "
                                "beats every trivial baseline's on the same rows (warns)")]  # fmt: skip

    @model_asset(spec, query.name, key, [hpo_study_key(spec, query.name)],
                 f"The model served: the study's choice refit on train + val, scored once on test, for `{query.text}`",
                 checks)  # fmt: skip
    def _best_model(context: dg.AssetExecutionContext, config: BestModelConfig,
                    data_plane: dg.ResourceParam[DataPlane], graph_store: dg.ResourceParam[GraphStores],
                    feature_store: dg.ResourceParam[FeatureStores]) -> dg.MaterializeResult:  # fmt: skip
        trained, run_config, summary = refit_winner(spec, query, data_plane, graph_store, feature_store,
                                                    context.log.info, protocol=config.protocol)  # fmt: skip
        blend = (refit_blend(spec, query, summary, trained, data_plane, graph_store, feature_store, context.log.info,
                             config.protocol) if config.blend else None)  # fmt: skip
        served = serve_what_was_chosen(spec, query, data_plane, summary, trained, blend, graph_store, feature_store,
                                       context.log.info)  # fmt: skip
        write_pointer(spec, query, data_plane, summary, trained, run_config, blend, served)
        table = data_plane.get_frame(spec.graph_name, "training_tables", f"{query.name}.parquet")
        baselines = trivial_baselines(table, summary["task_type"], summary["metric"])
        holdout = {**served_holdout(trained, blend, summary, config.protocol), "observe_until": run_config.observe_until,
                   "protocol": config.protocol}  # fmt: skip
        published = published_numbers(spec.path, query.name)
        rows = leaderboard_rows(summary, baselines, holdout, published)
        write_leaderboard(data_plane, spec.graph_name, query.name, rows)
        metric = summary["metric"]
        # what a person reads first, each entry narrow enough to wrap inside the page: the numbers with their
        # notes, the one holdout number beside its protocol, what is served and why; then the pictures
        metadata = {
            "leaderboard": leaderboard_table(rows, holdout),
            f"holdout_test_{metric}": dg.MetadataValue.float(readable(float(holdout["value"]))),
            "protocol": dg.MetadataValue.text(
                f"chosen on validation rows only; holdout {metric}: "
                f"{holdout_protocol(run_config.observe_until, config.protocol)}, computed once, after the choice"
            ),
            f"chosen_val_{metric}": dg.MetadataValue.float(readable(float(summary["best"]["value"]))),
            "served": dg.MetadataValue.text(served_text(served, holdout)),
            **({"published": dg.MetadataValue.text(published_verdict(holdout))} if published else {}),
            **validation_pictures(data_plane, spec, query, summary, key, context.run.run_id[:8]),
            "study": dg.MetadataValue.text(summary["study_name"]),
            "config": dg.MetadataValue.json(family_config(run_config.model_dump())),
            "dagster/uri": dg.MetadataValue.path(trained.uri),
        }
        return dg.MaterializeResult(metadata=metadata, check_results=[baseline_check(summary, baselines)])

    return _best_model
