"""A recursive-descent parser for PQL; every error names what was expected at a caret position.

PREDICT <target> [FORECAST N TIMEFRAMES] [CLASSIFY | RANK TOP K]
    (FOR EACH t.pk | FOR t.pk = x | FOR t.pk IN (x, y)) [WHERE <condition>] [ASSUMING <condition>]
aggregation: AGG(t.column | t.* [VIA fk]... [WHERE <condition>], start, end[, unit]); a column may take VIA too.
Parentheses and NOT nest at most `MAX_NESTING` deep, so no query can exhaust the stack of any later stage.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable

from relational.pql.ast import (
    Aggregation,
    BoolOp,
    Column,
    Comparison,
    Condition,
    Literal,
    Membership,
    Not,
    NullCheck,
    Query,
    Value,
)
from relational.pql.errors import QueryError
from relational.pql.tokens import AGGREGATION_ORDER, Token, tokenize

__all__ = ["MAX_NESTING", "TIME_UNITS", "parse_query"]

# Parentheses and NOTs nest at most this deep: deeper queries are refused before they exhaust the stack.
MAX_NESTING = 100

TIME_UNITS = {
    **dict.fromkeys(("second", "seconds"), "seconds"),
    **dict.fromkeys(("minute", "minutes"), "minutes"),
    **dict.fromkeys(("hour", "hours"), "hours"),
    **dict.fromkeys(("day", "days"), "days"),
    **dict.fromkeys(("week", "weeks"), "weeks"),
    **dict.fromkeys(("month", "months"), "months"),
}


def parse_query(text: str) -> Query:
    """Parse a predictive query into its syntax tree (names are matched to a graph later, by the binder)."""
    if not text.strip():
        raise QueryError("the query is empty: start with PREDICT", text, 0)
    return _Parser(text).query()


def _describe(token: Token) -> str:
    return "the end of the query" if token.kind == "END" else repr(token.value)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    # -- token helpers -------------------------------------------------------------------------
    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.current
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def accept(self, kind: str, value: str | None = None) -> Token | None:
        if self.current.is_(kind, value):
            return self.advance()
        return None

    def expect(self, kind: str, value: str | None, what: str) -> Token:
        token = self.accept(kind, value)
        if token is None:
            raise self.error(f"expected {what} but found {_describe(self.current)}")
        return token

    def error(self, message: str, token: Token | None = None) -> QueryError:
        return QueryError(message, self.text, (token or self.current).position)

    def nest(self, token: Token) -> None:
        """Enter one level of parentheses or NOT; refuse a query nested deeper than `MAX_NESTING`."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(
                f"the query nests parentheses and NOT more than {MAX_NESTING} levels deep (the nesting limit); "
                "flatten it: a chain of AND or OR needs no parentheses, and NOT NOT x is x",
                token,
            )

    # -- grammar ---------------------------------------------------------------------------------
    def query(self) -> Query:
        self.expect("KEYWORD", "PREDICT", "PREDICT at the start of the query")
        if self.current.is_("KEYWORD", "FOR"):
            raise self.error("expected a target after PREDICT, e.g. COUNT(orders.*, 0, 30, days) > 0")
        target = self.condition()
        forecast = classify = None
        rank_top_k = None
        if self.accept("KEYWORD", "FORECAST"):
            forecast = self.positive_integer("the number of timeframes after FORECAST")
            if not (self.accept("KEYWORD", "TIMEFRAMES") or self.accept("KEYWORD", "TIMEFRAME")):
                raise self.error(f"expected TIMEFRAMES after FORECAST {forecast}")
        if self.accept("KEYWORD", "CLASSIFY"):
            classify = True
        elif self.accept("KEYWORD", "RANK"):
            self.expect("KEYWORD", "TOP", "TOP after RANK (RANK TOP 10)")
            rank_top_k = self.positive_integer("K after RANK TOP")
        elif self.current.is_("KEYWORD", "TOP"):
            raise self.error("TOP K needs RANK before it: RANK TOP 10")
        entity, entity_ids = self.entity_clause()
        where = assuming = None
        if self.accept("KEYWORD", "WHERE"):
            where = self.condition()
        if self.accept("KEYWORD", "ASSUMING"):
            assuming = self.condition()
        if not self.current.is_("END"):
            expected = (
                "ASSUMING or the end of the query" if where or assuming else "WHERE, ASSUMING or the end"
            )
            raise self.error(f"expected {expected} but found {_describe(self.current)}")
        return Query(
            text=self.text,
            target=target,
            entity=entity,
            where=where,
            assuming=assuming,
            entity_ids=entity_ids,
            classify=bool(classify),
            rank_top_k=rank_top_k,
            forecast_timeframes=forecast,
        )

    def entity_clause(self) -> tuple[Column, tuple[Literal, ...] | None]:
        self.expect("KEYWORD", "FOR", "FOR EACH <table>.<primary key> after the target")
        if self.accept("KEYWORD", "EACH"):
            return self.column(allow_star=False), None
        entity = self.column(allow_star=False)
        if self.accept("OP", "="):
            return entity, (self.literal(),)
        if self.accept("KEYWORD", "IN"):
            return entity, self.literal_list()
        raise self.error(f"expected = or IN after FOR {entity} (or write FOR EACH {entity})")

    def positive_integer(self, what: str) -> int:
        token = self.current
        if not token.is_("NUMBER") or not token.value.isdigit() or int(token.value) < 1:
            raise self.error(f"expected {what} (a whole number >= 1)")
        self.advance()
        return int(token.value)

    def condition(self) -> Condition:
        return self.joined("OR", self.conjunction)

    def conjunction(self) -> Condition:
        return self.joined("AND", self.negation)

    def joined(self, keyword: str, operand: Callable[[], Condition]) -> Condition:
        """``operand (keyword operand)*`` as one `BoolOp` (AND binds tighter than OR: it is OR's operand)."""
        start = self.current.position
        items = [operand()]
        while self.accept("KEYWORD", keyword):
            items.append(operand())
        return items[0] if len(items) == 1 else BoolOp(keyword, tuple(items), start)

    def negation(self) -> Condition:
        token = self.accept("KEYWORD", "NOT")
        if token is not None:
            self.nest(token)
            item = self.negation()
            self.depth -= 1
            return Not(item, token.position)
        return self.predicate()

    def predicate(self) -> Condition:
        if self.current.is_("PUNCT", "("):
            self.nest(self.advance())
            inner = self.condition()
            self.expect("PUNCT", ")", "a closing parenthesis")
            self.depth -= 1
            return inner
        value = self.value()
        start = value.position
        if self.current.is_("OP"):
            operator = self.advance().value
            return Comparison(value, operator, self.literal(), start)
        negated = False
        if self.current.is_("KEYWORD", "NOT") and self.peek().is_("KEYWORD", "IN"):
            self.advance()
            negated = True
        if self.accept("KEYWORD", "IN"):
            return Membership(value, self.literal_list(), negated, start)
        if self.accept("KEYWORD", "IS"):
            is_not = bool(self.accept("KEYWORD", "NOT"))
            self.expect("KEYWORD", "NULL", "NULL after IS" + (" NOT" if is_not else ""))
            return NullCheck(value, is_not, start)
        if isinstance(value, Literal):
            raise self.error(
                "a constant on its own is not a condition: compare a column or aggregation with it"
            )
        return value

    def value(self) -> Value:
        token = self.current
        if token.is_("AGG"):
            return self.aggregation()
        if token.is_("IDENT"):
            return self.column(allow_star=False, allow_via=True)
        if token.kind in {"NUMBER", "STRING", "DATETIME"} or token.is_("PUNCT", "-") or token.is_("KEYWORD"):
            if token.is_("KEYWORD") and token.value not in {"NULL", "TRUE", "FALSE"}:
                raise self.error(
                    f"expected a column, an aggregation or a value but found keyword {token.value}"
                )
            return self.literal()
        raise self.error(
            f"expected a column (table.column), an aggregation or a value but found {_describe(token)}"
        )

    def column(self, allow_star: bool, allow_via: bool = False) -> Column:
        table = self.current
        if not table.is_("IDENT"):
            raise self.error(f"expected <table>.<column> but found {_describe(table)}")
        if self.peek().is_("PUNCT", "("):
            raise self.unknown_aggregation(table)
        self.advance()
        if not self.accept("PUNCT", "."):
            raise self.error(f"expected '.' after table {table.value!r}: columns are written table.column")
        if allow_star and self.accept("PUNCT", "*"):
            return Column(table.value, "*", table.position, self.via() if allow_via else ())
        column = self.current
        if column.is_("PUNCT", "*"):
            raise self.error("table.* is only allowed inside an aggregation, e.g. COUNT(orders.*, 0, 30)")
        if not (column.is_("IDENT") or column.is_("KEYWORD") or column.is_("AGG")):
            raise self.error(f"expected a column name after '{table.value}.' but found {_describe(column)}")
        self.advance()
        name = column.value if column.is_("IDENT") else column.value.lower()
        return Column(table.value, name, table.position, self.via() if allow_via else ())

    def via(self) -> tuple[Column, ...]:
        """``VIA table.fk`` or ``VIA fk``, repeated: the foreign keys the route to the entity must use."""
        items = []
        while self.accept("KEYWORD", "VIA"):
            first = self.current
            if not first.is_("IDENT"):
                raise self.error(
                    f"expected a foreign key after VIA (VIA table.column or VIA column) but found {_describe(first)}"
                )
            self.advance()
            if not self.accept("PUNCT", "."):
                items.append(Column("", first.value, first.position))
                continue
            name = self.current
            if not (name.is_("IDENT") or name.is_("KEYWORD") or name.is_("AGG")):
                raise self.error(
                    f"expected a foreign key column after '{first.value}.' but found {_describe(name)}"
                )
            self.advance()
            items.append(
                Column(first.value, name.value if name.is_("IDENT") else name.value.lower(), first.position)
            )
        return tuple(items)

    def unknown_aggregation(self, token: Token) -> QueryError:
        """``NAME(`` where NAME is no aggregation: say so, with the supported list and the nearest name."""
        close = difflib.get_close_matches(token.value.upper(), AGGREGATION_ORDER, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        return self.error(
            f"unknown aggregation {token.value!r}: the supported aggregations are "
            f"{', '.join(AGGREGATION_ORDER)}{hint}",
            token,
        )

    def aggregation(self) -> Aggregation:
        function = self.advance()
        self.expect("PUNCT", "(", f"'(' after {function.value}")
        target = self.column(allow_star=True, allow_via=True)
        where = None
        if self.accept("KEYWORD", "WHERE"):
            where = self.condition()
        if self.current.is_("KEYWORD", "VIA"):
            raise self.error(
                f"VIA comes right after the aggregated column, before WHERE: {function.value}({target} VIA ... WHERE ...)"
            )
        self.expect("PUNCT", ",", f"',' and the window start after {function.value}({target}")
        start_token = self.current
        start = self.bound("the window start (a number or -INF)")
        self.expect("PUNCT", ",", "',' and the window end")
        end_token = self.current
        end = self.bound("the window end (a number)")
        unit = "days"
        if self.accept("PUNCT", ","):
            unit_token = self.current
            name = unit_token.value.lower() if unit_token.kind in {"IDENT", "KEYWORD"} else ""
            if name not in TIME_UNITS:
                raise self.error(
                    f"expected a time unit ({', '.join(sorted(set(TIME_UNITS.values())))}) but found "
                    f"{_describe(unit_token)}"
                )
            self.advance()
            unit = TIME_UNITS[name]
        self.expect("PUNCT", ")", f"')' to close {function.value}(")
        if math.isinf(end):
            raise self.error("the window end must be finite", end_token)
        if end <= start:
            raise self.error(f"the window end ({end:g}) must be after its start ({start:g})", end_token)
        if math.isinf(start) and start > 0:
            raise self.error("only -INF may start a window", start_token)
        return Aggregation(function.value, target, start, end, unit, where, function.position)

    def bound(self, what: str) -> float:
        sign = 1.0
        if self.accept("PUNCT", "-"):
            sign = -1.0
        elif self.accept("PUNCT", "+"):
            sign = 1.0
        token = self.current
        if token.is_("KEYWORD", "INF") or token.is_("KEYWORD", "INFINITY"):
            self.advance()
            return sign * math.inf
        if not token.is_("NUMBER"):
            raise self.error(f"expected {what} but found {_describe(token)}")
        self.advance()
        return sign * float(token.value)

    def literal(self) -> Literal:
        token = self.current
        if token.is_("PUNCT", "-") and self.peek().is_("NUMBER"):
            self.advance()
            number = self.advance()
            return Literal(-_number(number.value), "number", token.position)
        if token.is_("NUMBER"):
            self.advance()
            return Literal(_number(token.value), "number", token.position)
        if token.is_("STRING"):
            self.advance()
            return Literal(token.value, "string", token.position)
        if token.is_("DATETIME"):
            self.advance()
            return Literal(token.value, "datetime", token.position)
        if token.is_("KEYWORD", "NULL"):
            self.advance()
            return Literal(None, "null", token.position)
        if token.is_("KEYWORD", "TRUE") or token.is_("KEYWORD", "FALSE"):
            self.advance()
            return Literal(token.value == "TRUE", "boolean", token.position)
        raise self.error(f"expected a value (number, 'string', date or NULL) but found {_describe(token)}")

    def literal_list(self) -> tuple[Literal, ...]:
        self.expect("PUNCT", "(", "'(' to open the list of values")
        items = [self.literal()]
        while self.accept("PUNCT", ","):
            items.append(self.literal())
        self.expect("PUNCT", ")", "',' or ')' in the list of values")
        return tuple(items)


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
