"""The exceptions users see. Every message states the rule, what was found, where, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["IngestError", "KumoError", "SourceError", "SpecError", "hidden_note", "suggest_name"]


class KumoError(Exception):
    """Base of every error this platform raises on bad input."""


class SpecError(KumoError):
    """The graph spec (graph.yaml) is malformed or inconsistent."""


class SourceError(KumoError):
    """A table's source cannot be found or read."""


class IngestError(KumoError):
    """A table's data breaks a rule of the spec (keys, times, types)."""


def suggest_name(name: str, choices: Iterable[str]) -> str:
    """A hint for an unknown name: the closest valid one, else the list of valid ones."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(sorted(choices))}" if choices else ""


def hidden_note(what: str) -> str:
    """What a message says instead of names or values read from a source outside the spec's folder.

    A spec may point at any file on the machine; its contents must not leak through error messages.
    """
    return (
        f"{what} not shown: the source lies outside the folder of graph.yaml and $KUMO_SHARED_DATA, "
        "so messages never quote it; open the file to look"
    )


class LeakageError(KumoError):
    """A training table breaks a no-future-leakage rule; nothing is written."""
