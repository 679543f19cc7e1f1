"""Anchor times per split: given explicitly, RelBench style (val/test timestamps), or inferred (Kumo style)."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from relational.errors import KumoError
from relational.normalise import to_epoch_seconds
from relational.pql.split_checks import utc_text

__all__ = ["AnchorPlan", "resolve_anchors", "to_seconds"]


def to_seconds(value) -> int:
    """A date, datetime, ISO string or epoch seconds as UTC epoch seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    parsed = to_epoch_seconds(pl.Series([value])).seconds[0]
    if parsed is None:
        raise KumoError(f"{value!r} is not a date or time: write 2005-01-01 or 2005-01-01T00:00:00Z")
    return int(parsed)


@dataclass(frozen=True)
class AnchorPlan:
    """How to choose anchors. Exactly one style applies, in this order of precedence:

    - ``timestamps``: explicit anchors per split;
    - ``val`` and ``test`` (RelBench): train steps back from ``val - window`` to the data's first time;
      ``eval_anchors`` val/test anchors one window apart (val ones end before ``test``);
    - otherwise inferred (Kumo): the latest complete window is test, the one before val, earlier ones
      train, back to ``start`` (or the first time in the data).
    """

    timestamps: dict[str, list[int]] | None = None
    val: int | None = None
    test: int | None = None
    eval_anchors: int = 1
    start: int | None = None
    step: int | None = None  # seconds between anchors; default: the target window length
    max_train_anchors: int | None = None

    @classmethod
    def from_config(cls, config: dict | None) -> AnchorPlan:
        config = dict(config or {})
        known = {"timestamps", "val", "test", "eval_anchors", "start", "step_days", "max_train_anchors"}
        unknown = set(config) - known
        if unknown:
            raise KumoError(f"unknown anchor setting(s) {sorted(unknown)}; known: {sorted(known)}")
        timestamps = config.get("timestamps")
        return cls(
            timestamps={split: [to_seconds(v) for v in values] for split, values in timestamps.items()}
            if timestamps
            else None,
            val=to_seconds(config["val"]) if "val" in config else None,
            test=to_seconds(config["test"]) if "test" in config else None,
            eval_anchors=int(config.get("eval_anchors", 1)),
            start=to_seconds(config["start"]) if "start" in config else None,
            step=int(config["step_days"] * 86400) if "step_days" in config else None,
            max_train_anchors=config.get("max_train_anchors"),
        )

    def to_dict(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if value is not None}


@dataclass(frozen=True)
class DataTimes:
    """The time span the anchors must fit in."""

    first: int  # earliest event time in the database
    last: int  # latest event time in the database
    last_target: int  # latest event time of the target's table(s)
    extra: dict = field(default_factory=dict)


def resolve_anchors(plan: AnchorPlan, window_seconds: int, times: DataTimes) -> dict[str, list[int]]:
    """Anchor times (UTC seconds) per split for a target window of ``window_seconds``."""
    step = plan.step or window_seconds
    if step <= 0:
        raise KumoError("the anchor step must be positive")
    if plan.timestamps is not None:
        unknown = set(plan.timestamps) - {"train", "val", "test"}
        if unknown:
            raise KumoError(f"timestamps are given per split (train, val, test), not {sorted(unknown)}")
        return {split: sorted(plan.timestamps.get(split, [])) for split in ("train", "val", "test")}
    if plan.val is not None or plan.test is not None:
        if plan.val is None or plan.test is None or plan.val >= plan.test:
            raise KumoError("RelBench-style anchors need both `val` and `test`, with val before test")
        if plan.val <= times.first:
            raise KumoError(
                f"val {utc_text(plan.val)} is at or before the first event in the data ({utc_text(times.first)}): "
                "there would be no history to train on. Fix: choose val and test inside the data's span "
                f"({utc_text(times.first)} .. {utc_text(times.last)}), at least one target window before its end"
            )
        for split, anchor in (("val", plan.val), ("test", plan.test)):
            if anchor + window_seconds > times.last:
                raise KumoError(
                    f"{split} {utc_text(anchor)} + the target window ends after the last event in the data "
                    f"({utc_text(times.last)}): {split} labels would be incomplete. Fix: move {split} to at "
                    f"most {utc_text(times.last - window_seconds)}"
                )
        val_end = min(plan.val + step * (plan.eval_anchors - 1), plan.test - window_seconds)
        test_end = min(plan.test + step * (plan.eval_anchors - 1), times.last - window_seconds)
        train = _stepping(plan.val - window_seconds, max(times.first, plan.start or times.first), -step)
        return {
            "train": _limit(sorted(train), plan.max_train_anchors),
            "val": _stepping(plan.val, val_end, step),
            "test": _stepping(plan.test, test_end, step),
        }
    test = times.last_target - window_seconds
    val = test - step
    train = _stepping(val - step, max(times.first, plan.start or times.first), -step)
    if not train:
        raise KumoError("the data spans too little time for a train window before val and test")
    return {"train": _limit(sorted(train), plan.max_train_anchors), "val": [val], "test": [test]}


def _stepping(start: int, end: int, step: int) -> list[int]:
    """start, start+step, ... up to and including end (or down to it for a negative step)."""
    values = []
    current = start
    while (step > 0 and current <= end) or (step < 0 and current >= end):
        values.append(current)
        current += step
    return values


def _limit(values: list[int], keep_latest: int | None) -> list[int]:
    return values[-keep_latest:] if keep_latest else values
