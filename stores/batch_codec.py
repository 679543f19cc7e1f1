"""The byte form of a minibatch in the shared batch cache: one JSON header naming every tensor (where it
sits in the batch, its dtype, shape and offset) and one buffer holding them all, each at a 64-byte boundary.

`torch.save`/`torch.load` wrote and read one zip record per tensor: 4-13 ms to write and 6 ms to read an F1
batch of about a hundred small tensors, against 2.4 ms to sample and gather it afresh, so a cache hit cost
more than a miss. Here a batch is one copy each way, and no pickle is ever read back.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import torch

__all__ = ["BATCH_FORMAT", "BatchFormatError", "decode_content", "encode_content"]

MAGIC = b"KUMOMB01"
BATCH_FORMAT = MAGIC.decode()  # what batch cache keys name (`MinibatchFetcher.key`)
_LENGTH = struct.Struct("<Q")
_HEADER_AT = len(MAGIC) + _LENGTH.size  # the magic, the header length, then the header
_ALIGN = 64


class BatchFormatError(ValueError):
    """A payload that is not a batch of this format (the cache rejects and rebuilds such entries)."""


def encode_content(content: dict[str, Any]) -> bytes:
    """A batch's content (`MinibatchFetcher.content`: node type, and tensors by node type, edge type and
    seed) as bytes."""
    arrays, entries, offset = [], [], 0
    for section, group, name, tensor in _tensors(content):
        array = np.ascontiguousarray(tensor.detach().cpu().numpy())
        entries.append([section, group, name, array.dtype.str, list(array.shape), offset])
        arrays.append((offset, array))
        offset += _aligned(array.nbytes)
    header = json.dumps({"node_type": content["node_type"], "tensors": entries}).encode()
    start = _aligned(_HEADER_AT + len(header))
    payload = bytearray(start + offset)
    payload[:_HEADER_AT] = MAGIC + _LENGTH.pack(len(header))
    payload[_HEADER_AT : _HEADER_AT + len(header)] = header
    for at, array in arrays:
        if array.nbytes:
            np.frombuffer(payload, np.uint8, array.nbytes, start + at)[:] = array.reshape(-1).view(np.uint8)
    return bytes(payload)


def decode_content(payload: bytes) -> dict[str, Any]:
    """The content `encode_content` wrote, its tensors sharing one writable copy of ``payload``."""
    if payload[: len(MAGIC)] != MAGIC:
        raise BatchFormatError(f"not a cached minibatch: it starts {bytes(payload[:8])!r}, not {MAGIC!r}")
    (length,) = _LENGTH.unpack_from(payload, len(MAGIC))
    header = json.loads(bytes(payload[_HEADER_AT : _HEADER_AT + length]))
    start = _aligned(_HEADER_AT + length)
    data = bytearray(payload)  # writable: models may write into a batch's tensors
    content: dict[str, Any] = {"node_type": header["node_type"], "nodes": {}, "edges": {}, "seed": {}}
    for section, group, name, dtype, shape, offset in header["tensors"]:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        array = np.frombuffer(data, dtype, count, start + offset).reshape(shape)
        target = content[section] if group is None else content[section].setdefault(group, {})
        target[name] = torch.from_numpy(array)
    return content


def _tensors(content: dict[str, Any]):
    """(section, group, name, tensor) for every tensor of a batch, group None for the seed's."""
    for section in ("nodes", "edges"):
        for group, entry in content[section].items():
            for name, tensor in entry.items():
                yield section, group, name, tensor
    for name, tensor in content["seed"].items():
        yield "seed", None, name, tensor


def _aligned(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN
