"""Trial pods and the data plane: the node cache mount, request paths inside the pod, reachability checks."""

from __future__ import annotations

import kubernetes_validate
import pytest

from cluster.pods import NODE_CACHE_MOUNT, check_reachable_from_pods, localise_trial_paths
from resources.k8s_launcher import KubernetesTrialLauncher
from tests.integration.test_k8s_pods import K8S_VERSION, LAUNCHER_CONFIG, PLACEMENTS


def test_a_node_cache_host_path_is_shared_by_the_trials_of_a_node() -> None:
    launcher = KubernetesTrialLauncher(**{**LAUNCHER_CONFIG, "node_cache_host_path": "/mnt/kumo"})
    pod = launcher.pod_body("t", PLACEMENTS["cpu-only"])
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    (container,) = pod["spec"]["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == NODE_CACHE_MOUNT]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["hostPath"] == {"path": "/mnt/kumo", "type": "DirectoryOrCreate"}


def test_trial_paths_point_into_the_pod_cache_and_unreachable_planes_are_refused() -> None:
    extras = {
        "graph_store_root": "/home/me/.kumo/data",
        "batch_cache_dir": "/home/me/.kumo/data/f1/batch_cache",
    }
    localised = localise_trial_paths(extras)
    assert localised["graph_store_root"].startswith(NODE_CACHE_MOUNT + "/")
    assert localised["batch_cache_dir"].startswith(NODE_CACHE_MOUNT + "/")
    assert (
        localise_trial_paths({"graph_store_root": "/x", "batch_cache_dir": None})["batch_cache_dir"] is None
    )
    check_reachable_from_pods("s3://kumo/plane", "postgresql://kumo@db/optuna")
    with pytest.raises(ValueError, match="KUMO_DATA_PLANE=s3://"):
        check_reachable_from_pods("/home/me/.kumo/data", "postgresql://kumo@db/optuna")
    with pytest.raises(ValueError, match="KUMO_OPTUNA_STORAGE=postgresql"):
        check_reachable_from_pods("s3://kumo/plane", "journal:///home/me/.kumo/data/optuna/journal.log")
