"""The `dagster asset materialize` command line for this project's definitions, to run assets as users do.

Tests and benchmarks that want the real path (the dagster CLI, the multiprocess executor, the environment
`kumo_assets.definitions` reads) build the command and its environment here rather than each by hand.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFINITIONS_MODULE", "materialize_command"]

DEFINITIONS_MODULE = "kumo_assets.definitions"


def materialize_command(
    selection: str,
    run_config: Mapping[str, Any],
    dagster_home: str | Path,
    data_plane: str | Path,
    env: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The command that materialises ``selection`` with ``run_config`` (``--config-json``), and the environment
    to run it in: this process's, with DAGSTER_HOME, KUMO_DATA_PLANE and then ``env`` on top."""
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "-m",
        DEFINITIONS_MODULE,
        "--select",
        selection,
        "--config-json",
        json.dumps(run_config),
    ]
    environment = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "KUMO_DATA_PLANE": str(data_plane),
        **(env or {}),
    }
    return command, environment
