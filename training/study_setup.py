"""Everything the HPO ops share about one query's study: its space, name, storage, data statistics.

Each op of the ``hpo_study`` graph rebuilds this from the same config (ops may run in separate processes),
so it is cheap: metadata reads and memory-mapped store opens, no data loading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from cluster.data_stats import DataStats
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStores
from stores.graph_store import GraphStores
from training.hpo import StudySettings, open_hpo_study, study_name
from training.search_space import SearchSpace, search_space
from training.studies import StudyStorage

__all__ = ["StudyContext", "host_memory_gib", "open_query_study"]


@dataclass
class StudyContext:
    spec: GraphSpec
    query: NamedQuery
    settings: StudySettings
    space: SearchSpace
    name: str
    storage_url: str
    study: optuna.Study
    stats: DataStats
    base_params: dict[str, Any]
    batch_cache_dir: str | None
    host_memory_gib: float
    task_type: str
    graph_version: str
    feature_version: str


def host_memory_gib() -> float:
    """This machine's RAM (what local trials share)."""
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def open_query_study(
    spec: GraphSpec,
    query: NamedQuery,
    settings: StudySettings,
    space_overrides: Mapping[str, Any],
    data_plane: DataPlane,
    graph_store: GraphStores,
    feature_store: FeatureStores,
    study_storage: StudyStorage,
) -> StudyContext:
    """Open (creating on first use) the study of ``query`` for these settings and the current data."""
    meta = data_plane.get_json(spec.graph_name, "training_tables", f"{query.name}.json")
    task_type = meta["task_type"]
    graph = graph_store.open(spec.graph_name)
    features = feature_store.open(spec.graph_name)
    overrides = dict(space_overrides)
    if settings.search_staleness:
        if settings.observe_until is None:
            raise ValueError(
                f"study of {query.name}: search_staleness compares fresh and stale training on a frozen "
                "validation view, which needs observe_until (the ISO date the database is frozen at)"
            )
        overrides["stalenesses"] = (False, True)
    if settings.n_trials is not None:
        overrides["n_trials"] = settings.n_trials
    if settings.timeout_minutes is not None:
        overrides["timeout_minutes"] = settings.timeout_minutes
    space = search_space(task_type, settings.mode, settings.families or None, overrides)
    inputs = f"{meta['content_hash']}|{graph.version}|{features.version}"
    name = study_name(spec.graph_name, query.name, inputs, space, settings)
    storage_url = study_storage.resolved_url(data_plane.root)
    storage = study_storage.get_storage(data_plane.root)
    study = open_hpo_study(storage, name, space, settings)
    rows = meta.get("rows", {})
    entity_table = meta["parsed"]["entity"]["table"]
    stats = DataStats.from_stores(graph, features, int(rows.get("train", 0)),
                                  int(rows.get("val", 0)) + int(rows.get("test", 0)), entity_table)  # fmt: skip
    base_params = {"seed": settings.seed, "device": settings.device, "observe_until": settings.observe_until}
    if settings.search_staleness:  # drawn per trial; every trial validates on the same frozen view
        base_params["freeze_validation"] = True
    else:
        base_params["simulate_staleness"] = settings.simulate_staleness
    cache_dir = str(Path(graph_store.root).expanduser().resolve() / spec.graph_name / "batch_cache")
    cache_dir = cache_dir if settings.share_batches else None
    return StudyContext(spec, query, settings, space, name, storage_url, study, stats, base_params, cache_dir,
                        host_memory_gib(), task_type, graph.version, features.version)  # fmt: skip
