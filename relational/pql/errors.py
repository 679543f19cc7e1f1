"""Query errors that point at the position in the query, with a caret under it."""

from __future__ import annotations

from relational.errors import KumoError, LeakageError

__all__ = ["LeakageError", "QueryError"]


class QueryError(KumoError):
    """A predictive query is malformed or does not fit the graph; the message shows where."""

    def __init__(self, message: str, query: str, position: int) -> None:
        self.message = message
        self.query = query
        self.position = max(0, min(position, len(query)))
        super().__init__(f"{message}\n  {query}\n  {' ' * self.position}^ (position {self.position + 1})")
