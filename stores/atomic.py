"""The one atomic file writer: every artifact on local disk appears whole or not at all.

A file is written under a temporary name in its own folder, then renamed onto its target (a rename within a
folder is atomic on POSIX file systems), so a reader, or a process killed mid-write, never leaves half a
file. The data plane, store versions, the batch cache, checkpoints and models all write through it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "is_temporary", "write_atomically"]


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        temporary.chmod(0o644)  # mkstemp creates 0600; artifacts are meant to be shared
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(target: str | Path, data: bytes | str, durable: bool = False) -> Path:
    """Write ``data`` to ``target`` through `atomic_path`; ``durable`` also flushes it to disk first (fsync)."""
    with atomic_path(target) as temporary, open(temporary, "wb") as stream:
        stream.write(data.encode() if isinstance(data, str) else data)
        if durable:
            stream.flush()
            os.fsync(stream.fileno())
    return Path(target)


def is_temporary(name: str) -> bool:
    """Whether a file name is one of `atomic_path`'s temporaries (left behind only by a killed writer)."""
    return name.startswith(".") and name.endswith(".tmp")
