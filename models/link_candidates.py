"""Candidate targets and pair features for ranking a target table per entity (link prediction by a GBDT).

A GBDT scores (entity, target) pairs, so every query row needs a short list of candidates: the targets the
entity linked to before (repeat behaviour) and the targets linked most overall just before the row's as-of
time (popularity). Every feature reads only links at or before that as-of time.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from models.propositional_windows import DAY
from relational.schema import EVENT_TIME, NODE_ID, GraphSchema
from relational.spec import ForeignKey

__all__ = ["CandidateConfig", "LinkLog", "candidate_pairs", "link_log", "popularity_order"]


@dataclass(frozen=True)
class CandidateConfig:
    """history_limit: an entity's most recently linked distinct targets kept as candidates.
    popular_limit: the targets linked most in the last ``popular_window_days`` (ties: most linked ever).
    windows_days: past windows of the link counts (pair and popularity); None = all history."""

    history_limit: int = 50
    popular_limit: int = 50
    popular_window_days: int = 30
    windows_days: tuple[int | None, ...] = (7, 30, 90, 365, None)

    def __post_init__(self) -> None:
        if self.history_limit < 0 or self.popular_limit < 1 or self.popular_window_days < 1:
            raise ValueError("history_limit must be >= 0, popular_limit and popular_window_days >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LinkLog:
    """Every time-stamped link of an entity to a target, by node ids, sorted by time."""

    entity: np.ndarray
    target: np.ndarray
    time: np.ndarray
    n_targets: int
    target_groups: dict[str, np.ndarray] = field(default_factory=dict)  # column -> code per target (-1 null)


def link_log(
    tables: Mapping[str, pl.DataFrame],
    schema: GraphSchema,
    event_table: str,
    target_column: str,
    via: Sequence[str],
) -> LinkLog:
    """The links of ``event_table``: its ``target_column`` foreign key gives the target, the foreign keys
    named in ``via`` (from the event table up to the entity table, as a query's aggregation path) the entity.
    """
    target_fk = next((fk for fk in schema.tables[event_table].foreign_keys if fk.columns == (target_column,)),
                     None)  # fmt: skip
    if target_fk is None:
        raise ValueError(
            f"{event_table}.{target_column} is not a foreign key: there is no target table to rank"
        )
    if not via:
        raise ValueError(f"{event_table}: a link needs a foreign-key path to the entity table")
    frame = tables[event_table]
    if EVENT_TIME not in frame.columns:
        raise ValueError(f"{event_table} has no time column: links cannot be placed before an anchor")
    entity = _column(frame, _foreign_key(schema, event_table, via[0]).id_column)
    table = _foreign_key(schema, event_table, via[0]).table
    for name in via[1:]:  # walk up the path: the parent's own foreign key, looked up by its node id
        fk = _foreign_key(schema, table, name)
        parent = tables[table]
        lookup = np.full(
            int(parent.get_column(NODE_ID).max()) + 1 if parent.height else 1, -1, dtype=np.int64
        )
        lookup[parent.get_column(NODE_ID).to_numpy()] = _column(parent, fk.id_column)
        entity = np.where(entity >= 0, lookup[np.clip(entity, 0, len(lookup) - 1)], -1)
        table = fk.table
    target = _column(frame, target_fk.id_column)
    time = frame.get_column(EVENT_TIME).fill_null(np.iinfo(np.int64).min).cast(pl.Int64).to_numpy()
    keep = (entity >= 0) & (target >= 0) & (time > np.iinfo(np.int64).min)
    order = np.argsort(time[keep], kind="stable")
    target_ids = tables[target_fk.table].get_column(NODE_ID)
    n_targets = int(target_ids.max()) + 1 if len(target_ids) else 0
    groups = _target_groups(tables[target_fk.table], schema.tables[target_fk.table].stypes, n_targets)
    return LinkLog(entity[keep][order], target[keep][order], time[keep][order], n_targets, groups)


def _target_groups(frame: pl.DataFrame, stypes: Mapping[str, str], n_targets: int) -> dict[str, np.ndarray]:
    """Integer codes of the target table's categorical columns (2 to 10,000 values), by node id."""
    groups = {}
    for column, stype in stypes.items():
        if stype != "categorical" or column not in frame.columns or column.startswith("_kumo"):
            continue
        values = frame.get_column(column)
        if not 2 <= values.n_unique() <= 10_000:
            continue
        codes = np.full(n_targets, -1, dtype=np.int64)
        dense = values.cast(pl.String).rank("dense").fill_null(0).cast(pl.Int64).to_numpy() - 1
        codes[frame.get_column(NODE_ID).to_numpy()] = dense
        groups[column] = codes
    return groups


def candidate_pairs(
    log: LinkLog, entity: np.ndarray, as_of: np.ndarray, config: CandidateConfig = CandidateConfig()
) -> pl.DataFrame:
    """One row per (query row, candidate target), sorted by row: ``row``, ``target`` and pair features.

    ``entity``/``as_of``: per query row, its entity's node id and the time its view is taken at.
    """
    queries = pl.DataFrame({"row": np.arange(len(entity), dtype=np.int64), "entity": entity.astype(np.int64),
                            "as_of": as_of.astype(np.int64)})  # fmt: skip
    history, everything = _history(log, queries, config)
    popular = []
    orders = {}  # as-of time -> targets by popularity then, shared with the popularity features
    for moment, rows in queries.group_by("as_of"):
        orders[int(moment[0])] = popularity_order(log, int(moment[0]), config)
        top = orders[int(moment[0])][: config.popular_limit]
        popular.append(rows.select("row").join(pl.DataFrame({"target": top}), how="cross"))
    pairs = pl.concat([history.select("row", "target"), *popular]).unique(maintain_order=False)
    pairs = pairs.join(queries.select("row", "as_of"), on="row").join(
        history, on=["row", "target"], how="left"
    )
    count_columns = [name for name in history.columns if name.startswith("link_count")]
    pairs = pairs.with_columns(pl.col(count_columns).fill_null(0))
    pairs = pairs.with_columns(
        days_since_last_link=(pl.col("as_of") - pl.col("last_link")) / DAY,
        days_since_first_link=(pl.col("as_of") - pl.col("first_link")) / DAY,
        link_share=pl.col("link_count_all") / pl.col("link_count_all").sum().over("row").clip(lower_bound=1),
    )
    # repeat cycles: the mean gap between the entity's links to the target, and how overdue the next one is
    gap = pl.when(pl.col("link_count_all") > 1).then(
        pl.col("days_since_first_link") - pl.col("days_since_last_link")
    )
    pairs = pairs.with_columns(mean_days_between_links=gap / (pl.col("link_count_all") - 1))
    pairs = pairs.with_columns(
        overdue=pl.col("days_since_last_link") / pl.col("mean_days_between_links").clip(lower_bound=1 / 24)
    ).drop("last_link", "first_link")
    pairs = _with_group_affinity(log, pairs, everything)
    return _with_popularity(log, pairs, config, orders).sort("row", "target").drop("as_of")


def _with_group_affinity(log: LinkLog, pairs: pl.DataFrame, history: pl.DataFrame) -> pl.DataFrame:
    """Per categorical column of the targets: the share of the entity's past links whose target has the
    candidate's value (e.g. how much of a household's shopping is in the candidate's department)."""
    for column, codes in log.target_groups.items():
        name = f"affinity__{column}"
        coded = history.with_columns(code=pl.Series(codes[history.get_column("target").to_numpy()]))
        shares = coded.group_by("row", "code").agg(pl.col("link_count_all").sum().alias(name))
        shares = shares.with_columns(pl.col(name) / pl.col(name).sum().over("row"))
        pairs = pairs.with_columns(code=pl.Series(codes[pairs.get_column("target").to_numpy()]))
        pairs = pairs.join(shares, on=["row", "code"], how="left").with_columns(pl.col(name).fill_null(0.0))
        pairs = pairs.drop("code")
    return pairs


def popularity_order(log: LinkLog, moment: int, config: CandidateConfig) -> np.ndarray:
    """Targets by links in the popularity window ending at ``moment``, ties by links ever (then id)."""
    end = np.searchsorted(log.time, moment, side="right")
    recent = _counts(log, moment, config.popular_window_days, end)
    ever = np.bincount(log.target[:end], minlength=log.n_targets)
    return np.lexsort((np.arange(log.n_targets), -ever, -recent))


def _history(log: LinkLog, queries: pl.DataFrame, config: CandidateConfig) -> pl.DataFrame:
    """Per (row, target) the entity linked to before as_of: link counts per window, first and last time."""
    links = pl.DataFrame({"entity": log.entity, "target": log.target, "time": log.time})
    joined = queries.join(links, on="entity").filter(pl.col("time") <= pl.col("as_of"))
    counts = [
        (pl.col("time") > pl.col("as_of") - days * DAY).sum().alias(f"link_count_{days}d")
        for days in config.windows_days
        if days is not None
    ]
    # sorted, so that ties in the ranks below go the same way every run (to the lower target id)
    grouped = (
        joined.group_by("row", "target")
        .agg(
            pl.len().cast(pl.Int64).alias("link_count_all"),
            *counts,
            pl.col("time").max().alias("last_link"),
            pl.col("time").min().alias("first_link"),
        )
        .sort("row", "target")
    )
    # keep the most recent and the most linked targets (a union: each up to history_limit)
    by_recency = pl.col("last_link").rank("ordinal", descending=True).over("row")
    by_count = pl.struct("link_count_all", "last_link").rank("ordinal", descending=True).over("row")
    kept = grouped.filter((by_recency <= config.history_limit) | (by_count <= config.history_limit))
    return kept, grouped.select("row", "target", "link_count_all")


def _with_popularity(
    log: LinkLog, pairs: pl.DataFrame, config: CandidateConfig, orders: dict[int, np.ndarray]
) -> pl.DataFrame:
    """Each candidate's links by anyone per window before the row's as_of, its popularity rank, and days
    since anyone last linked to it."""
    pairs = pairs.sort("as_of")
    moments = pairs.get_column("as_of").to_numpy()
    targets = pairs.get_column("target").to_numpy()
    windows = [*config.windows_days]
    columns = {
        f"popularity_{'all' if days is None else f'{days}d'}": np.zeros(len(pairs)) for days in windows
    }
    rank = np.zeros(len(pairs))
    idle = np.full(len(pairs), np.nan)
    bounds = np.flatnonzero(np.r_[True, moments[1:] != moments[:-1], True])
    for start, stop in itertools.pairwise(bounds):
        moment = int(moments[start])
        end = np.searchsorted(log.time, moment, side="right")
        chosen = targets[start:stop]
        for days, name in zip(windows, columns, strict=True):
            columns[name][start:stop] = _counts(log, moment, days, end)[chosen]
        position = np.empty(log.n_targets)
        position[orders[moment]] = np.arange(log.n_targets)
        rank[start:stop] = position[chosen]
        last = np.full(log.n_targets, np.nan)
        seen, newest = np.unique(
            log.target[:end][::-1], return_index=True
        )  # times ascend: first from the end
        last[seen] = log.time[:end][::-1][newest]
        idle[start:stop] = (moment - last[chosen]) / DAY
    return pairs.with_columns(
        *[pl.Series(name, values) for name, values in columns.items()],
        pl.Series("popularity_rank", rank), pl.Series("days_since_target_linked", idle),
    )  # fmt: skip


def _counts(log: LinkLog, moment: int, days: int | None, end: int) -> np.ndarray:
    """Links per target in (moment - days, moment] (all links up to moment for None)."""
    start = 0 if days is None else np.searchsorted(log.time, moment - days * DAY, side="right")
    return np.bincount(log.target[start:end], minlength=log.n_targets)


def _foreign_key(schema: GraphSchema, table: str, name: str) -> ForeignKey:
    fk = next((fk for fk in schema.tables[table].foreign_keys if fk.name == name), None)
    if fk is None:
        known = [fk.name for fk in schema.tables[table].foreign_keys]
        raise ValueError(f"{table} has no foreign key {name!r}; it has {known}")
    return fk


def _column(frame: pl.DataFrame, name: str) -> np.ndarray:
    return frame.get_column(name).fill_null(-1).cast(pl.Int64).to_numpy()
