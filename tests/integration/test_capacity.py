"""Capacity ahead of demand: the plan over real studies, node packing, headroom manifests, the sensor."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import kubernetes_validate
import optuna
import pytest
from dagster import DagsterRunStatus, SkipReason, build_sensor_context, instance_for_test
from dagster._core.test_utils import create_run_for_test
from hypothesis import given
from hypothesis import strategies as st

from cluster.capacity import BUDGET_ATTR, CapacityPlan, NodeDemand, plan_capacity, pods_per_node
from cluster.instance_catalogue import InstanceType
from cluster.placement import GPU_RESOURCE, Placement
from cluster.provisioner import NodeProvisioner
from resources.capacity_backends import DryRunCapacity, KubernetesHeadroom
from sensors.capacity import capacity_sensor
from stores.data_plane import DataPlane
from tests.cluster.test_provisioner import MEDIUM, SMALL, shop
from tests.support.fake_k8s_api import deployments_api_server
from training.studies import StudyStorage

NOW = 1_800_000_000.0


def add_study(storage, name: str, placement: Placement | None, done: int, **budget) -> optuna.Study:
    """A study as the HPO driver leaves it: its budget, ``done`` finished trials, the last one placed."""
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    study.set_user_attr(BUDGET_ATTR, {"n_trials": 10, "parallelism": 4, "deadline": NOW + 3600,
                                      "launcher": "cluster", "run_id": "live", **budget})  # fmt: skip
    for _ in range(done):
        trial = study.ask()
        if placement is not None:
            trial.set_user_attr("placement", placement.to_dict())
        study.tell(trial, 0.5)
    return study


def test_the_plan_counts_concurrent_trials_of_open_studies_only(tmp_path):
    storage = StudyStorage(url=str(tmp_path / "journal.log")).get_storage()
    provisioner = NodeProvisioner()
    instances = provisioner.instances()
    packed = provisioner.place(MEDIUM, shop())  # a GPU placement (several trials per GPU when they fit)
    cpu = NodeProvisioner(allow_gpu=False).place(SMALL, shop())
    local = Placement.local_cpu(2, 4)
    add_study(storage, "gpu-a", packed, done=2)  # 8 left, 4 at a time
    add_study(storage, "gpu-b", packed, done=8, parallelism=3)  # 2 left: only 2 at once
    add_study(storage, "cpu", cpu, done=1, parallelism=2)
    add_study(storage, "spent", packed, done=10)
    add_study(storage, "late", packed, done=1, deadline=NOW - 1)
    add_study(storage, "dead-run", packed, done=1, run_id="gone")
    add_study(storage, "local", local, done=1, launcher="local")
    add_study(storage, "unplaced", None, done=0)

    plan = plan_capacity(storage, instances, now=NOW, run_alive=lambda run_id: run_id == "live")

    by_type = {(d.instance_type, d.pod_gpus): d for d in plan.demands}
    gpu = by_type[(packed.instance_type, packed.gpus)]
    assert gpu.pods == 4 + 2 and sorted(gpu.studies) == ["gpu-a", "gpu-b"]
    per_node = pods_per_node(packed, instances[packed.instance_type])
    assert gpu.nodes == math.ceil(6 / per_node) and gpu.pods_per_node == per_node
    assert gpu.node_selector == packed.node_selector and gpu.capacity == packed.capacity
    cpu_demand = by_type[(cpu.instance_type, 0)]
    assert cpu_demand.pods == 2 and cpu_demand.studies == ["cpu"]
    assert plan.total_nodes == gpu.nodes + cpu_demand.nodes
    reasons = " | ".join(plan.notes)
    for expected in ("spent: trial budget spent", "late: time budget spent", "dead-run: its run gone is not running",
                     "local: runs on the local launcher", "unplaced: no trial placed yet"):  # fmt: skip
        assert expected in reasons
    assert packed.instance_type in plan.summary()


@given(
    gpus=st.sampled_from([0, 1, 2, 4, 8]),
    per_gpu=st.integers(1, 4),
    node_gpus=st.sampled_from([1, 4, 8]),
    cpu=st.floats(0.5, 16),
    memory=st.floats(0.5, 128),
    vcpu=st.integers(2, 192),
    node_memory=st.floats(4, 2048),
)
def test_pods_per_node_fill_a_node_and_no_more(gpus, per_gpu, node_gpus, cpu, memory, vcpu, node_memory):
    placement = Placement("x", "spot", gpus, per_gpu if gpus else 1, cpu, memory)
    instance = InstanceType("x", vcpu, node_memory, 1.0, gpus=node_gpus if gpus else 0)
    count = pods_per_node(placement, instance)
    slots = node_gpus * (per_gpu if gpus else 1)

    def fits(n: int) -> bool:
        tolerance = 1e-9  # in pods, as the planner's: floating-point noise never costs a pod
        return (n * cpu <= vcpu + tolerance * cpu and n * memory <= node_memory + tolerance * memory
                and (not gpus or n * gpus <= slots))  # fmt: skip

    assert count >= 1
    assert fits(count) or count == 1  # one pod is always planned; the provisioner already checked it fits
    assert not fits(count + 1)


def test_headroom_deployments_are_valid_and_reserve_whole_nodes(tmp_path):
    storage = StudyStorage(url=str(tmp_path / "journal.log")).get_storage()
    packed = NodeProvisioner().place(MEDIUM, shop())
    add_study(storage, "gpu", packed, done=1)
    plan = plan_capacity(storage, NodeProvisioner().instances(), now=NOW)
    (demand,) = plan.demands
    (body,) = KubernetesHeadroom(namespace="kumo").deployments(plan)
    kubernetes_validate.validate(body, "1.33.0", strict=True)
    assert body["spec"]["replicas"] == demand.nodes
    pod = body["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "kumo-headroom" and pod["nodeSelector"] == packed.node_selector
    assert pod["tolerations"] == packed.tolerations
    requests = pod["containers"][0]["resources"]["requests"]
    assert requests.get(GPU_RESOURCE) == (str(packed.gpus * demand.pods_per_node) if packed.gpus else None)
    assert float(requests["cpu"]) == pytest.approx(packed.cpu * demand.pods_per_node)


def test_the_sensor_records_its_plan_on_the_data_plane(tmp_path):
    plane = DataPlane(root=str(tmp_path / "plane"))
    study_storage = StudyStorage()  # the default: a journal file on the data plane
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        live = create_run_for_test(instance, job_name="hpo", status=DagsterRunStatus.STARTED)
        packed = NodeProvisioner().place(MEDIUM, shop())
        add_study(study_storage.get_storage(plane.root), "f1.driver_dnf.best-1", packed, done=1,
                  run_id=live.run_id, deadline=time.time() + 3600)  # fmt: skip
        resources = {"study_storage": study_storage, "provisioner": NodeProvisioner(),
                     "capacity_backend": DryRunCapacity(), "data_plane": plane}  # fmt: skip
        with build_sensor_context(instance=instance, resources=resources) as context:
            result = capacity_sensor(context)
        assert isinstance(result, SkipReason)
        assert packed.instance_type in result.skip_message and "[dry-run]" in result.skip_message
        recorded = plane.get_json("capacity", "plan.json")
        assert recorded["total_nodes"] >= 1 and recorded["outcome"]["applied"] is False
        assert recorded["demands"][0]["studies"] == ["f1.driver_dnf.best-1"]

        instance.report_run_canceled(live)  # the run ends: its study needs nothing any more
        with build_sensor_context(instance=instance, resources=resources) as context:
            assert "no cluster capacity needed" in capacity_sensor(context).skip_message
        assert plane.get_json("capacity", "plan.json")["total_nodes"] == 0


def test_headroom_apply_creates_replaces_and_scales_down_through_the_api(tmp_path, monkeypatch):
    """The real kubernetes client against an in-memory Deployments endpoint (`tests.support.fake_k8s_api`): the first
    plan's Deployments are created as built offline; the next plan replaces the one still demanded and scales
    the one no longer demanded to zero; Deployments without the headroom label are left alone."""
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    gpu = NodeDemand("g5.xlarge", "spot", nodes=2, pods=4, pods_per_node=2,
                     node_selector={"node.kubernetes.io/instance-type": "g5.xlarge"},
                     tolerations=[{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
                     pod_cpu=1.5, pod_memory_gib=6.0, pod_gpus=1, studies=["gpu-study"])  # fmt: skip
    cpu = NodeDemand("m7i.2xlarge", "on-demand", nodes=1, pods=3, pods_per_node=3,
                     node_selector={"node.kubernetes.io/instance-type": "m7i.2xlarge"}, tolerations=[],
                     pod_cpu=2.0, pod_memory_gib=7.5, pod_gpus=0, studies=["cpu-study"])  # fmt: skip
    with deployments_api_server(tmp_path / "kubeconfig") as server:
        backend = KubernetesHeadroom(namespace="kumo", kubeconfig_file=str(tmp_path / "kubeconfig"))
        foreign = {
            **backend.deployment(cpu),
            "metadata": {"name": "web", "namespace": "kumo", "labels": {"app": "web"}},
        }
        server.deployments[("kumo", "web")] = foreign
        first_plan = CapacityPlan(NOW, [gpu, cpu], [])
        first = backend.apply(first_plan)
        built = {body["metadata"]["name"]: body for body in backend.deployments(first_plan)}
        assert first["deployments"] == sorted(built) and first["scaled_to_zero"] == []
        assert {name: server.deployments[("kumo", name)] for name in built} == built  # sent as built offline

        second = backend.apply(CapacityPlan(NOW, [replace(gpu, nodes=3)], []))
        gpu_name, cpu_name = (body["metadata"]["name"] for body in backend.deployments(first_plan))
        assert second["deployments"] == [gpu_name] and second["scaled_to_zero"] == [cpu_name]
        replicas = {name: body["spec"]["replicas"] for (_, name), body in server.deployments.items()}
        assert replicas == {gpu_name: 3, cpu_name: 0, "web": 1}
        # create after a 404 on replace; then replace in place; only headroom Deployments are listed and scaled
        assert [method for method, _ in server.received] == [
            "PUT",
            "POST",
            "PUT",
            "POST",
            "GET",
            "PUT",
            "GET",
            "PATCH",
        ]
        assert "labelSelector=app%3Dkumo-headroom" in server.received[4][1]
