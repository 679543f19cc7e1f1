"""Trials as Kubernetes pods: one pod per trial, started and followed through Dagster Pipes.

The provisioner's `Placement` becomes the pod: container resources (requests = limits, GPUs as
``nvidia.com/gpu``), node selector and tolerations, a memory-backed ``/dev/shm`` on GPU pods, and Karpenter's
``do-not-disrupt`` annotation so consolidation never evicts a running trial. The spec is built per trial at
run time (op tags cannot vary per dynamic trial) and handed to `dagster_k8s.PipesK8sClient`, which creates
the pod, injects the Pipes bootstrap environment, reads the trial's messages from its logs and deletes it.

Pod names are chosen by dagster-k8s (``dagster-<run id>-<op>-<random digits>``, always a valid DNS-1123
label, unique per launch even when a trial is retried); the trial is identified by the ``kumo.ai/trial``
label (`trial_pod_name`: a DNS-1123 label derived from the trial name) and the ``kumo.ai/trial-name``
annotation (the name as given).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kubernetes
from dagster import PipesClientCompletedInvocation
from dagster_k8s import PipesK8sClient
from dagster_k8s.pipes import DEFAULT_CONTAINER_NAME, build_pod_body
from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, DAGSTER_PIPES_MESSAGES_ENV_VAR, encode_env_var
from pydantic import Field

from cluster.placement import Placement
from cluster.pods import (
    check_reachable_from_pods,
    localise_trial_paths,
    pod_threads,
    trial_env,
    trial_pod_meta,
    trial_pod_name,
    trial_pod_spec,
)
from resources.launchers import TRIAL_COMMAND, TrialLaunch, TrialLauncher

__all__ = ["TRIAL_CONTAINER", "KubernetesTrialLauncher"]

# build_pod_body names the first container this when unnamed; naming it ourselves keeps logs and docs aligned.
TRIAL_CONTAINER = DEFAULT_CONTAINER_NAME
# What PipesK8sClient injects at launch (a per-run encoded context); `pod_body` shows this placeholder instead.
CONTEXT_PLACEHOLDER = "<set at launch by PipesK8sClient: encoded Pipes context>"
# The client's message reader reads Pipes messages from the pod's stderr: exactly what it injects.
LOG_MESSAGES = encode_env_var({"stdio": "stderr"})


class KubernetesTrialLauncher(TrialLauncher):
    """Each trial as its own pod on the instance type the provisioner chose (the cluster launcher).

    ``env_from_secrets``: Secrets whose keys become environment variables of every trial (database and
    object-store credentials; credentials are never configuration). ``kubeconfig_file`` (or
    ``kube_context``) means running outside the cluster: it overrides ``load_incluster_config``.
    ``pod_wait_timeout``: seconds to wait for a trial pod to finish (0: no limit).
    """

    image: str
    namespace: str = "default"
    service_account_name: str | None = None
    image_pull_policy: str = "IfNotPresent"
    env: dict[str, str] = Field(default_factory=dict)
    env_from_secrets: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    load_incluster_config: bool = True
    kubeconfig_file: str | None = None
    kube_context: str | None = None
    pod_wait_timeout: float = 86400.0
    node_cache_host_path: str | None = None

    def check_reachable(self, data_plane_root: str, storage_url: str) -> None:
        check_reachable_from_pods(data_plane_root, storage_url)

    def pod_parts(self, trial_name: str, placement: Placement) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(base_pod_meta, base_pod_spec)`` for `PipesK8sClient.run`."""
        meta = trial_pod_meta(
            trial_name, placement, namespace=self.namespace, labels=self.labels, annotations=self.annotations
        )
        spec = trial_pod_spec(
            placement,
            container_name=TRIAL_CONTAINER,
            service_account_name=self.service_account_name,
            image_pull_policy=self.image_pull_policy,
            env_from_secrets=self.env_from_secrets,
            node_cache_host_path=self.node_cache_host_path,
        )
        return meta, spec

    def pod_body(
        self,
        trial_name: str,
        placement: Placement,
        extras_env: Mapping[str, str] | None = None,
        *,
        bootstrap_env: Mapping[str, str] | None = None,
        pod_name: str | None = None,
    ) -> dict[str, Any]:
        """The Pod manifest `launch` creates, built by the same dagster-k8s function the Pipes client uses.

        Args:
            extras_env: the ``env`` that `launch` is given.
            bootstrap_env: the Pipes bootstrap variables of a session; default: the messages variable the
                client injects and a placeholder for the per-run context.
            pod_name: default `trial_pod_name` (at launch dagster-k8s names the pod itself).
        """
        meta, spec = self.pod_parts(trial_name, placement)
        bootstrap = bootstrap_env or {
            DAGSTER_PIPES_CONTEXT_ENV_VAR: CONTEXT_PLACEHOLDER,
            DAGSTER_PIPES_MESSAGES_ENV_VAR: LOG_MESSAGES,
        }
        pod = build_pod_body(
            pod_name=pod_name or trial_pod_name(trial_name),
            image=self.image,
            command=list(TRIAL_COMMAND),
            env_vars={**bootstrap, **trial_env(placement, self.env, extras_env)},
            base_pod_meta=meta,
            base_pod_spec=spec,
        )
        body = kubernetes.client.ApiClient().sanitize_for_serialization(pod)
        return {"apiVersion": "v1", "kind": "Pod", **body}

    def invoke(self, context, trial: TrialLaunch) -> PipesClientCompletedInvocation:
        """Run the trial in a pod (created, followed and deleted by dagster-k8s's Pipes client)."""
        meta, spec = self.pod_parts(trial.trial_name, trial.placement)
        out_of_cluster = bool(self.kubeconfig_file or self.kube_context)
        client = PipesK8sClient(
            load_incluster_config=self.load_incluster_config and not out_of_cluster,
            kubeconfig_file=self.kubeconfig_file,
            kube_context=self.kube_context,
        )
        return client.run(
            context=context,
            image=self.image,
            command=list(TRIAL_COMMAND),
            namespace=self.namespace,
            env=trial_env(trial.placement, self.env, trial.env),
            base_pod_meta=meta,
            base_pod_spec=spec,
            extras={**localise_trial_paths(trial.extras), "threads": pod_threads(trial.placement)},
            pod_wait_timeout=self.pod_wait_timeout,
        )
