"""Where trials run: a launcher starts the trial entrypoint through Dagster Pipes and returns its result.

Every launcher runs the same command (``python -m training.trial_entry``) with the same Pipes extras; the
trial reports its final metrics as a Pipes custom message, which `launch` returns. The local launcher (the
embedded default) runs it as a subprocess on this machine's CPU; `resources.k8s_launcher` runs it as one
Kubernetes pod per trial on the node type the provisioner chose.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import ConfigurableResource, PipesClientCompletedInvocation, PipesSubprocessClient

from cluster.placement import Placement
from training.warm_start import CLIENT_MODULE, trial_server_socket

__all__ = [
    "TRIAL_COMMAND",
    "LocalTrialLauncher",
    "TrialFailed",
    "TrialLaunch",
    "TrialLauncher",
    "trial_result",
]

TRIAL_MODULE = "training.trial_entry"
TRIAL_COMMAND = ("python", "-m", TRIAL_MODULE)


@dataclass(frozen=True)
class TrialLaunch:
    """One trial to start: its name, what to train (Pipes extras), where (placement), extra environment."""

    trial_name: str
    extras: dict[str, Any]
    placement: Placement
    env: dict[str, str]


class TrialFailed(RuntimeError):
    """The trial process ended without reporting a result."""


def trial_result(messages: Sequence[Any], trial_name: str) -> dict[str, Any]:
    """The trial's final result: the last Pipes custom message that carries one."""
    for message in reversed(list(messages)):
        if isinstance(message, Mapping) and "result" in message:
            return dict(message["result"])
    raise TrialFailed(f"trial {trial_name} exited without reporting a result (see its logs in the run)")


class TrialLauncher(ConfigurableResource):
    """Base class: run one trial with ``extras`` (what to train) on ``placement`` (where)."""

    def launch(
        self,
        context,
        *,
        trial_name: str,
        extras: Mapping[str, Any],
        placement: Placement,
        env: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run the trial, stream its logs into the run, and return the result it reported."""
        invocation = self.invoke(context, TrialLaunch(trial_name, dict(extras), placement, dict(env or {})))
        return trial_result(invocation.get_custom_messages(), trial_name)

    def invoke(self, context, trial: TrialLaunch) -> PipesClientCompletedInvocation:
        """Start the trial entry point through a Pipes client and wait for it (each launcher's own part)."""
        raise NotImplementedError

    @property
    def runs_locally(self) -> bool:
        """Whether trials share this machine (placed by its cores and RAM) or get nodes of their own."""
        return False

    def check_reachable(self, data_plane_root: str, storage_url: str) -> None:
        """Raise `ValueError` with the fix when trials could not reach the data plane or the study storage."""


class LocalTrialLauncher(TrialLauncher):
    """Trials as subprocesses of the step, on this machine's CPU (the embedded default).

    ``threads_per_trial``: torch/sampler threads each trial uses; default cores / ``parallelism`` of the
    study, because OpenMP threads of concurrent trials spin against each other when oversubscribed.
    ``warm_start``: fork trials from a server that imported torch and PyG once per run
    (`training.warm_start`) instead of paying those imports in every trial process.
    """

    python: str = ""  # interpreter for trials; default the one running Dagster
    threads_per_trial: int | None = None
    warm_start: bool = True

    @property
    def runs_locally(self) -> bool:
        return True

    def invoke(self, context, trial: TrialLaunch) -> PipesClientCompletedInvocation:
        threads = self.threads_per_trial or max(1, int(trial.placement.cpu))
        trial_env = {
            **os.environ,
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            **trial.env,
        }
        python = self.python or sys.executable
        command = [python, "-m", TRIAL_MODULE]
        server = (
            trial_server_socket(python, context.run_id, log=context.log.warning) if self.warm_start else None
        )
        if server is not None:
            command = [python, "-m", CLIENT_MODULE, "--socket", server]
        return PipesSubprocessClient().run(
            context=context, command=command, extras={**trial.extras, "threads": threads}, env=trial_env
        )
