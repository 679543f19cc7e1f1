"""Loading a graph spec: YAML with line numbers, schema validation, then cross-table consistency rules."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from relational.errors import SpecError, suggest_name
from relational.spec import (
    DateAndTimeOfDay,
    ForeignKeyTarget,
    GraphSpec,
    TableSpec,
    TimeFrom,
    format_from_extension,
)
from relational.yaml_positions import PositionedYaml, load_positioned_yaml

__all__ = ["load_spec"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_spec(path: str | Path) -> GraphSpec:
    """Read and validate a graph spec file; raise `SpecError` naming the file, line and fix."""
    path = Path(path).resolve()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"graph spec {path} does not exist: pass the path of your graph.yaml") from None
    try:
        positioned = load_positioned_yaml(text, path)
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    if not isinstance(positioned.data, dict):
        raise SpecError(f"{path}: a graph spec is a mapping with a top-level `tables:` key")
    try:
        spec = GraphSpec.model_validate(positioned.data)
    except ValidationError as exc:
        raise SpecError(_format_validation_error(exc, path, positioned)) from None
    spec._path = path
    _check_consistency(spec, path, positioned)
    return spec


def _format_validation_error(exc: ValidationError, path: Path, positioned: PositionedYaml) -> str:
    problems = []
    for error in exc.errors():
        location = tuple(part for part in error["loc"] if not _is_union_branch(part))
        line = positioned.line_of(location)
        where = f"line {line}" if line else "top level"
        dotted = ".".join(str(part) for part in location) or "(root)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            parent_fields = _fields_at(location[:-1])
            message = f"unknown key {location[-1]!r}{suggest_name(str(location[-1]), parent_fields)}"
        elif error["type"] == "missing":
            message = f"required key {location[-1]!r} is missing"
        problems.append(f"  {path}, {where}: {dotted}: {message}")
    return "graph spec is invalid:\n" + "\n".join(dict.fromkeys(problems))


def _is_union_branch(part: str | int) -> bool:
    """Pydantic adds the tried union member (``str``, ``ForeignKeyTarget``) to locations; drop it."""
    return isinstance(part, str) and (
        part in {"str", "int", "list[str]", "bool"} or part[0].isupper() or part.startswith("literal[")
    )


def _fields_at(location: tuple[str | int, ...]) -> list[str]:
    if not location:
        return list(GraphSpec.model_fields)
    if location[0] == "tables" and len(location) == 2:
        return list(TableSpec.model_fields)
    if location[0] == "tables" and len(location) == 3:
        model = {"time_from": TimeFrom, "time_column": DateAndTimeOfDay}.get(str(location[2]))
        return list(model.model_fields) if model else []
    if location[0] == "tables" and len(location) == 4 and location[2] == "foreign_keys":
        return list(ForeignKeyTarget.model_fields)
    return []


def _check_consistency(spec: GraphSpec, path: Path, positioned: PositionedYaml) -> None:
    problems: list[str] = []

    def problem(location: tuple[str | int, ...], message: str) -> None:
        line = positioned.line_of(("tables", *location))
        problems.append(f"  {path}, line {line}: tables.{'.'.join(map(str, location))}: {message}")

    for table, table_spec in spec.tables.items():
        if not _NAME.match(table):
            problem((table,), "table names must be letters, digits and underscores, starting with a letter")
        _check_table_shape(table, table_spec, problem)
        _check_foreign_keys(spec, table, problem)
        _check_time_from(spec, table, problem)
        keys = set(table_spec.primary_key_columns)
        keys.update(column for fk in spec.foreign_keys(table) for column in fk.columns)
        for column, stype in table_spec.stypes.items():
            if column in keys and stype != "id":
                problem((table, "stypes", column), f"{column!r} is a key column: keys are never features")
    for table, table_spec in spec.tables.items():
        if table_spec.implied and not spec.referencing(table):
            problem((table, "implied"), "no foreign key points at this implied table, so it would be empty")
    cycle = _find_cycle(spec)
    if cycle:
        problem(
            (cycle[0], "foreign_keys"),
            "foreign keys form a cycle "
            + " -> ".join(cycle)
            + ": ingest reads parents before children; drop one of these keys",
        )
    if problems:
        raise SpecError("graph spec is invalid:\n" + "\n".join(problems))


def _check_table_shape(table: str, spec: TableSpec, problem) -> None:
    if spec.implied:
        for key in ("source", "time_column", "time_from", "end_time_column"):
            if getattr(spec, key) is not None:
                problem((table, key), f"an implied table has no source, so `{key}` cannot be set")
        if spec.stypes or spec.drop_columns:
            problem((table, "implied"), "an implied table has only key columns: remove stypes/drop_columns")
        if not spec.primary_key_columns:
            problem((table, "implied"), "an implied table needs `primary_key`: the name of its key column(s)")
        if spec.foreign_keys:
            problem((table, "foreign_keys"), "an implied table has only its key: it cannot have foreign keys")
        return
    if not spec.sources:
        problem((table,), "required key 'source' is missing (or set `implied: true` for a key-only table)")
        return
    if spec.format is None:
        try:
            formats = {format_from_extension(source) for source in spec.sources}
        except ValueError as exc:
            problem((table, "source"), str(exc))
        else:
            if len(formats) > 1:
                problem((table, "source"), "sources of one table must share a format")
    if spec.time_column is not None and spec.time_from is not None:
        problem((table, "time_from"), "set either `time_column` or `time_from`, not both")
    if spec.end_time_column is not None and not spec.has_time:
        problem(
            (table, "end_time_column"), "an end time needs an event time: add `time_column` or `time_from`"
        )
    if len(set(spec.primary_key_columns)) != len(spec.primary_key_columns):
        problem((table, "primary_key"), "a column appears twice in the primary key")


def _check_foreign_keys(spec: GraphSpec, table: str, problem) -> None:
    for name, target in spec.tables[table].foreign_keys.items():
        parent_name = target.table if isinstance(target, ForeignKeyTarget) else target.split(".", 1)[0]
        location = (table, "foreign_keys", name)
        if parent_name not in spec.tables:
            problem(
                location, f"points at unknown table {parent_name!r}{suggest_name(parent_name, spec.tables)}"
            )
            continue
        parent = spec.tables[parent_name]
        parent_key = parent.primary_key_columns
        if not parent_key:
            problem(location, f"table {parent_name!r} has no primary_key, so nothing can point at it")
            continue
        if isinstance(target, str) and "." in target:
            column = target.split(".", 1)[1]
            if [column] != parent_key:
                problem(
                    location,
                    f"points at {target!r}, but a foreign key must reference the primary key of "
                    f"{parent_name!r}, which is {parent_key}",
                )
        columns = target.columns if isinstance(target, ForeignKeyTarget) else [name]
        if len(columns) != len(parent_key):
            problem(
                location,
                f"has {len(columns)} column(s) {columns} but the primary key of {parent_name!r} has "
                f"{len(parent_key)} {parent_key}: list one child column per key column",
            )


def _check_time_from(spec: GraphSpec, table: str, problem) -> None:
    time_from = spec.tables[table].time_from
    if time_from is None:
        return
    names = list(spec.tables[table].foreign_keys)
    if time_from.foreign_key not in names:
        problem(
            (table, "time_from", "foreign_key"),
            f"{time_from.foreign_key!r} is not a foreign key of {table!r}{suggest_name(time_from.foreign_key, names)}",
        )
        return
    parent = spec.foreign_key(table, time_from.foreign_key).table
    if parent in spec.tables and not spec.tables[parent].has_time:
        problem(
            (table, "time_from"),
            f"table {parent!r} has no time to inherit: give it a `time_column` or choose another key",
        )


def _find_cycle(spec: GraphSpec) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(table: str) -> list[str] | None:
        state[table] = 1
        stack.append(table)
        for parent in spec.parents(table) if table in spec.tables else []:
            if parent not in spec.tables:
                continue
            if state.get(parent) == 1:
                return [*stack[stack.index(parent) :], parent]
            if parent not in state:
                found = visit(parent)
                if found:
                    return found
        stack.pop()
        state[table] = 2
        return None

    for table in spec.tables:
        if table not in state:
            found = visit(table)
            if found:
                return found
    return None
