"""Pictures on an asset's page: PNGs stored on the data plane, linked from short markdown metadata.

Dagster renders markdown metadata inline only while it is short (under 1,000 characters), so a picture
cannot travel inside the metadata as a data URI. It is stored under ``<graph>/pictures/...`` on the data
plane instead, and `kumo_assets.webserver` (Dagster's webserver plus one route) serves it at
``/kumo/pictures/<path>``, where the markdown points.
"""

from __future__ import annotations

import re

import dagster as dg

from stores.data_plane import DataPlane

__all__ = ["PICTURES_ROUTE", "picture_metadata", "picture_parts"]

PICTURES_ROUTE = "/kumo/pictures"
_SAFE = re.compile(r"^[A-Za-z0-9_.=-]+$")


def picture_parts(key: dg.AssetKey, name: str, version: str) -> tuple[str, ...]:
    """Where a picture lives on the data plane: ``<graph>/pictures/<rest of the key>/<name>-<version>.png``."""
    parts = (key.path[0], "pictures", *key.path[1:], f"{name}-{version}.png")
    unsafe = [part for part in parts if not _SAFE.match(part)]
    if unsafe:
        raise ValueError(f"picture path parts {unsafe} must be letters, digits, '_', '.', '=' or '-'")
    return parts


def picture_metadata(data_plane: DataPlane, key: dg.AssetKey, pictures: dict[str, bytes | None],
                     version: str) -> dict[str, dg.MetadataValue]:  # fmt: skip
    """Store each PNG and return one inline markdown image per picture, named as the metadata label."""
    metadata = {}
    for name, png in pictures.items():
        if png is None:
            continue
        parts = picture_parts(key, name, version)
        data_plane.put_bytes(png, *parts)
        title = name.replace("_", " ")
        metadata[name] = dg.MetadataValue.md(f"![{title}]({PICTURES_ROUTE}/{'/'.join(parts)})")
    return metadata
