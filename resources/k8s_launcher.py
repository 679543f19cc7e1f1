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

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import kubernetes
from dagster_k8s import PipesK8sClient
from dagster_k8s.pipes import DEFAULT_CONTAINER_NAME, build_pod_body
from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, DAGSTER_PIPES_MESSAGES_ENV_VAR, encode_env_var
from pydantic import Field

from cluster.placement import Placement
from resources.launchers import TRIAL_COMMAND, TrialLauncher, trial_result

__all__ = [
    "APP_LABEL",
    "DNS1123_LABEL",
    "DO_NOT_DISRUPT",
    "NODE_CACHE_MOUNT",
    "TRIAL_CONTAINER",
    "KubernetesTrialLauncher",
    "check_reachable_from_pods",
    "localise_trial_paths",
    "trial_env",
    "trial_pod_meta",
    "trial_pod_name",
    "trial_pod_spec",
]

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
APP_LABEL = ("app", "kumo-trial")
TRIAL_LABEL = "kumo.ai/trial"
TRIAL_NAME_ANNOTATION = "kumo.ai/trial-name"
PLACEMENT_ANNOTATION = "kumo.ai/placement"
# build_pod_body names the first container this when unnamed; naming it ourselves keeps logs and docs aligned.
TRIAL_CONTAINER = DEFAULT_CONTAINER_NAME
SHM_VOLUME = "dshm"
CACHE_VOLUME = "kumo-cache"
NODE_CACHE_MOUNT = "/var/cache/kumo"
MAX_NAME = 63
# What PipesK8sClient injects at launch (a per-run encoded context); `pod_body` shows this placeholder instead.
CONTEXT_PLACEHOLDER = "<set at launch by PipesK8sClient: encoded Pipes context>"
# The client's message reader reads Pipes messages from the pod's stderr: exactly what it injects.
LOG_MESSAGES = encode_env_var({"stdio": "stderr"})


def trial_pod_name(trial_name: str) -> str:
    """A DNS-1123 label (lowercase alphanumerics and '-', at most 63) that identifies ``trial_name``.

    A name that is already valid is kept; any other gets an 8-hex digest of the original appended, so two
    names that differ only in case, punctuation or past the 54th character never collide.
    """
    cleaned = re.sub(r"[^a-z0-9]+", "-", trial_name.lower()).strip("-")
    if cleaned and cleaned == trial_name and len(cleaned) <= MAX_NAME:
        return cleaned
    digest = hashlib.sha256(trial_name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    head = cleaned[: MAX_NAME - len(digest) - 1].rstrip("-")
    return f"{head or 'trial'}-{digest}"


def _label_value(value: str) -> str:
    """``value`` as a Kubernetes label value (alphanumerics, '-', '_', '.'; at most 63; alphanumeric ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:MAX_NAME]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def _threads(placement: Placement) -> int:
    return max(1, int(placement.cpu))


def trial_env(placement: Placement, *extra: Mapping[str, str] | None) -> dict[str, str]:
    """Environment of the trial container: thread counts sized to the pod's CPUs, then ``extra`` in order.

    Containers see every core of the node, so torch's OpenMP pool would otherwise oversubscribe it.
    ``KUMO_TRIALS_PER_GPU`` tells a trial on a shared (time-sliced) GPU what share of its memory it owns.
    """
    threads = str(_threads(placement))
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if placement.gpus:
        env["KUMO_TRIALS_PER_GPU"] = str(placement.trials_per_gpu)
    for mapping in extra:
        env.update(mapping or {})
    return env


def trial_pod_meta(
    trial_name: str,
    placement: Placement,
    *,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Pod metadata: who the pod is (trial, instance type) and that Karpenter must not disrupt it."""
    ours = {APP_LABEL[0]: APP_LABEL[1], TRIAL_LABEL: trial_pod_name(trial_name)}
    for key, value in (("instance-type", placement.instance_type), ("capacity", placement.capacity)):
        if _label_value(value):
            ours[f"kumo.ai/{key}"] = _label_value(value)
    decision = {
        "instance_type": placement.instance_type,
        "capacity": placement.capacity,
        "gpus": placement.gpus,
        "trials_per_gpu": placement.trials_per_gpu,
        "hourly_cost": placement.hourly_cost,
        "reasons": list(placement.reasons),
    }
    meta: dict[str, Any] = {
        "labels": {**(labels or {}), **ours},
        "annotations": {
            **(annotations or {}),
            DO_NOT_DISRUPT: "true",
            TRIAL_NAME_ANNOTATION: trial_name,
            PLACEMENT_ANNOTATION: json.dumps(decision, sort_keys=True),
        },
    }
    if namespace:
        meta["namespace"] = namespace
    return meta


def trial_pod_spec(
    placement: Placement,
    *,
    service_account_name: str | None = None,
    image_pull_policy: str = "IfNotPresent",
    env_from_secrets: Sequence[str] = (),
    node_cache_host_path: str | None = None,
) -> dict[str, Any]:
    """Pod spec (camelCase, as in a manifest) without image, command and env, which the Pipes client sets.

    One container, named as dagster-k8s names its Pipes container, with the placement's resources; the
    node selector and tolerations steer the pod to the chosen instance type. The node cache (fetched store
    versions, shared minibatches) is mounted at `NODE_CACHE_MOUNT`: a ``hostPath`` shared by the trials of a
    node when ``node_cache_host_path`` is set (it must be writable by the image's user, uid 10001), else the
    pod's own ``emptyDir``. GPU pods get a memory-backed ``/dev/shm`` (a quarter of the pod's memory)
    because the container default of 64 MiB breaks torch dataloader workers and NCCL.
    """
    container: dict[str, Any] = {
        "name": TRIAL_CONTAINER,
        "imagePullPolicy": image_pull_policy,
        "resources": placement.resources(),
    }
    if env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": name}} for name in env_from_secrets]
    # Trials never call the Kubernetes API: no token in the pod (IRSA-style projected tokens still work).
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "containers": [container],
    }
    if placement.node_selector:
        spec["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        spec["tolerations"] = [dict(toleration) for toleration in placement.tolerations]
    if service_account_name:
        spec["serviceAccountName"] = service_account_name
    cache = (
        {"hostPath": {"path": node_cache_host_path, "type": "DirectoryOrCreate"}}
        if node_cache_host_path
        else {"emptyDir": {}}
    )
    spec["volumes"] = [{"name": CACHE_VOLUME, **cache}]
    container["volumeMounts"] = [{"name": CACHE_VOLUME, "mountPath": NODE_CACHE_MOUNT}]
    if placement.gpus:
        shm_mib = max(64, round(placement.memory_gib * 1024 / 4))
        spec["volumes"].append(
            {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_mib}Mi"}}
        )
        container["volumeMounts"].append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    return spec


def localise_trial_paths(extras: Mapping[str, Any]) -> dict[str, Any]:
    """The request as a pod sees it: stores and the batch cache under the pod's node cache mount (the trial
    fetches the pinned store versions there from the data plane), not the driver's local folders."""
    localised = {**extras, "graph_store_root": f"{NODE_CACHE_MOUNT}/stores"}
    if extras.get("batch_cache_dir"):
        localised["batch_cache_dir"] = f"{NODE_CACHE_MOUNT}/batches"
    return localised


def check_reachable_from_pods(data_plane_root: str, storage_url: str) -> None:
    """Raise `ValueError` naming the setting to change when trial pods could not reach the data plane or
    the Optuna storage (both local to the driver's machine in the embedded default)."""
    if not data_plane_root.startswith("s3://"):
        raise ValueError(
            f"Kubernetes trials cannot reach the data plane {data_plane_root!r} (a folder on the driver's machine): "
            "set KUMO_DATA_PLANE=s3://bucket/prefix"
        )
    if not storage_url.startswith(("postgresql", "mysql")):
        raise ValueError(
            f"Kubernetes trials cannot reach the Optuna storage {storage_url!r} (a file on the driver's machine): "
            "set KUMO_OPTUNA_STORAGE=postgresql://user@host/db"
        )


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

    def launch(
        self,
        context,
        *,
        trial_name: str,
        extras: Mapping[str, Any],
        placement: Placement,
        env: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run the trial in a pod, stream its logs into the run, and return the result it reported."""
        meta, spec = self.pod_parts(trial_name, placement)
        out_of_cluster = bool(self.kubeconfig_file or self.kube_context)
        client = PipesK8sClient(
            load_incluster_config=self.load_incluster_config and not out_of_cluster,
            kubeconfig_file=self.kubeconfig_file,
            kube_context=self.kube_context,
        )
        invocation = client.run(
            context=context,
            image=self.image,
            command=list(TRIAL_COMMAND),
            namespace=self.namespace,
            env=trial_env(placement, self.env, env),
            base_pod_meta=meta,
            base_pod_spec=spec,
            extras={**localise_trial_paths(extras), "threads": _threads(placement)},
            pod_wait_timeout=self.pod_wait_timeout,
        )
        return trial_result(invocation.get_custom_messages(), trial_name)
