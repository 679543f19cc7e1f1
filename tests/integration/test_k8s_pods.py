"""Trial pods: the manifests the Kubernetes launcher creates, checked against the Kubernetes 1.33 schema.

No cluster: pod bodies are built offline by the same dagster-k8s function the Pipes client uses, and one
test runs the real `PipesK8sClient` against a local endpoint that answers like an API server without the
RBAC to create pods (403), to capture the exact body the launcher sends.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster import asset, materialize
from dagster_pipes import (
    DAGSTER_PIPES_CONTEXT_ENV_VAR,
    DAGSTER_PIPES_MESSAGES_ENV_VAR,
    PipesDefaultContextLoader,
    decode_env_var,
)
from hypothesis import given
from hypothesis import strategies as st

from cluster.placement import GPU_RESOURCE, Placement
from cluster.pods import DNS1123_LABEL, DO_NOT_DISRUPT, NODE_CACHE_MOUNT, trial_pod_name
from resources.k8s_launcher import TRIAL_CONTAINER, KubernetesTrialLauncher
from resources.launchers import TRIAL_COMMAND
from tests.support.fake_k8s_api import forbidding_api_server

K8S_VERSION = "1.33.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
RBAC = REPO_ROOT / "deploy" / "k8s" / "rbac.yaml"

# Rules the API server enforces but the OpenAPI schema does not (k8s.io/apimachinery validation).
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
QUANTITY = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$")

GPU_TAINT = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
SPOT_TAINT = {
    "key": "karpenter.sh/capacity-type",
    "operator": "Equal",
    "value": "spot",
    "effect": "NoSchedule",
}

CPU_ONLY = Placement("m7i.2xlarge", "on-demand", gpus=0, trials_per_gpu=1, cpu=7.5, memory_gib=28.0,
                     node_selector={"node.kubernetes.io/instance-type": "m7i.2xlarge"})  # fmt: skip
MULTI_GPU = Placement("g5.12xlarge", "on-demand", gpus=4, trials_per_gpu=1, cpu=46.0, memory_gib=180.0,
                      node_selector={"node.kubernetes.io/instance-type": "g5.12xlarge"},
                      tolerations=[GPU_TAINT])  # fmt: skip
PLACEMENTS = {
    "one-gpu-on-demand": Placement(
        "g5.xlarge",
        "on-demand",
        gpus=1,
        trials_per_gpu=1,
        cpu=3.5,
        memory_gib=14.0,
        node_selector={
            "node.kubernetes.io/instance-type": "g5.xlarge",
            "karpenter.sh/capacity-type": "on-demand",
        },
        tolerations=[GPU_TAINT],
        hourly_cost=1.006,
        reasons=["cheapest type with 24 GiB GPU memory for an estimated 9.1 GiB"],
    ),
    "packed-spot": Placement(
        "g4dn.xlarge",
        "spot",
        gpus=1,
        trials_per_gpu=4,
        cpu=0.875,
        memory_gib=3.5,
        node_selector={
            "node.kubernetes.io/instance-type": "g4dn.xlarge",
            "karpenter.sh/capacity-type": "spot",
            "nvidia.com/gpu.replicas": "4",
        },
        tolerations=[
            GPU_TAINT,
            SPOT_TAINT,
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
        hourly_cost=0.04,
    ),
    "cpu-only": CPU_ONLY,
    "multi-gpu": MULTI_GPU,
}

LAUNCHER_CONFIG: dict[str, Any] = {
    "image": "registry.example.com/kumo-dagster:1.0",
    "namespace": "kumo",
    "service_account_name": "kumo-trial",
    "env": {"KUMO_DATA_PLANE": "s3://kumo/plane"},
    "env_from_secrets": ["kumo-optuna-db", "kumo-s3"],
    "labels": {"team": "ml"},
    "annotations": {"owner": "ml@example.com"},
}
# A fresh resource per variant: Dagster rebuilds resources from their constructor config, so a pydantic
# model_copy(update=...) would be silently undone inside a run.
LAUNCHER = KubernetesTrialLauncher(**LAUNCHER_CONFIG)


def validated(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` after the schema check and the name/label/quantity rules the schema leaves out."""
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    meta = manifest["metadata"]
    problems = []
    if not (DNS1123_LABEL.match(meta["name"]) and len(meta["name"]) <= 63):
        problems.append(f"name {meta['name']!r}")
    for key, value in meta.get("labels", {}).items():
        prefix, _, name = key.rpartition("/")
        if not (LABEL_KEY_NAME.match(name) and len(name) <= 63 and len(prefix) <= 253):
            problems.append(f"label key {key!r}")
        if not (LABEL_VALUE.match(value) and len(value) <= 63):
            problems.append(f"label value {key}={value!r}")
    for container in manifest.get("spec", {}).get("containers", []):
        for kind, amounts in container.get("resources", {}).items():
            problems += [f"{kind} {k}={v!r}" for k, v in amounts.items() if not QUANTITY.match(str(v))]
    if problems:
        raise ValueError(f"the API server would reject this manifest: {problems}")
    return manifest


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


@pytest.mark.parametrize("kind", PLACEMENTS)
def test_pod_body_carries_the_placement(kind: str) -> None:
    placement = PLACEMENTS[kind]
    body = validated(LAUNCHER.pod_body(f"driver_top3/trial {kind}", placement, {"KUMO_TRIAL": "7"}))
    spec, meta = body["spec"], body["metadata"]
    (container,) = spec["containers"]

    assert container["name"] == TRIAL_CONTAINER
    assert container["resources"] == placement.resources()
    assert container["resources"]["limits"].get(GPU_RESOURCE) == (
        str(placement.gpus) if placement.gpus else None
    )
    assert container["resources"]["requests"]["cpu"] == f"{placement.cpu:g}"
    assert spec["nodeSelector"] == placement.node_selector
    assert spec.get("tolerations", []) == placement.tolerations
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == "kumo-trial"
    assert spec["automountServiceAccountToken"] is False
    assert container["command"] == list(TRIAL_COMMAND) == ["python", "-m", "training.trial_entry"]
    assert container["image"] == LAUNCHER.image
    assert container["envFrom"] == [
        {"secretRef": {"name": "kumo-optuna-db"}},
        {"secretRef": {"name": "kumo-s3"}},
    ]

    env = env_of(container)
    assert {DAGSTER_PIPES_CONTEXT_ENV_VAR, DAGSTER_PIPES_MESSAGES_ENV_VAR} <= set(env)
    assert decode_env_var(env[DAGSTER_PIPES_MESSAGES_ENV_VAR]) == {"stdio": "stderr"}  # read from the pod log
    assert env["OMP_NUM_THREADS"] == str(max(1, int(placement.cpu)))
    assert env["KUMO_DATA_PLANE"] == "s3://kumo/plane" and env["KUMO_TRIAL"] == "7"
    assert env.get("KUMO_TRIALS_PER_GPU") == (str(placement.trials_per_gpu) if placement.gpus else None)

    assert meta["annotations"][DO_NOT_DISRUPT] == "true"
    assert meta["annotations"]["kumo.ai/trial-name"] == f"driver_top3/trial {kind}"
    assert json.loads(meta["annotations"]["kumo.ai/placement"])["instance_type"] == placement.instance_type
    assert meta["labels"]["app"] == "kumo-trial"
    assert meta["labels"]["kumo.ai/trial"] == meta["name"] == trial_pod_name(f"driver_top3/trial {kind}")
    assert meta["labels"]["kumo.ai/instance-type"] == placement.instance_type
    assert meta["labels"]["team"] == "ml" and meta["annotations"]["owner"] == "ml@example.com"
    assert meta["namespace"] == "kumo"

    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    if placement.gpus:
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    else:
        assert "/dev/shm" not in mounts
    assert volumes[mounts[NODE_CACHE_MOUNT]] == {"name": "kumo-cache", "emptyDir": {}}


def test_configured_labels_cannot_switch_off_the_launcher_guarantees() -> None:
    launcher = KubernetesTrialLauncher(
        **{**LAUNCHER_CONFIG, "labels": {"app": "other"}, "annotations": {DO_NOT_DISRUPT: "false"}}
    )
    meta = launcher.pod_body("t", PLACEMENTS["cpu-only"])["metadata"]
    assert meta["annotations"][DO_NOT_DISRUPT] == "true"
    assert meta["labels"]["app"] == "kumo-trial"


def test_odd_instance_types_become_valid_label_values() -> None:
    placement = Placement("Standard_NC24ads_A100_v4 (preview)!", "spot", 1, 1, 24, 220)
    labels = validated(LAUNCHER.pod_body("t", placement))["metadata"]["labels"]
    assert labels["kumo.ai/instance-type"] == "Standard_NC24ads_A100_v4-preview"


def test_validator_rejects_broken_manifests() -> None:
    """The checks above can fail: a misspelt field, a wrong type and a bad quantity are all caught."""
    good = LAUNCHER.pod_body("t", PLACEMENTS["one-gpu-on-demand"])
    validated(good)

    misspelt = copy.deepcopy(good)
    misspelt["spec"]["nodeSelektor"] = misspelt["spec"].pop("nodeSelector")
    with pytest.raises(kubernetes_validate.ValidationError, match="nodeSelektor"):
        validated(misspelt)

    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["tolerations"] = {"key": GPU_RESOURCE}
    with pytest.raises(kubernetes_validate.ValidationError):
        validated(wrong_type)

    bad_quantity = copy.deepcopy(good)
    bad_quantity["spec"]["containers"][0]["resources"]["limits"][GPU_RESOURCE] = "one"
    with pytest.raises(ValueError, match=re.escape("nvidia.com/gpu='one'")):
        validated(bad_quantity)

    bad_name = copy.deepcopy(good)
    bad_name["metadata"]["name"] = "Trial_1"
    with pytest.raises(ValueError, match="Trial_1"):
        validated(bad_name)


@given(st.text(max_size=300))
def test_any_trial_name_gives_a_valid_pod(trial_name: str) -> None:
    name = trial_pod_name(trial_name)
    assert DNS1123_LABEL.match(name) and len(name) <= 63, name
    body = validated(LAUNCHER.pod_body(trial_name, PLACEMENTS["cpu-only"]))
    assert body["metadata"]["name"] == body["metadata"]["labels"]["kumo.ai/trial"] == name


def test_trial_names_stay_readable_and_distinct() -> None:
    assert trial_pod_name("driver-top3-17") == "driver-top3-17"  # already valid: unchanged
    assert trial_pod_name("Driver_Top3 #17").startswith("driver-top3-17-")
    assert trial_pod_name("trial_1") != trial_pod_name("trial-1") != trial_pod_name("Trial-1")
    long_a, long_b = "x" * 80 + "a", "x" * 80 + "b"
    assert trial_pod_name(long_a) != trial_pod_name(long_b)
    assert len(trial_pod_name(long_a)) == 63
    assert trial_pod_name("").startswith("trial-") and trial_pod_name("###").startswith("trial-")


def test_rbac_objects_are_valid_and_grant_what_the_pipes_client_needs() -> None:
    documents = [doc for doc in yaml.safe_load_all(RBAC.read_text()) if doc]
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    by_kind = {doc["kind"]: doc for doc in documents}
    assert {"ServiceAccount", "Role", "RoleBinding"} <= set(by_kind)
    granted = {
        (resource, verb)
        for rule in by_kind["Role"]["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = {("pods", verb) for verb in ("create", "get", "list", "watch", "delete")} | {("pods/log", "get")}
    assert needed <= granted
    binding = by_kind["RoleBinding"]
    assert binding["roleRef"]["name"] == by_kind["Role"]["metadata"]["name"]
    accounts = {doc["metadata"]["name"] for doc in documents if doc["kind"] == "ServiceAccount"}
    assert {subject["name"] for subject in binding["subjects"]} <= accounts
    assert LAUNCHER.service_account_name in accounts


@pytest.fixture
def forbidding_kubeconfig(tmp_path: Path) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """A kubeconfig pointing at a local endpoint that refuses everything (`tests.support.fake_k8s_api`)."""
    with forbidding_api_server(tmp_path / "kubeconfig") as received:
        yield tmp_path / "kubeconfig", received


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:Function `PipesMessageReader.expected_writer_count`")
def test_launch_sends_the_pod_body_built_offline(
    forbidding_kubeconfig: tuple[Path, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real PipesK8sClient, driven by `launch`, POSTs exactly `pod_body` (plus its own name and context)."""
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    kubeconfig, received = forbidding_kubeconfig
    # load_incluster_config stays True (the default): a kubeconfig file must take precedence over it.
    launcher = KubernetesTrialLauncher(**LAUNCHER_CONFIG, kubeconfig_file=str(kubeconfig))
    placement = PLACEMENTS["packed-spot"]
    errors: list[BaseException] = []

    @asset
    def hpo_trial_slot(context, trial_launcher: KubernetesTrialLauncher) -> None:
        try:
            trial_launcher.launch(
                context,
                trial_name="driver_top3-7",
                extras={"trial_number": 7, "params": {"lr": 0.01}, "graph_store_root": "/home/me/.kumo"},
                placement=placement,
                env={"KUMO_TRIAL": "7"},
            )
        except Exception as error:
            errors.append(error)
            raise

    result = materialize([hpo_trial_slot], resources={"trial_launcher": launcher}, raise_on_error=False)

    assert not result.success  # no pod ran: the launch must fail, never report a result
    assert isinstance(errors[0], kubernetes.client.ApiException) and errors[0].status == 403
    (request,) = received
    assert request["path"] == "/api/v1/namespaces/kumo/pods"
    sent = request["body"]
    name = sent["metadata"]["name"]
    assert name.startswith(f"dagster-{result.run_id[:18]}-hpo-trial-slot-")
    validated({"apiVersion": "v1", "kind": "Pod", **sent})

    env = env_of(sent["spec"]["containers"][0])
    bootstrap = {key: env[key] for key in (DAGSTER_PIPES_CONTEXT_ENV_VAR, DAGSTER_PIPES_MESSAGES_ENV_VAR)}
    offline = launcher.pod_body(
        "driver_top3-7", placement, {"KUMO_TRIAL": "7"}, bootstrap_env=bootstrap, pod_name=name
    )
    assert {"apiVersion": "v1", "kind": "Pod", **sent} == offline

    # What the trial's open_dagster_pipes() reads: the extras, plus the thread count sized to the pod's CPUs.
    context = decode_env_var(env[DAGSTER_PIPES_CONTEXT_ENV_VAR])[PipesDefaultContextLoader.DIRECT_KEY]
    assert context["extras"] == {"trial_number": 7, "params": {"lr": 0.01}, "threads": 1,
                                 "graph_store_root": f"{NODE_CACHE_MOUNT}/stores"}  # fmt: skip
