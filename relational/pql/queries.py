"""queries.yaml: named predictive queries of a graph, each with an optional anchor plan.

Every query is parsed when the file is read, so a syntax error names the file, the line and the query
before the caret under the query text; `bind_named_query` does the same for errors against a schema.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from relational.errors import KumoError, SpecError, hidden_note
from relational.pql.anchors import AnchorPlan
from relational.pql.binder import bind_query
from relational.pql.bound import BoundQuery
from relational.pql.errors import QueryError
from relational.pql.parser import parse_query
from relational.schema import GraphSchema
from relational.yaml_positions import load_positioned_yaml

__all__ = ["NamedQuery", "bind_named_query", "load_queries", "queries_beside", "query_errors_in_place"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HINT = re.compile(r"; (did you mean .*\?|known: .*)$")


@dataclass(frozen=True)
class NamedQuery:
    """One entry of queries.yaml; ``path`` and ``line`` say where it is written (None when built in code)."""

    name: str
    text: str
    anchors: AnchorPlan
    path: Path | None = None
    line: int | None = None

    @property
    def place(self) -> str:
        """Where the query is written, as error messages begin: ``<queries.yaml>, line 7: query 'churn'``."""
        where = f"{self.path}, line {self.line}: " if self.path is not None and self.line else ""
        return f"{where}query {self.name!r}"


def queries_beside(spec_path: Path | None) -> Path | None:
    """The queries.yaml next to a graph.yaml, if there is one."""
    if spec_path is None:
        return None
    candidate = spec_path.parent / "queries.yaml"
    return candidate if candidate.is_file() else None


def load_queries(path: str | Path) -> dict[str, NamedQuery]:
    """Read ``name: "PREDICT ..."`` or ``name: {query: "PREDICT ...", anchors: {...}}`` entries.

    Raises:
        SpecError: the file or an entry is malformed. QueryError: a query does not parse (names its place).
    """
    path = Path(path)
    try:
        positioned = load_positioned_yaml(path.read_text(), path)
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read queries file {path}: {exc}") from None
    if not isinstance(positioned.data, dict):
        raise SpecError(f"{path}: expected a mapping of query names to queries")
    queries = {}
    for name, entry in positioned.data.items():
        line = positioned.line_of((name,))
        where = f"{path}, line {line}: query {name!r}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise SpecError(f"{where}: names are letters, digits and underscores, starting with a letter")
        if isinstance(entry, str):
            entry = {"query": entry}
        if not isinstance(entry, dict) or "query" not in entry:
            raise SpecError(
                f"{where}: give the PQL text, or a mapping with `query:` (and optional `anchors:`)"
            )
        unknown = set(entry) - {"query", "anchors", "description"}
        if unknown:
            raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}; known: anchors, description, query")
        try:
            plan = AnchorPlan.from_config(entry.get("anchors"))
        except KumoError as exc:
            raise SpecError(f"{where}: {exc}") from None
        query = NamedQuery(name, str(entry["query"]), plan, path, positioned.line_of((name, "query")))
        with query_errors_in_place(query):
            parse_query(query.text)
        queries[name] = query
    return queries


@contextmanager
def query_errors_in_place(query: NamedQuery, hidden_columns: Collection[str] = ()) -> Iterator[None]:
    """Re-raise a `QueryError` from the block with the query's file, line and name before the caret.

    Args:
        hidden_columns: column names read from sources outside the spec's folder; a message that would
            quote one loses its name hints (see `relational.sources.source_is_trusted`).
    """
    try:
        yield
    except QueryError as exc:
        message = exc.message
        secret = [name for name in hidden_columns if not _mentions(exc.query, name)]
        if any(_mentions(message, name) for name in secret):
            message = _HINT.sub(f"; {hidden_note('the known names')}", message)
            if any(_mentions(message, name) for name in secret):
                message = f"the query does not fit the tables ({hidden_note('the details')})"
        raise QueryError(f"{query.place}: {message}", exc.query, exc.position) from None


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) is not None


def bind_named_query(
    query: NamedQuery, schema: GraphSchema, hidden_columns: Collection[str] = ()
) -> BoundQuery:
    """Parse and bind a named query against a graph's schema; errors name the queries file and query."""
    with query_errors_in_place(query, hidden_columns):
        return bind_query(parse_query(query.text), schema)
