"""Refuse a training table with an empty split: it would train, validate or test on nothing and exit 0."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import polars as pl

from relational.errors import KumoError
from relational.pql.bound import BoundQuery, Window

__all__ = ["EmptySplitError", "refuse_anchors_outside_data", "refuse_empty_splits", "utc_text"]

SPLIT_ORDER = ("train", "val", "test")


class EmptySplitError(KumoError):
    """A split of a training table has no rows; nothing is written."""


def utc_text(seconds: int | None) -> str:
    """Epoch seconds as a readable UTC time (``2024-01-31`` or ``2024-01-31 05:00:00``)."""
    if seconds is None:
        return "?"
    moment = dt.datetime.fromtimestamp(int(seconds), tz=dt.UTC)
    return moment.strftime("%Y-%m-%d" if moment.time() == dt.time(0) else "%Y-%m-%d %H:%M:%S")


def _anchor_span(values: list[int]) -> str:
    if len(values) == 1:
        return f"1 anchor ({utc_text(values[0])})"
    return f"{len(values)} anchors ({utc_text(values[0])} .. {utc_text(values[-1])})"


def refuse_anchors_outside_data(
    anchors: Mapping[str, list[int]], window: Window, first: int, last: int
) -> None:
    """Refuse explicit anchors outside the data's time span: before the first event every entity would be
    labelled from history that does not exist, and a target window ending after the last event counts a
    window the data has not finished (fewer events than there will be). Both succeed silently otherwise."""
    for split in SPLIT_ORDER:
        early = [anchor for anchor in anchors.get(split, []) if anchor < first]
        if early:
            raise KumoError(
                f"{split} anchor {utc_text(early[0])} is before the first event in the data "
                f"({utc_text(first)}): there is no history to learn from. Fix: use anchors between "
                f"{utc_text(first)} and the last event minus the target window {window.describe()}"
            )
        late = [anchor for anchor in anchors.get(split, []) if window.bounds(anchor)[1] > last]
        if late:
            raise KumoError(
                f"{split} anchor {utc_text(late[0])} + the target window {window.describe()} ends after the "
                f"last event in the data ({utc_text(last)}): its labels would be incomplete. Fix: drop "
                "it or move it earlier by the difference"
            )


def refuse_empty_splits(
    bound: BoundQuery,
    table: pl.DataFrame,
    anchors: Mapping[str, list[int]],
    data_span: tuple[int, int] | None,
    explicit: bool,
) -> None:
    """Raise when a split comes out with no rows. With explicit timestamps a split given no anchors is the
    user's choice and is left empty; every other split must hold at least one labelled row."""
    counts = dict(table.group_by("split").len().iter_rows()) if table.height else {}
    empty = [
        split
        for split in SPLIT_ORDER
        if not counts.get(split) and (bound.is_temporal is False or anchors.get(split) or not explicit)
    ]
    if not empty:
        return
    if not bound.is_temporal:
        known = table.height
        raise EmptySplitError(
            f"the {' and '.join(empty)} split(s) of this static target came out empty: only {known} rows of "
            f"{bound.entity_table} have a known {bound.target.column}, split 80/10/10. "
            "Fix: a static target needs more entities with a known value (at least ten)."
        )
    problems = []
    for split in empty:
        values = sorted(anchors.get(split, []))
        problems.append(f"{split}: {_anchor_span(values)}, 0 rows" if values else f"{split}: no anchors")
    span = (
        f"the data's events span {utc_text(data_span[0])} .. {utc_text(data_span[1])}"
        if data_span
        else "the data holds no timed events"
    )
    raise EmptySplitError(
        f"the training table would have an empty split ({'; '.join(problems)}); {span}, and the target "
        f"window is {bound.target_window.describe()}. At those anchors no {bound.entity_table} entity "
        "exists, passes WHERE and ASSUMING, or has a label. Fix: choose anchors inside the data's span "
        "(queries.yaml `anchors:`, or --val/--test/--timestamps), at least one target window before the "
        "last event, or loosen WHERE/ASSUMING."
    )
