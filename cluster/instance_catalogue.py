"""The instance catalogue: which node types exist, with their GPUs, memory, vCPUs, prices and node labels.

Loaded and validated from a YAML file (deploy/instances.yaml, replaceable) so the provisioner
(`cluster.provisioner`) can choose among them; a malformed file fails loudly with the entry, field and fix.
"""

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEFAULT_CATALOGUE",
    "INSTANCE_TYPE_LABEL",
    "CatalogueError",
    "InstanceType",
    "load_catalogue",
]

DEFAULT_CATALOGUE = Path(__file__).resolve().parent.parent / "deploy" / "instances.yaml"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


class CatalogueError(ValueError):
    """The instance catalogue file is missing or malformed; the message names file, entry, field and fix."""


@dataclass(frozen=True)
class InstanceType:
    """One catalogue entry. Memory in GiB, prices in USD per hour for the whole node."""

    name: str
    vcpu: int
    memory_gib: float
    on_demand_per_hour: float
    spot_per_hour: float | None = None
    gpus: int = 0
    gpu_model: str = ""
    gpu_memory_gib: float = 0.0
    gpu_speed: float = 0.0
    cpu_speed: float = 1.0
    node_labels: dict[str, str] = field(default_factory=dict)

    def price(self, capacity: str) -> float:
        return self.spot_per_hour if capacity == "spot" and self.spot_per_hour else self.on_demand_per_hour

    def describe(self) -> str:
        gpus = f"{self.gpus}x {self.gpu_model} {self.gpu_memory_gib:g} GiB, " if self.gpus else ""
        return f"{self.name} ({gpus}{self.vcpu} vCPU, {self.memory_gib:g} GiB)"


_FIELDS = {
    "gpus": (int, False), "gpu_model": (str, False), "gpu_memory_gib": (float, False),
    "gpu_speed": (float, False), "vcpu": (int, True), "memory_gib": (float, True),
    "cpu_speed": (float, False), "on_demand_per_hour": (float, True), "spot_per_hour": (float, False),
    "node_labels": (dict, False),
}  # fmt: skip


def load_catalogue(path: str | Path = "") -> dict[str, InstanceType]:
    """Read and validate a catalogue file (default: the shipped deploy/instances.yaml)."""
    path = Path(path).expanduser() if str(path) else DEFAULT_CATALOGUE
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise CatalogueError(
            f"instance catalogue {path} does not exist: set NodeProvisioner(catalogue=...) to a YAML file "
            f"shaped like {DEFAULT_CATALOGUE.name} (top-level 'instances:' mapping)"
        ) from None
    return dict(_load(str(path), stamp))


@lru_cache(maxsize=16)
def _load(path: str, _stamp: int) -> tuple[tuple[str, InstanceType], ...]:
    try:
        document = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise CatalogueError(f"{path}: not valid YAML ({error}); fix the syntax") from None
    if not isinstance(document, dict) or not isinstance(document.get("instances"), dict):
        raise CatalogueError(f"{path}: expected a top-level 'instances:' mapping of type name -> fields")
    if not document["instances"]:
        raise CatalogueError(f"{path}: 'instances' is empty; list at least one instance type")
    return tuple((str(name), _entry(path, str(name), entry)) for name, entry in document["instances"].items())


def _entry(path: str, name: str, entry: Any) -> InstanceType:
    where = f"{path}: instance {name!r}"
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where}: expected a mapping of fields, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        raise CatalogueError(f"{where}: unknown field {unknown[0]!r}; allowed fields: {', '.join(_FIELDS)}")
    values: dict[str, Any] = {}
    for key, (kind, required) in _FIELDS.items():
        value = entry.get(key)
        if value is None:
            if required:
                raise CatalogueError(f"{where}: field {key!r} is missing; add it ({_hint(key)})")
            continue
        if kind is dict:
            if not isinstance(value, dict) or not all(
                isinstance(v, str | int | float) for v in value.values()
            ):
                raise CatalogueError(f"{where}: field {key!r} must map label names to values, got {value!r}")
            values[key] = {str(k): str(v) for k, v in value.items()}
        elif kind is str:
            values[key] = str(value)
        else:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or value < 0
                or (kind is int and value != int(value))
            ):
                raise CatalogueError(f"{where}: field {key!r} must be a non-negative "
                                     f"{'integer' if kind is int else 'number'} ({_hint(key)}), got {value!r}")  # fmt: skip
            values[key] = kind(value)
    for key in ("vcpu", "memory_gib", "on_demand_per_hour"):
        if values[key] <= 0:
            raise CatalogueError(f"{where}: field {key!r} must be positive ({_hint(key)}), got {values[key]}")
    if values.get("gpus"):
        for key in ("gpu_model", "gpu_memory_gib", "gpu_speed"):
            if not values.get(key):
                raise CatalogueError(f"{where}: field {key!r} is missing or zero on a GPU type; add it "
                                     f"({_hint(key)})")  # fmt: skip
    values.setdefault("node_labels", {INSTANCE_TYPE_LABEL: name})
    return InstanceType(name=name, **values)


def _hint(key: str) -> str:
    return {
        "gpus": "GPUs per node, e.g. 1",
        "gpu_model": "e.g. A10G",
        "gpu_memory_gib": "memory per GPU in GiB, e.g. 24",
        "gpu_speed": "throughput relative to one A10G, e.g. 1.0",
        "vcpu": "vCPUs per node, e.g. 4",
        "memory_gib": "node memory in GiB, e.g. 16",
        "cpu_speed": "one vCPU's speed relative to the calibration machine's core, e.g. 1.0",
        "on_demand_per_hour": "USD per hour, e.g. 1.006",
        "spot_per_hour": "USD per hour, or null when the type has no spot capacity",
    }.get(key, "see deploy/instances.yaml")
