"""The PQL lexer: keywords case-insensitive, both quote styles, compact spacing, date literals."""

from __future__ import annotations

import re
from dataclasses import dataclass

from relational.pql.errors import QueryError

__all__ = ["AGGREGATIONS", "AGGREGATION_ORDER", "KEYWORDS", "Token", "tokenize"]

AGGREGATION_ORDER = ("SUM", "AVG", "MIN", "MAX", "COUNT", "COUNT_DISTINCT", "FIRST", "LAST", "LIST_DISTINCT")
AGGREGATIONS = frozenset(AGGREGATION_ORDER)
KEYWORDS = frozenset(
    {
        "PREDICT", "FOR", "EACH", "WHERE", "ASSUMING", "AND", "OR", "NOT", "IN", "IS", "NULL", "TRUE", "FALSE",
        "CLASSIFY", "RANK", "TOP", "FORECAST", "TIMEFRAMES", "TIMEFRAME", "INF", "INFINITY", "VIA",
    }
)  # fmt: skip

_PATTERNS = [
    ("SPACE", r"\s+"),
    (
        "DATETIME",
        r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?![\w.])",
    ),
    ("NUMBER", r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?"),
    ("STRING", r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\""),
    ("IDENT", r"[A-Za-z_][A-Za-z0-9_]*|`[^`]+`"),
    ("OP", r"<=|>=|!=|<>|==|=|<|>"),
    ("PUNCT", r"[(),.*+-]"),
]
_LEXER = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in _PATTERNS))


@dataclass(frozen=True)
class Token:
    """One lexeme: its kind, normalised value and start offset in the query."""

    kind: str  # KEYWORD, AGG, IDENT, NUMBER, STRING, DATETIME, OP, PUNCT, END
    value: str
    position: int

    def is_(self, kind: str, value: str | None = None) -> bool:
        return self.kind == kind and (value is None or self.value == value)


def tokenize(query: str) -> list[Token]:
    """Split a query into tokens; an unknown character is an error pointing at it."""
    tokens: list[Token] = []
    position = 0
    while position < len(query):
        match = _LEXER.match(query, position)
        if match is None:
            character = query[position]
            if character in "'\"":
                raise QueryError(f"unterminated string starting with {character}", query, position)
            raise QueryError(f"unexpected character {character!r}", query, position)
        kind, text = match.lastgroup, match.group()
        if kind != "SPACE":
            tokens.append(_classify(kind, text, position))
        position = match.end()
    tokens.append(Token("END", "", len(query)))
    return tokens


def _classify(kind: str, text: str, position: int) -> Token:
    if kind == "IDENT":
        if text.startswith("`"):
            return Token("IDENT", text[1:-1], position)
        upper = text.upper()
        if upper in AGGREGATIONS:
            return Token("AGG", upper, position)
        if upper in KEYWORDS:
            return Token("KEYWORD", upper, position)
        return Token("IDENT", text, position)
    if kind == "STRING":
        quote = text[0]
        body = text[1:-1].replace(quote * 2, quote)
        return Token("STRING", re.sub(r"\\(.)", r"\1", body), position)
    if kind == "OP":
        return Token("OP", {"<>": "!=", "==": "="}.get(text, text), position)
    return Token(kind, text, position)
