"""Cheap fingerprints of table sources, so the new-data sensor sees which tables' inputs changed.

A local file's fingerprint is its size, mtime (ns) and SHA-256; the hash is recomputed only when size or
mtime moved since the previous fingerprint (a touch costs one hash and is then no change). An s3:// object's
fingerprint is its ETag and size, listed under the longest glob-free prefix of the source. A table changed
when the set of its files or any file's content (hash or ETag) differs.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from relational.errors import SourceError
from relational.sources import expand_source
from relational.spec import GraphSpec

__all__ = [
    "FileFingerprints",
    "SourceProbe",
    "content_changed",
    "file_sha256",
    "glob_regex",
    "local_fingerprints",
    "s3_fingerprints",
    "table_fingerprints",
]

FileFingerprints = dict[str, dict[str, Any]]
"""File path or s3:// URI -> {"size", "mtime_ns", "sha256"} (local) or {"size", "etag"} (S3)."""

_GLOB_CHARS = "*?["


@dataclass
class SourceProbe:
    """One table's fingerprints and the local files whose hash had to be computed for them."""

    files: FileFingerprints
    hashed: list[str] = field(default_factory=list)


def file_sha256(path: str) -> str:
    """SHA-256 of a file, streamed."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def local_fingerprints(paths: list[str], previous: Mapping[str, Mapping[str, Any]]) -> SourceProbe:
    """Fingerprints of local files, reusing a previous hash where size and mtime are unchanged."""
    probe = SourceProbe({})
    for path in paths:
        stat = os.stat(path)
        old = previous.get(path) or {}
        if old.get("size") == stat.st_size and old.get("mtime_ns") == stat.st_mtime_ns and old.get("sha256"):
            digest = old["sha256"]
        else:
            digest = file_sha256(path)
            probe.hashed.append(path)
        probe.files[path] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    return probe


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A key pattern as a regex: ``**`` crosses '/', ``*`` and ``?`` do not, ``[...]`` is a class."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


def s3_fingerprints(client: Any, uri: str) -> FileFingerprints:
    """ETag and size of every object an s3:// source names: a key, a prefix (``.../``) or a glob."""
    bucket, _, pattern = uri.removeprefix("s3://").partition("/")
    cut = min((pattern.index(c) for c in _GLOB_CHARS if c in pattern), default=None)
    if cut is None:
        prefix = pattern

        def wanted(key: str) -> bool:
            return key == pattern or key.startswith(pattern.rstrip("/") + "/")
    else:
        prefix, regex = pattern[:cut], glob_regex(pattern)

        def wanted(key: str) -> bool:
            return regex.match(key) is not None

    files: FileFingerprints = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if wanted(item["Key"]) and not item["Key"].endswith("/"):
                files[f"s3://{bucket}/{item['Key']}"] = {
                    "size": item["Size"],
                    "etag": item["ETag"].strip('"'),
                }
    return files


def table_fingerprints(
    spec: GraphSpec,
    table: str,
    previous: Mapping[str, Mapping[str, Any]],
    s3_client: Callable[[], Any],
) -> SourceProbe:
    """Fingerprints of every file of a table's sources; a source naming nothing raises `SourceError`.

    Args:
        s3_client: called only when the table has an s3:// source, so local-only graphs need no S3.
    """
    probe = SourceProbe({})
    for source in spec.table(table).sources:
        uri = spec.resolve_source(source)
        if uri.startswith("s3://"):
            files = s3_fingerprints(s3_client(), uri)
            if not files:
                raise SourceError(f"table {table!r}: no object matches {uri}")
            probe.files.update(files)
        elif "://" in uri:
            raise SourceError(f"table {table!r}: cannot watch {uri}: only local paths and s3:// are watched")
        else:
            local = local_fingerprints(expand_source(uri, table), previous)
            probe.files.update(local.files)
            probe.hashed += local.hashed
    return probe


def content_changed(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether two fingerprints name different files or different contents (mtime alone is no change)."""

    def contents(files: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        return {uri: entry.get("sha256") or entry.get("etag") for uri, entry in files.items()}

    return contents(old) != contents(new)
