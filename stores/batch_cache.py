"""A minibatch cache on local disk, shared by every process on the node (the seed's "shared minibatch fetcher").

Entries are files named by their key. Each holds a header (magic, format, key, payload length, checksum)
and the payload; it is written under a temporary name and renamed into place, so a reader sees a whole
entry or none, even if the writer is killed mid-write. A corrupted, truncated or foreign entry fails its
checks and is rebuilt, never used. One process builds a missing entry while the others wait for it (a
lock file per key, taken over when its owner is dead or stale). The directory is bounded: after each
write the least recently used entries are evicted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stores.atomic import is_temporary, write_atomically

__all__ = ["BatchCache", "CacheStats"]

_MAGIC = b"KUMOBATC"
_FORMAT = 1
_HEADER = struct.Struct("<8sI32sQ32s")  # magic, format, key digest, payload length, payload checksum


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    waits: int = 0
    rejected: int = 0  # corrupt or foreign entries found and rebuilt
    bytes_written: int = 0
    bytes_read: int = 0
    evicted: int = 0
    build_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


class BatchCache:
    """Get-or-build of byte payloads by key in a bounded directory; safe across processes."""

    def __init__(
        self, directory: str | Path, max_bytes: int = 8 * 2**30, lock_timeout: float = 120.0
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.lock_timeout = lock_timeout
        self.stats = CacheStats()

    def _path(self, key: str) -> Path:
        return self.directory / f"{hashlib.blake2b(key.encode(), digest_size=20).hexdigest()}.batch"

    def read(self, key: str) -> bytes | None:
        """The payload stored for ``key``, or None when absent, corrupt or written for another key."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if len(data) >= _HEADER.size:
            magic, version, key_digest, length, checksum = _HEADER.unpack_from(data)
            payload = data[_HEADER.size :]
            if (
                magic == _MAGIC
                and version == _FORMAT
                and key_digest == _digest(key.encode())
                and length == len(payload)
                and checksum == _digest(payload)
            ):
                with contextlib.suppress(FileNotFoundError):
                    os.utime(path)  # recently used: evicted last
                self.stats.bytes_read += len(data)
                return payload
        self.stats.rejected += 1
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None

    def write(self, key: str, payload: bytes) -> None:
        """Store ``payload`` atomically (temporary file, then rename), then keep the directory bounded."""
        header = _HEADER.pack(_MAGIC, _FORMAT, _digest(key.encode()), len(payload), _digest(payload))
        write_atomically(self._path(key), header + payload)
        self.stats.bytes_written += len(header) + len(payload)
        self._evict()

    def get_or_build(self, key: str, build: Callable[[], bytes]) -> bytes:
        """The cached payload, or build it (once across processes: others wait for the builder)."""
        deadline = time.monotonic() + self.lock_timeout
        while True:
            payload = self.read(key)
            if payload is not None:
                self.stats.hits += 1
                return payload
            lock = self._path(key).with_suffix(".lock")
            if self._take_lock(lock):
                try:
                    payload = self.read(key)  # built while we were taking the lock
                    if payload is not None:
                        self.stats.hits += 1
                        return payload
                    started = time.perf_counter()
                    payload = build()
                    self.stats.build_seconds += time.perf_counter() - started
                    self.stats.misses += 1
                    self.write(key, payload)
                    return payload
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        lock.unlink()
            self.stats.waits += 1
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"waited {self.lock_timeout}s for another process to build cache entry {key!r}"
                )
            time.sleep(0.002)

    def _take_lock(self, lock: Path) -> bool:
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if self._lock_is_stale(lock):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
            return False
        with os.fdopen(handle, "w") as out:
            out.write(str(os.getpid()))
        return True

    def _lock_is_stale(self, lock: Path) -> bool:
        """A lock whose owner is gone (killed mid-build) or that outlived the timeout."""
        try:
            owner = int(lock.read_text() or "0")
            age = time.time() - lock.stat().st_mtime
        except (FileNotFoundError, ValueError):
            return False
        if age > self.lock_timeout:
            return True
        if owner <= 0:
            return age > 1.0
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _evict(self) -> None:
        entries = []
        total = 0
        for entry in os.scandir(self.directory):
            if entry.name.endswith(".batch"):
                with contextlib.suppress(FileNotFoundError):
                    stat = entry.stat()
                    entries.append((stat.st_mtime, stat.st_size, entry.path))
                    total += stat.st_size
            elif is_temporary(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - entry.stat().st_mtime > self.lock_timeout:
                        os.unlink(entry.path)  # left by a writer that was killed
        if total <= self.max_bytes:
            return
        for _, size, path in sorted(entries):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                total -= size
                self.stats.evicted += 1
            if total <= self.max_bytes:
                return
