"""The capacity sensor: every minute, plan the nodes open HPO studies will need and hand the plan to a backend.

Thin: the plan is `cluster.capacity.plan_capacity` (plain, unit-tested), the action is the
``capacity_backend`` resource (dry run by default, Kubernetes headroom placeholders on a cluster). Each
evaluation records the plan and what was done under ``capacity/plan.json`` on the data plane; the sensor
starts no runs, so its tick shows the plan as its skip reason in the UI.
"""

from dagster import DagsterRunStatus, ResourceParam, SensorEvaluationContext, SkipReason, sensor

from cluster.capacity import plan_capacity
from cluster.provisioner import NodeProvisioner
from resources.capacity_backends import CapacityBackend
from stores.data_plane import DataPlane
from training.studies import StudyStorage

__all__ = ["capacity_sensor"]

LIVE = {
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
}


@sensor(name="capacity_ahead_of_demand", minimum_interval_seconds=60,
        description="Nodes per instance type for the next trials of open HPO studies (dry run unless configured)")  # fmt: skip
def capacity_sensor(
    context: SensorEvaluationContext,
    study_storage: ResourceParam[StudyStorage],
    provisioner: ResourceParam[NodeProvisioner],
    capacity_backend: CapacityBackend,
    data_plane: ResourceParam[DataPlane],
) -> SkipReason:
    def run_alive(run_id: str) -> bool:
        record = context.instance.get_run_by_id(run_id)
        return record is not None and record.status in LIVE

    plan = plan_capacity(
        study_storage.get_storage(data_plane.root), provisioner.instances(), run_alive=run_alive
    )
    outcome = capacity_backend.apply(plan)
    data_plane.put_json({**plan.to_dict(), "outcome": outcome}, "capacity", "plan.json")
    return SkipReason(f"{plan.summary()} [{outcome['backend']}]")
