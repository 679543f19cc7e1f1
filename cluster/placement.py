"""Where one trial runs: the provisioner's answer, which the launchers turn into a subprocess or a pod.

A plain, serialisable record so the decision (and why it was made) can be stored in the trial's Optuna user
attributes and shown in the Dagster UI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["GPU_RESOURCE", "Placement"]

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class Placement:
    """One trial's instance type and pod resources.

    ``gpus`` is what the pod requests (0 on CPU types). ``trials_per_gpu`` > 1 means small trials are packed
    onto one GPU: each pod then asks for one GPU *slot* on a node whose device plugin time-slices the GPU into
    that many replicas (the node selector carries the replica label). ``hourly_cost`` is the price of this
    trial's share of the node. ``reasons`` says, in words, why this type was chosen over the others.
    """

    instance_type: str
    capacity: str  # "spot" or "on-demand"
    gpus: int
    trials_per_gpu: int
    cpu: float
    memory_gib: float
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    hourly_cost: float = 0.0
    estimate: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def resources(self) -> dict[str, dict[str, str]]:
        """Kubernetes container resources: requests = limits (guaranteed QoS, so trials are not evicted)."""
        amounts = {"cpu": f"{self.cpu:g}", "memory": f"{max(1, round(self.memory_gib * 1024))}Mi"}
        if self.gpus:
            amounts[GPU_RESOURCE] = str(self.gpus)
        return {"requests": dict(amounts), "limits": dict(amounts)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Placement:
        return cls(**payload)

    @classmethod
    def local_cpu(
        cls, cpu: float, memory_gib: float, reason: str = "local launcher: this machine's CPU"
    ) -> Placement:
        """The embedded default: run on this machine, no node selection."""
        return cls("local", "on-demand", 0, 1, cpu, memory_gib, reasons=[reason])
