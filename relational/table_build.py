"""Turning one raw table into a validated, typed, normalised table: the pure core of every ingest asset.

Output contract (read by the graph and feature stores): the user's columns with nulls normalised and
every date/time column as UTC int64 seconds; ``_kumo_id`` (node id, 0..n-1, the row position);
``_kumo_time`` / ``_kumo_end_time`` (int64 seconds) for tables with an event time, rows sorted by it;
one ``_kumo_fk__<name>`` column per foreign key with the parent's node id (null when null or dangling).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import polars as pl

from relational.checks import (
    CheckOutcome,
    column_types_check,
    foreign_key_check,
    primary_key_check,
    time_check,
)
from relational.errors import IngestError, hidden_note, suggest_name
from relational.keys import NODE_ID, check_primary_key, resolve_foreign_key
from relational.normalise import (
    TimeParse,
    clock_to_seconds,
    date_and_clock_to_epoch_seconds,
    decimals_to_numbers,
    normalise_nulls,
    to_epoch_seconds,
)
from relational.spec import DEFAULT_NULL_VALUES, DateAndTimeOfDay, GraphSpec
from relational.stypes import StypeDecision, infer_stypes

__all__ = ["END_TIME", "EVENT_TIME", "BuiltTable", "ParentKeys", "build_implied_table", "build_table"]

from relational.schema import EVENT_TIME
from relational.sources import table_is_trusted

END_TIME = "_kumo_end_time"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ParentKeys:
    """What a child needs from an already-ingested parent: key columns, node ids, event times."""

    table: str
    key_columns: list[str]
    frame: pl.DataFrame  # key columns + _kumo_id (+ _kumo_time when the parent has one)
    content_hash: str | None = None


@dataclass
class BuiltTable:
    """A validated table ready to write, with its metadata and the outcome of every check."""

    table: str
    frame: pl.DataFrame
    meta: dict
    checks: list[CheckOutcome] = field(default_factory=list)
    trusted: bool = True  # `table_is_trusted`: whether its messages and pages may quote its names and values

    @property
    def blocking_failures(self) -> list[CheckOutcome]:
        return [check for check in self.checks if check.blocking and not check.passed]

    def raise_for_blocking(self) -> None:
        """Raise `IngestError` with every failed blocking check's explanation."""
        failures = self.blocking_failures
        if failures:
            raise IngestError("\n".join(check.description for check in failures))

    def parent_keys(self, key_columns: list[str]) -> ParentKeys:
        extra = [EVENT_TIME] if EVENT_TIME in self.frame.columns else []
        return ParentKeys(
            self.table,
            key_columns,
            self.frame.select([*key_columns, NODE_ID, *extra]),
            self.meta.get("content_hash"),
        )


def build_table(
    spec: GraphSpec, table: str, raw: pl.DataFrame, parents: Mapping[str, ParentKeys]
) -> BuiltTable:
    """Validate and normalise one table read from its source.

    Args:
        parents: ingested parent tables by name, for every foreign key that is not a self-reference.
    """
    table_spec = spec.table(table)
    if raw.height == 0:
        raise IngestError(
            f"table {table!r}: source {table_spec.sources} has no rows: point `source` at the data, "
            "or remove the table from graph.yaml"
        )
    foreign_keys = spec.foreign_keys(table)
    trusted = table_is_trusted(spec, table)  # else no message quotes the source's names or values
    _require_columns(spec, table, raw.columns, trusted)
    frame = normalise_nulls(raw.drop(table_spec.drop_columns), table_spec.null_values or DEFAULT_NULL_VALUES)
    frame, decimals = decimals_to_numbers(frame)
    key_columns = table_spec.primary_key_columns
    fk_columns = {column: fk.table for fk in foreign_keys for column in fk.columns}
    end_columns = [table_spec.end_time_column] if table_spec.end_time_column else []
    clock = (
        table_spec.time_column.time_of_day if isinstance(table_spec.time_column, DateAndTimeOfDay) else None
    )
    time_columns = [column for column in table_spec.own_time_columns if column != clock] + end_columns
    stypes = infer_stypes(frame, key_columns, fk_columns, time_columns, table_spec.stypes)
    for column, note in decimals.items():  # the reason says what the source held
        stypes[column] = replace(stypes[column], reason=f"{stypes[column].reason} ({note})")
    event_time = _own_event_time(frame, table_spec.time_column, table_spec.timezone)
    if clock is not None and clock not in table_spec.stypes:
        stypes[clock] = StypeDecision("numerical", "clock time of the event, as seconds after midnight")
        frame = frame.with_columns(clock_to_seconds(frame.get_column(clock)))
    frame, conversions = _convert_timestamps(frame, stypes, table_spec.timezone)
    checks: list[CheckOutcome] = []
    pk_report = None
    if key_columns:
        pk_report = check_primary_key(frame, key_columns)
        if not trusted:
            pk_report = replace(pk_report, duplicate_examples=[])
        checks.append(primary_key_check(table, pk_report, show_values=trusted))

    fk_reports = []
    for fk in foreign_keys:
        if fk.table == table:
            continue  # self-references resolve after node ids exist
        parent = parents.get(fk.table)
        if parent is None:
            raise IngestError(f"table {table!r}: parent table {fk.table!r} must be ingested first")
        ids, report = resolve_foreign_key(frame, fk, parent.frame, parent.key_columns, table)
        frame = frame.with_columns(ids)
        fk_reports.append(report if trusted else replace(report, dangling_examples=[]))

    time_meta = None
    if table_spec.has_time:
        if table_spec.time_from is not None:
            event_time = _inherited_time(spec, table, frame, parents)
        frame, time_meta = _attach_event_time(frame, event_time, table_spec, conversions)
        checks.append(time_check(table, time_meta, event_time, _time_source(table_spec), show_values=trusted))
    frame = frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(NODE_ID))
    for fk in foreign_keys:
        if fk.table == table:
            own = ParentKeys(table, key_columns, frame.select([*key_columns, NODE_ID]))
            ids, report = resolve_foreign_key(frame, fk, own.frame, key_columns, table)
            frame = frame.with_columns(ids)
            fk_reports.append(report if trusted else replace(report, dangling_examples=[]))
    checks.extend(foreign_key_check(table, report, show_values=trusted) for report in fk_reports)
    checks.append(column_types_check(table, frame, stypes, show_names=trusted))
    meta = _table_meta(spec, table, frame, stypes, conversions, fk_reports, time_meta, parents)
    if pk_report is not None:
        meta["primary_key_report"] = {
            "null_rows": pk_report.null_rows,
            "duplicate_rows": pk_report.duplicate_rows,
        }
    return BuiltTable(table, frame, meta, checks, trusted)


def build_implied_table(spec: GraphSpec, table: str, key_frames: list[pl.DataFrame]) -> BuiltTable:
    """An entity table with no source: the distinct non-null key values the referencing tables use.

    Args:
        key_frames: one frame per referencing foreign key, already renamed to this table's key columns.
    """
    key_columns = spec.table(table).primary_key_columns
    trusted = table_is_trusted(spec, table)
    try:
        keys = pl.concat([frame.select(key_columns) for frame in key_frames], how="vertical_relaxed")
    except (pl.exceptions.SchemaError, pl.exceptions.ComputeError) as exc:
        types = sorted({str(frame.schema[column]) for frame in key_frames for column in key_columns})
        detail = f"{types}: {exc}" if trusted else f"{types}; {hidden_note('the details')}"
        raise IngestError(
            f"implied table {table!r}: the foreign keys that point at it have clashing types ({detail}); "
            "store them with one type in every source, or declare them `id` in `stypes` (read as text)"
        ) from None
    keys = keys.drop_nulls().unique().sort(key_columns)
    if keys.height == 0:
        raise IngestError(
            f"implied table {table!r}: every foreign key pointing at it is null, so it has no rows"
        )
    frame = keys.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(NODE_ID))
    stypes = {column: StypeDecision("id", "primary key of an implied table", "key") for column in key_columns}
    meta = _table_meta(spec, table, frame, stypes, {}, [], None, {})
    return BuiltTable(table, frame, meta, [column_types_check(table, frame, stypes)], trusted)


def normalise_key_frame(
    frame: pl.DataFrame, null_values: list[str] | None, timezone: str | None
) -> pl.DataFrame:
    """Key columns normalised as `build_table` would: null tokens, and date/time dtypes to seconds."""
    frame, _ = decimals_to_numbers(normalise_nulls(frame, null_values or DEFAULT_NULL_VALUES))
    converted = []
    for name, dtype in frame.schema.items():
        if dtype == pl.Date or isinstance(dtype, pl.Datetime):
            converted.append(to_epoch_seconds(frame.get_column(name), timezone).seconds)
    return frame.with_columns(converted) if converted else frame


def _require_columns(spec: GraphSpec, table: str, columns: list[str], trusted: bool) -> None:
    """Every column graph.yaml names must exist; the hint lists the source's own names only when trusted."""
    table_spec = spec.table(table)
    wanted: list[tuple[str, str]] = [(column, "primary_key") for column in table_spec.primary_key_columns]
    wanted += [
        (column, f"foreign_keys.{fk.name}") for fk in spec.foreign_keys(table) for column in fk.columns
    ]
    wanted += [(column, "time_column") for column in table_spec.own_time_columns]
    if table_spec.end_time_column:
        wanted.append((table_spec.end_time_column, "end_time_column"))
    wanted += [(column, "stypes") for column in table_spec.stypes]
    wanted += [(column, "drop_columns") for column in table_spec.drop_columns]
    dropped = set(table_spec.drop_columns)
    for column, key in wanted:
        if column not in columns:
            if trusted:
                hint = suggest_name(column, columns)
            else:
                hint = f"; it has {len(columns)} column(s) ({hidden_note('their names')})"
            raise IngestError(
                f"table {table!r}: `{key}` names column {column!r}, which source {table_spec.sources} "
                f"does not have{hint}"
            )
        if key != "drop_columns" and column in dropped:
            raise IngestError(f"table {table!r}: column {column!r} is used by `{key}` and also dropped")


def _time_source(table_spec) -> str | None:
    """The spec's own words for where the event time is read, e.g. ``'created_at'``."""
    time_column = table_spec.time_column
    if isinstance(time_column, DateAndTimeOfDay):
        clock = f", time_of_day: {time_column.time_of_day}" if time_column.time_of_day else ""
        return f"{{date: {time_column.date}{clock}}}"
    return repr(time_column) if time_column is not None else None


def _own_event_time(frame: pl.DataFrame, time_column, timezone: str | None) -> TimeParse | None:
    """The event time parsed from the table's own column(s), before those columns are converted."""
    if time_column is None:
        return None
    if isinstance(time_column, DateAndTimeOfDay):
        date = frame.get_column(time_column.date)
        if time_column.time_of_day is None:
            return to_epoch_seconds(date, timezone)
        return date_and_clock_to_epoch_seconds(date, frame.get_column(time_column.time_of_day), timezone)
    return to_epoch_seconds(frame.get_column(time_column), timezone)


def _convert_timestamps(
    frame: pl.DataFrame, stypes: Mapping[str, StypeDecision], timezone: str | None
) -> tuple[pl.DataFrame, dict[str, TimeParse]]:
    """Every column that is a date/time (by dtype or stype) becomes UTC int64 seconds."""
    conversions: dict[str, TimeParse] = {}
    for name, dtype in frame.schema.items():
        is_temporal_dtype = dtype == pl.Date or isinstance(dtype, pl.Datetime)
        if is_temporal_dtype or (stypes[name].stype == "timestamp" and dtype != pl.Time):
            conversions[name] = to_epoch_seconds(frame.get_column(name), timezone)
    converted = [parse.seconds for parse in conversions.values()]
    return (frame.with_columns(converted) if converted else frame), conversions


def _inherited_time(
    spec: GraphSpec, table: str, frame: pl.DataFrame, parents: Mapping[str, ParentKeys]
) -> TimeParse:
    time_from = spec.table(table).time_from
    fk = spec.foreign_key(table, time_from.foreign_key)
    parent = parents[fk.table]
    times = parent.frame.select(NODE_ID, EVENT_TIME)
    ids = frame.select(pl.col(fk.id_column).alias(NODE_ID))
    seconds = ids.join(times, on=NODE_ID, how="left", maintain_order="left").get_column(EVENT_TIME)
    seconds = (seconds + time_from.offset_seconds).alias(EVENT_TIME)
    offset = f" {time_from.offset}" if time_from.offset_seconds else ""
    return TimeParse(seconds, frame.height, 0, [], f"inherited from {fk.table} via {fk.name}{offset}")


def _attach_event_time(
    frame: pl.DataFrame, event_time: TimeParse, table_spec, conversions: Mapping[str, TimeParse]
) -> tuple[pl.DataFrame, dict]:
    """Add `_kumo_time` (and `_kumo_end_time`), drop rows whose time is null, sort rows by time."""
    frame = frame.with_columns(event_time.seconds.alias(EVENT_TIME))
    if table_spec.end_time_column:
        frame = frame.with_columns(pl.col(table_spec.end_time_column).alias(END_TIME))
    null_rows = frame.get_column(EVENT_TIME).null_count()
    frame = frame.filter(pl.col(EVENT_TIME).is_not_null()).sort(EVENT_TIME, maintain_order=True)
    times = frame.get_column(EVENT_TIME)
    meta = {
        "column": EVENT_TIME,
        "how": event_time.how,
        "parse_rate": round(event_time.parse_rate, 6),
        "unparsed": event_time.failed,
        "dropped_null_rows": null_rows - event_time.failed,
        "min": times.min(),
        "max": times.max(),
    }
    if table_spec.end_time_column:
        ends = frame.get_column(END_TIME)
        meta["end_column"] = END_TIME
        meta["end_before_start_rows"] = int((ends < times).sum())
    return frame, meta


def _table_meta(
    spec: GraphSpec,
    table: str,
    frame: pl.DataFrame,
    stypes: Mapping[str, StypeDecision],
    conversions: Mapping[str, TimeParse],
    fk_reports: list,
    time_meta: dict | None,
    parents: Mapping[str, ParentKeys],
) -> dict:
    table_spec = spec.table(table)
    return {
        "format_version": FORMAT_VERSION,
        "graph": spec.graph_name,
        "table": table,
        "rows": frame.height,
        "implied": table_spec.implied,
        "primary_key": table_spec.primary_key_columns,
        "node_id_column": NODE_ID,
        "time": time_meta,
        "foreign_keys": [
            {**report.to_dict(), "id_column": fk.id_column}
            for report, fk in zip(fk_reports, _ordered_fks(spec, table, fk_reports), strict=True)
        ],
        "stypes": {column: decision.to_dict() for column, decision in stypes.items()},
        "converted_times": {
            column: {"how": parse.how, "parse_rate": round(parse.parse_rate, 6)}
            for column, parse in conversions.items()
        },
        "parents": {name: parent.content_hash for name, parent in parents.items()},
    }


def _ordered_fks(spec: GraphSpec, table: str, reports: list) -> list:
    by_name = {fk.name: fk for fk in spec.foreign_keys(table)}
    return [by_name[report.name] for report in reports]
