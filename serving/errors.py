"""The serving error, apart from the models: the command line catches it without importing torch."""

from __future__ import annotations

__all__ = ["ServingError"]


class ServingError(ValueError):
    """A prediction cannot be made as asked: no stored model, bad entities or anchors. Says what to do."""
