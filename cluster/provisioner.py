"""The node provisioner: which instance type (and how much of it) one trial should run on, and why.

The instance catalogue (`cluster.instance_catalogue`) lists types with GPUs, memory, vCPUs and prices;
`cluster.trial_estimate` gives a trial's peak memory and compute. `NodeProvisioner.place` keeps the types
that hold the trial with headroom, prices the whole trial on each (expected minutes x the hourly price of
the trial's share of the node), and returns the cheapest as a `Placement`: pod resources, node selector,
tolerations, and the reasons in words. Small GPU trials are packed several to a time-sliced GPU.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from cluster.data_stats import DataStats
from cluster.instance_catalogue import DEFAULT_CATALOGUE, InstanceType, load_catalogue
from cluster.placement import GPU_RESOURCE, Placement
from cluster.trial_estimate import TrialEstimate, estimate_trial

__all__ = ["NodeProvisioner", "ProvisioningError"]

GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


class ProvisioningError(RuntimeError):
    """No instance type (or this machine) can hold the trial; the message says what it needs and the fix."""


@dataclass(frozen=True)
class _Option:
    """One way to run the trial: a type, how many trials share a GPU (or the node), spot or on-demand."""

    instance: InstanceType
    slots: int  # trials per node
    trials_per_gpu: int
    cpu: float
    memory_gib: float
    minutes: float
    capacity: str
    utilisation: float = 0.0

    @property
    def hourly(self) -> float:
        return self.instance.price(self.capacity) / self.slots

    @property
    def cost(self) -> float:
        return self.minutes / 60 * self.hourly

    def label(self) -> str:
        packing = f", {self.trials_per_gpu} trials per GPU" if self.trials_per_gpu > 1 else ""
        share = "" if self.instance.gpus or self.slots == 1 else f", 1/{self.slots} of the node"
        return f"{self.instance.name} {self.capacity}{packing}{share}"


class NodeProvisioner(BaseModel):
    """Picks the cheapest instance type that holds a trial with headroom (see docs/provisioner.md).

    ``spot_max_minutes``: trials expected to finish sooner go to spot capacity (an interruption costs little
    and checkpoints resume); longer ones to on-demand. ``max_trials_per_gpu``: how many small trials may
    share one time-sliced GPU (nodes labelled ``replicas_label`` = that count by the NVIDIA device plugin).
    """

    catalogue: str = ""  # path to an instances YAML; empty = the shipped deploy/instances.yaml
    headroom: float = 0.25  # a trial must fit in its share with this much to spare
    spot_max_minutes: float = 60.0
    allow_gpu: bool = True
    max_trials_per_gpu: int = 4
    min_cpu_per_trial: float = 2.0  # vCPUs a CPU-only trial gets at least (CPU nodes are shared in slots)
    reserved_cpu: float = 0.5  # per node: kubelet, system and daemonset pods
    reserved_memory_fraction: float = 0.1  # per node: kubelet reservation and eviction threshold ...
    reserved_memory_gib: float = 1.0  # ... plus system and daemonset pods (device plugin, CNI, exporters)
    capacity_label: str = "karpenter.sh/capacity-type"
    replicas_label: str = "nvidia.com/gpu.replicas"

    def instances(self) -> dict[str, InstanceType]:
        return load_catalogue(self.catalogue)

    def estimate(self, params: Mapping[str, Any], stats: DataStats) -> TrialEstimate:
        return estimate_trial(params, stats)

    def place(self, params: Mapping[str, Any], stats: DataStats) -> Placement:
        """The cheapest placement of the whole trial that fits with headroom; raises `ProvisioningError`."""
        estimate = estimate_trial(params, stats)
        instances = self.instances()
        options, misfits = [], []
        for instance in instances.values():
            found = self._options(instance, estimate)
            (options.extend(found) if found else misfits.append(instance))
        if not options:
            raise ProvisioningError(self._no_fit(params, estimate, instances))
        best = min(options, key=lambda o: (round(o.cost, 9), o.minutes, o.trials_per_gpu, o.instance.name))
        return self._placement(best, options, misfits, params, estimate)

    def place_local(
        self, params: Mapping[str, Any], stats: DataStats, cpu_count: float, memory_gib: float
    ) -> Placement:
        """Check the trial fits this machine's RAM (the local launcher: CPU only) and say how long it takes."""
        estimate = estimate_trial(params, stats)
        need = estimate.host_memory_gib * (1 + self.headroom)
        if need > memory_gib:
            raise ProvisioningError(
                f"trial {_describe(params)} needs about {need:.1f} GiB of memory (estimate "
                f"{estimate.host_memory_gib:.1f} GiB + {self.headroom:.0%} headroom) but this machine offers "
                f"{memory_gib:.1f} GiB: "
                + ("lower batch_size, fanouts or channels, " if params.get("family", "gnn") == "gnn" else "")
                + "run fewer trials at once (parallelism: 1 gives one trial all of it), or use the Kubernetes launcher"
            )
        minutes = estimate.cpu_minutes(cpu_count)
        reasons = [
            _estimate_sentence(params, estimate),
            f"Runs locally on {cpu_count:g} CPU threads: needs {need:.1f} GiB with headroom of the "
            f"{memory_gib:.1f} GiB available; expected about {_minutes(minutes)}.",
        ]
        numbers = {**_numbers(estimate), "minutes": minutes, "memory_needed_gib": need}
        return Placement("local", "on-demand", 0, 1, float(cpu_count), round(need, 2),
                         estimate=numbers, reasons=reasons)  # fmt: skip

    # -- options -------------------------------------------------------------------------------------------
    def _capacity(self, instance: InstanceType, minutes: float) -> str:
        short = minutes < self.spot_max_minutes
        return "spot" if short and instance.spot_per_hour else "on-demand"

    def _options(self, instance: InstanceType, estimate: TrialEstimate) -> list[_Option]:
        grow = 1 + self.headroom
        cpu_total = max(instance.vcpu - self.reserved_cpu, 0.0)
        memory_total = instance.memory_gib * (1 - self.reserved_memory_fraction) - self.reserved_memory_gib
        options = []
        if instance.gpus:
            if not (self.allow_gpu and estimate.gpu_capable):
                return []
            for per_gpu in range(1, max(self.max_trials_per_gpu, 1) + 1):
                slots = instance.gpus * per_gpu
                cpu, memory = _floor(cpu_total / slots), memory_total / slots
                if (estimate.gpu_memory_gib * grow > instance.gpu_memory_gib / per_gpu
                        or estimate.host_memory_gpu_gib * grow > memory or cpu < 1):  # fmt: skip
                    break  # more trials per GPU only shrink every share
                minutes = estimate.gpu_wall_minutes(instance.gpu_speed, cpu, instance.cpu_speed, per_gpu)
                utilisation = estimate.gpu_utilisation(instance.gpu_speed, cpu, instance.cpu_speed)
                options.append(_Option(instance, slots, per_gpu, cpu, memory, minutes,
                                       self._capacity(instance, minutes), utilisation))  # fmt: skip
            return options
        slots = 1
        while True:
            cpu, memory = _floor(cpu_total / slots), memory_total / slots
            if estimate.host_memory_gib * grow > memory or cpu < min(self.min_cpu_per_trial, cpu_total):
                break
            minutes = estimate.cpu_minutes(cpu, instance.cpu_speed)
            options.append(
                _Option(instance, slots, 1, cpu, memory, minutes, self._capacity(instance, minutes))
            )
            slots *= 2
        return options

    # -- the answer ----------------------------------------------------------------------------------------
    def _placement(self, best: _Option, options: list[_Option], misfits: list[InstanceType],
                   params: Mapping[str, Any], estimate: TrialEstimate) -> Placement:  # fmt: skip
        instance = best.instance
        selector = {**instance.node_labels, self.capacity_label: best.capacity}
        if best.trials_per_gpu > 1:
            selector[self.replicas_label] = str(best.trials_per_gpu)
        cheapest = {}
        for option in sorted(options, key=lambda o: o.cost):
            cheapest.setdefault(option.instance.name, option)
        ranked = sorted(cheapest.values(), key=lambda o: o.cost)
        reasons = [_estimate_sentence(params, estimate)]
        fits = ", ".join(o.instance.name for o in ranked)
        reasons.append(f"With {self.headroom:.0%} headroom {len(ranked)} of {len(ranked) + len(misfits)} "
                       f"catalogue types hold it: {fits}." + (f" Too small or excluded: "
                       f"{', '.join(i.name for i in misfits)}." if misfits else ""))  # fmt: skip
        others = "; ".join(f"{o.label()} ${o.cost:.4f} ({o.cost / max(best.cost, 1e-12):.1f}x)"
                           for o in ranked[1:4])  # fmt: skip
        reasons.append(
            f"Cheapest for the whole trial: {best.label()}, about {_minutes(best.minutes)} at ${best.hourly:.4f}/h "
            f"for this trial's share = ${best.cost:.4f}" + (f"; next: {others}." if others else ".")
        )
        if best.capacity == "spot":
            reasons.append(f"Spot: expected {_minutes(best.minutes)} < spot_max_minutes "
                           f"{self.spot_max_minutes:g}, so an interruption loses little (the trial resumes "
                           "from its checkpoint).")  # fmt: skip
        elif best.minutes >= self.spot_max_minutes:
            reasons.append(f"On-demand: expected {_minutes(best.minutes)} >= spot_max_minutes "
                           f"{self.spot_max_minutes:g}: a long trial should not risk spot interruptions.")  # fmt: skip
        else:
            reasons.append(f"On-demand: {instance.name} lists no spot price.")
        if instance.gpus:
            share = instance.gpu_memory_gib / best.trials_per_gpu
            if best.trials_per_gpu > 1:
                reasons.append(
                    f"Packed {best.trials_per_gpu} trials per GPU: each needs "
                    f"{estimate.gpu_memory_gib * (1 + self.headroom):.1f} GiB of the {share:g} GiB share and "
                    f"alone keeps the GPU about {best.utilisation:.0%} busy; the pod requests one "
                    f"{GPU_RESOURCE} slot on a node whose GPUs are time-sliced into {best.trials_per_gpu} "
                    f"replicas ({self.replicas_label}={best.trials_per_gpu}), cutting its share of the price "
                    f"{best.trials_per_gpu}x."
                )
            else:
                reasons.append(f"One trial per GPU: sharing would not make it cheaper (GPU about "
                               f"{best.utilisation:.0%} busy alone, {estimate.gpu_memory_gib:.1f} GiB of "
                               f"{instance.gpu_memory_gib:g} GiB).")  # fmt: skip
        numbers = {**_numbers(estimate), "minutes": best.minutes, "trial_cost": best.cost,
                   "hourly_cost": best.hourly, "gpu_utilisation": best.utilisation}  # fmt: skip
        return Placement(
            instance_type=instance.name,
            capacity=best.capacity,
            gpus=1 if instance.gpus else 0,
            trials_per_gpu=best.trials_per_gpu,
            cpu=best.cpu,
            memory_gib=round(best.memory_gib, 2),
            node_selector=selector,
            tolerations=[dict(GPU_TOLERATION)] if instance.gpus else [],
            hourly_cost=best.hourly,
            estimate=numbers,
            reasons=reasons,
        )

    def _no_fit(self, params: Mapping[str, Any], estimate: TrialEstimate,
                instances: dict[str, InstanceType]) -> str:  # fmt: skip
        grow = 1 + self.headroom
        gpu_types = (
            [i for i in instances.values() if i.gpus] if self.allow_gpu and estimate.gpu_capable else []
        )
        biggest_gpu = max(gpu_types, key=lambda i: (i.gpu_memory_gib, i.memory_gib / i.gpus), default=None)
        biggest = max(instances.values(), key=lambda i: i.memory_gib)
        needs = f"{estimate.host_memory_gib * grow:.1f} GiB of host memory on CPU"
        if gpu_types:
            needs += (f", or {estimate.gpu_memory_gib * grow:.1f} GiB of GPU memory and "
                      f"{estimate.host_memory_gpu_gib * grow:.1f} GiB of host memory per GPU")  # fmt: skip
        largest = f"the largest type is {biggest.describe()}"
        if biggest_gpu is not None and biggest_gpu is not biggest:
            largest += f" and the largest GPU is on {biggest_gpu.describe()}"
        return (
            f"no instance type in {self.catalogue or DEFAULT_CATALOGUE} can hold trial {_describe(params)}: "
            f"it needs {needs} (with {self.headroom:.0%} headroom); {largest}. Lower batch_size, fanouts or "
            "channels, or add a bigger instance type to the catalogue (NodeProvisioner.catalogue)."
        )


def _floor(cpu: float) -> float:
    """CPU to request: rounded down to a tenth so requests stay within the node's allocatable CPU."""
    return math.floor(cpu * 10 + 1e-9) / 10


def _describe(params: Mapping[str, Any]) -> str:
    if params.get("family") == "gbdt":
        return f"gbdt(trees={params.get('gbdt_trees', 1000)}, leaves={params.get('gbdt_leaves', 31)})"
    return (f"{params.get('conv', 'sage')}(channels={params.get('channels', 64)}, layers={params.get('layers', 2)}, "
            f"batch_size={params.get('batch_size', 512)}, fanouts={list(params.get('fanouts', [16, 8]))})")  # fmt: skip


def _minutes(minutes: float) -> str:
    return f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _numbers(estimate: TrialEstimate) -> dict[str, float]:
    return {key: float(value) for key, value in estimate.to_dict().items() if key != "family"}


def _estimate_sentence(params: Mapping[str, Any], estimate: TrialEstimate) -> str:
    if estimate.family == "gbdt":
        return (f"Estimate for {_describe(params)}: peak memory {estimate.host_memory_gib:.1f} GiB, "
                f"{estimate.cpu_core_minutes:.1f} CPU core-minutes; LightGBM trains on CPU only.")  # fmt: skip
    return (
        f"Estimate for {_describe(params)}: about {estimate.nodes_per_batch:,.0f} sampled nodes and "
        f"{estimate.edges_per_batch:,.0f} edges per batch, {estimate.parameters / 1e6:.2f} M parameters, "
        f"{estimate.steps} steps; peak host memory {estimate.host_memory_gib:.1f} GiB training on CPU "
        f"({estimate.host_memory_gpu_gib:.1f} GiB beside a GPU), peak GPU memory {estimate.gpu_memory_gib:.1f} "
        f"GiB; {estimate.cpu_core_minutes:.1f} CPU core-minutes or {estimate.gpu_minutes:.2f} GPU-minutes on an "
        f"A10G-class GPU (+{estimate.host_core_minutes:.1f} host core-minutes: sampling, gathers, Python)."
    )
