"""YAML loading that remembers the line of every key, so spec errors can point at the line to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["PositionedYaml", "load_positioned_yaml"]

Location = tuple[str | int, ...]


class PositionedYaml:
    """Plain Python data parsed from YAML plus a map from each key path to its 1-based line."""

    def __init__(self, data: Any, lines: dict[Location, int]) -> None:
        self.data = data
        self.lines = lines

    def line_of(self, location: Location) -> int | None:
        """Line of the deepest known prefix of ``location`` (pydantic error locations go deeper than keys)."""
        for end in range(len(location), -1, -1):
            line = self.lines.get(tuple(location[:end]))
            if line is not None:
                return line
        return None


def load_positioned_yaml(text: str, source: str | Path = "<string>") -> PositionedYaml:
    """Parse YAML with the safe loader's types, recording the line where each mapping key starts."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML: {exc}") from exc
    lines: dict[Location, int] = {}
    if root is None:
        return PositionedYaml(None, lines)
    constructor = yaml.SafeLoader(text)

    def build(node: yaml.Node, location: Location) -> Any:
        lines.setdefault(location, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
                if key in result:
                    raise ValueError(
                        f"{source}, line {key_node.start_mark.line + 1}: key {key!r} appears twice; "
                        "keep one of them."
                    )
                lines[(*location, key)] = key_node.start_mark.line + 1
                result[key] = build(value_node, (*location, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [build(item, (*location, index)) for index, item in enumerate(node.value)]
        return constructor.construct_object(node, deep=True)

    try:
        return PositionedYaml(build(root, ()), lines)
    finally:
        constructor.dispose()
