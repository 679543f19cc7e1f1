"""Tables for the Dagster UI: `MetadataValue.table` with a typed schema, numbers rounded for reading."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import dagster as dg

__all__ = ["human_bytes", "readable", "ui_table"]


def readable(value: Any, digits: int = 4) -> Any:
    """Floats to ``digits`` significant digits (NaN and inf as text); everything else as it is."""
    if isinstance(value, float):
        return f"{value}" if not math.isfinite(value) else float(f"{value:.{digits}g}")
    return value


def ui_table(columns: Sequence[tuple[str, ...]], rows: Sequence[Sequence[Any]]) -> dg.MetadataValue:
    """A native table: ``columns`` as (name, type) or (name, type, description), type one of string, int,
    float, bool; the description shows under "Show schema"."""
    schema = dg.TableSchema(columns=[dg.TableColumn(*column) for column in columns])
    records = [dg.TableRecord({column[0]: readable(value) for column, value in zip(columns, row, strict=True)})
               for row in rows]  # fmt: skip
    return dg.MetadataValue.table(records=records, schema=schema)


def human_bytes(size: int) -> str:
    """``1536`` -> ``1.5 KiB``: sizes a person reads at a glance."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
