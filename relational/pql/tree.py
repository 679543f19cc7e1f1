"""Walking and editing parsed conditions: the nodes a condition reads, its top-level AND items, and copies
with one node replaced or some removed (trees are immutable; untouched parts are shared)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from relational.pql.ast import Aggregation, BoolOp, Column, Comparison, Condition, Membership, Not, NullCheck

__all__ = ["aggregations_in", "columns_in", "conjuncts", "replace_node", "walk", "without"]


def walk(node: object) -> Iterator:
    """``node`` and every node below it, not entering aggregations (their WHERE reads their own table)."""
    yield node
    if isinstance(node, BoolOp):
        for item in node.items:
            yield from walk(item)
    elif isinstance(node, Not):
        yield from walk(node.item)
    elif isinstance(node, Comparison):
        yield from walk(node.left)
    elif isinstance(node, Membership | NullCheck):
        yield from walk(node.value)


def columns_in(node: object) -> list[Column]:
    """The plain columns a condition reads outside aggregations."""
    return [item for item in walk(node) if isinstance(item, Column)]


def aggregations_in(node: object) -> list[Aggregation]:
    """The aggregations a condition reads (not those nested in another's WHERE: there are none)."""
    return [item for item in walk(node) if isinstance(item, Aggregation)]


def conjuncts(node: Condition | None) -> list[Condition]:
    """The items ANDed at the top of a condition (one item when it is no AND)."""
    if node is None:
        return []
    if isinstance(node, BoolOp) and node.operator == "AND":
        return [item for child in node.items for item in conjuncts(child)]
    return [node]


def without(node: Condition, removed: list) -> Condition | None:
    """``node`` with the sub-conditions in ``removed`` (by identity) taken out of its AND/OR; None if empty."""
    if any(node is item for item in removed):
        return None
    if isinstance(node, BoolOp):
        kept = [item for item in (without(child, removed) for child in node.items) if item is not None]
        if not kept:
            return None
        return kept[0] if len(kept) == 1 else dataclasses.replace(node, items=tuple(kept))
    if isinstance(node, Not):
        item = without(node.item, removed)
        return None if item is None else dataclasses.replace(node, item=item)
    return node


def replace_node(tree: object, old: object, new: object) -> object:
    """``tree`` with the node ``old`` (by identity) replaced by ``new``; untouched parts are shared."""
    if tree is old:
        return new
    if isinstance(tree, tuple):
        items = tuple(replace_node(item, old, new) for item in tree)
        return tree if all(a is b for a, b in zip(items, tree, strict=True)) else items
    if not dataclasses.is_dataclass(tree) or isinstance(tree, type):
        return tree
    changes = {}
    for field in dataclasses.fields(tree):
        value = getattr(tree, field.name)
        replaced = replace_node(value, old, new)
        if replaced is not value:
            changes[field.name] = replaced
    return dataclasses.replace(tree, **changes) if changes else tree
