"""What propositional features compute: time windows, last-event windows, hops, aggregations, categories."""

from __future__ import annotations

from dataclasses import dataclass

from models.propositional_windows import NUMERIC_AGGREGATIONS, WindowSpec

__all__ = ["PropositionalConfig"]


@dataclass(frozen=True)
class PropositionalConfig:
    """What to compute. Defaults suit event tables spanning years (e.g. RelBench rel-f1).

    windows_days: past windows (as_of - days, as_of]; None = all history.
    last_events: windows of the last N visible events (mean/min/max of numeric columns, category shares).
    max_hops: 1 = own columns, parents, child aggregates; 2 adds grandchildren, parents of parents, child
        rows enriched with their other parents' columns, and (via_last_parent) the aggregates of the
        static parent of the entity's latest child row (e.g. a driver's current constructor's form).
    aggregations: of numeric child columns per time window, from sum, mean, min, max, std.
    top_categories: most frequent values of each categorical child column whose share is computed.
    calendar_features: the anchor's day of the year (seasonality; the anchor is known at prediction time).
    global_counts: rows of each time-stamped table in each window, over all entities (how busy the
        database is at as_of, e.g. races per season).
    """

    windows_days: tuple[int | None, ...] = (30, 90, 365, 1825, None)
    last_events: tuple[int, ...] = (3, 10)
    max_hops: int = 2
    aggregations: tuple[str, ...] = ("sum", "mean", "min", "max", "std")
    last_value: bool = True
    recency: bool = True
    top_categories: int = 8
    enrich_children_with_parents: bool = True
    via_last_parent: bool = True
    calendar_features: bool = True
    global_counts: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.aggregations) - set(NUMERIC_AGGREGATIONS)
        if unknown:
            raise ValueError(
                f"unknown aggregations {sorted(unknown)}; choose from {list(NUMERIC_AGGREGATIONS)}"
            )
        if any(days is not None and days <= 0 for days in self.windows_days) or not self.windows_days:
            raise ValueError(
                f"windows_days must be positive numbers of days or None, got {self.windows_days}"
            )
        if any(count <= 0 for count in self.last_events) or self.max_hops < 1:
            raise ValueError("last_events must be positive and max_hops at least 1")

    def window_spec(self) -> WindowSpec:
        return WindowSpec(
            self.windows_days, self.last_events, self.aggregations, self.last_value, self.recency
        )
