"""Where a trainer keeps its checkpoints: any data plane (a local folder or S3).

A checkpoint is one blob the data plane writes atomically (`stores.atomic` locally, a single PUT on S3), so a trial
killed mid-write leaves the previous checkpoint intact and a restarted trial resumes from it.
"""

from __future__ import annotations

import io
from typing import Any, Protocol

import torch

__all__ = ["CheckpointStore", "DataPlaneCheckpoints", "from_bytes", "to_bytes"]


class CheckpointStore(Protocol):
    def save(self, name: str, data: bytes) -> None: ...

    def load(self, name: str) -> bytes | None: ...


class DataPlaneCheckpoints:
    """Checkpoints under ``prefix`` of a data plane (anything with ``put_bytes``/``get_bytes``)."""

    def __init__(self, plane: Any, *prefix: str) -> None:
        self.plane, self.prefix = plane, prefix

    def save(self, name: str, data: bytes) -> None:
        self.plane.put_bytes(data, *self.prefix, name)

    def load(self, name: str) -> bytes | None:
        try:
            return self.plane.get_bytes(*self.prefix, name)
        except FileNotFoundError:
            return None

    def __str__(self) -> str:
        uri = getattr(self.plane, "uri", None)
        return uri(*self.prefix) if callable(uri) else "/".join(self.prefix)


def to_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes) -> dict:
    # Our own checkpoints hold RNG states (numpy arrays, python tuples): not loadable with weights_only.
    return torch.load(io.BytesIO(data), weights_only=False, map_location="cpu")
