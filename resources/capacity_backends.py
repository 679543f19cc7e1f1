"""Where a capacity plan goes: recorded only (dry run, the default), or Kubernetes headroom placeholders.

Headroom placeholders are the standard way to keep warm nodes with Karpenter or the cluster autoscaler: a
Deployment of pause pods per instance type, each pod sized like a full node of trials, at a negative
priority that never preempts anything. The autoscaler provisions nodes for them; when trial pods arrive,
the scheduler evicts placeholders to make room (the trials start at once) and the evicted placeholders ask
for fresh nodes. Running trials are never touched: placeholders only ever give way.
"""

from __future__ import annotations

import re
from typing import Any

from dagster import ConfigurableResource

from cluster.capacity import CapacityPlan, NodeDemand
from cluster.placement import GPU_RESOURCE

__all__ = ["HEADROOM_LABEL", "CapacityBackend", "DryRunCapacity", "KubernetesHeadroom"]

HEADROOM_LABEL = ("app", "kumo-headroom")
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


class CapacityBackend(ConfigurableResource):
    """Records the plan (the base class and the dry run apply nothing)."""

    def apply(self, plan: CapacityPlan) -> dict[str, Any]:
        return {"backend": "dry-run", "applied": False, "total_nodes": plan.total_nodes}


class DryRunCapacity(CapacityBackend):
    """The embedded default: the sensor records each plan; nothing on a cluster changes."""


def _name(demand: NodeDemand) -> str:
    raw = f"kumo-headroom-{demand.instance_type}-{demand.capacity}-{demand.pod_gpus}g"
    return re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:63].rstrip("-")


class KubernetesHeadroom(CapacityBackend):
    """One Deployment of placeholder pods per demanded (instance type, capacity), ``replicas`` = nodes.

    Each placeholder requests ``pods_per_node`` trials' worth of CPU, memory and GPU slots (one node), with
    the trials' node selector and tolerations, so the autoscaler provisions exactly the demanded node type.
    Deployments of types no longer demanded are scaled to zero, never deleted (history stays readable).
    """

    namespace: str = "default"
    priority_class: str = "kumo-headroom"  # create it once: value -10, preemptionPolicy Never (docs)
    image: str = PAUSE_IMAGE
    load_incluster_config: bool = True
    kubeconfig_file: str | None = None

    def deployment(self, demand: NodeDemand) -> dict[str, Any]:
        """The placeholder Deployment for one demand (camelCase, as ``kubectl apply`` reads it)."""
        per_node = demand.pods_per_node
        amounts = {"cpu": f"{demand.pod_cpu * per_node:g}",
                   "memory": f"{max(1, round(demand.pod_memory_gib * per_node * 1024))}Mi"}  # fmt: skip
        if demand.pod_gpus:
            amounts[GPU_RESOURCE] = str(demand.pod_gpus * per_node)
        labels = {HEADROOM_LABEL[0]: HEADROOM_LABEL[1], "kumo.ai/headroom": _name(demand)}
        pod_spec: dict[str, Any] = {
            "priorityClassName": self.priority_class,
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "pause",
                    "image": self.image,
                    "resources": {"requests": dict(amounts), "limits": dict(amounts)},
                }
            ],
        }
        if demand.node_selector:
            pod_spec["nodeSelector"] = dict(demand.node_selector)
        if demand.tolerations:
            pod_spec["tolerations"] = [dict(toleration) for toleration in demand.tolerations]
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": _name(demand),
                "namespace": self.namespace,
                "labels": labels,
                "annotations": {"kumo.ai/studies": ",".join(demand.studies)[:4000]},
            },
            "spec": {
                "replicas": demand.nodes,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        }

    def deployments(self, plan: CapacityPlan) -> list[dict[str, Any]]:
        return [self.deployment(demand) for demand in plan.demands]

    def apply(self, plan: CapacityPlan) -> dict[str, Any]:
        """Create or replace the plan's Deployments; scale the other headroom Deployments to zero."""
        import kubernetes

        if self.kubeconfig_file:
            kubernetes.config.load_kube_config(self.kubeconfig_file)
        elif self.load_incluster_config:
            kubernetes.config.load_incluster_config()
        else:
            kubernetes.config.load_kube_config()
        apps = kubernetes.client.AppsV1Api()
        wanted = {body["metadata"]["name"]: body for body in self.deployments(plan)}
        for name, body in wanted.items():
            try:
                apps.replace_namespaced_deployment(name, self.namespace, body)
            except kubernetes.client.ApiException as error:
                if error.status != 404:
                    raise
                apps.create_namespaced_deployment(self.namespace, body)
        existing = apps.list_namespaced_deployment(self.namespace, label_selector="=".join(HEADROOM_LABEL))
        scaled_down = []
        for item in existing.items:
            if item.metadata.name not in wanted and (item.spec.replicas or 0) > 0:
                apps.patch_namespaced_deployment_scale(
                    item.metadata.name, self.namespace, {"spec": {"replicas": 0}}
                )
                scaled_down.append(item.metadata.name)
        return {"backend": "kubernetes", "applied": True, "total_nodes": plan.total_nodes,
                "deployments": sorted(wanted), "scaled_to_zero": scaled_down}  # fmt: skip
