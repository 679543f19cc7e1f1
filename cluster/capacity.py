"""Capacity ahead of demand: how many nodes of which instance type the open HPO studies will need next.

Node provisioning takes minutes (a GPU node with its image pulled, longer), so waiting for each trial pod
to be unschedulable before a node starts wastes much of a study. The plan reads every study on the shared
Optuna storage whose budget is not spent (trials left, deadline ahead): its next ``parallelism`` trials will
run at once, shaped like its latest placed trial. Pods of one shape pack onto nodes by GPU slots, CPU and
memory; the result is nodes per (instance type, capacity). Studies run by the local launcher need no nodes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from cluster.instance_catalogue import InstanceType
from cluster.placement import Placement

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)  # trials that count against a study's budget

__all__ = ["BUDGET_ATTR", "CapacityPlan", "NodeDemand", "plan_capacity", "pods_per_node", "study_demand"]

BUDGET_ATTR = (
    "budget"  # study user attribute the HPO driver sets: n_trials, parallelism, deadline, launcher, run_id
)


@dataclass
class NodeDemand:
    """Nodes of one instance type and capacity, for ``pods`` concurrent trial pods of the studies named."""

    instance_type: str
    capacity: str
    nodes: int
    pods: int
    pods_per_node: int
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    pod_cpu: float
    pod_memory_gib: float
    pod_gpus: int
    studies: list[str] = field(default_factory=list)


@dataclass
class CapacityPlan:
    created_at: float
    demands: list[NodeDemand]
    notes: list[str]  # studies that need nothing, and why

    @property
    def total_nodes(self) -> int:
        return sum(demand.nodes for demand in self.demands)

    def summary(self) -> str:
        if not self.demands:
            return "no cluster capacity needed" + (f" ({'; '.join(self.notes)})" if self.notes else "")
        parts = [
            f"{d.nodes}x {d.instance_type} ({d.capacity}) for {d.pods} trial pod(s)" for d in self.demands
        ]
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"created_at": self.created_at, "total_nodes": self.total_nodes, "summary": self.summary(),
                "demands": [asdict(demand) for demand in self.demands], "notes": self.notes}  # fmt: skip


def pods_per_node(placement: Placement, instance: InstanceType) -> int:
    """How many pods of this placement one node holds: GPU slots (time-sliced replicas), vCPU and memory."""
    limits = [  # the epsilon keeps 2 / 0.5000000000000001 at 4 pods: rounding must not cost a pod
        math.floor(instance.vcpu / placement.cpu + 1e-9) if placement.cpu else math.inf,
        math.floor(instance.memory_gib / placement.memory_gib + 1e-9) if placement.memory_gib else math.inf,
    ]
    if placement.gpus:
        limits.append((instance.gpus * max(1, placement.trials_per_gpu)) // placement.gpus)
    count = min(limits)
    return max(1, int(count)) if count != math.inf else 1


def study_demand(
    study: optuna.Study, now: float, run_alive: Callable[[str], bool] | None = None
) -> tuple[Placement | None, int, str]:
    """(the shape of the study's next trials, how many run at once, why none when none).

    ``run_alive(run_id)``: whether the Dagster run driving the study is still queued or running; a study
    whose run ended (finished, failed, killed) runs no more trials until it is materialised again.
    """
    budget = study.user_attrs.get(BUDGET_ATTR)
    if not budget:
        return None, 0, f"{study.study_name}: no budget recorded (not started by the hpo_study asset)"
    if budget.get("launcher") == "local":
        return None, 0, f"{study.study_name}: runs on the local launcher"
    if run_alive is not None and not run_alive(str(budget.get("run_id"))):
        return None, 0, f"{study.study_name}: its run {budget.get('run_id')} is not running"
    if budget.get("deadline") is not None and now >= float(budget["deadline"]):
        return None, 0, f"{study.study_name}: time budget spent"
    trials = study.get_trials(deepcopy=False)
    remaining = int(budget["n_trials"]) - sum(trial.state in FINISHED_STATES for trial in trials)
    if remaining <= 0:
        return None, 0, f"{study.study_name}: trial budget spent"
    placed = [trial for trial in trials if trial.user_attrs.get("placement")]
    if not placed:
        return None, 0, f"{study.study_name}: no trial placed yet, so its shape is unknown"
    latest = Placement.from_dict(max(placed, key=lambda trial: trial.number).user_attrs["placement"])
    if latest.instance_type == "local":
        return None, 0, f"{study.study_name}: runs on the local launcher"
    return latest, min(int(budget.get("parallelism", 1)), remaining), ""


def plan_capacity(
    storage: optuna.storages.BaseStorage,
    instances: dict[str, InstanceType],
    now: float | None = None,
    run_alive: Callable[[str], bool] | None = None,
) -> CapacityPlan:
    """Nodes per instance type for the concurrent trials of every open study on ``storage``."""
    now = time.time() if now is None else now
    groups: dict[tuple, dict[str, Any]] = {}
    notes = []
    for name in sorted(optuna.study.get_all_study_names(storage)):
        study = optuna.load_study(study_name=name, storage=storage)
        placement, concurrent, why = study_demand(study, now, run_alive)
        if placement is None:
            notes.append(why)
            continue
        if placement.instance_type not in instances:
            notes.append(f"{name}: instance type {placement.instance_type} is not in the catalogue any more")
            continue
        key = (placement.instance_type, placement.capacity, placement.gpus, placement.trials_per_gpu,
               placement.cpu, placement.memory_gib, tuple(sorted(placement.node_selector.items())))  # fmt: skip
        group = groups.setdefault(key, {"placement": placement, "pods": 0, "studies": []})
        group["pods"] += concurrent
        group["studies"].append(name)
    demands = []
    for group in groups.values():
        placement: Placement = group["placement"]
        per_node = pods_per_node(placement, instances[placement.instance_type])
        demands.append(
            NodeDemand(
                placement.instance_type,
                placement.capacity,
                math.ceil(group["pods"] / per_node),
                group["pods"],
                per_node,
                dict(placement.node_selector),
                [dict(toleration) for toleration in placement.tolerations],
                placement.cpu,
                placement.memory_gib,
                placement.gpus,
                group["studies"],
            )
        )
    demands.sort(key=lambda demand: (demand.instance_type, demand.capacity, demand.pod_gpus, demand.pod_cpu))
    return CapacityPlan(now, demands, notes)
