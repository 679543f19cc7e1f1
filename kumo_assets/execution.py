"""How a run executes its steps: processes in parallel, CPU-heavy steps no more than the cores at once.

HPO slot steps mostly wait on their trial subprocesses (which size their own threads), so they are not
counted against the core limit; ingest, store builds, training tables and single-model fits are.
"""

from __future__ import annotations

import os

from dagster import ExecutorDefinition, multiprocess_executor

__all__ = ["CPU_BOUND", "max_concurrent_steps", "run_executor"]

CPU_BOUND_TAG = "kumo/compute"
CPU_BOUND = {CPU_BOUND_TAG: "cpu"}
# Imported once by the fork server. Import-only modules: none starts threads, which would not survive a fork.
PRELOAD = ("torch", "torch_geometric", "dagster")


def max_concurrent_steps() -> int:
    """Steps a run executes at once (``KUMO_MAX_CONCURRENT_STEPS``; default max(8, cores))."""
    return int(os.environ.get("KUMO_MAX_CONCURRENT_STEPS") or max(8, os.cpu_count() or 1))


def cpu_bound_steps() -> int:
    """CPU-heavy steps at once (``KUMO_CPU_STEPS``; default the core count)."""
    return int(os.environ.get("KUMO_CPU_STEPS") or os.cpu_count() or 1)


def run_executor() -> ExecutorDefinition:
    """Steps fork from a server that imported the project once (torch, PyG, the asset graph): a fresh
    interpreter per step spent ~15 s of a 2-core machine on imports for steps that compute for 0.3 s."""
    return multiprocess_executor.configured({
        "max_concurrent": max_concurrent_steps(),
        "tag_concurrency_limits": [{"key": CPU_BOUND_TAG, "value": "cpu", "limit": cpu_bound_steps()}],
        "start_method": {"forkserver": {"preload_modules": list(PRELOAD)}},
    })  # fmt: skip
