"""queries.yaml: named predictive queries of a graph, each with an optional anchor plan."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from relational.errors import KumoError, SpecError
from relational.pql.anchors import AnchorPlan
from relational.yaml_positions import load_positioned_yaml

__all__ = ["NamedQuery", "load_queries", "queries_beside"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class NamedQuery:
    name: str
    text: str
    anchors: AnchorPlan


def queries_beside(spec_path: Path | None) -> Path | None:
    """The queries.yaml next to a graph.yaml, if there is one."""
    if spec_path is None:
        return None
    candidate = spec_path.parent / "queries.yaml"
    return candidate if candidate.is_file() else None


def load_queries(path: str | Path) -> dict[str, NamedQuery]:
    """Read ``name: "PREDICT ..."`` or ``name: {query: "PREDICT ...", anchors: {...}}`` entries."""
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
        queries[name] = NamedQuery(name, str(entry["query"]), plan)
    return queries
