"""The trial pod's body, from the provisioner's `Placement`: container resources (requests = limits, GPUs as
``nvidia.com/gpu``), node selector and tolerations, a memory-backed ``/dev/shm`` on GPU pods, the node cache
volume, and Karpenter's ``do-not-disrupt`` annotation so consolidation never evicts a running trial.

Plain dictionaries (camelCase, as in a manifest); `resources.k8s_launcher` hands them to dagster-k8s."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from cluster.placement import Placement

__all__ = [
    "APP_LABEL",
    "CACHE_VOLUME",
    "DNS1123_LABEL",
    "DO_NOT_DISRUPT",
    "MAX_NAME",
    "NODE_CACHE_MOUNT",
    "PLACEMENT_ANNOTATION",
    "SHM_VOLUME",
    "TRIAL_LABEL",
    "TRIAL_NAME_ANNOTATION",
    "check_reachable_from_pods",
    "localise_trial_paths",
    "pod_threads",
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


SHM_VOLUME = "dshm"


CACHE_VOLUME = "kumo-cache"


NODE_CACHE_MOUNT = "/var/cache/kumo"


MAX_NAME = 63


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


def pod_threads(placement: Placement) -> int:
    """Threads a trial uses: the pod's whole CPUs (at least one)."""
    return max(1, int(placement.cpu))


def trial_env(placement: Placement, *extra: Mapping[str, str] | None) -> dict[str, str]:
    """Environment of the trial container: thread counts sized to the pod's CPUs, then ``extra`` in order.

    Containers see every core of the node, so torch's OpenMP pool would otherwise oversubscribe it.
    ``KUMO_TRIALS_PER_GPU`` tells a trial on a shared (time-sliced) GPU what share of its memory it owns.
    """
    threads = str(pod_threads(placement))
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
    container_name: str,
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
        "name": container_name,
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
