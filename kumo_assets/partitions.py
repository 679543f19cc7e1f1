"""The daily partitions of a query's `predictions` and `embeddings` assets: one definition both they and
their refresh jobs build, so the assets, the jobs, the schedules and the new-data sensor agree.

A partition is a UTC day ``YYYY-MM-DD`` (scores at the anchor of that date). The first day is, in order:
a configured date (the ``start_date`` argument, else ``KUMO_PREDICTION_START``), the query's first test
anchor (``anchors.test`` or the earliest ``anchors.timestamps.test``), else ``FALLBACK_START``. Different
queries may therefore start on different days, so their partitions definitions differ and one Dagster run
can never hold partitions of two queries (see sensors/new_data.py).
"""

from __future__ import annotations

import datetime as dt
import os

from dagster import DailyPartitionsDefinition

from relational.pql.queries import NamedQuery

__all__ = ["FALLBACK_START", "prediction_partitions", "prediction_start_date", "query_partitions"]

FALLBACK_START = "2024-01-01"
"""First partition of a query whose anchors fix no test time and where no date is configured."""


def prediction_partitions(start_date: str) -> DailyPartitionsDefinition:
    """Daily UTC partitions from ``start_date`` (``YYYY-MM-DD``); equal arguments give equal definitions."""
    dt.date.fromisoformat(start_date)  # a clear error for a malformed date, before Dagster's
    # end_offset=1: today's partition exists from 00:00 UTC, so the daily refresh scores as of midnight just
    # past (every row of yesterday visible), not as of the start of yesterday
    return DailyPartitionsDefinition(start_date=start_date, timezone="UTC", fmt="%Y-%m-%d", end_offset=1)


def prediction_start_date(query: NamedQuery, start_date: str | None = None) -> str:
    """First prediction day of ``query``: the configured date, else its first test anchor, else the fallback."""
    configured = start_date or os.environ.get("KUMO_PREDICTION_START") or None
    if configured:
        return dt.date.fromisoformat(configured).isoformat()
    plan = query.anchors
    tests = (plan.timestamps or {}).get("test") or ([plan.test] if plan.test is not None else [])
    if tests:
        return dt.datetime.fromtimestamp(min(tests), dt.UTC).date().isoformat()
    return FALLBACK_START


def query_partitions(query: NamedQuery, start_date: str | None = None) -> DailyPartitionsDefinition:
    """The partitions definition of ``query``'s predictions and embeddings (see the module docstring)."""
    return prediction_partitions(prediction_start_date(query, start_date))
